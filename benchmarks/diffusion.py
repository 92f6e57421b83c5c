"""Diffusion benchmark on the offline digits: quality beside the GAN, speed per step count, and
lucidrains' denoising-diffusion-pytorch at matched size. One JSON line per part.

Parts (``--parts``, comma-separated; default all):

* ``default``: ``Diffusion(DiffusionConfig(num_classes=10))`` trained with
  ``DiffusionTrainConfig()`` (no other settings) on the 5,000 offline training digits; wall
  time; classifier FID against the 10,000 official test digits, label accuracy, classes covered
  and IS over 10 x ``--n-per-class`` samples (labels 0-9, ``--n-per-class`` each) at the
  default sampler (DDIM, 50 steps, guidance 0.5); beside the default conditional GAN's figures,
  trained and measured the same way in the same run (``--gan-run DIR``: a trained one's,
  ``--no-gan``: none).
* ``steps``: samples/s at 10, 25 and 50 steps, batch 100, for DDIM (the trained default model)
  and flow-Euler (a default ``objective="flow"`` model, trained here unless ``--no-flow-train``),
  and the FID and label accuracy at each step count (``--curve-n`` samples).
* ``lucidrains``: ``denoising_diffusion_pytorch`` (``Unet`` + ``GaussianDiffusion``, installed
  into a temporary folder for this run only) and genai's default at matched size (dim 16, mults
  (1, 2, 4), 1,000 steps), on the same 28x28 digits: training images/s (batch 64) and samples/s
  (DDIM, 50 steps, batch 100), unconditional both.

``--seed`` seeds the diffusion runs (init and ``DiffusionTrainConfig.seed``; 0 by default; the GAN
beside keeps seed 0) and ``--precision`` sets their precision (the config's default when not
given).

``--smoke`` runs every part at toy sizes (a few steps, a few samples) to check it starts.

Usage: ``python benchmarks/diffusion.py [--parts default,steps,lucidrains] [--threads 2]``
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import genai
from genai.core.device import PRECISIONS, resolve_precision
from genai.diffusion import Diffusion, DiffusionConfig, DiffusionTrainConfig, train_diffusion
from genai.gan.model import GAN, GANConfig
from genai.gan.train import GANTrainConfig, train_gan
from genai.metrics import (
    class_coverage,
    classifier_fid,
    classifier_probs,
    draw_samples,
    inception_score,
    metric_classifier,
)

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def emit(part: str, **fields) -> None:
    print(json.dumps({"part": part, **fields}), flush=True)


def quality(model, classifier, test, n_per_class: int, **sample_kw) -> dict:
    """FID, IS, coverage and label accuracy over n_per_class samples of each of the 10 labels."""
    labels = torch.arange(10).repeat_interleave(n_per_class)
    if sample_kw:
        images = torch.cat(
            [
                model.sample(len(chunk), labels=chunk, generator=gen, **sample_kw)
                for gen in [torch.Generator().manual_seed(0)]
                for chunk in labels.split(500)
            ]
        )
    else:
        images = draw_samples(model, len(labels), seed=0, labels=labels)
    probs = classifier_probs(classifier, images)
    preds = probs.argmax(dim=1)
    return {
        "fid": round(classifier_fid(classifier, test.images, images), 3),
        "label_accuracy": round(float((preds == labels).double().mean()), 4),
        "inception_score": round(inception_score(probs), 3),
        **class_coverage(preds, 10),
        "samples": len(labels),
    }


def samples_per_s(model: Diffusion, steps: int, sampler: str, batch: int, repeats: int) -> float:
    labels = torch.arange(batch) % 10 if model.config.num_classes else None
    times = []
    for r in range(repeats):
        t0 = time.perf_counter()
        model.sample(batch, labels=labels, steps=steps, sampler=sampler, seed=r)
        times.append(time.perf_counter() - t0)
    return round(batch / sorted(times)[len(times) // 2], 2)


def train_default(
    objective: str, train, out: Path, args: argparse.Namespace
) -> tuple[Diffusion, float]:
    """The default conditional model (``objective`` aside) trained into ``out``; its seconds.

    ``--seed`` seeds its init and its training; ``--precision`` and ``--max-steps``, when given,
    replace those defaults."""
    torch.manual_seed(args.seed)
    model = Diffusion(DiffusionConfig(num_classes=10, objective=objective))
    config = {"out_dir": str(out), "progress": False, "seed": args.seed}
    for name in ("max_steps", "precision"):
        if getattr(args, name) is not None:
            config[name] = getattr(args, name)
    t0 = time.perf_counter()
    train_diffusion(model, train, DiffusionTrainConfig(**config))
    return model.eval(), time.perf_counter() - t0


def lucidrains_module(folder: Path):
    """Install denoising-diffusion-pytorch and its small pure-Python needs into ``folder``."""
    packages = ["denoising-diffusion-pytorch", "accelerate", "einops", "ema-pytorch", "pytorch-fid"]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            str(folder),
            *packages,
        ],
        check=True,
    )
    sys.path.insert(0, str(folder))
    import denoising_diffusion_pytorch as ddp

    return ddp


def lucidrains_model(ddp, sample_steps: int):
    """lucidrains' ``Unet(dim=16, dim_mults=(1, 2, 4))`` for 28x28 grey images (721,185
    parameters, genai's default net's size) in a ``GaussianDiffusion`` of 1,000 steps that
    samples with DDIM in ``sample_steps``; returns (net, diffusion)."""
    net = ddp.Unet(dim=16, dim_mults=(1, 2, 4), channels=1)
    return net, ddp.GaussianDiffusion(
        net, image_size=28, timesteps=1000, sampling_timesteps=sample_steps
    )


def lucidrains(train, args, tmp: Path) -> dict:
    ddp = lucidrains_module(tmp / "site")
    batch, steps = 64, args.speed_steps
    x = train.images[:batch].float() / 255.0
    out = {"version": importlib.metadata.version("denoising-diffusion-pytorch")}
    theirs_net, theirs = lucidrains_model(ddp, args.sample_steps)
    ours = Diffusion(DiffusionConfig(sample_steps=args.sample_steps))
    for name, model, loss_fn in (
        ("lucidrains", theirs, lambda: theirs(x)),
        ("genai", ours, lambda: ours(x)["loss"]),
    ):
        params = model.parameters() if name == "lucidrains" else ours.net.parameters()
        opt = torch.optim.Adam(list(params), lr=1e-4)
        model.train()
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            loss = loss_fn()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        model.eval()
        t0 = time.perf_counter()
        with torch.no_grad():
            if name == "lucidrains":
                model.sample(batch_size=args.sample_batch)
            else:
                model.sample(args.sample_batch)
        sample_time = time.perf_counter() - t0
        net = theirs_net if name == "lucidrains" else ours.net
        out[name] = {
            "parameters": sum(p.numel() for p in net.parameters()),
            "train_images_per_s": round(batch / sorted(times)[len(times) // 2], 1),
            "samples_per_s": round(args.sample_batch / sample_time, 2),
            "sample_steps": args.sample_steps,
        }
    return out


def trained_gan(run: str) -> GAN:
    """``--gan-run``'s GAN, read before any training: a conditional one with 10 classes."""
    try:
        gan = genai.load(run, "cpu")
    except (OSError, ValueError) as e:  # genai.load's errors name the file
        raise SystemExit(f"--gan-run: {e}") from None
    if not isinstance(gan, GAN) or gan.config.num_classes != 10:
        raise SystemExit(f"--gan-run {run}: not a GAN conditioned on 10 classes")
    return gan


def default_gan(args: argparse.Namespace, train, out: Path) -> tuple[GAN, float]:
    """The default conditional GAN, trained into ``out``, and its seconds."""
    torch.manual_seed(0)
    gan = GAN(GANConfig(num_classes=10))
    gan_config = {"out_dir": str(out), "progress": False}
    if args.max_steps is not None:
        gan_config["max_steps"] = args.max_steps
    t0 = time.perf_counter()
    train_gan(gan, train, GANTrainConfig(**gan_config))
    return gan, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="default,steps,lucidrains")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mnist-root", default=str(SHARED_MNIST))
    p.add_argument("--n-per-class", type=int, default=1000)
    p.add_argument("--curve-n", type=int, default=2000, help="samples per point of the curve")
    p.add_argument("--max-steps", type=int, default=None, help="cap the training runs")
    p.add_argument("--no-flow-train", action="store_true")
    p.add_argument("--seed", type=int, default=0, help="the diffusion runs' (init and training)")
    p.add_argument("--precision", choices=PRECISIONS, help="the diffusion runs' precision")
    p.add_argument(
        "--run", help="measure this trained default run (genai train diffusion) instead of training"
    )
    p.add_argument("--no-gan", action="store_true", help="skip the GAN beside it (its own run)")
    p.add_argument(
        "--gan-run", help="measure this trained conditional GAN run beside it instead of training"
    )
    p.add_argument("--smoke", action="store_true", help="toy sizes: check that it starts")
    args = p.parse_args()
    gan_run = trained_gan(args.gan_run) if args.gan_run else None
    torch.set_num_threads(args.threads)
    args.speed_steps, args.sample_steps, args.sample_batch = 10, 50, 100
    step_counts = (10, 25, 50)
    if args.smoke:
        args.n_per_class, args.curve_n, args.max_steps = 3, 20, 2
        args.speed_steps, args.sample_steps, args.sample_batch = 1, 2, 4
        step_counts = (2,)
    parts = set(args.parts.split(","))
    train = genai.load_images("mnist", "train", progress=False)
    test = genai.load_images("mnist", "test", root=args.mnist_root, progress=False)
    classifier = metric_classifier(train)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = None
        if parts & {"default", "steps"} and args.run:
            model, wall = genai.load(args.run, "cpu"), None
        elif parts & {"default", "steps"}:
            model, wall = train_default("ddpm", train, tmp / "ddpm", args)
        if "default" in parts:
            sample_kw = {"steps": 2} if args.smoke else {}
            ours = quality(model, classifier, test, args.n_per_class, **sample_kw)
            precision = resolve_precision(
                args.precision or DiffusionTrainConfig.precision, torch.device("cpu")
            )
            run = {} if args.run else {"seed": args.seed, "precision": precision}
            if args.no_gan:
                emit("default", diffusion={"wall_s": wall and round(wall, 1), **run, **ours})
                parts.discard("default")
        if "default" in parts:
            gan, gan_wall = (gan_run, None) if gan_run else default_gan(args, train, tmp / "gan")
            theirs = quality(gan.eval(), classifier, test, args.n_per_class)
            emit(
                "default",
                diffusion={
                    "wall_s": wall and round(wall, 1),
                    **run,
                    **ours,
                    "config": dataclasses.asdict(model.config),
                },
                gan={"wall_s": gan_wall and round(gan_wall, 1), **theirs},
                train_images=len(train),
                test_images=len(test),
            )
        if "steps" in parts:
            if args.no_flow_train:
                flow_model = Diffusion(DiffusionConfig(num_classes=10, objective="flow")).eval()
            else:
                flow_model, _ = train_default("flow", train, tmp / "flow", args)
            curve = []
            n = max(1, args.curve_n // 10)
            for sampler, m in (("ddim", model), ("euler", flow_model)):
                for steps in step_counts:
                    speed = samples_per_s(m, steps, sampler, args.sample_batch, 3)
                    q = quality(m, classifier, test, n, steps=steps, sampler=sampler)
                    curve.append({"sampler": sampler, "steps": steps, "samples_per_s": speed, **q})
            emit("steps", batch=args.sample_batch, guidance=model.config.guidance, curve=curve)
        if "lucidrains" in parts:
            emit("lucidrains", **lucidrains(train, args, tmp))


if __name__ == "__main__":
    main()
