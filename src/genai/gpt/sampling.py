"""How a GPT's tokens are drawn: :class:`SamplingConfig` (one set of defaults, validated in one
place) and the top-k and top-p filters; :mod:`genai.gpt.text` is text in, text out.

Every entry point (``GPT.generate``, ``GPT.stream``, :func:`generate_text`, :func:`stream_text`,
``genai generate`` and the samples written during training) takes ``sampling=SamplingConfig(...)``
and/or keyword overrides of its fields (``temperature=0.8``); :func:`sampling_config` turns them
into the one object that travels inward.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn; :data:`SAMPLING` holds the defaults everything uses.

    Attributes:
        temperature: divides the logits; 0 is greedy (argmax).
        top_k: keep only the k most likely tokens (None: all).
        top_p: nucleus sampling, keep the most likely tokens holding this much probability
            (None or 1: all).

    Raises:
        ValueError: a field out of range (the message names it).
    """

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = 0.95

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < math.inf:
            raise ValueError(
                f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    def draw(self, logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """One token ``(B,)`` per row of ``logits`` ``(B, V)``: temperature, top-k, top-p."""
        logits = logits.float()
        if self.temperature == 0:
            return logits.argmax(dim=-1)
        # Shifted so the largest is 0: a tiny temperature sends the rest to -inf, never to NaN.
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / self.temperature
        if self.top_k is not None:
            logits = top_k_filter(logits, self.top_k)
        if self.top_p is not None and self.top_p < 1.0:
            logits = top_p_filter(logits, self.top_p)
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]


SAMPLING = SamplingConfig()
_FIELDS = tuple(f.name for f in dataclasses.fields(SamplingConfig))


def sampling_config(sampling: SamplingConfig | None = None, **overrides: Any) -> SamplingConfig:
    """``sampling`` (default :data:`SAMPLING`) with the fields in ``overrides`` replaced.

    Raises:
        TypeError: ``sampling`` is not a SamplingConfig, or an override is not one of its fields.
        ValueError: a field out of range.
    """
    if sampling is None:
        sampling = SAMPLING
    elif not isinstance(sampling, SamplingConfig):
        raise TypeError(
            f"sampling must be a SamplingConfig or None, got {type(sampling).__name__} "
            f"(give temperature=... by name)"
        )
    unknown = [name for name in overrides if name not in _FIELDS]
    if unknown:
        raise TypeError(
            f"unknown keyword argument {unknown[0]!r} (the sampling settings are "
            f"{', '.join(_FIELDS)})"
        )
    return dataclasses.replace(sampling, **overrides) if overrides else sampling


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Set every logit below the k-th largest of its row to ``-inf`` (ties with it stay).

    Args:
        logits: ``(B, V)``.
        k: tokens to keep per row, >= 1; values above V keep everything.
    """
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sums to >= p.

    A token is dropped when the tokens ranked above it already hold probability >= p; the most
    likely token is always kept.

    Args:
        logits: ``(B, V)``.
        p: the nucleus mass, in (0, 1].
    """
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # (B, V) probability of the better-ranked tokens
    drop_sorted = mass_before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))
