"""Text generation with a trained GPT: sampling filters, one set of sampling defaults (shared by
``GPT.generate``, :func:`generate_text` and ``genai generate``), and text in, text out.

Inference lives here, beside the models, not in the training loops.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from genai.core.device import seeded_generator
from genai.data.text import decode_stream

if TYPE_CHECKING:
    from genai.data.text import Tokenizer
    from genai.models.gpt import GPT


@dataclass(frozen=True)
class SamplingConfig:
    """How tokens are drawn; :data:`SAMPLING` holds the defaults everything uses.

    Attributes:
        temperature: divides the logits; 0 is greedy (argmax).
        top_k: keep only the k most likely tokens (None: all).
        top_p: nucleus sampling, keep the most likely tokens holding this much probability
            (None or 1: all).
    """

    temperature: float = 0.8
    top_k: int | None = None
    top_p: float | None = 0.95


SAMPLING = SamplingConfig()


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


def check_sampling(
    max_new_tokens: int, temperature: float, top_k: int | None, top_p: float | None
) -> None:
    """Raise ``ValueError`` naming the argument unless the sampling settings are valid."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if not 0 <= temperature < float("inf"):
        raise ValueError(
            f"temperature must be a finite number >= 0 (0 = greedy), got {temperature}"
        )
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")


def _model_and_tokenizer(
    run_dir_or_model: str | Path | GPT, tokenizer: Tokenizer | None, device: str
) -> tuple[GPT, Tokenizer]:
    from genai.models.gpt import GPT  # here: genai.models.gpt imports this module

    model = (
        run_dir_or_model
        if isinstance(run_dir_or_model, torch.nn.Module)
        else GPT.from_pretrained(run_dir_or_model, device)
    )
    if not isinstance(model, GPT):
        raise ValueError(
            f"text generation needs a GPT, got a {type(model).__name__}"
            + (
                f" ({run_dir_or_model})"
                if not isinstance(run_dir_or_model, torch.nn.Module)
                else ""
            )
        )
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
    run_dir_or_model: str | Path | GPT,
    prompt: str,
    max_new_tokens: int | None = None,
    temperature: float = SAMPLING.temperature,
    top_k: int | None = SAMPLING.top_k,
    top_p: float | None = SAMPLING.top_p,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    device: str = "auto",
    max_length: int | None = None,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` piece by piece as it is generated.

    Arguments as in :func:`generate_text`.
    """
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
            temperature,
            top_k,
            top_p,
            generator=generator,
            vocab_limit=tokenizer.vocab_size,  # a larger model vocabulary: ids it cannot decode
        )
        yield from decode_stream(tokenizer, (int(t[0]) for t in tokens))
    finally:
        model.train(was_training)


def generate_text(
    run_dir_or_model: str | Path | GPT,
    prompt: str,
    max_new_tokens: int | None = None,
    temperature: float = SAMPLING.temperature,
    top_k: int | None = SAMPLING.top_k,
    top_p: float | None = SAMPLING.top_p,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    device: str = "auto",
    max_length: int | None = None,
) -> str:
    """The prompt followed by ``max_new_tokens`` sampled tokens, as text.

    Args:
        run_dir_or_model: a run directory (loaded with :func:`genai.load`) or a :class:`GPT`.
        prompt: the text to continue ("" starts from token 0).
        max_new_tokens: tokens to generate, >= 0 (100 when neither it nor ``max_length`` is
            given).
        temperature: 0 is greedy.
        top_k: keep only the k most likely tokens.
        top_p: nucleus sampling mass in (0, 1]; None or 1 disables it.
        seed: seed of the sampling (ignored when ``generator`` is given).
        generator: the random source of sampling.
        tokenizer: overrides ``model.tokenizer``.
        device: where a run directory's model is loaded.
        max_length: instead of ``max_new_tokens``, the length in tokens of prompt and
            continuation together (Hugging Face's ``max_length``).

    Raises:
        ValueError: bad sampling arguments, or a prompt the tokenizer cannot encode.
    """
    pieces = stream_text(
        run_dir_or_model,
        prompt,
        max_new_tokens,
        temperature,
        top_k,
        top_p,
        seed,
        generator,
        tokenizer,
        device,
        max_length,
    )
    return prompt + "".join(pieces)
