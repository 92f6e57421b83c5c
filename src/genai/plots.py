"""Sample grids and training curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genai.core.fields import positive_int
from genai.core.files import atomic_write
from genai.data.pixels import check_unit_range, to_float, to_uint8


def _images(images: torch.Tensor | Any) -> torch.Tensor:
    """``(N, C, H, W)`` or ``(C, H, W)`` images (tensor, array, or a list of them) as a float CPU
    tensor in [0, 1]: uint8 and other integers are 0-255 levels, floats must lie in [0, 1]."""
    if isinstance(images, (list, tuple)) and images and all(map(torch.is_tensor, images)):
        images = torch.stack([x.detach().cpu() for x in images])
    if not torch.is_tensor(images):
        try:
            images = torch.as_tensor(np.asarray(images))
        except (TypeError, ValueError, RuntimeError) as e:
            raise TypeError(
                f"images must be a tensor or an array, got {type(images).__name__}"
            ) from e
    given = tuple(images.shape)
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4 or images.shape[1] not in (1, 3, 4):
        last = given[-1] in (1, 3, 4) and len(given) in (3, 4)
        order = "2, 0, 1" if len(given) == 3 else "0, 3, 1, 2"
        hint = f" (channels last? move them first: x.permute({order}))" if last else ""
        raise ValueError(f"images must be (N, C, H, W) with C in 1, 3, 4, got {given}{hint}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"no images to show: shape {given}")
    images = images.detach().cpu()
    if images.dtype == torch.bool:
        return images.float()
    if not images.is_floating_point():
        lo, hi = int(images.min()), int(images.max())
        if lo < 0 or hi > 255:
            raise ValueError(f"integer images must be 0-255 levels, got values in [{lo}, {hi}]")
        return to_float(images)
    check_unit_range(images, tolerance=1e-3)  # rounding passes, and is clamped
    return images.float().clamp_(0.0, 1.0)


def grid(images: torch.Tensor, nrow: int = 8, padding: int = 2) -> torch.Tensor:
    """One ``(C, H', W')`` image in [0, 1] holding ``images`` in rows of ``nrow``, white gaps.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``, float in [0, 1] or uint8.
        nrow: images per row.
        padding: pixels of white between images.
    """
    from torchvision.utils import make_grid

    nrow = positive_int("nrow", nrow)
    if padding != 0:
        padding = positive_int("padding", padding)
    return make_grid(_images(images), nrow=nrow, padding=padding, pad_value=1.0).clamp_(0, 1)


def show(images: torch.Tensor, nrow: int = 8, scale: int = 1):
    """The images as one PIL image grid, which Jupyter displays inline.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``, float in [0, 1] or uint8 (what ``sample``,
            ``reconstruct`` and ``impute`` return; tensors on any device, or arrays).
        nrow: images per row.
        scale: enlarge each pixel ``scale`` times (nearest neighbour), for small images.

    Returns:
        A ``PIL.Image.Image``; ``.save("grid.png")`` writes it.
    """
    from PIL import Image

    if not isinstance(scale, int) or scale <= 0:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    images = _images(images)
    array = to_uint8(grid(images, nrow)).permute(1, 2, 0).numpy()  # (H, W, C)
    gray = images.shape[1] == 1  # make_grid repeats one channel three times
    image = Image.fromarray(array[..., 0] if gray else array[..., : images.shape[1]])
    return (
        image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        if scale > 1
        else image
    )


def save_grid(images: torch.Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Save ``(N, C, H, W)`` images in [0, 1] as one PNG grid; returns the path."""
    path = Path(path)
    image = show(images, nrow)
    atomic_write(path, lambda tmp: image.save(tmp, format="png"))
    return path


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_losses(metrics_path: str | Path, out: str | Path) -> Path | None:
    """Plot every ``loss``-like series of ``metrics.jsonl`` against the step; returns the PNG path."""
    from matplotlib.figure import Figure  # no pyplot: the user's backend is never touched

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
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for name, (steps, values) in sorted(series.items()):
        ax.plot(steps, values, label=name, marker="o" if len(steps) < 20 else None)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out)
    atomic_write(out, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    return out


def save_vae_figures(vae, images: torch.Tensor, out: str | Path, seed: int = 0) -> list[Path]:
    """Samples, reconstructions and lower-half completions of a trained VAE, as PNG grids.

    Args:
        vae: a trained :class:`genai.VAE`.
        images: uint8 images ``(N, C, H, W)`` of the model's shape to reconstruct and complete (8 is a good N).
        out: folder for ``samples.png``, ``reconstructions.png`` (originals above, reconstructions
            below) and ``completions.png`` (originals, lower half removed, completed).
    """
    out = Path(out)
    device = next(vae.parameters()).device
    vae.eval()
    gen = torch.Generator(device).manual_seed(seed)
    x = to_float(images.to(device))  # (N, C, H, W)
    mask = torch.ones_like(x, dtype=torch.bool)
    mask[:, :, x.shape[2] // 2 :, :] = False  # the lower half is missing
    completed = vae.impute(x, mask, steps=50, generator=gen)
    n = x.shape[0]
    return [
        save_grid(vae.sample(64, generator=gen), out / "samples.png"),
        save_grid(torch.cat([x, vae.reconstruct(x)]), out / "reconstructions.png", nrow=n),
        save_grid(
            torch.cat([x, torch.where(mask, x, 0.3), completed]), out / "completions.png", nrow=n
        ),
    ]
