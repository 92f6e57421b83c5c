"""Pixels: the one uint8 <-> float conversion, the [0, 1] range check, resizing, channels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float(images: torch.Tensor) -> torch.Tensor:
    """0-255 levels (uint8, or another integer dtype) -> float32 in [0, 1], the one conversion
    genai makes: level k becomes k / 255."""
    return images.float().div_(255.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 levels (rounded to the nearest of the 256; values outside
    [0, 1] are clamped): the inverse of :func:`to_float` on its outputs. Half precision is
    widened to fp32 first, so that ``255 * x`` is exact enough to round."""
    x = images.to(torch.promote_types(images.dtype, torch.float32))
    return x.clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def check_unit_range(x: torch.Tensor, what: str = "float images", tolerance: float = 0.0) -> None:
    """Raise ``ValueError`` unless float tensor ``x`` lies in [0, 1] (within ``tolerance``; NaN
    never does), naming the range found and, for 0-255 levels or [-1, 1] images, the fix."""
    lo, hi = (float(v) for v in x.aminmax())
    if lo >= -tolerance and hi <= 1.0 + tolerance:
        return
    hint = ""
    if hi > 1.5:
        hint = "; 0-255 levels: divide by 255 (x / 255) or pass uint8"
    elif lo >= -1.0 and hi <= 1.0:
        hint = "; a [-1, 1] image: (x + 1) / 2"
    raise ValueError(f"{what} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")


def fixed_binarization(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One seeded Bernoulli draw of uint8 images: a fixed binarized evaluation set, float {0, 1}."""
    gen = torch.Generator(images.device).manual_seed(seed)
    return torch.bernoulli(to_float(images), generator=gen)


def resize_images(images: torch.Tensor, size: int, chunk: int = 512) -> torch.Tensor:
    """Center-crop uint8 ``(N, C, H, W)`` to a square and resize it to ``(N, C, size, size)``.

    The resize is bilinear with antialiasing (so downscaling does not alias); done in chunks,
    so the float copy stays small.
    """
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[..., top : top + side, left : left + side]
    if side == size:
        return images.contiguous()
    out = torch.empty(*images.shape[:2], size, size, dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].float()
        y = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` with C = 1 or 3 -> ``channels`` (gray is ITU-R 601 luma, as PIL)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
    gray = (images.to(torch.int32) * weights).sum(dim=1, keepdim=True)
    return ((gray + 500) // 1000).to(torch.uint8)
