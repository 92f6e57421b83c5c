"""Train a VAE on a folder of your own images and write samples and reconstructions.

    python examples/folder_vae.py photos/ --image-size 64     # any folder of PNG/JPEG/WebP
    python examples/folder_vae.py photos/ --max-steps 20      # a quick check

The folder may be flat or hold class subfolders (labels are not used by the VAE); images of
mixed sizes are center-cropped and resized once, and the decoded tensor is cached, so a second
run starts at once. Color images get the discretized logistic likelihood, so the printed test
figures are nats per image and bits per dimension.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

import genai
from genai.data.dataset import split_dataset
from genai.plots import save_grid
from genai.vae.evaluate import eval_images, evaluate_vae


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="a folder of images")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--out", default="runs/folder_vae")
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    out = Path(args.out)
    data = genai.load_images(args.folder, "train", image_size=args.image_size)
    train, held_out = split_dataset(data, 0.9, seed=args.seed)
    if len(held_out) == 0:
        raise ValueError(
            f"{args.folder}: {len(data)} images leave none for the held-out 10%; give more images"
        )
    torch.manual_seed(args.seed)
    vae = genai.VAE(genai.VAEConfig(image_shape=data.image_shape, latent_dim=64))
    length = {"epochs": None, "max_steps": args.max_steps} if args.max_steps else {}
    length.setdefault("epochs", args.epochs)
    config = genai.VAETrainConfig(
        out_dir=str(out / "run"),
        batch_size=min(args.batch_size, len(train)),
        seed=args.seed,
        device=args.device,
        overwrite=True,
        **length,
    )
    genai.train_vae(vae, train, config, eval_data=held_out)
    device = next(vae.parameters()).device
    vae.eval()
    x = eval_images(held_out, False, device)
    scores = evaluate_vae(vae, x, batch_size=100)
    gen = torch.Generator(device).manual_seed(args.seed)
    save_grid(vae.sample(64, generator=gen), out / "samples.png")
    originals = x[:8]
    save_grid(torch.cat([originals, vae.reconstruct(originals)]), out / "reconstructions.png", 8)
    return scores


if __name__ == "__main__":
    try:
        print(json.dumps(main()))
    except (ValueError, OSError) as e:  # bad data, flags or paths: one line, no traceback
        sys.exit(f"error: {e}")
