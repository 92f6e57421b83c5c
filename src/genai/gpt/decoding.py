"""Autoregressive decoding of a GPT: the KV cache (dynamic or static), the CUDA-graph decode
step, and the token loop behind ``GPT.stream`` and ``GPT.generate``.

This module knows the model only through :class:`Decoder`, what it calls on it; it imports nothing
of :mod:`genai.gpt.model`, which imports it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import torch

from genai.core.device import seeded_generator
from genai.gpt.sampling import SamplingConfig, sampling_config, utf8_constraint


class Decoder(Protocol):
    """What decoding needs of a model (:class:`genai.gpt.model.GPT`)."""

    config: Any  # a GPTConfig: block_size, vocab_size, dropout
    training: bool

    def new_cache(
        self, idx: torch.Tensor, static: bool = False, capacity: int | None = None
    ) -> KVCache: ...

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor: ...

    def _next_logits(self, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor: ...


class KVCache:
    """Keys and values of every layer for the positions already processed.

    Buffers are allocated once, at ``capacity`` positions (default ``block_size``). A dynamic cache (default) counts its filled
    positions in a Python int and attends over exactly those. A *static* cache keeps every shape
    fixed: the position is a device tensor, new keys are written with ``index_copy_`` and
    attention runs over the whole buffer with a mask, so one decoding step has the same shapes
    and no host synchronization at every position (what CUDA-graph capture needs).

    Args:
        config: the model's ``GPTConfig`` (sizes of the buffers: ``(batch, n_kv_head,
            block_size, head_dim)`` per layer, for the keys and for the values).
        batch: rows of the batch.
        device: where the buffers live.
        dtype: dtype of the keys and values.
        static: fixed shapes, as above.
        capacity: positions the buffers hold, at most ``block_size`` (the decoding loop asks for
            only what it will use: a model with a long context need not fill its memory).
    """

    def __init__(
        self,
        config: Any,
        batch: int,
        device: torch.device,
        dtype: torch.dtype,
        static: bool = False,
        capacity: int | None = None,
    ):
        # Grouped-query attention caches only the n_kv_head key/value heads.
        heads = getattr(config, "n_kv_head", None) or config.n_head
        length = min(capacity or config.block_size, config.block_size)
        shape = (batch, heads, length, config.n_embd // config.n_head)
        # A static cache attends over unwritten slots under a mask: zeros, never NaN garbage.
        alloc = torch.zeros if static else torch.empty
        self.k = [alloc(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.v = [alloc(shape, device=device, dtype=dtype) for _ in range(config.n_layer)]
        self.static = static
        self.length: int | torch.Tensor = (
            torch.zeros((), dtype=torch.long, device=device) if static else 0
        )

    def positions(self, T: int, device: torch.device) -> torch.Tensor:
        """``(T,)`` the positions of the next T tokens."""
        return self.length + torch.arange(T, device=device)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
        """Append ``(B, KV, T, hd)`` keys and values of ``layer`` (KV: the key/value heads).

        Returns:
            ``(keys, values, mask, is_causal)`` for ``F.scaled_dot_product_attention`` of the T
            new queries against every cached position.
        """
        T = k.shape[2]
        if self.static:
            pos = self.positions(T, k.device)  # (T,)
            self.k[layer].index_copy_(2, pos, k)
            self.v[layer].index_copy_(2, pos, v)
            slots = torch.arange(self.k[layer].shape[2], device=k.device)
            return self.k[layer], self.v[layer], slots[None, :] <= pos[:, None], False
        start, end = self.length, self.length + T
        if end > self.k[layer].shape[2]:
            raise ValueError(f"the cache holds {self.k[layer].shape[2]} positions, not {end}")
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        k, v = self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, KV, end, hd)
        if start == 0:
            return k, v, None, True
        # New queries see every cached key and the new keys up to themselves.
        mask = torch.ones(T, end, dtype=torch.bool, device=k.device).tril(start) if T > 1 else None
        return k, v, mask, False

    def advance(self, T: int) -> None:
        """Mark T more positions as filled (in place, so a static cache keeps its tensor)."""
        if self.static:
            self.length.add_(T)
        else:
            self.length += T

    def reset(self) -> None:
        """Empty the cache, keeping its buffers."""
        if self.static:
            self.length.zero_()
        else:
            self.length = 0


class GraphedDecodeStep:
    """``model.decode_step`` on a static CUDA cache, captured once in a CUDA graph and replayed.

    At batch 1 a decoding step is bound by its kernel launches; a replay launches them all at
    once. The graph is captured at the first call (after two warm-up steps on a side stream,
    whose writes the real step overwrites: the cache position is restored after each).

    Args:
        model: the GPT.
        cache: a static :class:`KVCache` on a CUDA device.
    """

    def __init__(self, model: Decoder, cache: KVCache):
        if not cache.static:
            raise ValueError("a CUDA graph needs a static cache (static_cache=True)")
        self.model, self.cache = model, cache
        self.graph: torch.cuda.CUDAGraph | None = None

    def _capture(self, token: torch.Tensor) -> None:
        cache = self.cache
        self.token = token.clone()  # (B, 1): the graph's input, refilled before each replay
        length = cache.length.clone()
        # Autocast's weight-cast cache must not outlive the capture: keep the caller's autocast
        # (on or off, its dtype) without it.
        autocast = torch.autocast(
            "cuda",
            torch.get_autocast_dtype("cuda"),
            enabled=torch.is_autocast_enabled("cuda"),
            cache_enabled=False,
        )
        with torch.cuda.device(token.device):  # the cache's GPU, whichever one is current
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side), autocast:
                for _ in range(2):
                    self.model.decode_step(self.token, cache)
                    cache.length.copy_(length)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side, capture_error_mode="thread_local"), autocast:
                self.logits = self.model.decode_step(self.token, cache)  # (B, V): the output
            cache.length.copy_(length)

    def __call__(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits ``(B, V)`` after ``token`` ``(B, 1)``; valid until the next call."""
        if cache is not self.cache:
            raise ValueError("this graph was captured on another cache")
        if self.graph is None:
            self._capture(token)
        self.token.copy_(token)
        with torch.cuda.device(token.device):
            self.graph.replay()
        return self.logits


def check_ids(idx: torch.Tensor, vocab: int) -> None:
    """Raise ``ValueError`` unless ``idx`` holds integer token ids in ``[0, vocab)``."""
    if idx.is_floating_point() or int(idx.min()) < 0 or int(idx.max()) >= vocab:
        raise ValueError(
            f"idx must hold token ids in [0, vocab_size={vocab}), got "
            f"{idx.dtype} values in [{idx.min().item()}, {idx.max().item()}]"
        )


def _check(
    model: Decoder,
    idx: torch.Tensor,
    max_new_tokens: int,
    window_shift: int | None,
    vocab_limit: int | None,
) -> int:
    """Raise ``ValueError`` naming the argument unless the decoding arguments are valid; return
    the window shift."""
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block, vocab = model.config.block_size, model.config.vocab_size
    shift = window_shift if window_shift is not None else max(1, block // 4)
    if not 1 <= shift <= block:
        raise ValueError(f"window_shift must be in [1, block_size={block}], got {shift}")
    if idx.dim() != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must be (B, T) token ids with T >= 1, got shape {tuple(idx.shape)}")
    check_ids(idx, vocab)
    if vocab_limit is not None and not 1 <= vocab_limit <= vocab:
        raise ValueError(f"vocab_limit must be in [1, vocab_size={vocab}], got {vocab_limit}")
    return shift


@torch.inference_mode()
def stream(
    model: Decoder,
    idx: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig | None = None,
    *,
    stop: int | Iterable[int] | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    window_shift: int | None = None,
    static_cache: bool = False,
    vocab_limit: int | None = None,
    seed: int | None = None,
    tokenizer: Any = None,
    **overrides: Any,
) -> Iterator[torch.Tensor]:
    """Yield ``(B,)`` new tokens one step at a time; the arguments are ``GPT.generate``'s.

    ``sampling`` with ``overrides`` of its fields applied (:func:`sampling_config`) draws them;
    with a byte tokenizer (``tokenizer``, default ``model.tokenizer``) and ``valid_utf8`` only
    bytes that keep each row valid UTF-8 (:class:`~genai.gpt.sampling.Utf8Constraint`).
    """
    sampling = sampling_config(sampling, **overrides)
    shift = _check(model, idx, max_new_tokens, window_shift, vocab_limit)
    generator = seeded_generator(generator, seed, idx.device)
    tokenizer = tokenizer if tokenizer is not None else getattr(model, "tokenizer", None)
    utf8 = utf8_constraint(sampling, tokenizer, idx)
    block = model.config.block_size
    stops = torch.tensor([stop] if isinstance(stop, int) else list(stop or ()), device=idx.device)
    done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    held = torch.zeros(idx.shape[0], dtype=torch.long, device=idx.device)
    # The window policy: the context is at most the last block_size tokens; when it is full,
    # its oldest `shift` tokens are dropped. The cache holds exactly the window, so with
    # learned absolute positions it is rebuilt once per slide, not at every token.
    window = idx[:, -block:]  # (B, T)
    # Room for the whole continuation, or for the full window when it will slide.
    capacity = min(block, window.shape[1] + max_new_tokens)
    cache = model.new_cache(window, static_cache, capacity) if use_cache else None
    step = model.decode_step
    # Not with live dropout: its random draws would be frozen into the graph.
    live_dropout = model.training and model.config.dropout > 0
    if static_cache and use_cache and idx.device.type == "cuda" and not live_dropout:
        step = GraphedDecodeStep(model, cache)
    logits = model._next_logits(window, cache)  # (B, V)
    for i in range(max_new_tokens):
        if vocab_limit is not None:  # ids past the tokenizer's are never drawn
            logits = logits[:, :vocab_limit]
        if utf8 is not None:  # only the bytes that keep the text UTF-8
            logits = utf8.mask(logits, max_new_tokens - i)
        token = sampling.draw(logits, generator)  # (B,)
        if utf8 is not None:
            utf8.update(token)
        if stops.numel():  # a stopped row repeats the stop id it drew
            token = torch.where(done, held, token)
            held = torch.where(done, held, token)
            done = done | torch.isin(token, stops)
        yield token
        if i == max_new_tokens - 1 or (stops.numel() and bool(done.all())):
            return
        window = torch.cat([window, token[:, None]], dim=1)  # (B, T + 1)
        if window.shape[1] > block:
            window = window[:, shift:]
            if cache is not None:
                cache.reset()
                logits = model._next_logits(window, cache)
                continue
        logits = model._next_logits(window, None) if cache is None else step(token[:, None], cache)


def generate(
    model: Decoder,
    idx: torch.Tensor,
    max_new_tokens: int,
    sampling: SamplingConfig | None = None,
    *,
    stop: int | Iterable[int] | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    window_shift: int | None = None,
    static_cache: bool = False,
    vocab_limit: int | None = None,
    seed: int | None = None,
    tokenizer: Any = None,
    **overrides: Any,
) -> torch.Tensor:
    """``(B, T + n)``: ``idx`` followed by the n <= max_new_tokens tokens of :func:`stream`."""
    tokens = list(
        stream(
            model,
            idx,
            max_new_tokens,
            sampling_config(sampling, **overrides),
            stop=stop,
            generator=generator,
            use_cache=use_cache,
            window_shift=window_shift,
            static_cache=static_cache,
            vocab_limit=vocab_limit,
            seed=seed,
            tokenizer=tokenizer,
        )
    )
    return torch.cat([idx, torch.stack(tokens, dim=1)], dim=1) if tokens else idx.clone()
