"""Text in, text out: :func:`generate_text` and :func:`stream_text` over a GPT and its tokenizer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from genai.core.device import seeded_generator
from genai.data.text import Tokenizer, decode_stream
from genai.gpt import chat
from genai.gpt.model import GPT
from genai.gpt.sampling import SamplingConfig, sampling_config


def _model_and_tokenizer(
    run_dir_or_model: str | Path | GPT, tokenizer: Tokenizer | None, device: str
) -> tuple[GPT, Tokenizer]:
    given = isinstance(run_dir_or_model, torch.nn.Module)
    model = run_dir_or_model if given else GPT.from_pretrained(run_dir_or_model, device)
    if not isinstance(model, GPT):
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


def _prompt_ids(tokenizer: Tokenizer, prompt: str, messages: Any) -> tuple[list[int], list[int]]:
    """The prompt's token ids, and the ids that end the reply (a chat's end tokens)."""
    if messages is None:
        return (tokenizer.encode(prompt) if prompt else []), []
    if prompt:
        raise ValueError("give prompt= text or messages= (a chat), not both")
    return chat.encode_chat(tokenizer, chat.render_chat(tokenizer, messages)), chat.stop_ids(
        tokenizer
    )


def stream_text(
    run_dir_or_model: str | Path | GPT,
    prompt: str = "",
    max_new_tokens: int | None = None,
    sampling: SamplingConfig | None = None,
    *,
    messages: list[dict[str, str]] | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    device: str = "auto",
    max_length: int | None = None,
    **overrides: Any,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` (or the reply to ``messages``) piece by piece as it
    is generated.

    Arguments as in :func:`generate_text`.
    """
    sampling = sampling_config(sampling, **overrides)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be text (str), got {type(prompt).__name__}")
    model, tokenizer = _model_and_tokenizer(run_dir_or_model, tokenizer, device)
    model_device = next(model.parameters()).device
    ids, stop = _prompt_ids(tokenizer, prompt, messages)
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
            tokenizer=tokenizer,  # a byte tokenizer: valid UTF-8 only (sampling.valid_utf8)
            stop=stop,  # a chat's end tokens: the reply ends there, without them
        )
        ids = (int(t[0]) for t in tokens)
        yield from decode_stream(tokenizer, (i for i in ids if i not in stop))
    finally:
        model.train(was_training)


def generate_text(
    run_dir_or_model: str | Path | GPT,
    prompt: str = "",
    max_new_tokens: int | None = None,
    sampling: SamplingConfig | None = None,
    *,
    messages: list[dict[str, str]] | None = None,
    seed: int | None = None,
    generator: torch.Generator | None = None,
    tokenizer: Tokenizer | None = None,
    device: str = "auto",
    max_length: int | None = None,
    **overrides: Any,
) -> str:
    """The prompt followed by ``max_new_tokens`` sampled tokens, as text; for ``messages``,
    the reply alone.

    Args:
        run_dir_or_model: a run directory (loaded with :func:`genai.load`) or a :class:`GPT`.
        prompt: the text to continue ("" starts from token 0).
        messages: instead of ``prompt``, a chat: ``[{"role": "user", "content": "..."}]``,
            rendered with the tokenizer's chat template (:mod:`genai.gpt.chat`; a tokenizer
            without one is an error); the reply ends at the template's end token.
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
            ``top_k``, ``top_p`` (None or 1 disables the nucleus filter), ``valid_utf8`` (False
            lets a byte tokenizer's model write bytes that are not UTF-8).

    Raises:
        ValueError: bad sampling arguments, or a prompt the tokenizer cannot encode.
    """
    pieces = stream_text(
        run_dir_or_model,
        prompt,
        max_new_tokens,
        sampling_config(sampling, **overrides),
        messages=messages,
        seed=seed,
        generator=generator,
        tokenizer=tokenizer,
        device=device,
        max_length=max_length,
    )
    reply = "".join(pieces)
    return reply if messages is not None else prompt + reply
