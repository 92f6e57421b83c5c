"""Time to the anchors' quality: each anchor's own code trains with its own defaults; genai trains
until it first reaches that quality, judged in the same units by the same evaluation; one JSON
line per part.

    flock /tmp/genai-bench.lock .venv/bin/python benchmarks/time_to_quality.py \\
        [--parts gpt,vae,gan,diffusion] [--rounds 3] [--threads 2] [--smoke]

Every side is a separate process, timed whole (launch to exit, start-up included), and each
round runs the anchor, then genai (A, B, A, B, ...), so that a slow spell of a shared machine
hits both; genai's target in a round is that round's anchor result. The parent stamps every
line a process prints with the seconds since its launch: genai's *time to target* is the stamp
of the line of its first evaluation at or past the target. The engine has no early-stop
setting, so when that evaluation is not genai's last, the parent then sends the process SIGTERM,
which genai's engine honours as it does Ctrl-C: it saves a checkpoint at that step and exits
(``--run-to-end`` lets it finish instead; its wall time and final quality are then reported
too). ``ratio`` is anchor seconds / genai seconds to target (above 1: genai is faster), per
round and as median, min and max. ``hot_loop.gflop_per_s`` is each hot loop's model FLOPs per
step x steps / the loop's time (the training steps alone, without evaluations or start-up), beside this CPU's matmul peak measured in the same part (a 2048 x 2048
``torch.mm``, fp32 and bf16; ``fraction_of_peak`` uses the peak of the loop's precision). The
anchors are the unmodified copies in ``../shared/anchors`` (see its README).

- ``gpt``: A is nanoGPT's ``train.py``, its README CPU command (4 layers, 4 heads, 128 wide,
  block 64, batch 12, dropout 0, fp32, 2,000 iterations, lr decay over 2,000), as
  ``anchors.py`` runs it, with ``--eval_iters=200`` (its config's own value; the README's
  command says 20) and ``--eval_interval=2000``, so it estimates the losses on 200 batches at
  iterations 0 and 2,000 only (``--nanogpt-eval-interval 250``: its config's cadence); changed
  in it: only the seed (``anchors.py``'s wrapper adds the round to its fixed 1337). Target:
  its validation loss at iteration 2,000. B is ``genai train gpt`` at the same size on the same
  characters (the last 10% held out, as nanoGPT's ``val.bin``) with ``--recipe modern
  --precision bf16 --batch-size 24 --max-steps 160 --decay-fraction 0.5`` (a short-run
  schedule: 246k training tokens, as nanoGPT's 2,000 x 12 x 64 would be 1.5M, in steps of 24
  windows, which cost 1.6x a 12-window step on this CPU for twice the tokens, since the
  optimizer step and the per-step work do not grow with the batch; ``--gpt-batch-size``,
  ``--gpt-steps``), its validation loss at the end only, as nanoGPT's (``--eval-every 160``;
  earlier ones with ``--gpt-eval-every``), on an estimate of the same 2,400 windows as
  nanoGPT's 200 batches of 12 (``--eval-batches 100`` of 24; genai computes it at the training
  precision, as nanoGPT's ``estimate_loss`` runs under its autocast context, which is fp32 on
  a CPU), ``--log-every 10``, no progress bar, no text samples. Both sides' evaluations count in their time. Its FLOP count: 6 N + 12 L C T per token (N the weights of the Linear layers, lm head
  included; nanoGPT's and PaLM's estimate). Hot loops: nanoGPT's printed ``dt`` of the
  iterations without an evaluation; genai's ``metrics.jsonl`` log intervals without one.
- ``vae``: A is pytorch/examples' ``vae/main.py`` unchanged (``--no-accel``, ``--seed`` 1 + the
  round): its MLP 784-400-20, Adam 1e-3, batch 128, 10 epochs, with its ``test()`` after each
  and its sample images, on Fashion-MNIST (``/usr/share/datasets/fashion-mnist``) placed where
  its ``datasets.MNIST('../data')`` reads it. Target: its last "Test set loss" (BCE summed
  over the continuous pixels + KL, one posterior sample, per test image). B is
  ``genai.train_vae`` of ``VAEConfig(arch="mlp", hidden_dims=(400,), latent_dim=20)`` (the
  examples' 652,824 parameters) with genai's training defaults (AdamW, warmup, cosine, KL
  warm-up, batch 128) but a short-run recipe: ``lr=8e-3`` (``--vae-lr``; the default is 2e-3),
  ``betas=(0.9, 0.95)`` (``--vae-betas``; 0.999), the cosine to 0 (``--vae-min-lr-ratio``;
  0.1), 4 epochs (``--vae-genai-epochs``) of the same training images, in a process that
  flushes subnormal floats as the ``genai`` command does; every half epoch a callback
  computes the examples' test loss, with the examples' own formula (``F.binary_cross_entropy``
  of the decoder's sigmoid, summed, + the KL sum, batches of 128, / 10,000), on the same test
  images. Both sides' evaluations count in their time, and so do genai's defaults' sample
  grid per epoch and checkpoint every 1,000 steps (its log cadence is the evaluation's, so that
  the callback sees a record there). FLOPs: ``FlopCounterMode`` over one
  training step of each. The examples' hot loop is its ``train(epoch)`` calls, from the stamps
  of its own epoch lines.
- ``gan``: A is pytorch/examples' DCGAN step pinned as ``anchors.py`` pins it (its D-real,
  D-fake, G step with Adam 2e-4 (0.5, 0.999) and its log line, on genai's conditional nets
  ``GANConfig(num_classes=10)``, ``BCEWithLogitsLoss`` on D's logits, labels to both nets, the
  5,000 offline digits in memory, batch 64) for ``dcgan/main.py``'s default 25 epochs
  (``--niter``; 79 batches per epoch, its DataLoader's count: 1,975 steps). Every 158 steps the
  classifier FID (``genai.metrics.classifier_fid`` in the features of ``metric_classifier`` of
  the offline digits, 5,000 samples with uniform labels against MNIST's 10,000 test digits; G
  in train mode, as the examples draw their samples); target: its best FID. B is
  ``genai.train_gan`` with the default ``GANTrainConfig`` (augmentation, mode-seeking term,
  EMA; fp32, ``--gan-precision``; at most 3,950 steps) of the conditional ``GANConfig(num_classes=10)`` (the same
  nets) and of the unconditional ``GANConfig()`` (fewer parameters: no label embeddings), the
  same FID of its EMA generator's samples every 158 steps. Sampling and FID are the
  benchmark's, not either side's: their seconds, and those of setting the FID up (the cached
  classifier, the real digits' features, computed once per process), printed by each process,
  are taken off both sides' times; genai's sample grid per epoch and checkpoints count. FLOPs: ``FlopCounterMode`` over one step of each.
- ``diffusion``: A is lucidrains' ``denoising-diffusion-pytorch`` (pip-installed into the
  part's temporary folder, as ``diffusion.py`` installs it), its own ``Trainer`` with its own
  defaults (batch 16, Adam 1e-4 (0.9, 0.99), gradient clipping at 1, EMA 0.995 every 10 steps,
  a 25-sample grid and a checkpoint every 1,000 steps, its DataLoader's workers) on the 5,000
  offline digits written as PNG files, with ``Unet(dim=16, dim_mults=(1, 2, 4), channels=1)``
  (721,185 parameters, genai's default net's size) in a ``GaussianDiffusion`` of 1,000 steps
  (its defaults: v-prediction, sigmoid schedule) for 28x28 images. Changed in it: the length,
  ``train_num_steps`` 1,000 (``--diffusion-steps``; its default, 100,000, would take about 8
  hours here), ``augment_horizontal_flip=False`` (a flipped digit is not a digit),
  ``calculate_fid=False`` (its Inception weights need a download) and ``sampling_timesteps``
  50 (DDIM; its default samples with all 1,000 steps). Target: the classifier FID (as the GAN
  part's) of 300 samples (``--diffusion-fid-n``) of its EMA model after its run. B is
  ``genai.train_diffusion`` of the default unconditional ``DiffusionConfig()`` (716,929
  parameters; DDIM, 50 steps) with the default ``DiffusionTrainConfig`` (batch 64, AdamW 1e-3,
  EMA, a grid, a bits/dim evaluation and a checkpoint every 1,000 steps; at most 1,500 steps),
  the same FID of its samples every 100 steps (``--diffusion-eval-every``). The FIDs' seconds
  (sampling included) and their set-up are taken off both sides' times. FLOPs:
  ``FlopCounterMode`` over one forward and backward of each; the anchor's hot loop is its
  ``Trainer.train()`` (its one grid included).
- ``profile`` (not in the default parts): ``torch.profiler`` over a few of genai's training
  steps of each hot loop above (GPT modern bf16, VAE MLP, conditional GAN): ms per step, its
  self CPU time by phase (forward and the rest, autograd's backward, the optimizers' steps),
  the ops with the most self CPU time, and the optimizers' inclusive time.

``--smoke`` shrinks everything (tens of steps, 2,000 Fashion-MNIST images, one round) to check
the script in about a minute (flags given beside it still win); its numbers mean nothing. The
genai side's settings are flags (``--gpt-steps``, ``--vae-genai-epochs``, ``--gan-precision``,
...; ``--gpt-extra`` passes more flags to ``genai train gpt``): see ``--help``. A full run
takes about 65 minutes on the 2-core development machine (``gpt`` 7, ``vae`` 6, ``gan`` 20,
``diffusion`` 30).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from anchors import (  # this folder's anchors.py (the script's folder is on sys.path)
    ROOT,
    TEXT,
    dcgan_step,
    genai_gpt_command,
    load_examples_vae,
    machine,
    missing_fashion,
    nanogpt_command,
    nanogpt_model,
    prepare_examples_vae,
    prepare_nanogpt,
    spread,
)
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import genai
from genai.plots import read_metrics

SHARED_MNIST = ROOT.parent / "shared" / "data" / "mnist"
GPT_SIZE = {"block_size": 64, "n_layer": 4, "n_head": 4, "n_embd": 128}
VAE_MODEL = {"arch": "mlp", "hidden_dims": [400], "latent_dim": 20}
EXAMPLES_BATCH = 128
DCGAN_BATCH = 64
NANOGPT_BATCH = 12  # its README CPU config's --batch_size
LUCIDRAINS_BATCH = 16  # its Trainer's train_batch_size
SMOKE = {
    "rounds": 1,
    "peak_n": 256,
    "gpt_iters": 40,
    "gpt_eval_batches": 4,
    "gpt_steps": 40,
    "gpt_eval_every": 10,
    "gpt_log_every": 5,
    "vae_limit": 2000,
    "vae_epochs": 1,
    "vae_genai_epochs": 4,
    "vae_eval_every": 15,
    "gan_steps": 30,
    "gan_eval_every": 10,
    "gan_fid_n": 200,
    "gan_real_n": 1000,
    "gan_max_steps": 40,
    "gan_classifier_steps": 50,
    "diffusion_steps": 20,
    "diffusion_sample_steps": 2,
    "diffusion_fid_n": 100,
    "diffusion_real_n": 1000,
    "diffusion_eval_every": 10,
    "diffusion_max_steps": 30,
    "profile_steps": 3,
}


# ------------------------------------------------------------------------------------- helpers


def run_stamped(
    cmd: list[str], cwd: Path | None = None, stop: Callable[[str], bool] | None = None
) -> dict:
    """Run ``cmd`` to its exit; every line of its stdout and stderr with the seconds since launch.

    ``stop(line)`` true (once): send the process SIGTERM (genai's engine then saves a checkpoint
    and exits). Returns ``lines`` [(seconds, text)], ``wall_s`` (launch to exit) and
    ``stopped_s`` (None if never stopped).
    """
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines, stopped = [], None
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            t = time.perf_counter() - start
            lines.append((t, line.rstrip("\n")))
            if stopped is None and stop is not None and stop(line):
                stopped = t
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
    except BaseException:  # Ctrl-C or an error here: the child does not run on alone
        proc.kill()
        raise
    rc = proc.wait()
    wall = time.perf_counter() - start
    # 130: genai's CLI after a SIGTERM stop; -15: the signal came after training had finished
    if rc != 0 and not (stopped is not None and rc in (130, -signal.SIGTERM)):
        tail = "\n".join(text for _, text in lines[-30:])
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited with {rc}:\n{tail}")
    return {"lines": lines, "wall_s": wall, "stopped_s": stopped}


def json_lines(lines: list[tuple[float, str]], key: str) -> list[tuple[float, dict]]:
    """The stamped lines that are JSON objects holding ``key`` (what this script's children
    print)."""
    out = []
    for t, text in lines:
        if text.startswith("{") and f'"{key}"' in text:
            with contextlib.suppress(ValueError):
                out.append((t, json.loads(text)))
    return out


def matmul_peak(n: int) -> dict[str, float]:
    """This CPU's matmul rate in GFLOP/s (an n x n x n ``torch.mm``), fp32 and bf16."""
    from lm import matmul_gflops

    from genai.core.device import native_bf16

    peak = {d: round(matmul_gflops(getattr(torch, t), n=n), 1) for d, t in PEAK_DTYPES}
    return {**peak, "n": n, "cpu_has_native_bf16": native_bf16(torch.device("cpu"))}


PEAK_DTYPES = (("fp32", "float32"), ("bf16", "bfloat16"))


def flop_rate(
    flops_per_step: float, steps: int, seconds: float, peak: dict, dtype: str, unit: str = "step"
) -> dict:
    """A hot loop's achieved GFLOP/s and its fraction of the matmul peak of ``dtype``
    (``steps`` of ``unit``: a step, or an epoch of the examples' VAE)."""
    rate = flops_per_step * steps / seconds / 1e9 if seconds > 0 else float("nan")
    return {
        f"gflop_per_{unit}": round(flops_per_step / 1e9, 4),
        f"{unit}s": steps,
        "seconds": round(seconds, 2),
        "gflop_per_s": round(rate, 1),
        "fraction_of_peak": round(rate / peak[dtype], 3),
        "peak_dtype": dtype,
    }


def counted_flops(step: Callable[[], object]) -> float:
    """FLOPs of one call of ``step`` (a training step: forward, backward, update), as
    ``torch.utils.flop_counter`` counts them (matmuls and convolutions)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return float(counter.get_total_flops())


def linear_weights(model: nn.Module) -> int:
    """Weights of the model's Linear layers (a tied lm head once)."""
    seen = {id(m.weight): m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear)}
    return sum(seen.values())


def gpt_flops_per_step(model: nn.Module, batch: int = NANOGPT_BATCH) -> float:
    """6 N + 12 L C T FLOPs per token (forward and backward; N: the Linear weights), x tokens."""
    c = model.config
    per_token = 6 * linear_weights(model) + 12 * c.n_layer * c.n_embd * c.block_size
    return per_token * c.block_size * batch


def ratios(rounds: list[dict], anchor_key: str, genai_key: str, side: str = "genai") -> dict:
    """anchor seconds / genai seconds over the rounds where genai reached the target."""
    values = [
        r["anchor"][anchor_key] / r[side][genai_key]
        for r in rounds
        if r[side].get("reached") and r[side].get(genai_key)
    ]
    out = spread(values) if values else {"median": None, "min": None, "max": None}
    return {**out, "rounds_reached": len(values), "rounds": len(rounds)}


def summary(rounds: list[dict], side: str, keys: tuple[str, ...]) -> dict:
    """Median, min and max of ``side``'s ``keys`` over the rounds (where present)."""
    out = {}
    for key in keys:
        values = [r[side][key] for r in rounds if r[side].get(key) is not None]
        if values:
            out[key] = spread(values, 4)
    return out


def child_command(kind: str, spec: dict) -> list[str]:
    """This script as a child process of ``kind`` with the settings ``spec``."""
    return [sys.executable, str(Path(__file__).resolve()), "--child", kind, json.dumps(spec)]


def below(key: str, target: float, last_step: int | None) -> Callable[[str], bool]:
    """A ``run_stamped`` stop: a child's JSON line whose ``key`` is at most ``target``, at a
    step before ``last_step`` (at the last step there is nothing left to stop)."""

    def stop(line: str) -> bool:
        if not line.startswith("{"):
            return False
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            return record.get(key, float("inf")) <= target and record["eval_step"] != last_step
        return False

    return stop


# ----------------------------------------------------------------------------------------- GPT


EVAL_LINE = re.compile(r"step (\d+): (\{.*\})$")


def run_gpt_anchor(args: argparse.Namespace, src: Path, seed: int, peak: dict, flops: float):
    every = args.nanogpt_eval_interval or args.gpt_iters
    cmd = nanogpt_command(
        src, args.gpt_iters, seed, f"--eval_iters={args.gpt_eval_batches}",
        f"--eval_interval={every}",
    )  # fmt: skip
    run = run_stamped(cmd, cwd=src)
    text = "\n".join(line for _, line in run["lines"])
    vals = re.findall(r"^step (\d+): train loss [\d.]+, val loss ([\d.]+)", text, re.M)
    iters = re.findall(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", text, re.M)
    plain = [float(ms) / 1e3 for n, ms in iters if int(n) % every]  # dt without an evaluation
    return {
        "wall_s": round(run["wall_s"], 2),
        "val_step": int(vals[-1][0]),
        "val_loss": float(vals[-1][1]),
        "val_curve": {int(s): float(v) for s, v in vals},
        "hot_loop": flop_rate(flops, len(plain), sum(plain), peak, "fp32"),
    }


def gpt_hot_loop(out: Path) -> tuple[int, float]:
    """Steps and seconds of the log intervals of a genai run that hold no evaluation (an
    evaluation runs right after the log line of its step)."""
    records = read_metrics(out / "metrics.jsonl")
    val_steps = {r["step"] for r in records if r["split"] == "val"}
    steps, seconds, prev = 0, 0.0, {"step": 0, "time": 0.0}
    for r in (r for r in records if r["split"] == "train"):
        if prev["step"] not in val_steps:
            steps += r["step"] - prev["step"]
            seconds += r["time"] - prev["time"]
        prev = r
    return steps, seconds


def genai_eval_batches(args: argparse.Namespace) -> int:
    """genai's ``--eval-batches``: as many windows as nanoGPT's ``--eval_iters`` batches hold."""
    return args.gpt_eval_batches * NANOGPT_BATCH // args.gpt_batch_size


def run_gpt_genai(
    args: argparse.Namespace, out: Path, seed: int, target: float, peak: dict, flops: float
):
    cmd = genai_gpt_command(
        args.text, args.gpt_steps, seed, out, "--recipe", args.gpt_recipe,
        "--precision", args.gpt_precision, "--batch-size", str(args.gpt_batch_size),
        "--eval-every", str(args.gpt_eval_every), "--eval-batches", str(genai_eval_batches(args)),
        "--log-every", str(args.gpt_log_every), "--no-progress", *shlex.split(args.gpt_extra),
    )  # fmt: skip

    def stop(line: str) -> bool:
        match = EVAL_LINE.search(line.rstrip())
        return bool(
            not args.run_to_end
            and match
            and json.loads(match[2])["loss"] <= target
            and int(match[1]) != args.gpt_steps
        )

    run = run_stamped(cmd, stop=stop)
    evals = []
    for t, line in run["lines"]:
        match = EVAL_LINE.search(line)
        if match:
            evals.append((t, int(match[1]), json.loads(match[2])["loss"]))
    hit = next((e for e in evals if e[2] <= target), None)
    steps, seconds = gpt_hot_loop(out)
    dtype = "bf16" if args.gpt_precision == "bf16" else "fp32"
    result = {
        "reached": hit is not None,
        "time_to_target_s": round(hit[0], 2) if hit else None,
        "step_at_target": hit[1] if hit else None,
        "val_loss_at_target": round(hit[2], 4) if hit else None,
        "wall_s": round(run["wall_s"], 2),
        "stopped_at_target": run["stopped_s"] is not None,
        "last_val_step": evals[-1][1] if evals else None,
        "last_val_loss": round(evals[-1][2], 4) if evals else None,
        "val_curve": {s: round(v, 4) for _, s, v in evals},
        "hot_loop": flop_rate(flops, steps, seconds, peak, dtype),
    }
    return result


def bench_gpt(args: argparse.Namespace, tmp: Path) -> dict:
    peak = matmul_peak(args.peak_n)
    vocab = len(set(args.text.read_text(encoding="utf-8")))
    torch.manual_seed(0)
    flops = {
        "anchor": gpt_flops_per_step(nanogpt_model()),
        "genai": gpt_flops_per_step(
            genai.GPT(genai.GPTConfig.recipe(args.gpt_recipe, vocab_size=vocab, **GPT_SIZE)),
            args.gpt_batch_size,
        ),
    }
    result = {
        "bench": "time_to_quality_gpt",
        **machine(),
        "anchor": f"nanoGPT train.py, README CPU config, {args.gpt_iters} iterations, "
        f"--eval_iters={args.gpt_eval_batches}",
        "genai": f"genai train gpt --recipe {args.gpt_recipe} --precision {args.gpt_precision} "
        f"--batch-size {args.gpt_batch_size} --max-steps {args.gpt_steps} "
        f"--eval-every {args.gpt_eval_every} --eval-batches {genai_eval_batches(args)} "
        f"{args.gpt_extra}".strip(),
        "matmul_peak_gflop_per_s": peak,
    }
    nanogpt = prepare_nanogpt(tmp, args.text)
    rounds = []
    for seed in range(args.rounds):
        a = run_gpt_anchor(args, nanogpt, seed, peak, flops["anchor"])
        b = run_gpt_genai(args, tmp / f"gpt{seed}", seed, a["val_loss"], peak, flops["genai"])
        rounds.append({"seed": seed, "target_val_loss": a["val_loss"], "anchor": a, "genai": b})
    result["rounds"] = rounds
    result["anchor_summary"] = summary(rounds, "anchor", ("wall_s", "val_loss"))
    result["genai_summary"] = summary(
        rounds, "genai", ("time_to_target_s", "step_at_target", "wall_s", "last_val_loss")
    )
    result["ratio_anchor_wall_over_genai_time_to_target"] = ratios(
        rounds, "wall_s", "time_to_target_s"
    )
    result["ratio_anchor_wall_over_genai_wall"] = ratios(rounds, "wall_s", "wall_s")
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ----------------------------------------------------------------------------------------- VAE


def examples_test_loss(model: genai.VAE, x: torch.Tensor, batch_size: int = 128) -> float:
    """pytorch/examples' ``test()`` loss for genai's VAE: its ``loss_function`` (BCE of the
    decoder's mean summed over the pixels, + the KL sum) over ``x`` in batches, / images."""
    import torch.nn.functional as F

    total = 0.0
    for i in range(0, x.shape[0], batch_size):
        data = x[i : i + batch_size]
        mu, logvar = model.encode(data)
        recon = torch.sigmoid(model.decode(model.reparameterize(mu, logvar)))
        bce = F.binary_cross_entropy(recon.view(-1, 784), data.view(-1, 784), reduction="sum")
        kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        total += (bce + kld).item()
    return total / x.shape[0]


def child_vae(spec: dict) -> None:
    """genai's VAE run of the ``vae`` part, with the examples' test loss every ``eval_every``."""
    from genai.training.engine import TrainingInterrupted

    torch.manual_seed(spec["seed"])
    train = genai.load_images("fashion-mnist", "train", root=spec["root"])
    test = genai.load_images("fashion-mnist", "test", root=spec["root"])
    x_test = test.images.float() / 255.0  # torchvision's ToTensor
    model = genai.VAE(genai.VAEConfig(**spec["model"]))
    config = genai.VAETrainConfig(**spec["train"], log_every=spec["eval_every"], progress=False)
    total = config.total_steps(len(train) // config.batch_size)
    state = {"eval_s": 0.0, "hot": (0, 0.0)}

    def evaluate(record: dict) -> dict | None:
        due = record["step"] % spec["eval_every"] == 0 or record["step"] == total
        if record["split"] != "train" or not due:
            return None
        state["hot"] = (record["step"], record["time"] - state["eval_s"])
        t = time.perf_counter()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model.eval()
            loss = examples_test_loss(model, x_test)
            model.train()
        state["eval_s"] += time.perf_counter() - t
        line = {"eval_step": record["step"], "test_loss": loss, "epoch": record["epoch"]}
        print(json.dumps(line), flush=True)
        return {"examples_test_loss": loss}

    with contextlib.suppress(TrainingInterrupted):
        genai.train_vae(model, train, config, callbacks=[evaluate])
    steps, seconds = state["hot"]
    print(json.dumps({"summary": {"hot_steps": steps, "hot_s": seconds}}), flush=True)


def examples_hot_loop(lines: list[tuple[float, str]]) -> tuple[int, float]:
    """Epochs and seconds of the examples' ``train(epoch)`` calls, from the stamps of its lines:
    from its first log line (after batch 0) or last test line to its epoch line."""
    epochs, seconds, start = 0, 0.0, None
    for t, text in lines:
        if start is None and text.startswith("Train Epoch:"):
            start = t
        elif text.startswith("====> Epoch:") and start is not None:
            epochs, seconds, start = epochs + 1, seconds + t - start, None
        elif text.startswith("====> Test set loss:"):
            start = t
    return epochs, seconds


def vae_flops(work: Path) -> dict[str, float]:
    """FLOPs per image of one training step of the examples' VAE and of genai's."""
    from genai.training.engine import Trainer
    from genai.vae.train import VAETask

    anchor = load_examples_vae(work)
    data, _ = next(iter(anchor["train_loader"]))
    model, optimizer, loss_function = anchor["model"], anchor["optimizer"], anchor["loss_function"]

    def examples_step() -> None:
        optimizer.zero_grad()
        recon, mu, logvar = model(data)
        loss_function(recon, data, mu, logvar).backward()
        optimizer.step()

    images = genai.load_images(
        "fashion-mnist", "test", root=str(work.parent / "data" / "MNIST" / "raw")
    )
    config = genai.VAETrainConfig(out_dir=str(work / "unused"), device="cpu")
    task = VAETask(genai.VAE(genai.VAEConfig(**VAE_MODEL)), images, config, None)
    batches = task.setup(torch.device("cpu"))
    trainer = Trainer(config, torch.device("cpu"), task.configure_optimizers())
    batch_size = config.batch_size
    return {
        "anchor": counted_flops(examples_step) / data.shape[0],
        "genai": counted_flops(lambda: task.train_step(batches.get(0), 0, trainer)) / batch_size,
    }


def bench_vae(args: argparse.Namespace, tmp: Path) -> dict:
    peak = matmul_peak(args.peak_n)
    work = prepare_examples_vae(tmp, args.vae_limit)
    root = work.parent / "data" / "MNIST" / "raw"
    train_images = len(genai.load_images("fashion-mnist", "train", root=str(root)))
    flops = vae_flops(work)
    per_epoch = train_images // args.vae_batch_size
    eval_every = args.vae_eval_every or max(1, per_epoch // 2)
    result = {
        "bench": "time_to_quality_vae",
        **machine(),
        "anchor": f"pytorch/examples vae/main.py --no-accel --epochs {args.vae_epochs}",
        "genai": f"train_vae VAEConfig(arch='mlp', hidden_dims=(400,), latent_dim=20), "
        f"{args.vae_genai_epochs} epochs, batch {args.vae_batch_size}, lr {args.vae_lr}, "
        f"betas {tuple(args.vae_betas)}, min_lr_ratio {args.vae_min_lr_ratio}, "
        f"precision {args.vae_precision}, examples' test loss every {eval_every} steps",
        "train_images": train_images,
        "matmul_peak_gflop_per_s": peak,
    }
    rounds = []
    for r in range(args.rounds):
        cmd = [sys.executable, "main.py", "--no-accel", "--seed", str(1 + r)]
        run = run_stamped([*cmd, "--epochs", str(args.vae_epochs)], cwd=work)
        tests = [float(t.split(":")[1]) for _, t in run["lines"] if t.startswith("====> Test set")]
        epochs, seconds = examples_hot_loop(run["lines"])
        hot = flop_rate(flops["anchor"] * train_images, epochs, seconds, peak, "fp32", "epoch")
        a = {"wall_s": round(run["wall_s"], 2), "test_loss": tests[-1], "hot_loop": hot}
        a["test_curve"] = tests
        train = {
            "out_dir": str(tmp / f"vae{r}"), "epochs": args.vae_genai_epochs, "device": "cpu",
            "batch_size": args.vae_batch_size, "precision": args.vae_precision, "seed": r,
            "lr": args.vae_lr, "betas": args.vae_betas, "min_lr_ratio": args.vae_min_lr_ratio,
        }  # fmt: skip
        spec = {"seed": r, "root": str(root), "model": VAE_MODEL, "train": train}
        spec["eval_every"] = eval_every
        total = args.vae_genai_epochs * per_epoch
        stop = None if args.run_to_end else below("test_loss", tests[-1], total)
        b_run = run_stamped(child_command("vae", spec), stop=stop)
        evals = json_lines(b_run["lines"], "test_loss")
        hit = next(((t, e) for t, e in evals if e["test_loss"] <= tests[-1]), None)
        (_, end), *_ = json_lines(b_run["lines"], "summary")
        dtype = "bf16" if args.vae_precision == "bf16" else "fp32"
        b = {
            "reached": hit is not None,
            "time_to_target_s": round(hit[0], 2) if hit else None,
            "step_at_target": hit[1]["eval_step"] if hit else None,
            "epoch_at_target": round(hit[1]["epoch"], 2) if hit else None,
            "test_loss_at_target": round(hit[1]["test_loss"], 3) if hit else None,
            "wall_s": round(b_run["wall_s"], 2),
            "stopped_at_target": b_run["stopped_s"] is not None,
            "test_curve": {e["eval_step"]: round(e["test_loss"], 3) for _, e in evals},
            "hot_loop": flop_rate(
                flops["genai"] * args.vae_batch_size,
                end["summary"]["hot_steps"],
                end["summary"]["hot_s"],
                peak,
                dtype,
            ),
        }
        rounds.append({"round": r, "target_test_loss": tests[-1], "anchor": a, "genai": b})
    result["rounds"] = rounds
    result["anchor_summary"] = summary(rounds, "anchor", ("wall_s", "test_loss"))
    result["genai_summary"] = summary(
        rounds, "genai", ("time_to_target_s", "epoch_at_target", "wall_s")
    )
    result["ratio_anchor_wall_over_genai_time_to_target"] = ratios(
        rounds, "wall_s", "time_to_target_s"
    )
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ----------------------------------------------------------------------------------------- GAN


def gan_data(classifier_steps: int, real_n: int | None = None):
    """The offline digits (training) and the FID against MNIST's test digits (``RealFID``), with
    the seconds it took to set that up (the classifier from its cache, the real features)."""
    from genai.metrics import metric_classifier

    train = genai.load_images("mnist", "train")  # the 5,000 offline digits
    start = time.perf_counter()
    classifier = metric_classifier(train, steps=classifier_steps)
    real = genai.load_images("mnist", "test", root=str(SHARED_MNIST)).images[:real_n]
    fid_of = RealFID(classifier, real)
    return train, fid_of, time.perf_counter() - start


class RealFID:
    """``genai.metrics.classifier_fid(classifier, real, fake)`` for one fixed ``real`` set: the
    same torchmetrics FID on the same classifier features, the real features computed once."""

    def __init__(self, classifier, real: torch.Tensor, batch_size: int = 1000):
        from torchmetrics.image.fid import FrechetInceptionDistance

        from genai.data.pixels import to_float
        from genai.metrics import _Features

        self.batch_size = batch_size
        self.fid = FrechetInceptionDistance(
            feature=_Features(classifier), normalize=True, reset_real_features=False
        )
        real = to_float(real) if real.dtype == torch.uint8 else real.float()
        with torch.no_grad():
            for i in range(0, real.shape[0], batch_size):
                self.fid.update(real[i : i + batch_size], real=True)

    @torch.no_grad()
    def __call__(self, fake: torch.Tensor) -> float:
        self.fid.reset()  # the fake features only
        for i in range(0, fake.shape[0], self.batch_size):
            self.fid.update(fake[i : i + self.batch_size].float(), real=False)
        return float(self.fid.compute())


@torch.no_grad()
def anchor_samples(model: genai.GAN, n: int) -> torch.Tensor:
    """``n`` samples in [0, 1] of the DCGAN-trained G (a copy in train mode, as the examples
    draw their samples; uniform labels, seed 0)."""
    g = copy.deepcopy(model.generator).train()
    gen = torch.Generator().manual_seed(0)
    chunks = []
    for i in range(0, n, 500):
        m = min(500, n - i)
        z = torch.randn(m, model.config.latent_dim, generator=gen)
        chunks.append((g(z, torch.randint(10, (m,), generator=gen)) + 1.0) / 2.0)
    return torch.cat(chunks)


def child_gan_anchor(spec: dict) -> None:
    """The pinned DCGAN step of ``anchors.py`` for ``steps``, the FID every ``eval_every``."""
    train, fid_of, setup_s = gan_data(spec["classifier_steps"], spec["real_n"])
    torch.manual_seed(spec["seed"])
    model = genai.GAN(genai.GANConfig(num_classes=10))
    step = dcgan_step(model, train.images, train.labels, DCGAN_BATCH)
    train_s, fid_s = 0.0, setup_s  # the FID's set-up counts as its first evaluation
    for i in range(spec["steps"]):
        t = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # its log line, as anchors.py keeps it
            step(i)
        train_s += time.perf_counter() - t
        if (i + 1) % spec["eval_every"] == 0 or i + 1 == spec["steps"]:
            t = time.perf_counter()
            with torch.random.fork_rng(devices=[]):
                fid = fid_of(anchor_samples(model, spec["fid_n"]))
            fid_s += time.perf_counter() - t
            line = {"eval_step": i + 1, "fid": fid, "eval_s": fid_s, "train_s": train_s}
            print(json.dumps(line), flush=True)
            fid_s = 0.0


def child_genai_fid(spec: dict) -> None:
    """genai's run of the ``gan`` or ``diffusion`` part (``spec["kind"]``): the registry's model
    and trainer of that kind, the FID of its samples (the GAN's EMA generator, the diffusion
    model's EMA net at its default sampler) every ``eval_every`` steps."""
    from genai.metrics import draw_samples
    from genai.registry import get_kind
    from genai.training.engine import TrainingInterrupted

    kind = get_kind(spec["kind"])
    train, fid_of, setup_s = gan_data(spec["classifier_steps"], spec["real_n"])
    torch.manual_seed(spec["seed"])
    model = kind.model(kind.config(**spec["model"]))
    every = spec["eval_every"]
    config = kind.train_config(**spec["train"], log_every=every, progress=False)
    total = config.total_steps(len(train) // config.batch_size)
    state = {"eval_s": 0.0, "hot": (0, 0.0), "setup_s": setup_s}

    def evaluate(record: dict) -> None:
        due = record["step"] % every == 0 or record["step"] == total
        if record["split"] != "train" or not due:
            return
        state["hot"] = (record["step"], record["time"] - state["eval_s"])
        t = time.perf_counter()
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            fid = fid_of(draw_samples(model, spec["fid_n"]))
        eval_s = time.perf_counter() - t
        state["eval_s"] += eval_s
        eval_s += state.pop("setup_s", 0.0)  # the FID's set-up counts as its first evaluation
        print(json.dumps({"eval_step": record["step"], "fid": fid, "eval_s": eval_s}), flush=True)

    with contextlib.suppress(TrainingInterrupted):
        kind.train(model, train, config, callbacks=[evaluate])
    steps, seconds = state["hot"]
    print(json.dumps({"summary": {"hot_steps": steps, "hot_s": seconds}}), flush=True)


def gan_flops(train) -> dict[str, float]:
    """FLOPs of one step of the pinned DCGAN step and of genai's (conditional, unconditional)."""
    from gan_speed import GenaiLoop

    torch.manual_seed(0)
    step = dcgan_step(genai.GAN(genai.GANConfig(num_classes=10)), train.images, train.labels)
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        out = {"anchor": counted_flops(lambda: step(0))}
        for name, config in (("conditional", {"num_classes": 10}), ("unconditional", {})):
            loop = GenaiLoop(train, genai.GAN(genai.GANConfig(**config)), Path(tmp) / name)
            out[name] = counted_flops(loop.step)
    return out


def gan_params(config: dict) -> int:
    """Parameters of a GAN's two nets (the EMA copy left out)."""
    model = genai.GAN(genai.GANConfig(**config))
    return sum(
        p.numel() for net in (model.generator, model.discriminator) for p in net.parameters()
    )


def run_genai_fid(
    args: argparse.Namespace,
    kind: str,
    out: Path,
    r: int,
    model: dict,
    target: float,
    peak: dict,
    fl: float,
) -> dict:
    """One genai run of ``kind`` (``gan`` or ``diffusion``; its flags ``--KIND-max-steps``, ...)
    until its FID is at most ``target``."""
    flag = lambda name: getattr(args, f"{kind}_{name}")  # noqa: E731
    train = {
        "out_dir": str(out), "max_steps": flag("max_steps"), "device": "cpu", "seed": r,
        "precision": flag("precision"),
    }  # fmt: skip
    spec = {"kind": kind, "seed": r, "model": model, "train": train}
    spec.update(eval_every=flag("eval_every"), fid_n=flag("fid_n"), real_n=flag("real_n"))
    spec["classifier_steps"] = args.gan_classifier_steps
    stop = None if args.run_to_end else below("fid", target, flag("max_steps"))
    run = run_stamped(child_command("genai-fid", spec), stop=stop)
    evals, eval_s = [], 0.0
    for t, e in json_lines(run["lines"], "fid"):
        eval_s += e["eval_s"]
        evals.append({**e, "t": t - eval_s})  # seconds to this FID, evaluations left out
    hit = next((e for e in evals if e["fid"] <= target), None)
    (_, end), *_ = json_lines(run["lines"], "summary")
    from genai.core.device import resolve_precision

    dtype = (
        "bf16" if resolve_precision(flag("precision"), torch.device("cpu")) == "bf16" else "fp32"
    )
    return {
        "reached": hit is not None,
        "time_to_target_s": round(hit["t"], 2) if hit else None,
        "step_at_target": hit["eval_step"] if hit else None,
        "fid_at_target": round(hit["fid"], 3) if hit else None,
        "wall_s": round(run["wall_s"], 2),
        "fid_eval_s": round(eval_s, 2),
        "stopped_at_target": run["stopped_s"] is not None,
        "best_fid": round(min(e["fid"] for e in evals), 3) if evals else None,
        "fid_curve": {e["eval_step"]: round(e["fid"], 3) for e in evals},
        "hot_loop": flop_rate(
            fl, end["summary"]["hot_steps"], end["summary"]["hot_s"], peak, dtype
        ),
    }


def bench_gan(args: argparse.Namespace, tmp: Path) -> dict:
    peak = matmul_peak(args.peak_n)
    from genai.metrics import metric_classifier

    train = genai.load_images("mnist", "train")
    metric_classifier(train, steps=args.gan_classifier_steps)  # trained and cached once, here
    per_epoch = -(-len(train) // DCGAN_BATCH)  # the examples' DataLoader keeps the last batch
    steps = args.gan_steps or args.gan_epochs * per_epoch
    flops = gan_flops(train)
    models = {"conditional": {"num_classes": 10}, "unconditional": {}}
    result = {
        "bench": "time_to_quality_gan",
        **machine(),
        "anchor": f"pytorch/examples DCGAN step as anchors.py pins it, {steps} steps of "
        f"{DCGAN_BATCH} ({steps / per_epoch:g} epochs) on the {len(train)} offline digits",
        "genai": f"train_gan, default GANTrainConfig (precision {args.gan_precision}), at most "
        f"{args.gan_max_steps} steps",
        "fid": f"classifier FID, {args.gan_fid_n} samples against {args.gan_real_n or 'all'} of "
        f"MNIST's test digits, every "
        f"{args.gan_eval_every} steps; its time left out of both sides",
        "parameters": {
            "anchor": gan_params(models["conditional"]),
            **{name: gan_params(m) for name, m in models.items()},
        },
        "matmul_peak_gflop_per_s": peak,
    }
    rounds = []
    for r in range(args.rounds):
        spec = {"seed": r, "steps": steps, "eval_every": args.gan_eval_every}
        spec.update(fid_n=args.gan_fid_n, classifier_steps=args.gan_classifier_steps)
        spec["real_n"] = args.gan_real_n
        run = run_stamped(child_command("gan-anchor", spec))
        evals = [e for _, e in json_lines(run["lines"], "fid")]
        eval_s = sum(e["eval_s"] for e in evals)
        best = min(evals, key=lambda e: e["fid"])
        a = {
            "wall_s": round(run["wall_s"], 2),
            "train_s": round(run["wall_s"] - eval_s, 2),  # the whole process less the FIDs
            "fid_eval_s": round(eval_s, 2),
            "best_fid": round(best["fid"], 3),
            "step_at_best": best["eval_step"],
            "fid_curve": {e["eval_step"]: round(e["fid"], 3) for e in evals},
            "hot_loop": flop_rate(flops["anchor"], steps, evals[-1]["train_s"], peak, "fp32"),
        }
        this = {"round": r, "target_fid": best["fid"], "anchor": a}
        for name, model in models.items():
            this[name] = run_genai_fid(
                args, "gan", tmp / f"gan-{name}{r}", r, model, best["fid"], peak, flops[name]
            )
        rounds.append(this)
    result["rounds"] = rounds
    result["anchor_summary"] = summary(rounds, "anchor", ("train_s", "best_fid"))
    for name in models:
        result[f"{name}_summary"] = summary(rounds, name, ("time_to_target_s", "step_at_target"))
        result[f"{name}_ratio_anchor_train_over_time_to_target"] = ratios(
            rounds, "train_s", "time_to_target_s", side=name
        )
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ----------------------------------------------------------------------------------- diffusion


def child_diffusion_anchor(spec: dict) -> None:
    """lucidrains' ``Trainer`` with its defaults on the PNG folder, then the FID of its EMA
    model's samples (DDIM, ``sample_steps``; batches of 100, seeded)."""
    sys.path.insert(0, spec["site"])
    import denoising_diffusion_pytorch as ddp
    from diffusion import lucidrains_model  # this folder's diffusion.py

    torch.manual_seed(spec["seed"])
    _, model = lucidrains_model(ddp, spec["sample_steps"])
    trainer = ddp.Trainer(
        model, spec["folder"], train_num_steps=spec["steps"], augment_horizontal_flip=False,
        calculate_fid=False, results_folder=spec["results"],
    )  # fmt: skip
    t = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - t
    start = time.perf_counter()
    _, fid_of, _ = gan_data(spec["classifier_steps"], spec["real_n"])
    ema = trainer.ema.ema_model.eval()
    torch.manual_seed(0)
    with torch.inference_mode():
        sizes = [min(100, spec["fid_n"] - i) for i in range(0, spec["fid_n"], 100)]
        fake = torch.cat([ema.sample(batch_size=n) for n in sizes])
    fid = fid_of(fake)
    line = {"eval_step": spec["steps"], "fid": fid, "eval_s": time.perf_counter() - start}
    print(json.dumps({**line, "train_s": train_s}), flush=True)


def write_pngs(images: torch.Tensor, folder: Path) -> Path:
    """``images`` (N, 1, H, W) uint8 as N grey PNG files in ``folder`` (what lucidrains'
    ``Trainer`` reads)."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i, image in enumerate(images):
        Image.fromarray(image[0].numpy()).save(folder / f"{i:05d}.png")
    return folder


def diffusion_sizes(ddp, train, sample_steps: int) -> tuple[dict, dict]:
    """FLOPs of one training step (forward and backward) of each side at its batch size, and
    each side's parameters (genai's EMA copy left out)."""
    from diffusion import lucidrains_model

    torch.manual_seed(0)
    theirs_net, theirs = lucidrains_model(ddp, sample_steps)
    ours = genai.Diffusion(genai.DiffusionConfig())
    x = train.images.float() / 255.0
    batch = genai.DiffusionTrainConfig().batch_size
    flops = {
        "anchor": counted_flops(lambda: theirs(x[:LUCIDRAINS_BATCH]).backward()),
        "genai": counted_flops(lambda: ours(x[:batch])["loss"].backward()),
    }
    count = lambda net: sum(p.numel() for p in net.parameters())  # noqa: E731
    return flops, {"anchor": count(theirs_net), "genai": count(ours.net)}


def bench_diffusion(args: argparse.Namespace, tmp: Path) -> dict:
    from diffusion import lucidrains_module

    from genai.metrics import metric_classifier

    peak = matmul_peak(args.peak_n)
    site = tmp / "site"
    ddp = lucidrains_module(site)  # installed for this run only
    train = genai.load_images("mnist", "train")
    metric_classifier(train, steps=args.gan_classifier_steps)  # trained and cached once, here
    folder = write_pngs(train.images, tmp / "digits")
    flops, params = diffusion_sizes(ddp, train, args.diffusion_sample_steps)
    version = importlib.metadata.version("denoising-diffusion-pytorch")
    result = {
        "bench": "time_to_quality_diffusion",
        **machine(),
        "anchor": f"denoising-diffusion-pytorch {version} Trainer, its defaults (batch {LUCIDRAINS_BATCH}, Adam 1e-4, EMA 0.995) but "
        f"train_num_steps {args.diffusion_steps} (its default: 100,000), no horizontal flips, "
        f"no Inception FID; Unet(dim=16, dim_mults=(1, 2, 4)), GaussianDiffusion 1,000 steps, "
        f"DDIM {args.diffusion_sample_steps} steps; the {len(train)} offline digits as PNGs",
        "genai": f"train_diffusion, default DiffusionConfig() (unconditional) and "
        f"DiffusionTrainConfig (precision {args.diffusion_precision}), at most "
        f"{args.diffusion_max_steps} steps",
        "fid": f"classifier FID, {args.diffusion_fid_n} samples (DDIM "
        f"{args.diffusion_sample_steps} steps) against {args.diffusion_real_n or 'all'} of "
        f"MNIST's test digits; genai's every {args.diffusion_eval_every} steps, the anchor's "
        "after its run; its time left out of both sides",
        "parameters": params,
        "matmul_peak_gflop_per_s": peak,
    }
    model = {"sample_steps": args.diffusion_sample_steps}  # the default, 50, unless told
    rounds = []
    for r in range(args.rounds):
        spec = {"seed": r, "steps": args.diffusion_steps, "site": str(site)}
        spec.update(folder=str(folder), results=str(tmp / f"results{r}"))
        spec.update(sample_steps=args.diffusion_sample_steps, fid_n=args.diffusion_fid_n)
        spec.update(classifier_steps=args.gan_classifier_steps, real_n=args.diffusion_real_n)
        run = run_stamped(child_command("diffusion-anchor", spec), cwd=tmp)
        (_, e), *_ = json_lines(run["lines"], "fid")
        a = {
            "wall_s": round(run["wall_s"], 2),
            "train_s": round(run["wall_s"] - e["eval_s"], 2),  # the whole process less the FID
            "fid_eval_s": round(e["eval_s"], 2),
            "fid": round(e["fid"], 3),
            "hot_loop": flop_rate(flops["anchor"], e["eval_step"], e["train_s"], peak, "fp32"),
        }
        b = run_genai_fid(
            args, "diffusion", tmp / f"diffusion{r}", r, model, e["fid"], peak, flops["genai"]
        )
        rounds.append({"round": r, "target_fid": e["fid"], "anchor": a, "genai": b})
    result["rounds"] = rounds
    result["anchor_summary"] = summary(rounds, "anchor", ("train_s", "fid"))
    result["genai_summary"] = summary(rounds, "genai", ("time_to_target_s", "step_at_target"))
    result["ratio_anchor_train_over_time_to_target"] = ratios(rounds, "train_s", "time_to_target_s")
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ------------------------------------------------------------------------------------- profile


def genai_steps(tmp: Path) -> dict[str, Callable[[], None]]:
    """One training step of each of genai's hot loops above, as their tasks run it."""
    from gan_speed import GenaiLoop

    from genai.data.text import CharTokenizer
    from genai.gpt.train import GPTTask
    from genai.training.engine import Trainer
    from genai.vae.train import VAETask

    cpu = torch.device("cpu")
    torch.manual_seed(0)
    text = TEXT.read_text(encoding="utf-8")
    tok = CharTokenizer("".join(sorted(set(text))))
    gpt = genai.GPT(genai.GPTConfig.recipe("modern", vocab_size=tok.vocab_size, **GPT_SIZE))
    config = genai.GPTTrainConfig.recipe(
        "modern", out_dir=str(tmp / "gpt"), precision="bf16", device="cpu"
    )
    task = GPTTask(gpt, torch.tensor(tok.encode(text)), tok, config, "text")
    batches = task.setup(cpu)
    trainer = Trainer(config, cpu, task.configure_optimizers())
    fashion = genai.load_images("fashion-mnist", "train")
    vae_config = genai.VAETrainConfig(out_dir=str(tmp / "vae"), device="cpu", precision="fp32")
    vae = VAETask(genai.VAE(genai.VAEConfig(**VAE_MODEL)), fashion, vae_config, None)
    vae_batches = vae.setup(cpu)
    vae_trainer = Trainer(vae_config, cpu, vae.configure_optimizers())
    gan = GenaiLoop(
        genai.load_images("mnist", "train"), genai.GAN(genai.GANConfig(num_classes=10)),
        tmp / "gan",
    )  # fmt: skip
    count = {"gpt": 0, "vae": 0}

    def gpt_step() -> None:
        task.train_step(batches.get(count["gpt"]), count["gpt"], trainer)
        count["gpt"] += 1

    def vae_step() -> None:
        vae.train_step(vae_batches.get(count["vae"]), count["vae"], vae_trainer)
        count["vae"] += 1

    return {"gpt_modern_bf16": gpt_step, "vae_mlp": vae_step, "gan_conditional": gan.step}


def phases(events) -> dict[str, float]:
    """Self CPU time (us) by phase: inside an optimizer's ``step`` (``Optimizer.step#...``),
    inside autograd's backward (``autograd::engine::evaluate_function: ...``), and the rest
    (forward passes, the loss, clipping, the loop's own work)."""
    out = {"forward_and_rest": 0.0, "backward": 0.0, "optimizer": 0.0}
    for event in events:
        phase, parent = "forward_and_rest", event
        while parent is not None:
            if parent.name.startswith("Optimizer.step#"):
                phase = "optimizer"
                break
            if parent.name.startswith("autograd::engine::evaluate_function"):
                phase = "backward"
                break
            parent = parent.cpu_parent
        out[phase] += event.self_cpu_time_total
    return out


def bench_profile(args: argparse.Namespace, tmp: Path) -> dict:
    from torch.profiler import ProfilerActivity, profile

    result = {"bench": "time_to_quality_profile", **machine(), "steps": args.profile_steps}
    for name, step in genai_steps(tmp).items():
        for _ in range(5):  # warm-up
            step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.profile_steps):
                step()
        events = prof.key_averages()
        per_step = lambda us: round(us / args.profile_steps / 1e3, 3)  # noqa: E731
        total = sum(e.self_cpu_time_total for e in events)
        top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:10]
        result[name] = {
            "ms_per_step": per_step(total),
            "phase_ms": {k: per_step(v) for k, v in phases(prof.events()).items()},
            "top_self_ms": {e.key: per_step(e.self_cpu_time_total) for e in top},
            "optimizer_inclusive_ms": {
                e.key: per_step(e.cpu_time_total) for e in events if e.key.startswith("Optimizer")
            },
        }
    return result


# ---------------------------------------------------------------------------------------- main


CHILDREN = {
    "vae": child_vae,
    "gan-anchor": child_gan_anchor,
    "genai-fid": child_genai_fid,
    "diffusion-anchor": child_diffusion_anchor,
}
GENAI_CHILDREN = ("vae", "genai-fid")
BENCHES = {
    "gpt": bench_gpt,
    "vae": bench_vae,
    "gan": bench_gan,
    "diffusion": bench_diffusion,
    "profile": bench_profile,
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="gpt,vae,gan,diffusion", help=f"of {', '.join(BENCHES)}")
    p.add_argument("--rounds", type=int, default=3, help="rounds of anchor then genai")
    p.add_argument("--threads", type=int, help="torch threads of every process (default: torch's)")
    p.add_argument("--smoke", action="store_true", help="toy sizes: checks the script (~1 min)")
    p.add_argument("--run-to-end", action="store_true", help="no SIGTERM at the target")
    p.add_argument("--peak-n", type=int, default=2048, help="matmul size of the peak")
    p.add_argument("--text", type=Path, default=TEXT)
    p.add_argument("--gpt-iters", type=int, default=2000, help="nanoGPT's iterations")
    p.add_argument("--nanogpt-eval-interval", type=int, help="default: --gpt-iters (the end)")
    p.add_argument("--gpt-eval-batches", type=int, default=200)
    p.add_argument("--gpt-recipe", default="modern")
    p.add_argument("--gpt-precision", default="bf16")
    p.add_argument("--gpt-steps", type=int, default=160, help="genai's --max-steps")
    p.add_argument("--gpt-batch-size", type=int, default=24, help="genai's windows per step")
    p.add_argument("--gpt-eval-every", type=int, help="default: --gpt-steps (the end)")
    p.add_argument("--gpt-log-every", type=int, default=10)
    p.add_argument(
        "--gpt-extra", default="--decay-fraction 0.5", help="more flags for genai train gpt"
    )
    p.add_argument("--vae-limit", type=int, help="first N images of each split (default: all)")
    p.add_argument("--vae-epochs", type=int, default=10, help="the examples' epochs")
    p.add_argument("--vae-genai-epochs", type=int, default=4)
    p.add_argument("--vae-batch-size", type=int, default=EXAMPLES_BATCH)
    p.add_argument("--vae-lr", type=float, default=8e-3, help="genai's (VAETrainConfig's: 2e-3)")
    p.add_argument("--vae-betas", type=float, nargs=2, default=[0.9, 0.95], help="(0.9, 0.999)")
    p.add_argument("--vae-min-lr-ratio", type=float, default=0.0, help="genai's (default 0.1)")
    p.add_argument("--vae-precision", default="fp32")
    p.add_argument("--vae-eval-every", type=int, help="steps (default: half an epoch)")
    p.add_argument("--gan-epochs", type=int, default=25, help="the DCGAN's (its --niter)")
    p.add_argument("--gan-steps", type=int, help="the DCGAN's steps (default: its epochs')")
    p.add_argument("--gan-eval-every", type=int, default=158)
    p.add_argument("--gan-fid-n", type=int, default=5000, help="samples per FID")
    p.add_argument("--gan-real-n", type=int, help="test digits of the FID (default: all)")
    p.add_argument("--gan-max-steps", type=int, default=3950, help="genai's at most")
    p.add_argument("--gan-precision", default="fp32")
    p.add_argument("--gan-classifier-steps", type=int, default=800)
    p.add_argument("--diffusion-steps", type=int, default=1000, help="the anchor's steps")
    p.add_argument("--diffusion-sample-steps", type=int, default=50, help="DDIM steps, both")
    p.add_argument("--diffusion-fid-n", type=int, default=300, help="samples per FID")
    p.add_argument("--diffusion-real-n", type=int, help="test digits of the FID (default: all)")
    p.add_argument("--diffusion-eval-every", type=int, default=100)
    p.add_argument("--diffusion-max-steps", type=int, default=1500, help="genai's at most")
    p.add_argument("--diffusion-precision", default="fp32")
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--child", nargs=2, metavar=("KIND", "SPEC"), help=argparse.SUPPRESS)
    if p.parse_known_args()[0].smoke:  # the toy sizes are defaults: flags given still win
        p.set_defaults(**SMOKE)
    args = p.parse_args()
    args.gpt_eval_every = args.gpt_eval_every or args.gpt_steps
    if args.gpt_eval_every % args.gpt_log_every:
        p.error("--gpt-eval-every must be a multiple of --gpt-log-every")
    if args.gpt_batch_size < 1:
        p.error(f"--gpt-batch-size must be >= 1, got {args.gpt_batch_size}")
    if args.gpt_eval_batches * NANOGPT_BATCH % args.gpt_batch_size:
        p.error(
            f"--gpt-batch-size must divide --gpt-eval-batches x {NANOGPT_BATCH} (the windows of "
            "nanoGPT's estimate, which genai's evaluates too)"
        )
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        kind, spec = args.child
        if kind in GENAI_CHILDREN:  # genai's runs, in a process as the genai command's
            torch.set_flush_denormal(True)  # as genai.cli.run does; the anchors' runs do not
        CHILDREN[kind](json.loads(spec))
        return
    if args.threads:  # the processes started here inherit it
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    parts = args.parts.split(",")
    for part in parts:
        if part not in BENCHES:
            raise SystemExit(f"unknown part {part!r}; choose from {', '.join(BENCHES)}")
    needs_fashion = [part for part in parts if part in ("vae", "profile")]
    if needs_fashion and (reason := missing_fashion()):
        raise SystemExit(f"--parts {','.join(needs_fashion)}: {reason}")
    for part in parts:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            result = BENCHES[part](args, Path(tmp))
        result["part_wall_s"] = round(time.perf_counter() - start, 1)
        if args.smoke:
            result["smoke"] = True
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
