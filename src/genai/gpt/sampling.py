"""How a GPT's tokens are drawn: :class:`SamplingConfig` (one set of defaults, validated in one
place), the top-k and top-p filters, and :class:`Utf8Constraint` (byte tokens that stay valid
UTF-8); :mod:`genai.gpt.text` is text in, text out.

Every entry point (``GPT.generate``, ``GPT.stream``, :func:`generate_text`, :func:`stream_text`,
``genai generate`` and the samples written during training) takes ``sampling=SamplingConfig(...)``
and/or keyword overrides of its fields (``temperature=0.8``); :func:`sampling_config` turns them
into the one object that travels inward.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any

import torch

from genai.data.text import ByteTokenizer


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn; :data:`SAMPLING` holds the defaults everything uses.

    Attributes:
        temperature: divides the logits; 0 is greedy (argmax).
        top_k: keep only the k most likely tokens (None: all).
        top_p: nucleus sampling, keep the most likely tokens holding this much probability
            (None or 1: all).
        valid_utf8: with a byte tokenizer (:class:`~genai.data.text.ByteTokenizer`), draw only
            bytes that keep the text valid UTF-8 (:class:`Utf8Constraint`); other tokenizers
            ignore it. False draws from the model's distribution as it is.

    Raises:
        ValueError: a field out of range (the message names it).
        TypeError: ``valid_utf8`` is not a bool.
    """

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = 0.95
    valid_utf8: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < math.inf:
            raise ValueError(
                f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature}"
            )
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.valid_utf8, bool):
            raise TypeError(f"valid_utf8 must be True or False, got {self.valid_utf8!r}")

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


# UTF-8 (RFC 3629) as a state machine over bytes. State 0 is a character boundary; the others
# expect continuation bytes: state -> (bytes still expected, lowest and highest next byte). The
# narrow second-byte ranges are those of E0 (no overlong), ED (no surrogate), F0 (no overlong)
# and F4 (nothing past U+10FFFF); C0, C1 and F5-FF never occur.
_EXPECT = {
    1: (1, 0x80, 0xBF),
    2: (2, 0x80, 0xBF),
    3: (2, 0xA0, 0xBF),  # after E0
    4: (2, 0x80, 0x9F),  # after ED
    5: (3, 0x80, 0xBF),  # after F1-F3
    6: (3, 0x90, 0xBF),  # after F0
    7: (3, 0x80, 0x8F),  # after F4
}
_AFTER_CONTINUATION = {1: 0, 2: 1, 3: 2}  # bytes still expected -> the state after one more


def _lead_state(b: int) -> int | None:
    """The state after byte ``b`` read at a character boundary (None: ``b`` cannot start one)."""
    if b < 0x80:
        return 0
    if 0xC2 <= b <= 0xDF:
        return 1
    if 0xE0 <= b <= 0xEF:
        return {0xE0: 3, 0xED: 4}.get(b, 2)
    if 0xF0 <= b <= 0xF4:
        return {0xF0: 6, 0xF4: 7}.get(b, 5)
    return None


@functools.cache
def utf8_tables() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(allowed, next, length)``: ``allowed[s, b]`` (8, 256) whether byte b may follow state s,
    ``next[s, b]`` (8, 256) the state after it, ``length[b]`` (256,) the bytes of the character a
    lead byte starts (1 for every other byte).

    A byte that may not follow is read afresh at a boundary (the decoder resynchronizes), so
    the state of any byte string is that of its last three bytes read from state 0.
    """
    allowed = torch.zeros(8, 256, dtype=torch.bool)
    nxt = torch.zeros(8, 256, dtype=torch.long)
    length = torch.ones(256, dtype=torch.long)
    for b in range(256):
        state = _lead_state(b)
        allowed[0, b] = state is not None
        nxt[:, b] = state or 0
        if state:
            length[b] = 1 + _EXPECT[state][0]
    for state, (expected, lo, hi) in _EXPECT.items():
        allowed[state, lo : hi + 1] = True
        nxt[state, lo : hi + 1] = _AFTER_CONTINUATION[expected]
    return allowed, nxt, length


class Utf8Constraint:
    """Each row's UTF-8 state over byte tokens, and the mask of the bytes it may draw next.

    Applied to the logits before the draw (temperature, top-k and top-p then see only valid
    bytes), a row can only ever write valid UTF-8: after a lead byte, its continuation bytes in
    their ranges; no stray continuation byte; no C0, C1 or F5-FF. Ids at or past 256 (a padded
    vocabulary) are never drawn. A character is started only if the tokens left can finish it,
    so exactly ``max_new_tokens`` bytes come out and they end on a character boundary.

    Args:
        idx: ``(B, T)`` the prompt; a row ending in a partial character continues it.
    """

    def __init__(self, idx: torch.Tensor):
        self.allowed, self.next, self.length = (t.to(idx.device) for t in utf8_tables())
        self.state = torch.zeros(idx.shape[0], dtype=torch.long, device=idx.device)  # (B,)
        for token in idx[:, -3:].unbind(1):  # a partial character has at most 3 bytes
            self.update(token)

    def mask(self, logits: torch.Tensor, remaining: int) -> torch.Tensor:
        """``logits`` ``(B, V)`` with every id the rows may not draw next set to ``-inf``.

        Args:
            logits: ``(B, V)``.
            remaining: tokens still to draw, this one included (>= 1).
        """
        V = logits.shape[-1]
        ok = self.allowed[self.state] & (self.length <= remaining)  # (B, 256)
        ok = ok[:, :V]
        ok = ok | ~ok.any(dim=-1, keepdim=True)  # no valid byte below a tiny vocab_limit: any
        if ok.shape[-1] < V:
            ok = torch.nn.functional.pad(ok, (0, V - ok.shape[-1]), value=False)
        return logits.masked_fill(~ok, float("-inf"))

    def update(self, token: torch.Tensor) -> None:
        """Advance each row's state by its drawn ``(B,)`` token."""
        byte = torch.where((token >= 0) & (token < 256), token, 0xFF)  # not a byte: resync
        self.state = self.next[self.state, byte]


def utf8_constraint(
    sampling: SamplingConfig, tokenizer: Any, idx: torch.Tensor
) -> Utf8Constraint | None:
    """The :class:`Utf8Constraint` of a decoding call, or None when ``sampling.valid_utf8`` is
    off or ``tokenizer`` is not a :class:`~genai.data.text.ByteTokenizer`."""
    if sampling.valid_utf8 and isinstance(tokenizer, ByteTokenizer):
        return Utf8Constraint(idx)
    return None
