"""genai against the anchors' own code, in one run, alternating A and B; one JSON line per part.

    flock /tmp/genai-bench.lock .venv/bin/python benchmarks/anchors.py [--parts lm,vae,gan]

The anchors are the unmodified copies in ``../shared/anchors`` (see its README). Each part runs
the anchor and genai in turns (A, B, A, B, ...) so that a slow spell of a shared machine hits
both, and reports every round, the medians and the ratio anchor / genai (above 1: genai is
faster) with its min and max over the rounds. Absolute times do not compare across days or
machines; the ratios of one run do. On a machine that other work shares, ``--threads 1`` keeps
both sides clear of the stalls that multi-threaded kernels suffer when the cores are
oversubscribed (each parallel region waits for its slowest thread to be scheduled).

- ``lm``: nanoGPT's ``train.py`` with its README CPU config (4 layers, 4 heads, 128 wide, block
  64, batch 12, fp32, ``--log_interval=1``, eval every 250 iterations on 20 batches) against
  ``genai train gpt`` with the same settings (beta2 0.99, no bias, dropout 0, warmup 100, cosine
  to lr/10, weight decay 0.1, clip 1, ``--log-every 1``, eval every 250 on 20 batches, no text
  samples), one seed per round, each a separate process. Per iteration: the median of each
  run's per-iteration times (nanoGPT's printed ``dt``, genai's ``metrics.jsonl`` clock). Whole
  run: the wall time of the process. Validation loss: each run's own estimate at the last
  iteration (20 batches of 12 windows from the last 10% of the text; nanoGPT draws them from its
  ``val.bin``, the same tail). The one change to nanoGPT: a wrapper adds the round's seed to its
  fixed ``torch.manual_seed(1337)``.
- ``lm_logging``: genai's cost of logging every step, from short runs of the same command
  alternating ``--log-every 1`` and ``--log-every 100`` (mean time per iteration between the
  first and the last train record; the one evaluation comes after it).
- ``lm_profile``: where each step's time goes, nanoGPT's own ``model.py`` (its
  ``configure_optimizers``) beside genai's GPT at the same settings, one process, the same batch:
  ``torch.profiler`` self CPU time per step by kernel family (matmuls, flash attention, GELU,
  LayerNorm, AdamW, the rest), after warm-up steps, alternating the two over ``--profile-rounds``.
- ``vae``: pytorch/examples' ``vae/main.py`` (MLP 784-400-20, torchvision ``DataLoader`` with
  ``ToTensor``, Adam 1e-3, batch 128), its own ``train(epoch)`` timed per epoch on Fashion-MNIST
  (the IDX files of ``/usr/share/datasets/fashion-mnist`` placed where its ``datasets.MNIST``
  looks), against one epoch of genai's same MLP (``VAEConfig(arch="mlp", hidden_dims=(400,),
  latent_dim=20)``) on the same images. Round 0 of each warms up and is not counted. After each
  examples epoch, one pass over its ``train_loader`` alone times its data; the epoch less that
  is its model's part (forward, loss, backward, Adam), which genai's epoch is also set against.
- ``gan``: images per second of genai's default conditional GAN step (``genai train gan
  --num-classes 10``: D step, G step, EMA, augmentation, mode-seeking term) through the engine,
  against pytorch/examples' DCGAN training step (``dcgan/main.py``: D on real, D on fake, G
  through D, its ``.item()`` calls and print) on the same two nets, batch and optimizers. What
  changed in that pinned copy of its step: ``BCEWithLogitsLoss`` on genai's D logits instead of
  ``BCELoss`` after a ``Sigmoid``, labels passed to both nets, and batches drawn from the same
  in-memory images as genai's. The default run's length is projected from the measured rate.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gzip
import io
import json
import os
import re
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

import genai
from genai.plots import read_metrics

ROOT = Path(__file__).resolve().parents[1]
ANCHORS = ROOT.parent / "shared" / "anchors"
TEXT = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
FASHION = Path("/usr/share/datasets/fashion-mnist")
GENAI_CLI = Path(sys.executable).with_name("genai")

# nanoGPT under a seed offset: its train.py seeds with a fixed torch.manual_seed(1337).
SEEDED_NANOGPT = """import runpy, sys, torch
offset = int(sys.argv.pop(1))
manual_seed = torch.manual_seed
torch.manual_seed = lambda seed: manual_seed(seed + offset)
runpy.run_path("train.py", run_name="__main__")
"""


def spread(values: list[float], digits: int = 3) -> dict:
    """Median, min and max of ``values``."""
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def machine() -> dict:
    """What the figures were measured on, and how busy it was when the part started."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
    }


# ----------------------------------------------------------------------------- language model


def prepare_nanogpt(tmp: Path, text: Path) -> Path:
    """A temporary copy of nanoGPT with tiny-shakespeare prepared by its own ``prepare.py``."""
    dst = tmp / "nanogpt"
    shutil.copytree(ANCHORS / "nanogpt", dst)
    data = dst / "data" / "shakespeare_char"
    shutil.copy(text, data / "input.txt")
    prepare = data / "prepare.py"  # it downloads only when input.txt is missing
    prepare.write_text(prepare.read_text().replace("import requests\n", ""))
    subprocess.run([sys.executable, "prepare.py"], cwd=data, check=True, capture_output=True)
    (dst / "seeded_train.py").write_text(SEEDED_NANOGPT)
    return dst


def nanogpt_command(src: Path, iters: int, seed: int, *flags: str) -> list[str]:
    """nanoGPT's README CPU command for ``iters`` iterations under the seed offset ``seed``, run
    from ``src`` (:func:`prepare_nanogpt`); ``flags`` come last (nanoGPT's configurator lets a
    later ``--key=value`` win: ``--eval_iters=200``)."""
    return [
        sys.executable, "seeded_train.py", str(seed), "config/train_shakespeare_char.py",
        "--device=cpu", "--compile=False", "--dtype=float32", "--eval_iters=20",
        "--log_interval=1", "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4",
        "--n_embd=128", f"--max_iters={iters}", f"--lr_decay_iters={iters}", "--dropout=0.0",
        f"--out_dir={src / 'out'}", *flags,
    ]  # fmt: skip


def run_nanogpt(src: Path, iters: int, seed: int) -> dict:
    """nanoGPT's README CPU command; ms per iteration, seconds, last validation loss."""
    cmd = nanogpt_command(src, iters, seed)
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=src, check=True, capture_output=True, text=True).stdout
    seconds = time.perf_counter() - t
    ms = [float(m) for m in re.findall(r"^iter \d+: loss [\d.]+, time ([\d.]+)ms", out, re.M)]
    val = re.findall(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", out, re.M)
    return {
        "ms_per_iter": statistics.median(ms),
        "seconds": seconds,
        "val_step": int(val[-1][0]),
        "val_loss": float(val[-1][1]),
    }


def genai_gpt_command(text: Path, iters: int, seed: int, out: Path, *flags: str) -> list[str]:
    """``genai train gpt`` at nanoGPT's README CPU size (characters of ``text``, block 64, 4
    layers, 4 heads, 128 wide, batch 12) on the CPU for ``iters`` steps, no text samples, into
    ``out``; ``flags`` add or override settings (argparse: the last of a flag wins)."""
    return [
        str(GENAI_CLI), "train", "gpt", "--text", str(text), "--tokenizer", "char",
        "--block-size", "64", "--n-layer", "4", "--n-head", "4", "--n-embd", "128",
        "--batch-size", "12", "--max-steps", str(iters), "--device", "cpu", "--seed", str(seed),
        "--sample-tokens", "0", "--out-dir", str(out), "--overwrite", *flags,
    ]  # fmt: skip


def run_genai_lm(
    text: Path, iters: int, seed: int, out: Path, log_every: int = 1, eval_every: int = 250
) -> dict:
    """``genai train gpt`` at nanoGPT's settings; ms per iteration, seconds, last val loss.

    ``ms_per_iter`` is the median over log intervals; ``ms_per_iter_mean`` the mean from the
    first to the last train record (evaluations between them included).
    """
    cmd = genai_gpt_command(
        text, iters, seed, out, "--no-bias", "--dropout", "0", "--lr", "1e-3",
        "--min-lr-ratio", "0.1", "--warmup-steps", "100", "--lr-schedule", "cosine",
        "--betas", "0.9", "0.99", "--weight-decay", "0.1", "--grad-clip", "1", "--precision", "fp32",
        "--log-every", str(log_every), "--eval-every", str(eval_every), "--eval-batches", "20",
    )  # fmt: skip
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    records = read_metrics(out / "metrics.jsonl")
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    times = [r["time"] for r in train]
    ms = [(b - a) / log_every * 1e3 for a, b in zip(times, times[1:], strict=False)]
    return {
        "ms_per_iter": statistics.median(ms),
        "ms_per_iter_mean": (times[-1] - times[0]) / (train[-1]["step"] - train[0]["step"]) * 1e3,
        "seconds": seconds,
        "val_step": val[-1]["step"],
        "val_loss": val[-1]["loss"],
    }


def bench_lm(args: argparse.Namespace, tmp: Path) -> dict:
    result = {"bench": "anchors_lm", **machine(), "iters": args.lm_iters}
    nanogpt = prepare_nanogpt(tmp, args.text)
    rounds = []
    for seed in range(args.lm_seeds):
        a = run_nanogpt(nanogpt, args.lm_iters, seed)
        b = run_genai_lm(args.text, args.lm_iters, seed, tmp / f"gpt{seed}")
        rounds.append({"seed": seed, "nanogpt": a, "genai": b})
    for r in rounds:
        for side in ("nanogpt", "genai"):
            r[side] = {k: round(v, 4) if isinstance(v, float) else v for k, v in r[side].items()}
    per_side = {
        side: {k: [r[side][k] for r in rounds] for k in ("ms_per_iter", "seconds", "val_loss")}
        for side in ("nanogpt", "genai")
    }
    result["rounds"] = rounds
    for key in ("ms_per_iter", "seconds", "val_loss"):
        result[key] = {side: spread(v[key], 4) for side, v in per_side.items()}
    ratio = lambda key: [  # noqa: E731
        a / b for a, b in zip(per_side["nanogpt"][key], per_side["genai"][key], strict=True)
    ]
    result["speedup_per_iter"] = spread(ratio("ms_per_iter"))
    result["speedup_whole_run"] = spread(ratio("seconds"))
    result["val_loss_genai_minus_nanogpt"] = round(
        statistics.median(per_side["genai"]["val_loss"])
        - statistics.median(per_side["nanogpt"]["val_loss"]),
        4,
    )
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


def bench_lm_logging(args: argparse.Namespace, tmp: Path) -> dict:
    """genai's cost of logging every step: ``--log-every 1`` against ``--log-every 100``."""
    if args.log_steps < 201:
        raise SystemExit("--log-steps must be > 200 (two log records at --log-every 100)")
    result = {"bench": "anchors_lm_logging", **machine(), "steps": args.log_steps}
    cost = {1: [], 100: []}
    for i in range(args.log_rounds):
        for every in cost:
            out = tmp / f"log{every}-{i}"
            run = run_genai_lm(
                args.text, args.log_steps, 0, out, log_every=every, eval_every=args.log_steps
            )  # the only evaluation comes after the last train record
            cost[every].append(run["ms_per_iter_mean"])
    result["ms_per_iter_log_every_1"] = spread(cost[1], 2)
    result["ms_per_iter_log_every_100"] = spread(cost[100], 2)
    result["cost_fraction_of_a_step"] = spread(
        [a / b - 1 for a, b in zip(cost[1], cost[100], strict=True)]
    )
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ----------------------------------------------------------------------------------------- VAE


PROFILE_FAMILIES = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm"),
    "attention": ("flash_attention",),
    "gelu": ("gelu",),
    "layernorm": ("layer_norm",),
    "adamw": ("adam",),
}


def nanogpt_model() -> torch.nn.Module:
    """nanoGPT's own ``model.py`` GPT at its README CPU config (65 characters)."""
    sys.path.insert(0, str(ANCHORS / "nanogpt"))
    try:
        from model import GPT as NanoGPT
        from model import GPTConfig as NanoConfig
    finally:
        sys.path.pop(0)
    config = NanoConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128,
                        dropout=0.0, bias=False)  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):  # it prints its sizes
        return NanoGPT(config)


def _lm_steps(side: str):
    """A training step (forward, backward, clipping, AdamW) of nanoGPT's model or genai's, at
    nanoGPT's README CPU config, on one fixed batch."""
    torch.manual_seed(0)
    x, y = torch.randint(0, 65, (12, 64)), torch.randint(0, 65, (12, 64))
    if side == "nanogpt":
        model = nanogpt_model()
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its sizes
            opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), "cpu")
    else:
        from genai.optim import decay_groups, make_adamw

        model = genai.GPT(genai.GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4,
                                          n_embd=128, bias=False))  # fmt: skip
        opt = make_adamw(decay_groups(model, 0.1), 1e-3, torch.device("cpu"), betas=(0.9, 0.99))

    def step() -> None:
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def bench_lm_profile(args: argparse.Namespace, tmp: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile

    result = {"bench": "anchors_lm_profile", **machine(), "steps": args.profile_steps}
    steps = {side: _lm_steps(side) for side in ("nanogpt", "genai")}
    shares: dict[str, list[dict]] = {side: [] for side in steps}
    for _ in range(args.profile_rounds):
        for side, step in steps.items():
            for _ in range(10):  # warm-up
                step()
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(args.profile_steps):
                    step()
            events = prof.key_averages()
            total = sum(e.self_cpu_time_total for e in events)
            ms = {"step": total / args.profile_steps / 1e3}
            for family, keys in PROFILE_FAMILIES.items():
                ms[family] = (
                    sum(
                        e.self_cpu_time_total
                        for e in events
                        if any(k in e.key.lower() for k in keys)
                    )
                    / args.profile_steps
                    / 1e3
                )
            ms["rest"] = ms["step"] - sum(ms[f] for f in PROFILE_FAMILIES)
            shares[side].append(ms)
    result["ms_per_step_by_family"] = {
        side: {k: round(statistics.median(r[k] for r in rounds), 2) for k in rounds[0]}
        for side, rounds in shares.items()
    }
    nano = result["ms_per_step_by_family"]["nanogpt"]
    shared = nano["matmul"] + nano["attention"]
    result["shared_kernels_ms_of_nanogpt_step"] = round(shared, 2)
    # a genai step 1.3x shorter than nanoGPT's, less the same matmuls and attention
    result["left_for_the_rest_at_1_3x_ms"] = round(nano["step"] / 1.3 - shared, 2)
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


FASHION_FILES = [
    f"{split}-{kind}.gz"
    for split in ("train", "t10k")
    for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
]


def missing_fashion(root: Path = FASHION) -> str | None:
    """Why the VAE parts cannot run here, in one line, or None when Fashion-MNIST is in
    ``root``."""
    missing = [name for name in FASHION_FILES if not (root / name).is_file()]
    if not missing:
        return None
    return (
        f"the VAE parts need Fashion-MNIST's IDX files in {root}, and {missing[0]} is not there "
        "(apt-get install dataset-fashion-mnist)"
    )


def fashion_as_mnist_files(root: Path, limit: int | None = None) -> None:
    """Fashion-MNIST's IDX files where torchvision's ``datasets.MNIST(root)`` finds them
    (``root/MNIST/raw``, which ``genai.load_images("fashion-mnist", root=root)`` reads too);
    ``limit`` keeps the first ``limit`` images and labels of each split (a smoke run's data)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        for split in (name, name.replace("train", "t10k")):
            with gzip.open(FASHION / f"{split}.gz") as f:
                data = f.read()
            if limit is not None:  # IDX: magic, count, (rows, cols), then one byte per value
                header = 16 if "images" in split else 8
                count = min(limit, int.from_bytes(data[4:8], "big"))
                size = 28 * 28 if "images" in split else 1
                data = (
                    data[:4] + count.to_bytes(4, "big") + data[8:header]
                    + data[header : header + count * size]
                )  # fmt: skip
            (raw / split).write_bytes(data)


def prepare_examples_vae(tmp: Path, limit: int | None = None) -> Path:
    """A temporary copy of pytorch/examples' ``vae/`` (with its ``results/``), Fashion-MNIST
    placed where its ``datasets.MNIST('../data')`` reads it; returns the copy's folder."""
    work = tmp / "examples" / "vae"
    shutil.copytree(ANCHORS / "pytorch-examples" / "vae", work)
    (work / "results").mkdir()
    fashion_as_mnist_files(tmp / "examples" / "data", limit)
    return work


def load_examples_vae(work: Path) -> dict:
    """pytorch/examples' ``vae/main.py`` run in this process as a module (not ``__main__``):
    its loaders, model, optimizer, ``loss_function``, ``train`` and ``test``."""
    cwd, argv = os.getcwd(), sys.argv
    try:  # its module-level code builds the loaders, the model and the optimizer
        os.chdir(work)
        sys.argv = ["main.py", "--no-accel"]
        with contextlib.redirect_stdout(io.StringIO()):
            return runpy.run_path("main.py", run_name="examples_vae")
    finally:
        os.chdir(cwd)
        sys.argv = argv


def bench_vae(args: argparse.Namespace, tmp: Path) -> dict:
    result = {"bench": "anchors_vae", **machine(), "epochs_timed": args.vae_rounds}
    anchor = load_examples_vae(prepare_examples_vae(tmp))
    train = genai.load_images("fashion-mnist", "train", root=str(FASHION))
    steps = len(train) // 128
    times: dict[str, list[float]] = {"examples": [], "examples_data_only": [], "genai": []}
    for epoch in range(args.vae_rounds + 1):  # round 0 warms up
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            anchor["train"](epoch + 1)
        examples_s = time.perf_counter() - t
        t = time.perf_counter()  # its data alone: one pass over its DataLoader, no model
        for _ in anchor["train_loader"]:
            pass
        data_s = time.perf_counter() - t
        torch.manual_seed(epoch)
        model = genai.VAE(genai.VAEConfig(arch="mlp", hidden_dims=(400,), latent_dim=20))
        out = tmp / f"vae{epoch}"
        config = genai.VAETrainConfig(
            out_dir=str(out), epochs=1, batch_size=128, lr=1e-3, device="cpu", seed=epoch,
            log_every=steps, overwrite=True, precision="fp32",  # the examples' arithmetic
        )  # fmt: skip
        genai.train_vae(model, train, config)
        # The epoch's training steps (metrics' clock starts at step 0), scaled to 60,000 images.
        genai_s = read_metrics(out / "metrics.jsonl")[0]["time"] * len(train) / (steps * 128)
        if epoch:
            times["examples"].append(examples_s)
            times["examples_data_only"].append(data_s)
            times["genai"].append(genai_s)
    result["s_per_epoch"] = {side: spread(t) for side, t in times.items()}
    result["epoch_times"] = {side: [round(x, 3) for x in t] for side, t in times.items()}
    result["speedup_per_epoch"] = spread(
        [a / b for a, b in zip(times["examples"], times["genai"], strict=True)]
    )
    # The examples' epoch less its data pass: its model's forward, backward and Adam steps.
    compute = [a - d for a, d in zip(times["examples"], times["examples_data_only"], strict=True)]
    result["examples_model_s_per_epoch"] = spread(compute)
    result["speedup_over_examples_model_part"] = spread(
        [a / b for a, b in zip(compute, times["genai"], strict=True)]
    )
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ----------------------------------------------------------------------------------------- GAN


def dcgan_step(
    model: genai.GAN, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 64
) -> Callable[[int], None]:
    """pytorch/examples' DCGAN training step (pinned copy, see the docstring) on ``model``'s two
    nets with its Adam optimizers: ``step(i)`` trains on batch ``i`` and prints its log line."""
    netG, netD = model.generator, model.discriminator
    nz = model.config.latent_dim
    criterion = torch.nn.BCEWithLogitsLoss()
    optimizerD = torch.optim.Adam(netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
    optimizerG = torch.optim.Adam(netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))

    def step(i: int) -> None:
        idx = order[(i * batch_size) % (len(order) - batch_size) :][:batch_size]
        real_cpu = images[idx].float() / 127.5 - 1.0
        y = labels[idx]
        netD.zero_grad()
        label = torch.full((batch_size,), 1.0)
        output = netD(real_cpu, y)
        errD_real = criterion(output, label)
        errD_real.backward()
        D_x = torch.sigmoid(output).mean().item()
        noise = torch.randn(batch_size, nz)
        fake_y = torch.randint(10, (batch_size,))
        fake = netG(noise, fake_y)
        label.fill_(0.0)
        output = netD(fake.detach(), fake_y)
        errD_fake = criterion(output, label)
        errD_fake.backward()
        D_G_z1 = torch.sigmoid(output).mean().item()
        errD = errD_real + errD_fake
        optimizerD.step()
        netG.zero_grad()
        label.fill_(1.0)
        output = netD(fake, fake_y)
        errG = criterion(output, label)
        errG.backward()
        D_G_z2 = torch.sigmoid(output).mean().item()
        optimizerG.step()
        print(
            f"[{i}] Loss_D: {errD.item():.4f} Loss_G: {errG.item():.4f} "
            f"D(x): {D_x:.4f} D(G(z)): {D_G_z1:.4f} / {D_G_z2:.4f}"
        )

    return step


def dcgan_steps(model: genai.GAN, images: torch.Tensor, labels: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` of pytorch/examples' DCGAN step (pinned copy, see the docstring)."""
    step = dcgan_step(model, images, labels)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        for i in range(steps):
            step(i)
    return time.perf_counter() - t


def bench_gan(args: argparse.Namespace, tmp: Path) -> dict:
    result = {"bench": "anchors_gan", **machine(), "steps_per_round": args.gan_steps}
    data = genai.load_images("mnist", "train")
    defaults = genai.GANTrainConfig()
    rates: dict[str, list[float]] = {"dcgan_step": [], "genai": []}
    for r in range(args.gan_rounds + 1):  # round 0 warms up
        torch.manual_seed(r)
        model = genai.GAN(genai.GANConfig(num_classes=10))
        dcgan_s = dcgan_steps(model, data.images, data.labels, args.gan_steps)
        torch.manual_seed(r)
        model = genai.GAN(genai.GANConfig(num_classes=10))
        out = tmp / f"gan{r}"
        config = genai.GANTrainConfig(
            out_dir=str(out), epochs=None, max_steps=args.gan_steps, device="cpu", seed=r,
            log_every=args.gan_steps, overwrite=True,
        )  # fmt: skip
        genai.train_gan(model, data, config)
        genai_s = read_metrics(out / "metrics.jsonl")[0]["time"]
        if r:
            rates["dcgan_step"].append(args.gan_steps * 64 / dcgan_s)
            rates["genai"].append(args.gan_steps * defaults.batch_size / genai_s)
    result["images_per_s"] = {side: spread(v, 1) for side, v in rates.items()}
    result["speedup"] = spread(
        [g / d for g, d in zip(rates["genai"], rates["dcgan_step"], strict=True)]
    )
    steps = defaults.total_steps(len(data) // defaults.batch_size)
    result["default_run"] = {
        "epochs": round(steps * defaults.batch_size / len(data), 1),
        "steps": steps,
        "projected_train_s": round(steps * defaults.batch_size / statistics.median(rates["genai"])),
    }
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="lm,lm_logging,lm_profile,vae,gan")
    parser.add_argument("--text", type=Path, default=TEXT)
    parser.add_argument("--lm-iters", type=int, default=2000)
    parser.add_argument("--lm-seeds", type=int, default=3, help="rounds of nanoGPT then genai")
    parser.add_argument("--log-rounds", type=int, default=3, help="rounds of the logging cost")
    parser.add_argument("--log-steps", type=int, default=300, help="steps of each logging run")
    parser.add_argument("--profile-rounds", type=int, default=3)
    parser.add_argument("--profile-steps", type=int, default=40)
    parser.add_argument("--vae-rounds", type=int, default=3)
    parser.add_argument("--gan-rounds", type=int, default=3)
    parser.add_argument("--gan-steps", type=int, default=50)
    parser.add_argument(
        "--threads", type=int, help="torch threads of both sides (default: torch's, all cores)"
    )
    args = parser.parse_args()
    if args.threads:  # the processes started for nanoGPT and genai's CLI inherit it
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    benches = {
        "lm": bench_lm,
        "lm_logging": bench_lm_logging,
        "lm_profile": bench_lm_profile,
        "vae": bench_vae,
        "gan": bench_gan,
    }
    parts = args.parts.split(",")
    for part in parts:  # every part checked before the first one runs
        if part not in benches:
            parser.error(f"unknown part {part!r}; choose from {', '.join(benches)}")
    if "vae" in parts and (reason := missing_fashion()):
        parser.error(f"--parts vae: {reason}")
    for part in parts:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(benches[part](args, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
