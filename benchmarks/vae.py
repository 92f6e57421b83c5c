"""VAE speed and quality; prints one JSON line.

1. pytorch/examples' VAE architecture (MLP 784-400-20, Bernoulli loss on intensities, Adam 1e-3,
   batch 128) on Fashion-MNIST: seconds per 60,000-image epoch (median of the epochs) and the
   test loss (-ELBO, nats per image) after 10 epochs. The reference measured 6.4 s per epoch and
   test loss 244.4 on this kind of machine.
2. genai's default VAE, same data and protocol: the same two figures.
3. genai's default VAE trained with the demo recipe on MNIST (the offline 5,000 digits, dynamic
   binarization): -ELBO on the official 10,000-digit test set, binarized once with a fixed seed,
   and the IWAE NLL (k = 1000) on a seeded random subset of it (``--iwae-n``; all 10,000 cost
   about 16 minutes on 2 cores with the conv decoder; ``--iwae-n 0``), with its standard error.

    python benchmarks/vae.py [--parts ref,default,iwae] [--mnist-root ../shared/data/mnist]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import genai
from genai.core.device import PRECISIONS
from genai.plots import read_metrics
from genai.vae.evaluate import eval_images, evaluate_vae

REFERENCE = {"s_per_epoch": 6.4, "test_loss": 244.4}
SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def run(config: genai.VAEConfig, train, test, epochs: int, out: Path, **train_kw) -> dict:
    steps_per_epoch = len(train) // 128
    model = genai.VAE(config)
    cfg = genai.VAETrainConfig(
        out_dir=str(out), epochs=epochs, batch_size=128, lr=1e-3, device="cpu", progress=False,
        log_every=steps_per_epoch, eval_every=epochs * steps_per_epoch,
        sample_every=epochs * steps_per_epoch, overwrite=True, warmup_steps=0, precision="fp32",
        **train_kw,
    )  # fmt: skip
    summary = genai.train_vae(model, train, cfg, eval_data=test)
    times = [r["time"] for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    per_epoch = [b - a for a, b in zip([0.0, *times[:-1]], times, strict=True)]
    scale = 60_000 / (steps_per_epoch * 128)
    return {
        "s_per_epoch": round(statistics.median(per_epoch) * scale, 3),
        "epoch_times": [round(t * scale, 3) for t in per_epoch],
        "test_loss": round(summary["eval"]["loss"], 2),
        "params": sum(p.numel() for p in model.parameters()),
    }, model


def defaults(seeds: range, mnist_root: str, tmp: Path, flags: tuple[str, ...] = ()) -> dict:
    """`genai train vae` as a user runs it (offline digits, no flags but --seed and ``flags``,
    e.g. ``--precision bf16``), per seed: wall time, and on the official test digits its
    samples' classifier FID (in the feature space of a classifier trained on the training
    digits), classes covered and active latent units."""
    from genai.cli import main as cli
    from genai.metrics import active_units, evaluate_samples, metric_classifier, real_data_floor

    train = genai.load_images("mnist", "train")
    test = genai.load_images("mnist", "test", root=mnist_root)
    classifier = metric_classifier(train, steps=800)
    runs = []
    for seed in seeds:
        out = tmp / f"defaults{seed}"
        t = time.perf_counter()
        argv = ["-q", "train", "vae", "--seed", str(seed), "--out-dir", str(out), "--no-progress"]
        assert cli([*argv, *flags]) == 0
        seconds = time.perf_counter() - t
        vae = genai.load(out, "cpu")
        samples = evaluate_samples(vae, classifier, test.images, n=5000, seed=seed)
        x = test.images.float() / 255
        runs.append({
            "seed": seed, "s": round(seconds, 1), "fid": round(samples["fid"], 1),
            "classes_covered": samples["classes_covered"], "active_units": active_units(vae, x),
            "test_neg_elbo": round(-vae.elbo(x[:2000])["elbo"].item(), 1),
        })  # fmt: skip
    floor = real_data_floor(classifier, train, test, n=5000)
    return {
        "runs": runs, "fid_median": statistics.median(r["fid"] for r in runs),
        "fid_max": max(r["fid"] for r in runs), "s_max": max(r["s"] for r in runs),
        "min_classes": min(r["classes_covered"] for r in runs),
        "min_active_units": min(r["active_units"] for r in runs), **floor,
    }  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--parts", default="ref,default,defaults,iwae")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--mnist-root", default=str(SHARED_MNIST))
    p.add_argument("--seeds", type=int, default=5, help="runs of the defaults part")
    p.add_argument("--seed-start", type=int, default=0, help="the defaults part's first seed")
    p.add_argument("--precision", choices=PRECISIONS, help="the defaults part's --precision")
    p.add_argument("--iwae-steps", type=int, default=3000)
    p.add_argument("--iwae-k", type=int, default=1000)
    p.add_argument("--iwae-n", type=int, default=1000, help="test digits for the IWAE NLL; 0 = all")
    args = p.parse_args()
    parts = args.parts.split(",")
    torch.manual_seed(0)
    result: dict = {"bench": "vae", "threads": torch.get_num_threads(), "reference": REFERENCE}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "ref" in parts or "default" in parts:
            train = genai.load_images("fashion-mnist", "train")
            test = genai.load_images("fashion-mnist", "test")
        if "ref" in parts:
            ref = genai.VAEConfig(arch="mlp", hidden_dims=(400,), latent_dim=20)
            result["pytorch_examples_arch"], _ = run(ref, train, test, args.epochs, tmp / "ref")
            result["speedup_vs_reference"] = round(
                REFERENCE["s_per_epoch"] / result["pytorch_examples_arch"]["s_per_epoch"], 2
            )
        if "default" in parts:
            result["default_arch"], _ = run(
                genai.VAEConfig(), train, test, args.epochs, tmp / "default"
            )
        if "defaults" in parts:
            flags = ("--precision", args.precision) if args.precision else ()
            seeds = range(args.seed_start, args.seed_start + args.seeds)
            result["defaults"] = defaults(seeds, args.mnist_root, tmp, flags)
        if "iwae" in parts:
            digits = genai.load_images("mnist", "train")
            mnist_test = genai.load_images("mnist", "test", root=args.mnist_root)
            model = genai.VAE(genai.VAEConfig())
            cfg = genai.VAETrainConfig(
                out_dir=str(tmp / "iwae"), epochs=None, max_steps=args.iwae_steps, lr=2e-3,
                lr_schedule="cosine", warmup_steps=0, binarize=True, device="cpu", progress=False,
                eval_every=args.iwae_steps, sample_every=args.iwae_steps,
            )  # fmt: skip
            genai.train_vae(model, digits, cfg)
            model.eval()
            x = eval_images(mnist_test, binarize=True, device=torch.device("cpu"))
            elbo = evaluate_vae(model, x, batch_size=500)
            n = args.iwae_n or len(x)
            subset = x[torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:n]]
            t = time.perf_counter()
            with torch.no_grad():
                nll = torch.cat([model.iwae_nll(b, args.iwae_k) for b in subset.split(100)])
            result["mnist_5k_train_10k_test"] = {
                "train_digits": len(digits), "steps": args.iwae_steps,
                "test_digits": len(x), "test_neg_elbo": round(elbo["loss"], 2),
                "iwae_digits": n, f"test_iwae_nll_k{args.iwae_k}": round(nll.mean().item(), 2),
                "iwae_nll_stderr": round((nll.std() / n**0.5).item(), 2),
                "iwae_s": round(time.perf_counter() - t, 1),
            }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
