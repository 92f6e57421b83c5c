"""How a GPT's tokens are drawn: :class:`SamplingConfig` (one set of defaults, validated in one
place), the top-k and top-p filters, and text in, text out (:func:`stream_text`,
:func:`generate_text`).

Every entry point (``GPT.generate``, ``GPT.stream``, :func:`generate_text`, :func:`stream_text`,
``genai generate`` and the samples written during training) takes ``sampling=SamplingConfig(...)``
and/or keyword overrides of its fields (``temperature=0.8``); :func:`sampling_config` turns them
into the one object that travels inward.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

from genai import checkpoint
from genai.data.text import decode_stream
from genai.device import seeded_generator

if TYPE_CHECKING:
    from genai.data.text import Tokenizer


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


@runtime_checkable
class TextModel(Protocol):
    """What text generation needs of a model: a GPT's ``config`` and ``stream``."""

    config: Any

    def stream(self, idx: torch.Tensor, max_new_tokens: int, sampling: SamplingConfig, **kw): ...


def _model_and_tokenizer(
    run_dir_or_model: str | Path | TextModel, tokenizer: Tokenizer | None, device: str
) -> tuple[TextModel, Tokenizer]:
    given = isinstance(run_dir_or_model, torch.nn.Module)
    model = run_dir_or_model if given else checkpoint.load(run_dir_or_model, device)
    if not isinstance(model, TextModel):
        where = "" if given else f" ({run_dir_or_model})"
        raise ValueError(f"text generation needs a GPT, got a {type(model).__name__}{where}")
    tokenizer = tokenizer or getattr(model, "tokenizer", None)
    if tokenizer is None:
        raise ValueError("the model has no tokenizer; pass tokenizer=...")
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(
            f"the tokenizer has {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{model.config.vocab_size}: not the tokenizer it was trained with"
        )
    return model, tokenizer


def _new_tokens(max_new_tokens: int | None, max_length: int | None, prompt_tokens: int) -> int:
    """How many tokens to generate, from ``max_new_tokens`` or ``max_length`` (prompt included)."""
    if max_length is None:
        return 100 if max_new_tokens is None else max_new_tokens
    if max_new_tokens is not None:
        raise ValueError("give max_new_tokens or max_length, not both")
    if max_length < prompt_tokens:
        raise ValueError(
            f"max_length={max_length} is shorter than the prompt ({prompt_tokens} tokens)"
        )
    return max_length - prompt_tokens


def stream_text(
    run_dir_or_model: str | Path | TextModel,
    prompt: str,
    max_new_tokens: int | None = None,
    sampling: SamplingConfig | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    device: str = "auto",
    max_length: int | None = None,
    **overrides: Any,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece as it is generated.

    Arguments as in :func:`generate_text`.
    """
    sampling = sampling_config(sampling, **overrides)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be text (str), got {type(prompt).__name__}")
    model, tokenizer = _model_and_tokenizer(run_dir_or_model, tokenizer, device)
    model_device = next(model.parameters()).device
    ids = tokenizer.encode(prompt) if prompt else []
    max_new_tokens = _new_tokens(max_new_tokens, max_length, len(ids))
    idx = torch.tensor([ids or [0]], dtype=torch.long, device=model_device)  # (1, T)
    generator = seeded_generator(generator, seed, model_device)
    was_training = model.training
    model.eval()
    try:
        tokens = model.stream(
            idx,
            max_new_tokens,
            sampling,
            generator=generator,
            vocab_limit=tokenizer.vocab_size,  # a larger model vocabulary: ids it cannot decode
        )
        yield from decode_stream(tokenizer, (int(t[0]) for t in tokens))
    finally:
        model.train(was_training)


def generate_text(
    run_dir_or_model: str | Path | TextModel,
    prompt: str,
    max_new_tokens: int | None = None,
    sampling: SamplingConfig | None = None,
    *,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    device: str = "auto",
    max_length: int | None = None,
    **overrides: Any,
) -> str:
    """The prompt followed by ``max_new_tokens`` sampled tokens, as text.

    Args:
        run_dir_or_model: a run directory (loaded with :func:`genai.load`) or a :class:`GPT`.
        prompt: the text to continue ("" starts from token 0).
        max_new_tokens: tokens to generate, >= 0 (100 when neither it nor ``max_length`` is
            given).
        sampling: how tokens are drawn (default :data:`SAMPLING`: temperature 0.8, top-p 0.95).
        seed: seed of the sampling (ignored when ``generator`` is given).
        generator: the random source of sampling.
        tokenizer: overrides ``model.tokenizer``.
        device: where a run directory's model is loaded.
        max_length: instead of ``max_new_tokens``, the length in tokens of prompt and
            continuation together (Hugging Face's ``max_length``).
        **overrides: fields of ``sampling`` to replace: ``temperature`` (0 is greedy),
            ``top_k``, ``top_p`` (None or 1 disables the nucleus filter).

    Raises:
        ValueError: bad sampling arguments, or a prompt the tokenizer cannot encode.
    """
    pieces = stream_text(
        run_dir_or_model,
        prompt,
        max_new_tokens,
        sampling_config(sampling, **overrides),
        seed=seed,
        generator=generator,
        tokenizer=tokenizer,
        device=device,
        max_length=max_length,
    )
    return prompt + "".join(pieces)
