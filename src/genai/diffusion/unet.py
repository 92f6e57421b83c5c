"""The denoising U-Net (Ronneberger et al. 2015, as adapted by Ho et al. 2020 and Dhariwal &
Nichol 2021) for ``(C, H, W)`` images of any size.

``x_t (B, C, H, W)``, a time ``t (B,)`` in [0, 1] and optional labels ``(B,)`` -> a tensor of
the image's shape (the predicted noise, velocity, v or x0, whatever the objective trains).

* **Time:** the sinusoidal embedding of Vaswani et al. (2017) of ``1000 t``, then a two-layer
  MLP (Ho et al. 2020, appendix B), gives an embedding ``(B, 4 * base_width)``.
* **Classes:** ``nn.Embedding(num_classes + 1, ...)`` added to the time embedding; index
  ``num_classes`` is the *null* class that classifier-free guidance (Ho & Salimans 2022)
  trains on dropped labels and samples the unconditional model with.
* **Residual blocks:** GroupNorm, SiLU, 3x3 convolution, then the embedding as a per-channel
  scale and shift of the second GroupNorm (Dhariwal & Nichol's adaptive GroupNorm), SiLU,
  dropout, a zero-initialized 3x3 convolution, plus the (1x1-projected) input. GroupNorm, not
  BatchNorm: the EMA weights need no running statistics (the trap in DESIGN.md cannot arise).
* **Self-attention** (multi-head, ``F.scaled_dot_product_attention``, zero-initialized output)
  after the blocks of every level whose map side is at most ``attn_max_side``, and in the middle.
* **Resolutions:** level ``i`` has ``base_width * channel_mults[i]`` channels; each level but
  the last halves H and W with a stride-2 convolution; the way up mirrors it (nearest-neighbour
  upsampling + convolution) with a skip connection from every block. 28x28 runs at 28, 14 and
  7; 32x32 at 32, 16, 8, 4; 64x64 at 64, 32, 16, 8 (:func:`default_channel_mults`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_LEVELS = 4
MIN_SIDE = 4


def default_channel_mults(image_shape: tuple[int, int, int]) -> tuple[int, ...]:
    """``(1, 2, 4, 4)`` cut to the levels the image allows: halve H and W while both are even
    and the result keeps a side of at least 4, at most 3 times (28 -> 14 -> 7: three levels).
    Width grows as the maps shrink, so the full-resolution level, which dominates the cost on a
    CPU, stays narrow."""
    _, h, w = image_shape
    levels = 1
    while levels < MAX_LEVELS and h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= MIN_SIDE:
        h, w, levels = h // 2, w // 2, levels + 1
    return (1, 2, 4, 4)[:levels]


def check_levels(image_shape: tuple[int, int, int], channel_mults: tuple[int, ...]) -> None:
    """Raise ``ValueError`` naming ``channel_mults`` unless every downsampled side is whole."""
    _, h, w = image_shape
    halvings = len(channel_mults) - 1
    if h % 2**halvings or w % 2**halvings:
        raise ValueError(
            f"channel_mults {tuple(channel_mults)} halve {halvings} times, but image_shape "
            f"{tuple(image_shape)} is not divisible by {2**halvings}; use "
            f"{default_channel_mults(image_shape)} or fewer levels"
        )


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``(B, dim)`` of times ``t (B,)`` in [0, 1], scaled to [0, 1000]:
    ``[cos(1000 t w_k), sin(1000 t w_k)]`` with ``w_k = max_period^(-k / (dim / 2))``."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half
    )
    args = 1000.0 * t.float()[:, None] * freqs[None]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, dim % 2))


def _groups(channels: int) -> int:
    return math.gcd(32, channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``(B, C_in, H, W)`` + embedding ``(B, E)`` -> ``(B, C_out, H, W)``."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)  # scale and shift of norm2
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(c_out, c_out, 3, padding=1))  # the block starts as identity
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions of ``(B, C, H, W)``, residual."""

    def __init__(self, channels: int, head_dim: int = 32):
        super().__init__()
        self.heads = max(1, channels // head_dim)
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (B, heads, HW, C / heads)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, heads, HW, C / heads)
        return x + self.out(y.transpose(-1, -2).reshape(b, c, h, w))


class Level(nn.Module):
    """One resolution's residual blocks, each followed by attention when the level has it."""

    def __init__(self, widths: list[tuple[int, int]], emb_dim: int, attn: bool, dropout: float):
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(a, b, emb_dim, dropout) for a, b in widths)
        self.attns = nn.ModuleList(Attention(b) if attn else nn.Identity() for _, b in widths)


class UNet(nn.Module):
    """The noise-prediction network; see the module docstring.

    Args:
        image_shape: ``(C, H, W)``.
        base_width: channels of the first level.
        channel_mults: width multiplier of each level, image side first.
        blocks_per_level: residual blocks per level on the way down (one more on the way up).
        attn_max_side: self-attention at the levels whose smaller map side is at most this.
        num_classes: number of labels, or ``None`` for an unconditional net.
        dropout: dropout inside the residual blocks.
    """

    def __init__(
        self,
        image_shape: tuple[int, int, int],
        base_width: int,
        channel_mults: tuple[int, ...],
        blocks_per_level: int,
        attn_max_side: int,
        num_classes: int | None,
        dropout: float = 0.0,
    ):
        super().__init__()
        check_levels(image_shape, channel_mults)
        c, h, w = image_shape
        self.base_width = base_width
        emb_dim = 4 * base_width
        self.time_mlp = nn.Sequential(
            nn.Linear(base_width, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim)
        )
        self.num_classes = num_classes
        # index num_classes is the null class (no label) of classifier-free guidance
        self.class_emb = nn.Embedding(num_classes + 1, emb_dim) if num_classes else None
        widths = [base_width * m for m in channel_mults]
        sides = [min(h, w) // 2**i for i in range(len(widths))]
        self.stem = nn.Conv2d(c, base_width, 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        skips = [base_width]
        ch = base_width
        for i, (width, side) in enumerate(zip(widths, sides, strict=True)):
            pairs = [(ch if j == 0 else width, width) for j in range(blocks_per_level)]
            self.down.append(Level(pairs, emb_dim, side <= attn_max_side, dropout))
            ch = width
            skips += [width] * blocks_per_level
            if i < len(widths) - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skips.append(ch)
        self.mid1 = ResBlock(ch, ch, emb_dim, dropout)
        self.mid_attn = Attention(ch)
        self.mid2 = ResBlock(ch, ch, emb_dim, dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(len(widths))):
            width = widths[i]
            pairs = []
            for _ in range(blocks_per_level + 1):
                pairs.append((ch + skips.pop(), width))
                ch = width
            self.up.append(Level(pairs, emb_dim, sides[i] <= attn_max_side, dropout))
            if i > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))
        self.head = nn.Sequential(
            nn.GroupNorm(_groups(ch), ch), nn.SiLU(), _zero(nn.Conv2d(ch, c, 3, padding=1))
        )

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``x (B, C, H, W)``, ``t (B,)`` in [0, 1], ``labels (B,)`` in [0, num_classes] (the
        last index is the null class; ``None`` means null for a conditional net)."""
        emb = self.time_mlp(timestep_embedding(t, self.base_width).to(x.dtype))  # (B, E)
        if self.class_emb is not None:
            if labels is None:
                labels = torch.full((x.shape[0],), self.num_classes, device=x.device)
            emb = emb + self.class_emb(labels)
        h = self.stem(x)
        hs = [h]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(h, emb))
                hs.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                hs.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attns, strict=True):
                h = attn(block(torch.cat([h, hs.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.head(h)
