"""GAN benchmark: training speed and sample quality on MNIST (or ``--data``); prints one JSON line.

* ``sec_per_60k_images``: median of ``--repeats`` timed runs of ``--timing-steps`` training steps
  (default conditional model, default training config), scaled to 60,000 real images.
* Quality after training with the defaults (``GANConfig(num_classes=10)`` and
  ``GANTrainConfig()``, whose defaults follow the kind of GAN: ``genai.gan.train.kind_config``;
  plus an unconditional ``GANConfig()`` unless ``--no-unconditional``; ``--no-conditional``
  trains the unconditional one alone) on the training split: classifier FID against the
  official test set, Inception Score, classes covered, label entropy and conditional accuracy.
* The same FID for real training digits (the floor), for two seeded halves of the test set,
  and for a default VAE's samples (trained here for ``--vae-steps``, or ``--vae-run``).

``--data fashion-mnist`` does the same on Fashion-MNIST (60,000 training images from
``/usr/share/datasets/fashion-mnist`` or ``--root``), judged by a classifier trained on
Fashion-MNIST; ``--max-steps`` caps the quality runs, ``--no-vae`` skips the VAE,
``--lr-schedule`` and ``--lr`` set the quality runs' schedule and learning rate (both nets';
by default a conditional GAN's is 2e-4, an unconditional one's 4e-4), ``--precision`` every
run's precision (by default a conditional GAN's is ``"auto"``, an unconditional one's fp32;
the JSON line records each quality run's, resolved, with its lr and steps), ``--batch-size``
every run's batch size, ``--seed`` the quality runs' seed (the model's init and
``GANTrainConfig.seed``),
``--fid-epochs 80,100,120`` the same scores along each quality run, after those epochs (the
default schedule is constant, so the first N epochs of a run are an N-epoch run; the scoring runs
under ``torch.random.fork_rng`` and is left out of the train seconds). For MNIST,
``--root`` defaults to ``../shared/data/mnist``; when it holds the test split only, training
uses the 5,000 offline digits.

Usage: ``python benchmarks/gan.py [--root ../shared/data/mnist] [--no-unconditional]``
       ``python benchmarks/gan.py --data fashion-mnist --max-steps 7000 --no-unconditional --no-vae``
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
from genai.core.device import PRECISIONS, resolve_device, resolve_precision
from genai.data.dataset import DatasetError
from genai.gan.model import GAN, GANConfig
from genai.gan.train import GANTrainConfig, train_gan
from genai.metrics import classifier_fid, classifier_probs, digit_classifier, evaluate_samples
from genai.vae.train import VAETrainConfig, train_vae

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def epoch_list(text: str) -> tuple[int, ...]:
    """``--fid-epochs``: comma-separated positive epochs, e.g. ``80,100,120``."""
    try:
        epochs = tuple(sorted({int(e) for e in text.split(",")}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected epochs like 80,100,120, got {text!r}") from None
    if epochs[0] < 1:
        raise argparse.ArgumentTypeError(f"epochs must be >= 1, got {text!r}")
    return epochs


def scores_along(model, classifier, real, n: int, steps: dict[int, int], out: dict):
    """A callback that scores ``model`` (:func:`evaluate_samples`) at the train records of
    ``steps`` (step -> epoch) into ``out[epoch]``, leaving the RNG and the train mode as they
    were; its seconds go to ``out["seconds"]``."""
    out["seconds"] = 0.0

    def callback(record: dict) -> None:
        if record["split"] != "train" or record["step"] not in steps:
            return
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            scores = evaluate_samples(model.eval(), classifier, real, n=n)
        model.train()
        out[steps[record["step"]]] = {k: round(v, 4) for k, v in scores.items()}
        out["seconds"] += time.perf_counter() - t0

    return callback


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--root",
        default=None,
        help="the dataset's IDX folder (default for mnist: ../shared/data/mnist, its test split)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--timing-steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=None, help="override the default epochs")
    parser.add_argument("--n", type=int, default=5000, help="samples per FID")
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-run", default=None, help="use this trained VAE run instead")
    parser.add_argument("--no-unconditional", action="store_true")
    parser.add_argument("--no-conditional", action="store_true")
    parser.add_argument(
        "--data", default="mnist", help="a named 1x28x28 dataset with 10 classes (fashion-mnist)"
    )
    parser.add_argument("--max-steps", type=int, default=None, help="cap the quality runs")
    parser.add_argument("--no-vae", action="store_true")
    parser.add_argument("--lr-schedule", default=None, help="override GANTrainConfig.lr_schedule")
    parser.add_argument("--lr", type=float, help="override GANTrainConfig.lr (both nets')")
    parser.add_argument("--precision", choices=PRECISIONS, help="override GANTrainConfig.precision")
    parser.add_argument("--batch-size", type=int, help="override GANTrainConfig.batch_size")
    parser.add_argument("--seed", type=int, default=0, help="the quality runs' (init and training)")
    parser.add_argument("--fid-epochs", type=epoch_list, default=(), help="e.g. 80,100,120")
    args = parser.parse_args()
    if args.no_conditional and args.no_unconditional:
        parser.error("--no-conditional and --no-unconditional leave no GAN to train")
    if args.batch_size is not None and args.batch_size < 2:
        parser.error(f"--batch-size must be >= 2 for a GAN, got {args.batch_size}")
    if args.lr is not None and not args.lr > 0:
        parser.error(f"--lr must be > 0, got {args.lr}")
    torch.set_num_threads(args.threads)

    root = args.root or (str(SHARED_MNIST) if args.data == "mnist" else None)
    try:
        train = genai.load_images(args.data, "train", root=root)
    except DatasetError:
        if args.data != "mnist":
            raise
        train = genai.load_images("mnist", "train")  # the test split only: the offline digits
    test = genai.load_images(args.data, "test", root=root)
    t0 = time.perf_counter()
    classifier = digit_classifier(train, device=args.device)
    test_acc = float(
        (classifier_probs(classifier, test.images).argmax(1) == test.labels).float().mean()
    )
    classifier_seconds = time.perf_counter() - t0
    perm = torch.randperm(len(test), generator=torch.Generator().manual_seed(0))
    half = len(test) // 2
    tmp = tempfile.mkdtemp(prefix="genai-bench-gan-")
    overrides: dict = {} if args.epochs is None else {"epochs": args.epochs}
    if args.max_steps is not None:
        overrides = {"epochs": None, "max_steps": args.max_steps}
    if args.lr_schedule is not None:
        overrides["lr_schedule"] = args.lr_schedule
    if args.lr is not None:
        overrides["lr"] = args.lr
    if args.precision is not None:
        overrides["precision"] = args.precision
    if args.seed:
        overrides["seed"] = args.seed
    if args.batch_size is not None:
        overrides["batch_size"] = args.batch_size

    times = []
    for i in range(args.repeats):
        config = GANTrainConfig(
            out_dir=f"{tmp}/timing{i}",
            epochs=None,
            max_steps=args.timing_steps,
            progress=False,
            device=args.device,
            sample_every=10**9,
            checkpoint_every=0,
            **({"precision": args.precision} if args.precision else {}),
            **({"batch_size": args.batch_size} if args.batch_size else {}),
        )
        t0 = time.perf_counter()
        train_gan(GAN(GANConfig(num_classes=10)), train, config)
        times.append((time.perf_counter() - t0) / (args.timing_steps * config.batch_size) * 60000)

    result = {
        "benchmark": "gan",
        "data": args.data,
        "train_config_overrides": overrides,
        "train_images": len(train),
        "test_images": len(test),
        "classifier_test_accuracy": round(test_acc, 4),
        "classifier_train_seconds": round(classifier_seconds, 1),
        "sec_per_60k_images": round(statistics.median(times), 1),
        "sec_per_60k_images_runs": [round(t, 1) for t in times],
        "fid_real_train_vs_test": round(classifier_fid(classifier, train.images, test.images), 3),
        "fid_test_half_vs_half": round(
            classifier_fid(classifier, test.images[perm[:half]], test.images[perm[half:]]), 3
        ),
    }
    runs = [] if args.no_conditional else [("conditional", GANConfig(num_classes=10))]
    if not args.no_unconditional:
        runs.append(("unconditional", GANConfig()))
    for name, model_config in runs:
        torch.manual_seed(args.seed)
        model = GAN(model_config)
        config = GANTrainConfig(
            out_dir=f"{tmp}/{name}", progress=False, device=args.device, **overrides
        )
        callbacks, along = [], {}
        if args.fid_epochs:
            per_epoch = len(train) // config.batch_size  # the steps of an epoch (full batches)
            config.log_every = per_epoch  # a train record at the end of every epoch
            steps = {e * per_epoch: e for e in args.fid_epochs}
            callbacks.append(scores_along(model, classifier, test.images, args.n, steps, along))
        t0 = time.perf_counter()
        summary = train_gan(model, train, config, callbacks)
        seconds = time.perf_counter() - t0 - along.pop("seconds", 0.0)
        result[f"{name}_train_seconds"] = round(seconds, 1)
        recorded = json.loads(Path(config.out_dir, "config.json").read_text())["train_config"]
        result[f"{name}_steps"], result[f"{name}_lr"] = summary["step"], recorded["lr"]
        result[f"{name}_precision"] = resolve_precision(  # what train_gan chose, resolved
            recorded["precision"], resolve_device(args.device)
        )
        if along:
            result[f"{name}_along_epochs"] = along
        t0 = time.perf_counter()
        scores = evaluate_samples(model.eval(), classifier, test.images, n=args.n)
        result[f"{name}_eval_seconds"] = round(time.perf_counter() - t0, 1)
        result.update({f"{name}_{k}": round(v, 4) for k, v in scores.items()})
    if args.no_vae:
        print(json.dumps(result))
        return

    if args.vae_run:
        vae = genai.load(args.vae_run, args.device)
    else:
        vae = genai.VAE(genai.VAEConfig())
        vae_config = VAETrainConfig(
            out_dir=f"{tmp}/vae",
            epochs=None,
            max_steps=args.vae_steps,
            lr=2e-3,
            lr_schedule="cosine",
            binarize=True,
            progress=False,
            device=args.device,
        )
        train_vae(vae, train, vae_config)
    vae_scores = evaluate_samples(vae.eval(), classifier, test.images, n=args.n)
    result.update({f"vae_{k}": round(v, 4) for k, v in vae_scores.items()})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
