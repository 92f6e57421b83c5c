"""The Llama family (``LlamaForCausalLM``, ``Qwen2ForCausalLM``) in genai's GPT, both ways.

A Llama is genai's GPT with rotary embeddings (``pos_emb="rope"``, ``rope_theta``), RMSNorm
(``norm="rmsnorm"``, ``norm_eps``), a SwiGLU MLP (``mlp="swiglu"``, ``mlp_hidden``), no biases
(``bias=False``), grouped-query attention (``n_kv_head``) and a tied or untied head; Qwen2 adds
biases on q/k/v (``qkv_bias=True``). The weights map one to one after two concatenations:
``q_proj``, ``k_proj``, ``v_proj`` are ``attn.c_attn``, ``gate_proj``, ``up_proj`` are
``mlp.c_fc``. A config the layout cannot hold is refused by :func:`config_fields`.
"""

from __future__ import annotations

from typing import Any

import torch

MODEL_TYPES = ("llama", "qwen2")

# The Llama family's value of every layout option of GPTConfig.
LLAMA_LAYOUT = {
    "pos_emb": "rope",
    "norm": "rmsnorm",
    "qk_norm": False,
    "mlp": "swiglu",
    "bias": False,
    "logit_softcap": 0.0,
}

# Mixture-of-experts fields (Mixtral, Qwen2-MoE, DeepSeek, ...): any of them set is refused.
_MOE_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_intermediate_size")


def non_llama_options(config: Any) -> list[str]:
    """The options of a ``GPTConfig`` set away from the Llama family's, as ``name=value``."""
    return [
        f"{name}={getattr(config, name)!r}"
        for name, value in LLAMA_LAYOUT.items()
        if getattr(config, name) != value
    ]


def _rope(c: Any) -> tuple[float, dict]:
    """The RoPE base of a Hugging Face config and the rest of its rope parameters."""
    params = dict(getattr(c, "rope_parameters", None) or getattr(c, "rope_scaling", None) or {})
    theta = params.pop("rope_theta", getattr(c, "rope_theta", 10000.0))
    return float(theta), params


def _refuse(c: Any) -> None:
    """Raise a one-line ``ValueError`` naming the first field of ``c`` the layout cannot hold."""
    heads, hidden = c.num_attention_heads, c.hidden_size
    _, rope = _rope(c)
    if rope.get("rope_type", rope.get("type", "default")) != "default" or len(
        set(rope) - {"rope_type", "type"}
    ):
        raise ValueError(f"rope_scaling must be None (plain RoPE), got {rope}")
    if getattr(c, "partial_rotary_factor", 1.0) not in (None, 1.0):
        raise ValueError(f"partial_rotary_factor must be 1.0, got {c.partial_rotary_factor}")
    if c.hidden_act != "silu":
        raise ValueError(f"hidden_act must be 'silu' (SwiGLU), got {c.hidden_act!r}")
    head_dim = getattr(c, "head_dim", None)
    if head_dim not in (None, hidden // heads) or hidden % heads:
        raise ValueError(
            f"head_dim must be hidden_size / num_attention_heads = {hidden / heads:g}, got {head_dim}"
        )
    if getattr(c, "attention_bias", False):
        raise ValueError("attention_bias must be False (genai has no bias on o_proj)")
    if getattr(c, "mlp_bias", False):
        raise ValueError("mlp_bias must be False (genai's SwiGLU MLP has no biases)")
    if getattr(c, "use_sliding_window", False):
        raise ValueError("use_sliding_window must be False (sliding-window attention)")
    layer_types = set(getattr(c, "layer_types", None) or ["full_attention"])
    if layer_types != {"full_attention"}:
        raise ValueError(f"layer_types must all be 'full_attention', got {sorted(layer_types)}")
    for name in _MOE_FIELDS:
        if getattr(c, name, None):
            raise ValueError(f"{name} must be unset (mixture-of-experts), got {getattr(c, name)}")


def config_fields(c: Any) -> dict[str, Any]:
    """The ``GPTConfig`` fields of a Hugging Face ``LlamaConfig`` or ``Qwen2Config``.

    Raises:
        ValueError: a field the layout cannot hold (the message names it).
    """
    _refuse(c)
    theta, _ = _rope(c)
    return {
        "vocab_size": c.vocab_size,
        "block_size": c.max_position_embeddings,
        "n_layer": c.num_hidden_layers,
        "n_head": c.num_attention_heads,
        "n_kv_head": c.num_key_value_heads or c.num_attention_heads,
        "n_embd": c.hidden_size,
        "dropout": float(getattr(c, "attention_dropout", 0.0)),
        "tie_weights": c.tie_word_embeddings,
        "rope_theta": theta,
        "norm_eps": c.rms_norm_eps,
        "mlp_hidden": c.intermediate_size,
        "qkv_bias": c.model_type == "qwen2",
        **LLAMA_LAYOUT,
    }


def state_from_hf(hf: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """genai's state dict of a Llama's (or Qwen2's) ``hf`` state dict."""
    state = {
        "transformer.wte.weight": hf["model.embed_tokens.weight"],
        "transformer.ln_f.weight": hf["model.norm.weight"],
        "lm_head.weight": hf[
            "model.embed_tokens.weight" if config.tie_weights else "lm_head.weight"
        ],
    }
    for i in range(config.n_layer):
        a, b = f"model.layers.{i}.", f"transformer.h.{i}."
        qkv = [f"{a}self_attn.{x}_proj" for x in "qkv"]
        state[b + "attn.c_attn.weight"] = torch.cat([hf[n + ".weight"] for n in qkv])
        if config.qkv_bias:
            state[b + "attn.c_attn.bias"] = torch.cat([hf[n + ".bias"] for n in qkv])
        state[b + "attn.c_proj.weight"] = hf[a + "self_attn.o_proj.weight"]
        state[b + "ln_1.weight"] = hf[a + "input_layernorm.weight"]
        state[b + "ln_2.weight"] = hf[a + "post_attention_layernorm.weight"]
        gate_up = [hf[f"{a}mlp.{x}_proj.weight"] for x in ("gate", "up")]
        state[b + "mlp.c_fc.weight"] = torch.cat(gate_up)
        state[b + "mlp.c_proj.weight"] = hf[a + "mlp.down_proj.weight"]
    return state


def state_to_hf(ours: dict[str, torch.Tensor], config: Any) -> dict[str, torch.Tensor]:
    """The Hugging Face state dict of genai's Llama-layout state dict ``ours``."""
    C, kv = config.n_embd, config.kv_heads * config.head_dim
    state = {
        "model.embed_tokens.weight": ours["transformer.wte.weight"],
        "model.norm.weight": ours["transformer.ln_f.weight"],
        "lm_head.weight": ours["lm_head.weight"],
    }
    for i in range(config.n_layer):
        a, b = f"model.layers.{i}.", f"transformer.h.{i}."
        names = [f"{a}self_attn.{x}_proj" for x in "qkv"]
        for suffix in (".weight", ".bias") if config.qkv_bias else (".weight",):
            parts = ours[b + "attn.c_attn" + suffix].split([C, kv, kv])
            state.update({n + suffix: p for n, p in zip(names, parts, strict=True)})
        state[a + "self_attn.o_proj.weight"] = ours[b + "attn.c_proj.weight"]
        state[a + "input_layernorm.weight"] = ours[b + "ln_1.weight"]
        state[a + "post_attention_layernorm.weight"] = ours[b + "ln_2.weight"]
        gate, up = ours[b + "mlp.c_fc.weight"].chunk(2)
        state[a + "mlp.gate_proj.weight"], state[a + "mlp.up_proj.weight"] = gate, up
        state[a + "mlp.down_proj.weight"] = ours[b + "mlp.c_proj.weight"]
    return state


def hf_model(config: Any) -> Any:
    """An untrained ``LlamaForCausalLM`` (or, with ``qkv_bias``, ``Qwen2ForCausalLM``) of the
    size of ``config`` (a Llama-layout ``GPTConfig``)."""
    import transformers

    fields = dict(
        vocab_size=config.vocab_size,
        hidden_size=config.n_embd,
        intermediate_size=config.mlp_width,
        num_hidden_layers=config.n_layer,
        num_attention_heads=config.n_head,
        num_key_value_heads=config.kv_heads,
        max_position_embeddings=config.block_size,
        rms_norm_eps=config.norm_eps or 1e-6,
        rope_theta=config.rope_theta,
        hidden_act="silu",
        attention_dropout=config.dropout,
        tie_word_embeddings=config.tie_weights,
        bos_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
    )
    if config.qkv_bias:
        hf_config = transformers.Qwen2Config(**fields, use_sliding_window=False)
        return transformers.Qwen2ForCausalLM(hf_config)
    hf_config = transformers.LlamaConfig(
        **fields, head_dim=config.head_dim, attention_bias=False, mlp_bias=False
    )
    return transformers.LlamaForCausalLM(hf_config)
