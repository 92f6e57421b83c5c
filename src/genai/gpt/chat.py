"""Chat models: a conversation rendered with the tokenizer's chat template, and its end tokens.

A chat model's tokenizer (Qwen2.5-Instruct's, SmolLM2-Instruct's) carries the Jinja template of
its ``tokenizer_config.json`` (``BPETokenizer.chat_template``, kept in a run's ``config.json``
with the tokenizer). :func:`render_chat` renders ``messages`` with it as ``transformers``'
``apply_chat_template`` does (a sandboxed Jinja environment, ``add_generation_prompt``), and
:func:`stop_ids` names the tokens a reply ends with: the ``eos_token`` and the end-of-turn
tokens the template writes (``<|im_end|>``, ``<|eot_id|>``, ...). ``jinja2`` (a dependency of
``transformers``) is imported when a template is rendered.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

# Special tokens that end a turn, by name, when the template writes them.
END_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "<end_of_turn>", "</s>")


def chat_template(tokenizer: Any) -> str:
    """The tokenizer's chat template; a one-line error when it has none."""
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError(
            "messages= needs a chat model: this tokenizer has no chat template (a Hugging Face "
            "folder's tokenizer_config.json chat_template); pass prompt= text instead"
        )
    return template


def _check(messages: Any) -> list[dict[str, str]]:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...}")
    for i, m in enumerate(messages):
        if not (isinstance(m, dict) and isinstance(m.get("role"), str)):
            raise ValueError(f"messages[{i}] must be a dict with a 'role' and a 'content'")
        if not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}]['content'] must be text (str)")
    return [dict(m) for m in messages]


def _raise(message: str) -> None:
    raise ValueError(f"the chat template refused the messages: {message}")


def render_chat(tokenizer: Any, messages: Any, add_generation_prompt: bool = True) -> str:
    """The text of ``messages`` in the tokenizer's chat template, ready for the reply.

    Raises:
        ValueError: no template, malformed messages, or the template's own refusal.
    """
    template = chat_template(tokenizer)
    messages = _check(messages)
    from jinja2 import TemplateError
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(
        x, ensure_ascii=False, indent=indent
    )
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    special = getattr(tokenizer, "special_tokens", {}) or {}
    try:
        return env.from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt, **special
        )
    except TemplateError as e:
        raise ValueError(f"the chat template does not render ({e})") from None


def encode_chat(tokenizer: Any, text: str) -> list[int]:
    """Token ids of rendered chat text: the template writes its own BOS, so none is added."""
    inner = getattr(tokenizer, "tokenizer", None)
    if inner is not None and hasattr(inner, "encode"):  # a tokenizers.Tokenizer
        return inner.encode(text, add_special_tokens=False).ids
    return tokenizer.encode(text)


def stop_ids(tokenizer: Any) -> list[int]:
    """The ids a reply ends at: the ``eos_token`` and the end tokens the template writes."""
    template = chat_template(tokenizer)
    vocab = tokenizer.tokenizer.get_vocab() if hasattr(tokenizer, "tokenizer") else {}
    names = [(getattr(tokenizer, "special_tokens", {}) or {}).get("eos_token")]
    names += [t for t in END_TOKENS if t in template]
    ids = sorted({vocab[n] for n in names if n in vocab})
    if not ids:
        raise ValueError(
            "the chat template's end token is not in the vocabulary (no eos_token, "
            f"none of {', '.join(END_TOKENS)}): the reply would not stop"
        )
    return ids
