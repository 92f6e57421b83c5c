"""A GPT-2-style decoder-only Transformer language model (its KV-cached sampler: decoding.py).

Layout (GPT-2, the default): token + learned position embeddings, ``n_layer`` pre-LayerNorm blocks
of causal self-attention and a 4x GELU MLP, a final LayerNorm, and an output head tied to the
token embedding. Module names follow Hugging Face's ``GPT2LMHeadModel`` so weights map one to one
(:meth:`GPT.from_huggingface`, :meth:`GPT.to_huggingface`).

:class:`GPTConfig` also has the options of newer small-model recipes (modded-nanogpt), each off by
default: rotary position embeddings, RMSNorm, QK-norm, a ReLU^2 or SwiGLU MLP, an untied head,
zero-initialized output projections, logit soft-capping. ``GPTConfig.recipe("modern")`` turns on
the combination measured best in docs/gpt.md. With grouped-query attention (``n_kv_head``), a RoPE
base, the norm's epsilon, an MLP width and q/k/v biases it also holds the Llama family's layout
(Llama, Qwen2: :mod:`genai.gpt.hf_llama`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from genai.core.fields import Config, check_fields, coerce_config, field
from genai.gpt import decoding, hf, lora, recipes
from genai.gpt.decoding import KVCache
from genai.gpt.sampling import SamplingConfig
from genai.pretrained import Pretrained

POS_EMBS = ("learned", "rope")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "relu2", "swiglu")


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
        n_kv_head: key/value heads; fewer than ``n_head`` (dividing it) is grouped-query
            attention. None: ``n_head``.
        rope_theta: the base of the rotary embedding's frequencies.
        norm_eps: the epsilon of every norm; None: 1e-5 for LayerNorm, 1e-6 for RMSNorm.
        mlp_hidden: the MLP's hidden width (of each half for SwiGLU); None: 4 * n_embd, or
            :func:`swiglu_width` for SwiGLU.
        qkv_bias: biases on the query, key and value projections only (Qwen2), with
            ``bias=False``.
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
    n_kv_head: int | None = field(None, gt=0, rule="a positive integer or None (= n_head)")
    rope_theta: float = field(10000.0, gt=0)
    norm_eps: float | None = field(None, gt=0, rule="> 0 or None (the norm's default)")
    mlp_hidden: int | None = field(None, gt=0, rule="a positive integer or None (the MLP's rule)")
    qkv_bias: bool = False

    @classmethod
    def recipe(cls, name: str, **overrides: Any) -> GPTConfig:
        """The model layout of a named recipe ("gpt2" or "modern"), with ``overrides`` applied.

        Example: ``GPTConfig.recipe("modern", n_layer=4, n_embd=128)``. The optimizer side of a
        recipe is ``GPTTrainConfig.recipe(name)``.
        """
        return cls(**recipes.recipe(name, "model", overrides))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if self.pos_emb == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(
                f"pos_emb='rope' needs an even head size, got n_embd/n_head = {self.head_dim}"
            )
        if self.n_head % self.kv_heads:
            raise ValueError(f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head})")
        if self.qkv_bias and self.bias:
            raise ValueError("qkv_bias=True needs bias=False (bias=True has q/k/v biases already)")

    @property
    def kv_heads(self) -> int:
        """Key/value heads: ``n_kv_head``, or ``n_head`` when it is None."""
        return self.n_kv_head or self.n_head

    @property
    def head_dim(self) -> int:
        """Channels per attention head: ``n_embd / n_head``."""
        return self.n_embd // self.n_head

    @property
    def mlp_width(self) -> int:
        """The MLP's hidden width (``mlp_hidden`` or its default)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return swiglu_width(self.n_embd) if self.mlp == "swiglu" else 4 * self.n_embd

    def non_gpt2_options(self) -> list[str]:
        """The layout options set away from GPT-2's values, as ``name=value`` strings."""
        return hf.non_gpt2_options(self)


def rms_norm(x: torch.Tensor) -> torch.Tensor:
    """RMS normalization over the last dimension, without a gain."""
    return F.rms_norm(x, (x.shape[-1],))


def norm_layer(config: GPTConfig) -> nn.Module:
    """The block's normalization: GPT-2's LayerNorm or RMSNorm (both with a gain)."""
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps or 1e-6)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps or 1e-5, bias=config.bias)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al. 2021) of ``(B, H, T, hd)`` queries or keys.

    Channel pairs ``(i, i + hd/2)`` are rotated by the angle ``pos * base^(-2i/hd)``, so the dot
    product of a query and a key depends on their positions only through their distance.
    """

    def __init__(self, head_dim: int, block_size: int, base: float = 10000.0):
        super().__init__()
        # Hugging Face's rounding of the frequencies (Llama, Qwen2), so that positions agree.
        freqs = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        angles = torch.outer(torch.arange(block_size, dtype=torch.float32), freqs)  # (T, hd/2)
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Rotate ``x`` ``(B, H, T, hd)`` at positions ``pos`` ``(T,)``."""
        cos, sin = self.cos[pos].to(x.dtype), self.sin[pos].to(x.dtype)  # (T, hd/2)
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention through ``F.scaled_dot_product_attention``.

    With ``n_kv_head < n_head`` (grouped-query attention) ``c_attn`` makes ``n_head`` query heads
    and ``n_kv_head`` key and value heads, each shared by ``n_head / n_kv_head`` query heads; the
    KV cache holds only those.
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, hd = config.n_head, config.kv_heads, config.head_dim
        self.dropout = config.dropout
        self.qk_norm = config.qk_norm
        qkv = config.n_embd + 2 * self.n_kv_head * hd
        self.c_attn = nn.Linear(config.n_embd, qkv, bias=config.bias or config.qkv_bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        rope = config.pos_emb == "rope"
        self.rotary = Rotary(hd, config.block_size, config.rope_theta) if rope else None

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
        hd, kv = C // self.n_head, self.n_kv_head
        q, k, v = self.c_attn(x).split([C, kv * hd, kv * hd], dim=2)
        q = q.view(B, T, self.n_head, hd).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, kv, hd).transpose(1, 2)  # (B, KV, T, hd)
        v = v.view(B, T, kv, hd).transpose(1, 2)  # (B, KV, T, hd)
        if self.qk_norm:
            q, k = rms_norm(q), rms_norm(k)
        if self.rotary is not None:
            q, k = self.rotary(q, pos), self.rotary(k, pos)
        mask, causal = None, True
        if cache is not None:
            k, v, mask, causal = cache.update(layer, k, v)  # (B, KV, S, hd) each
        dropout = self.dropout if self.training else 0.0
        gqa = {"enable_gqa": True} if kv < self.n_head else {}  # query head h reads h // (H/KV)
        if q.dtype == torch.bfloat16 and x.device.type == "cpu":
            # The CPU flash-attention backward is ~5x slower in bf16 than in fp32 (torch 2.14,
            # benchmarks/lm.py): attend in fp32 there, keep the matmuls around it in bf16.
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), mask, dropout, is_causal=causal, **gqa
                ).to(q.dtype)  # (B, H, T, hd)
        else:
            y = F.scaled_dot_product_attention(q, k, v, mask, dropout, is_causal=causal, **gqa)
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
        hidden = config.mlp_width
        fc_out = 2 * hidden if config.mlp == "swiglu" else hidden
        self.c_fc = nn.Linear(config.n_embd, fc_out, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, fc_out)
        if self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")
        elif self.kind == "relu2":
            # ReLU^2 as a product: fwd+bwd of (12, 64, 512) bf16 on a CPU 462 us, .square() 662
            h = F.relu(h)
            h = h * h
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

    kind = "gpt"
    config_class = GPTConfig
    grad_checkpoint = False  # recompute each block in backward (GPTTrainConfig.grad_checkpoint)

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
        for block in self.transformer.h:  # one table of rotary angles for every layer
            block.attn.rotary = self.transformer.h[0].attn.rotary
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

    def _load_weights(self, path: Any, config: dict) -> None:  # and LoRA adapters: gpt/lora.py
        lora.load_weights(self, path, config, super()._load_weights)

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
        try:
            x = self.transformer.wte(idx)  # (B, T, C)
        except IndexError:  # an id out of range, on CPU (CUDA asserts on the device instead)
            decoding.check_ids(idx, self.config.vocab_size)
            raise
        if "wpe" in self.transformer:
            x = x + self.transformer.wpe(pos)
        x = self.transformer.drop(x)
        for layer, block in enumerate(self.transformer.h):
            if self.grad_checkpoint and cache is None and torch.is_grad_enabled():
                x = checkpoint(block, x, None, layer, pos, use_reentrant=False)
            else:
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

    def new_cache(
        self, idx: torch.Tensor, static: bool = False, capacity: int | None = None
    ) -> KVCache:
        """An empty :class:`KVCache` for the rows of ``idx`` ``(B, T)``, in the compute dtype,
        holding ``capacity`` positions (default ``block_size``)."""
        dtype = self.transformer.wte.weight.dtype
        if torch.is_autocast_enabled(idx.device.type):
            dtype = torch.get_autocast_dtype(idx.device.type)
        return KVCache(self.config, idx.shape[0], idx.device, dtype, static, capacity)

    def stream(
        self, idx: torch.Tensor, max_new_tokens: int, sampling: SamplingConfig | None = None, **kw
    ) -> Iterator[torch.Tensor]:
        """Yield the new ``(B,)`` tokens one step at a time; arguments as in :meth:`generate`."""
        return decoding.stream(self, idx, max_new_tokens, sampling, **kw)

    def generate(
        self, idx: torch.Tensor, max_new_tokens: int, sampling: SamplingConfig | None = None, **kw
    ) -> torch.Tensor:
        """Sample a continuation of ``idx`` token by token (the loop is :mod:`genai.gpt.decoding`).

        A prompt longer than ``block_size`` is cropped to its last ``block_size`` tokens. Past
        ``block_size`` the context window slides: when it is full, its oldest ``window_shift``
        tokens are dropped. With the KV cache (default) the cache is rebuilt at each slide; the
        tokens equal those of ``use_cache=False``, which recomputes the same window every step.

        Args:
            idx: ``(B, T)`` prompt token ids, T >= 1.
            max_new_tokens: tokens to add, >= 0.
            sampling: how tokens are drawn (default ``SAMPLING``: temperature 0.8, top-p 0.95).

        Keyword Args:
            temperature: divides the logits; 0 means greedy (argmax).
            top_k: keep only the k most likely tokens.
            top_p: keep the smallest set of most likely tokens with probability >= top_p.
            valid_utf8: with a byte tokenizer, only bytes that keep each row valid UTF-8
                (default True; see :class:`~genai.gpt.sampling.Utf8Constraint`).
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
            tokenizer: the tokenizer of the ids (default ``model.tokenizer``); a byte tokenizer
                turns ``valid_utf8`` on.

        Returns:
            ``(B, T + n)`` the full prompt followed by the n <= max_new_tokens new tokens.
        """
        return decoding.generate(self, idx, max_new_tokens, sampling, **kw)

    @classmethod
    def from_huggingface(cls, model_or_dir: Any) -> GPT:
        """A GPT with the weights of a ``transformers`` ``GPT2LMHeadModel``, ``LlamaForCausalLM``
        or ``Qwen2ForCausalLM`` (or a local folder of one: ``config.json``, the weights).

        Loading from a folder never downloads (``local_files_only``). If the folder holds a
        ``tokenizer.json``, or GPT-2's ``vocab.json`` and ``merges.txt``, the tokenizer is
        attached as ``model.tokenizer``.

        Raises:
            ValueError: a config the layout cannot hold (rope scaling, sliding-window attention,
                mixture of experts, biases on o_proj or the MLP, ...); the message names the field.
        """
        return hf.from_huggingface(cls, model_or_dir)

    def to_huggingface(self) -> Any:
        """This model as a ``transformers`` model with equal logits: a ``GPT2LMHeadModel`` for
        GPT-2's layout, a ``LlamaForCausalLM`` for the Llama family's (``Qwen2ForCausalLM`` with
        ``qkv_bias``). Without biases (``bias=False``) a GPT-2 gets zero biases.

        Raises:
            ValueError: the layout is neither (the message names the options).
        """
        return hf.to_huggingface(self)
