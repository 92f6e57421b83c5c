"""Train two GANs on MNIST digits and write their sample grids.

    python examples/mnist_gan.py                  # defaults: 5k offline digits, or --root IDX
    python examples/mnist_gan.py --max-steps 20   # a quick check

Writes ``OUT/unconditional.png`` (8x8 samples of an unconditional GAN) and ``OUT/digits.png``
(a 10x10 grid from a class-conditional GAN, row k holding ten samples of digit k).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import genai
from genai.plots import save_grid


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/mnist_gan")
    parser.add_argument("--root", default=None, help="folder with MNIST IDX files")
    parser.add_argument("--epochs", type=int, default=None, help="default: GANTrainConfig's")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = genai.load_images("mnist", "train", root=args.root)
    length = {"epochs": args.epochs, "max_steps": args.max_steps}  # None: the defaults
    paths = []
    for name, num_classes in (("unconditional", None), ("digits", 10)):
        torch.manual_seed(args.seed)  # the initialization is part of the seeded run
        gan = genai.GAN(genai.GANConfig(num_classes=num_classes))
        config = genai.GANTrainConfig(
            out_dir=str(out / name), device=args.device, overwrite=True, seed=args.seed, **length
        )
        genai.train_gan(gan, data, config)
        gen = torch.Generator(next(gan.parameters()).device).manual_seed(0)
        if num_classes is None:
            images, nrow = gan.sample(64, generator=gen), 8
        else:
            labels = torch.arange(10, device=gen.device).repeat_interleave(10)  # row k: digit k
            images, nrow = gan.sample(100, labels=labels, generator=gen), 10
        paths.append(save_grid(images, out / f"{name}.png", nrow=nrow))
    return paths


if __name__ == "__main__":
    try:
        for path in main():
            print(path)
    except (ValueError, OSError) as e:  # bad data, flags or paths: one line, no traceback
        sys.exit(f"error: {e}")
