"""A GPT-2-style decoder-only Transformer language model with a KV-cached sampler.

Layout (GPT-2, the default): token + learned position embeddings, ``n_layer`` pre-LayerNorm blocks
of causal self-attention and a 4x GELU MLP, a final LayerNorm, and an output head tied to the
token embedding. Module names follow Hugging Face's ``GPT2LMHeadModel`` so weights map one to one
(:meth:`GPT.from_huggingface`, :meth:`GPT.to_huggingface`).

:class:`GPTConfig` also has the options of newer small-model recipes (modded-nanogpt), each off by
default: rotary position embeddings, RMSNorm, QK-norm, a ReLU^2 or SwiGLU MLP, an untied head,
zero-initialized output projections, logit soft-capping. ``GPTConfig.recipe("modern")`` turns on
the combination measured best in docs/gpt.md.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from genai.checkpoint import Pretrained, is_run_dir
from genai.device import seeded_generator
from genai.generation import SAMPLING, check_sampling, top_k_filter, top_p_filter
from genai.validation import Config, check_fields, coerce_config, field

# The Linear layers Hugging Face stores as Conv1D, i.e. with the weight transposed to (in, out).
_HF_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

POS_EMBS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "relu2", "swiglu")

# GPT-2's value of every layout option; a model that differs cannot be exported to Hugging Face.
_GPT2_LAYOUT = {
    "pos_emb": "learned",
    "norm": "layernorm",
    "qk_norm": False,
    "mlp": "gelu",
    "logit_softcap": 0.0,
}

# Named model layouts; the matching optimizer settings are GPTTrainConfig.recipe's.
RECIPES: dict[str, dict[str, Any]] = {
    "gpt2": {},
    "modern": {
        "pos_emb": "rope",
        "norm": "rmsnorm",
        "qk_norm": True,
        "mlp": "relu2",
        "tie_weights": False,
        "zero_init": True,
        "logit_softcap": 15.0,
        "bias": False,
    },
}


@dataclass
class GPTConfig(Config):
    """Size of a GPT.

    Attributes:
        vocab_size: number of token ids.
        block_size: the context length (number of learned positions).
        n_layer: Transformer blocks.
        n_head: attention heads per block; must divide ``n_embd``.
        n_embd: width of the residual stream.
        dropout: dropout on embeddings, attention weights and residual branches, in [0, 1).
        bias: biases in the Linear layers and LayerNorms (GPT-2 has them).
        pos_emb: "learned" absolute position embeddings (GPT-2) or "rope" (rotary embeddings
            of the queries and keys, no position table).
        norm: "layernorm" (GPT-2) or "rmsnorm".
        qk_norm: RMS-normalize queries and keys per head before attention.
        mlp: "gelu" (GPT-2's 4x tanh-GELU), "relu2" (4x ReLU squared) or "swiglu" (a SiLU-gated
            MLP with 8/3x width, rounded up to a multiple of 8, to keep the parameter count).
        tie_weights: the output head shares the token embedding's weights (GPT-2).
        zero_init: initialize every residual output projection (and an untied head) to zero.
        logit_softcap: if > 0, logits become ``cap * tanh(logits / cap)``; 0 is off.
    """

    vocab_size: int = field(65, gt=0, rule="a positive integer")
    block_size: int = field(256, gt=0, rule="a positive integer")
    n_layer: int = field(6, gt=0, rule="a positive integer")
    n_head: int = field(6, gt=0, rule="a positive integer")
    n_embd: int = field(384, gt=0, rule="a positive integer")
    dropout: float = field(0.0, ge=0, lt=1)
    bias: bool = True
    pos_emb: str = field("learned", choices=POS_EMBS)
    norm: str = field("layernorm", choices=NORMS)
    qk_norm: bool = False
    mlp: str = field("gelu", choices=MLPS)
    tie_weights: bool = True
    zero_init: bool = False
    logit_softcap: float = field(0.0, ge=0, rule=">= 0 (0 = off)")

    @classmethod
    def recipe(cls, name: str, **overrides: Any) -> GPTConfig:
        """The model layout of a named recipe ("gpt2" or "modern"), with ``overrides`` applied.

        Example: ``GPTConfig.recipe("modern", n_layer=4, n_embd=128)``. The optimizer side of a
        recipe is ``GPTTrainConfig.recipe(name)``.
        """
        if name not in RECIPES:
            raise ValueError(f"unknown recipe {name!r}: expected one of {', '.join(RECIPES)}")
        return cls(**{**RECIPES[name], **overrides})

    def __post_init__(self) -> None:
        check_fields(self)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.pos_emb == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"pos_emb='rope' needs an even head size, got n_embd/n_head = "
                f"{self.n_embd // self.n_head}"
            )

    def non_gpt2_options(self) -> list[str]:
        """The layout options set away from GPT-2's values, as ``name=value`` strings."""
        return [
            f"{name}={getattr(self, name)!r}"
            for name, value in _GPT2_LAYOUT.items()
            if getattr(self, name) != value
        ]


class GraphedDecodeStep:
    """``model.decode_step`` on a static CUDA cache, captured once in a CUDA graph and replayed.

    At batch 1 a decoding step is bound by its kernel launches; a replay launches them all at
    once. The graph is captured at the first call (after two warm-up steps on a side stream,
    whose writes the real step overwrites: the cache position is restored after each).

    Args:
        model: the GPT.
        cache: a static :class:`KVCache` on a CUDA device.
    """

    def __init__(self, model: GPT, cache: KVCache):
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


class KVCache:
    """Keys and values of every layer for the positions already processed.

    Buffers are allocated once at ``block_size``. A dynamic cache (default) counts its filled
    positions in a Python int and attends over exactly those. A *static* cache keeps every shape
    fixed: the position is a device tensor, new keys are written with ``index_copy_`` and
    attention runs over the whole buffer with a mask, so one decoding step has the same shapes
    and no host synchronization at every position (what CUDA-graph capture needs).

    Args:
        config: the model's config (sizes of the buffers).
        batch: rows of the batch.
        device: where the buffers live.
        dtype: dtype of the keys and values.
        static: fixed shapes, as above.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch: int,
        device: torch.device,
        dtype: torch.dtype,
        static: bool = False,
    ):
        shape = (batch, config.n_head, config.block_size, config.n_embd // config.n_head)
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
        """Append ``(B, H, T, hd)`` keys and values of ``layer``.

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
        self.k[layer][:, :, start:end] = k
        self.v[layer][:, :, start:end] = v
        k, v = self.k[layer][:, :, :end], self.v[layer][:, :, :end]  # (B, H, end, hd)
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


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """RMS normalization over the last dimension, without a gain."""
    return F.rms_norm(x, (x.shape[-1],))


def norm_layer(config: GPTConfig) -> nn.Module:
    """The block's normalization: GPT-2's LayerNorm or RMSNorm (both with a gain)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=1e-6)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) of ``(B, H, T, hd)`` queries or keys.

    Channel pairs ``(i, i + hd/2)`` are rotated by the angle ``pos * base^(-2i/hd)``, so the dot
    product of a query and a key depends on their positions only through their distance.
    """

    def __init__(self, head_dim: int, block_size: int, base: float = 10000.0):
        super().__init__()
        freqs = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(block_size, dtype=torch.float32), freqs)  # (T, hd/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``(B, H, T, hd)`` at positions ``pos`` ``(T,)``."""
        cos, sin = self.cos[pos].to(x.dtype), self.sin[pos].to(x.dtype)  # (T, hd/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through ``F.scaled_dot_product_attention``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        head_dim = config.n_embd // config.n_head
        self.rotary = Rotary(head_dim, config.block_size) if config.pos_emb == "rope" else None

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend causally; with ``cache``, ``x`` continues the cached positions.

        Args:
            x: ``(B, T, C)`` hidden states of T new positions.
            cache: keys/values of the earlier positions; this call appends the new ones.
            layer: index of this block in the cache.
            pos: ``(T,)`` positions of the new tokens (needed with rotary embeddings).
        """
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, hd)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, hd)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q, pos), self.rotary(k, pos)
        mask, causal = None, True
        if cache is not None:
            k, v, mask, causal = cache.update(layer, k, v)  # (B, H, S, hd) each
        dropout = self.dropout if self.training else 0.0
        if q.dtype == torch.bfloat16 and x.device.type == "cpu":
            # The CPU flash-attention backward is ~5x slower in bf16 than in fp32 (torch 2.14,
            # benchmarks/lm.py): attend in fp32 there, keep the matmuls around it in bf16.
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), mask, dropout, is_causal=causal
                ).to(q.dtype)  # (B, H, T, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, mask, dropout, is_causal=causal)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


def swiglu_width(n_embd: int) -> int:
    """Hidden width of the SwiGLU MLP: 8/3 n_embd rounded up to a multiple of 8."""
    return -(-8 * n_embd // 24) * 8


class MLP(nn.Module):
    """The feed-forward block: GPT-2's 4x tanh-GELU, 4x ReLU^2, or SwiGLU.

    SwiGLU's ``c_fc`` holds the gate and the value side by side: ``silu(x W_g) * (x W_v)``.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.kind = config.mlp
        hidden = swiglu_width(config.n_embd) if config.mlp == "swiglu" else 4 * config.n_embd
        fc_out = 2 * hidden if config.mlp == "swiglu" else hidden
        self.c_fc = nn.Linear(config.n_embd, fc_out, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, fc_out)
        if self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.kind == "relu2":
            h = F.relu(h).square()
        else:
            gate, value = h.chunk(2, dim=-1)
            h = F.silu(gate) * value
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """A pre-norm Transformer block: ``x + attn(ln(x))``, then ``x + mlp(ln(x))``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = norm_layer(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm_layer(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        cache: KVCache | None = None,
        layer: int = 0,
        pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache, layer, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module, Pretrained):
    """A GPT-2-style causal language model (with the layout options of :class:`GPTConfig`).

    Args:
        config: the model size (a :class:`GPTConfig` or a dict of its fields; default
            ``GPTConfig()``).
    """

    def __init__(self, config: GPTConfig | dict | None = None):
        super().__init__()
        self.config = config = coerce_config(config, GPTConfig)
        modules = {"wte": nn.Embedding(config.vocab_size, config.n_embd)}
        if config.pos_emb == "learned":
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        modules["ln_f"] = norm_layer(config)
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
            self.lm_head.weight = self.transformer.wte.weight
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by 1/sqrt(2 n_layer), one per residual addition.
        std = 0.02 / math.sqrt(2 * config.n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                if config.zero_init:
                    nn.init.zeros_(p)
                else:
                    nn.init.normal_(p, mean=0.0, std=std)
        if config.zero_init and not config.tie_weights:
            nn.init.zeros_(self.lm_head.weight)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; the position embedding is left out by default (as in GPT-2)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def _hidden(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T = idx.shape
        # A static cache keeps its length on the device: checking it would synchronize.
        start = 0 if cache is None or cache.static else cache.length
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens is longer than block_size {self.config.block_size}"
            )
        pos = (
            torch.arange(T, device=idx.device) if cache is None else cache.positions(T, idx.device)
        )
        x = self.transformer.wte(idx)  # (B, T, C)
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(pos)
        x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            x = block(x, cache, layer, pos)
        if cache is not None:
            cache.advance(T)
        return self.transformer.ln_f(x)  # (B, T, C)

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        """Output logits ``(..., V)`` of hidden states ``(..., C)``, soft-capped if configured."""
        logits = self.lm_head(h)
        cap = self.config.logit_softcap
        return cap * torch.tanh(logits / cap) if cap > 0 else logits

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits at every position, and the loss when ``targets`` are given.

        Args:
            idx: ``(B, T)`` token ids, T <= block_size.
            targets: ``(B, T)`` the next token at each position (-1 = ignore).

        Returns:
            ``(logits, loss)``: logits ``(B, T, vocab_size)``; loss is the mean cross-entropy in
            nats per token, or ``None`` without targets.
        """
        logits = self._logits(self._hidden(idx))  # (B, T, V)
        if targets is None:
            return logits, None
        loss = F.cross_entropy(
            logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=-1
        )
        return logits, loss

    def _next_logits(self, idx: torch.Tensor, cache: KVCache | None) -> torch.Tensor:
        return self._logits(self._hidden(idx, cache)[:, -1])  # (B, V)

    def decode_step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Logits ``(B, V)`` after one more token ``(B, 1)``, appended to ``cache``.

        With a static cache every shape is fixed and nothing synchronizes with the host, so
        this call can be captured in a CUDA graph (:class:`GraphedDecodeStep`, which
        ``generate(..., static_cache=True)`` uses on CUDA); the caller keeps the cache within
        ``block_size``.
        """
        return self._next_logits(token, cache)

    @torch.inference_mode()
    def stream(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = SAMPLING.temperature,
        top_k: int | None = SAMPLING.top_k,
        top_p: float | None = SAMPLING.top_p,
        stop: int | Iterable[int] | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        window_shift: int | None = None,
        static_cache: bool = False,
        vocab_limit: int | None = None,
        seed: int | None = None,
    ) -> Iterator[torch.Tensor]:
        """Yield new tokens one step at a time; see :meth:`generate` for the arguments.

        Yields:
            ``(B,)`` the token of each row at this step.
        """
        check_sampling(max_new_tokens, temperature, top_k, top_p)
        generator = seeded_generator(generator, seed, idx.device)
        block = self.config.block_size
        shift = window_shift if window_shift is not None else max(1, block // 4)
        if not 1 <= shift <= block:
            raise ValueError(f"window_shift must be in [1, block_size={block}], got {shift}")
        if idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError(
                f"idx must be (B, T) token ids with T >= 1, got shape {tuple(idx.shape)}"
            )
        if (
            idx.is_floating_point()
            or int(idx.min()) < 0
            or int(idx.max()) >= self.config.vocab_size
        ):
            raise ValueError(
                f"idx must hold token ids in [0, vocab_size={self.config.vocab_size}), got "
                f"{idx.dtype} values in [{idx.min().item()}, {idx.max().item()}]"
            )
        stops = torch.tensor(
            [stop] if isinstance(stop, int) else list(stop or ()), device=idx.device
        )
        done = torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
        held = torch.zeros(idx.shape[0], dtype=torch.long, device=idx.device)
        # The window policy: the context is at most the last block_size tokens; when it is
        # full, its oldest `shift` tokens are dropped. The cache holds exactly the window, so
        # with learned absolute positions it is rebuilt once per slide, not at every token.
        window = idx[:, -block:]  # (B, T)
        cache = self.new_cache(window, static_cache) if use_cache else None
        step = self.decode_step
        # Not with live dropout: its random draws would be frozen into the graph.
        live_dropout = self.training and self.config.dropout > 0
        if static_cache and use_cache and idx.device.type == "cuda" and not live_dropout:
            step = GraphedDecodeStep(self, cache)
        if vocab_limit is not None and not 1 <= vocab_limit <= self.config.vocab_size:
            raise ValueError(
                f"vocab_limit must be in [1, vocab_size={self.config.vocab_size}], got "
                f"{vocab_limit}"
            )
        logits = self._next_logits(window, cache)  # (B, V)
        for i in range(max_new_tokens):
            if vocab_limit is not None:  # ids past the tokenizer's are never drawn
                logits = logits[:, :vocab_limit]
            token = self._sample(logits, temperature, top_k, top_p, generator)  # (B,)
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
                    logits = self._next_logits(window, cache)
                    continue
            if cache is None:
                logits = self._next_logits(window, None)
            else:
                logits = step(token[:, None], cache)

    def new_cache(self, idx: torch.Tensor, static: bool = False) -> KVCache:
        """An empty :class:`KVCache` for the rows of ``idx`` ``(B, T)``, in the compute dtype."""
        dtype = self.transformer.wte.weight.dtype
        if torch.is_autocast_enabled(idx.device.type):
            dtype = torch.get_autocast_dtype(idx.device.type)
        return KVCache(self.config, idx.shape[0], idx.device, dtype, static)

    @staticmethod
    def _sample(
        logits: torch.Tensor,
        temperature: float,
        top_k: int | None,
        top_p: float | None,
        generator: torch.Generator | None,
    ) -> torch.Tensor:
        logits = logits.float()
        if temperature == 0:
            return logits.argmax(dim=-1)
        # Shifted so the largest is 0: a tiny temperature sends the rest to -inf, never to NaN.
        logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
        if top_k is not None:
            logits = top_k_filter(logits, top_k)
        if top_p is not None and top_p < 1.0:
            logits = top_p_filter(logits, top_p)
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator)[:, 0]

    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = SAMPLING.temperature,
        top_k: int | None = SAMPLING.top_k,
        top_p: float | None = SAMPLING.top_p,
        stop: int | Iterable[int] | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
        window_shift: int | None = None,
        static_cache: bool = False,
        vocab_limit: int | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Sample a continuation of ``idx`` token by token.

        A prompt longer than ``block_size`` is cropped to its last ``block_size`` tokens. Past
        ``block_size`` the context window slides: when it is full, its oldest ``window_shift``
        tokens are dropped. With the KV cache (default) the cache is rebuilt at each slide; the
        tokens equal those of ``use_cache=False``, which recomputes the same window every step.

        Args:
            idx: ``(B, T)`` prompt token ids, T >= 1.
            max_new_tokens: tokens to add, >= 0.
            temperature: divides the logits; 0 means greedy (argmax).
            top_k: keep only the k most likely tokens.
            top_p: keep the smallest set of most likely tokens with probability >= top_p.
            stop: a token id (or ids); a row that emits one keeps emitting that id, and
                generation ends once every row has stopped.
            generator: the random source of sampling.
            use_cache: use the KV cache (False recomputes the context every step).
            window_shift: tokens dropped when the window slides, in [1, block_size];
                default ``block_size // 4``.
            static_cache: use a fixed-shape cache (see :class:`KVCache`); on CUDA each step
                then replays one CUDA graph captured for this call (:class:`GraphedDecodeStep`;
                not in training mode with dropout). Same tokens.
            vocab_limit: draw only ids below it (a vocabulary padded beyond its tokenizer's).
            seed: seeds a new generator instead of ``generator`` (ignored when it is given).

        Returns:
            ``(B, T + n)`` the full prompt followed by the n <= max_new_tokens new tokens.
        """
        tokens = list(
            self.stream(
                idx,
                max_new_tokens,
                temperature,
                top_k,
                top_p,
                stop,
                generator,
                use_cache,
                window_shift,
                static_cache,
                vocab_limit,
                seed,
            )
        )
        return torch.cat([idx, torch.stack(tokens, dim=1)], dim=1) if tokens else idx.clone()

    @classmethod
    def from_huggingface(cls, model_or_dir: Any) -> GPT:
        """A GPT with the weights of a ``transformers.GPT2LMHeadModel`` (or a local folder of one).

        Loading from a folder never downloads (``local_files_only``). If the folder holds a
        ``tokenizer.json``, or GPT-2's ``vocab.json`` and ``merges.txt``, the tokenizer is
        attached as ``model.tokenizer``.
        """
        from transformers import GPT2LMHeadModel

        from genai.data.text import BPETokenizer

        tokenizer = None
        if isinstance(model_or_dir, (str, Path)):
            path = Path(model_or_dir)
            if not path.is_dir():
                raise ValueError(f"{str(path)!r} is not a folder with a GPT-2 model")
            if is_run_dir(path):
                raise ValueError(
                    f"{str(path)!r} holds a genai model, not a Hugging Face one: load it with "
                    "genai.load (or GPT.from_pretrained)"
                )
            tokenizer = BPETokenizer.from_folder(path)
            model_or_dir = GPT2LMHeadModel.from_pretrained(path, local_files_only=True)
        hf = model_or_dir
        c = hf.config
        if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
            raise ValueError(f"unsupported GPT-2 activation {c.activation_function!r}")
        if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
            raise ValueError(
                "only GPT-2's standard 1/sqrt(head_dim) attention scaling is supported"
            )
        if c.layer_norm_epsilon != 1e-5:
            raise ValueError(f"only GPT-2's layer_norm_epsilon 1e-5, got {c.layer_norm_epsilon}")
        if c.n_inner not in (None, 4 * c.n_embd):
            raise ValueError(f"only GPT-2's MLP width 4 * n_embd = {4 * c.n_embd}, got {c.n_inner}")
        config = GPTConfig(
            vocab_size=c.vocab_size,
            block_size=c.n_positions,
            n_layer=c.n_layer,
            n_head=c.n_head,
            n_embd=c.n_embd,
            dropout=c.resid_pdrop,
            bias=True,
            tie_weights=c.tie_word_embeddings,
        )
        model = cls(config)
        hf_state = hf.state_dict()
        state = {}
        for name in model.state_dict():
            tensor = hf_state[name]
            state[name] = tensor.t() if name.endswith(_HF_CONV1D) else tensor
        model.load_state_dict(state)
        if tokenizer is not None:
            model.tokenizer = tokenizer
        return model.to(next(hf.parameters()).device).eval()

    def to_huggingface(self) -> Any:
        """This model as a ``transformers.GPT2LMHeadModel`` with equal logits.

        Without biases (``bias=False``) the Hugging Face model gets zero biases.

        Raises:
            ValueError: the model's layout is not GPT-2's (the message names the options).
        """
        c = self.config
        options = c.non_gpt2_options()
        if options:
            raise ValueError(
                f"to_huggingface needs GPT-2's layout; this model has {', '.join(options)}"
            )
        from transformers import GPT2Config, GPT2LMHeadModel

        hf_config = GPT2Config(
            vocab_size=c.vocab_size,
            n_positions=c.block_size,
            n_embd=c.n_embd,
            n_layer=c.n_layer,
            n_head=c.n_head,
            resid_pdrop=c.dropout,
            embd_pdrop=c.dropout,
            attn_pdrop=c.dropout,
            activation_function="gelu_new",
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=c.tie_weights,
            bos_token_id=None,
            eos_token_id=None,
        )
        hf = GPT2LMHeadModel(hf_config)
        ours = self.state_dict()
        state = {}
        for name, tensor in hf.state_dict().items():
            if name in ours:
                value = ours[name]
                state[name] = value.t() if name.endswith(_HF_CONV1D) else value
            elif name.endswith(".bias") and name.removesuffix(".bias") + ".weight" in ours:
                state[name] = torch.zeros_like(tensor)  # bias=False: HF's biases are zero
            else:
                state[name] = tensor  # buffers such as the causal mask
        hf.load_state_dict(state)
        return hf.to(self.lm_head.weight.device).eval()
