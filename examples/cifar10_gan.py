"""Train a class-conditional DCGAN on CIFAR-10 (or any labeled image source) and write a grid.

    python examples/cifar10_gan.py --download          # fetches CIFAR-10 (170 MB) into --root
    python examples/cifar10_gan.py --data photos/      # a folder with one subfolder per class
    python examples/cifar10_gan.py --max-steps 20      # a quick check

Writes ``OUT/classes.png``: one row per class (ten samples each), in the order of
``OUT/run/config.json``'s ``class_names``. At 32x32 the nets are DCGAN's with one block fewer
than at 64x64 (``--image-size 64`` gives the paper's nets).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import genai
from genai.plots import save_grid


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="cifar10", help="dataset name, folder or .npz")
    parser.add_argument("--root", default=None, help="folder holding cifar-10-batches-py/")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--out", default="runs/cifar10_gan")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = genai.load_images(
        args.data, "train", image_size=args.image_size, channels=3, root=args.root,
        download=args.download,
    )  # fmt: skip
    if data.num_classes is None or data.num_classes < 2:
        raise SystemExit(f"{args.data}: a conditional GAN needs labeled data with 2+ classes")
    torch.manual_seed(args.seed)
    gan = genai.GAN(genai.GANConfig(image_shape=data.image_shape, num_classes=data.num_classes))
    length = {"epochs": None, "max_steps": args.max_steps} if args.max_steps else {}
    length.setdefault("epochs", args.epochs)
    config = genai.GANTrainConfig(
        out_dir=str(out / "run"),
        batch_size=min(args.batch_size, len(data)),
        seed=args.seed,
        device=args.device,
        overwrite=True,
        **length,
    )
    genai.train_gan(gan, data, config)
    gen = torch.Generator(next(gan.parameters()).device).manual_seed(args.seed)
    k = data.num_classes
    labels = torch.arange(k, device=gen.device).repeat_interleave(10)  # row k: class k
    return save_grid(gan.sample(10 * k, labels=labels, generator=gen), out / "classes.png", 10)


if __name__ == "__main__":
    try:
        print(main())
    except (ValueError, OSError) as e:  # bad data, flags or paths: one line, no traceback
        sys.exit(f"error: {e}")
