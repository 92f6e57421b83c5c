"""Sample grids and training curves."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torchvision.utils import save_image

from genai.checkpoint import atomic_write


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Save ``(N, C, H, W)`` images in [0, 1] as one PNG grid; returns the path."""
    path = Path(path)
    atomic_write(
        path,
        lambda tmp: save_image(
            images.detach().float().cpu(), tmp, "png", nrow=nrow, padding=2, pad_value=1.0
        ),
    )
    return path


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(metrics_path: str | Path, out: str | Path) -> Path | None:
    """Plot every ``loss``-like series of ``metrics.jsonl`` against the step; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    series: dict[str, tuple[list[int], list[float]]] = {}
    for r in records:
        for key, value in r.items():
            if "loss" in key and isinstance(value, (int, float)):
                name = f"{r.get('split', 'train')}/{key}"
                steps, values = series.setdefault(name, ([], []))
                steps.append(r["step"])
                values.append(value)
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (steps, values) in sorted(series.items()):
        ax.plot(steps, values, label=name, marker="o" if len(steps) < 20 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return out


def save_vae_figures(vae, images: torch.Tensor, out: str | Path, seed: int = 0) -> list[Path]:
    """Samples, reconstructions and lower-half completions of a trained VAE, as PNG grids.

    Args:
        vae: a trained :class:`genai.VAE`.
        images: uint8 digits ``(N, 1, 28, 28)`` to reconstruct and complete (8 is a good N).
        out: folder for ``samples.png``, ``reconstructions.png`` (originals above, reconstructions
            below) and ``completions.png`` (originals, lower half removed, completed).
    """
    out = Path(out)
    device = next(vae.parameters()).device
    vae.eval()
    gen = torch.Generator(device).manual_seed(seed)
    x = images.to(device).float() / 255.0  # (N, 1, 28, 28)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, :, 14:, :] = False  # the lower half is missing
    completed = vae.impute(x, mask, steps=50, generator=gen)
    n = x.shape[0]
    return [
        save_grid(vae.sample(64, generator=gen), out / "samples.png"),
        save_grid(torch.cat([x, vae.reconstruct(x)]), out / "reconstructions.png", nrow=n),
        save_grid(
            torch.cat([x, torch.where(mask, x, 0.3), completed]), out / "completions.png", nrow=n
        ),
    ]
