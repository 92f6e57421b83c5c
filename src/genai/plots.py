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
