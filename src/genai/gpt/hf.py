"""Hugging Face import and export: ``GPT.from_huggingface`` and ``GPT.to_huggingface``.

GPT-2 (``GPT2LMHeadModel``, here) and the Llama family (``LlamaForCausalLM``,
``Qwen2ForCausalLM``: :mod:`genai.gpt.hf_llama`). Module names of :class:`genai.gpt.model.GPT`
follow ``GPT2LMHeadModel``'s, so GPT-2's weights map one to one; the only change is the
transpose of the Linear layers Hugging Face stores as ``Conv1D``. ``transformers`` is an optional
dependency, imported when one of these is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from genai.core.checkpoint import is_run_dir
from genai.data.text import BPETokenizer
from genai.gpt import hf_llama, lora

# The Linear layers Hugging Face stores as Conv1D, i.e. with the weight transposed to (in, out).
_HF_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

# GPT-2's value of every layout option; a model that differs cannot be exported to Hugging Face.
_GPT2_LAYOUT = {
    "pos_emb": "learned",
    "norm": "layernorm",
    "qk_norm": False,
    "mlp": "gelu",
    "logit_softcap": 0.0,
}


def non_gpt2_options(config: Any) -> list[str]:
    """The options of a ``GPTConfig`` set away from GPT-2's values, as ``name=value`` strings."""
    options = [
        f"{name}={getattr(config, name)!r}"
        for name, value in _GPT2_LAYOUT.items()
        if getattr(config, name) != value
    ]
    defaults = {"n_kv_head": config.n_head, "norm_eps": 1e-5, "mlp_hidden": 4 * config.n_embd}
    for name, value in defaults.items():
        if getattr(config, name) not in (None, value):
            options.append(f"{name}={getattr(config, name)!r}")
    return options


def _model_class(model_type: str) -> Any:
    """The ``transformers`` class of a ``model_type`` genai imports; refuses the others."""
    import transformers

    classes = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
    if model_type not in classes:
        raise ValueError(
            f"model_type must be one of {', '.join(map(repr, classes))}, got {model_type!r}"
        )
    return getattr(transformers, classes[model_type])


def config_fields(hf_config: Any) -> dict[str, Any]:
    """The :class:`GPTConfig` fields of a Hugging Face model config; refuses what the layout
    cannot hold (a one-line ``ValueError`` naming the field)."""
    model_type = getattr(hf_config, "model_type", None)
    _model_class(model_type)
    if model_type == "gpt2":
        return _gpt2_fields(hf_config)
    return hf_llama.config_fields(hf_config)


def _load_folder(path: Path) -> tuple[Any, BPETokenizer | None]:
    """The Hugging Face model of a local folder (never downloaded) and its tokenizer, if any.

    The config is checked before any weight is read.
    """
    from transformers import AutoConfig

    if not path.is_dir():
        raise ValueError(f"{str(path)!r} is not a folder with a Hugging Face model")
    if is_run_dir(path):
        raise ValueError(
            f"{str(path)!r} holds a genai model, not a Hugging Face one: load it with "
            "genai.load (or GPT.from_pretrained)"
        )
    hf_config = AutoConfig.from_pretrained(path, local_files_only=True)
    config_fields(hf_config)
    tokenizer = BPETokenizer.from_folder(path)
    model_class = _model_class(hf_config.model_type)
    return model_class.from_pretrained(path, local_files_only=True), tokenizer


def _gpt2_fields(c: Any) -> dict[str, Any]:
    """The :class:`GPTConfig` fields of a Hugging Face ``GPT2Config``; refuses other layouts."""
    if c.activation_function not in ("gelu_new", "gelu_pytorch_tanh"):
        raise ValueError(f"unsupported GPT-2 activation {c.activation_function!r}")
    if not c.scale_attn_weights or c.scale_attn_by_inverse_layer_idx:
        raise ValueError("only GPT-2's standard 1/sqrt(head_dim) attention scaling is supported")
    if c.layer_norm_epsilon != 1e-5:
        raise ValueError(f"only GPT-2's layer_norm_epsilon 1e-5, got {c.layer_norm_epsilon}")
    if c.n_inner not in (None, 4 * c.n_embd):
        raise ValueError(f"only GPT-2's MLP width 4 * n_embd = {4 * c.n_embd}, got {c.n_inner}")
    return {
        "vocab_size": c.vocab_size,
        "block_size": c.n_positions,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_embd": c.n_embd,
        "dropout": c.resid_pdrop,
        "bias": True,
        "tie_weights": c.tie_word_embeddings,
    }


def from_huggingface(cls: type[nn.Module], model_or_dir: Any) -> Any:
    """A ``cls`` (the GPT class) with the weights of a ``transformers`` GPT-2, Llama or Qwen2
    causal LM (or a local folder of one); see ``GPT.from_huggingface``."""
    tokenizer, source = None, None
    with torch.random.fork_rng(devices=[]):  # random inits, overwritten: leave the RNG alone
        if isinstance(model_or_dir, (str, Path)):
            source = str(Path(model_or_dir).resolve())
            model_or_dir, tokenizer = _load_folder(Path(model_or_dir))
        hf = model_or_dir
        model = cls(config_fields(hf.config))
    hf_state = hf.state_dict()
    if hf.config.model_type != "gpt2":
        state = hf_llama.state_from_hf(hf_state, model.config)
    else:
        state = {}
        for name in model.state_dict():
            tensor = hf_state[name]
            state[name] = tensor.t() if name.endswith(_HF_CONV1D) else tensor
    model.load_state_dict(state)
    model.init_from = {
        "source": source or getattr(hf.config, "name_or_path", None) or None,
        "kind": "huggingface",
        "model_type": hf.config.model_type,
    }
    if tokenizer is not None:
        model.tokenizer = tokenizer
    return model.to(next(hf.parameters()).device).eval()


def to_huggingface(model: nn.Module) -> Any:
    """``model`` (a GPT) as a ``transformers`` GPT-2, Llama or Qwen2 model (whichever holds its
    layout); see ``GPT.to_huggingface``."""
    if lora.has_adapters(model):
        raise ValueError(
            "to_huggingface exports a plain model and this GPT has LoRA adapters: merge them "
            "first (genai.gpt.lora.merge(model))"
        )
    c = model.config
    gpt2, llama = non_gpt2_options(c), hf_llama.non_llama_options(c)
    if not gpt2:
        return _to_gpt2(model)
    if llama:
        raise ValueError(
            f"to_huggingface needs GPT-2's layout (this model has {', '.join(gpt2)}) or the "
            f"Llama family's (this model has {', '.join(llama)})"
        )
    hf = hf_llama.hf_model(c)
    hf.load_state_dict(hf_llama.state_to_hf(model.state_dict(), c))
    return hf.to(model.lm_head.weight.device).eval()


def _to_gpt2(model: nn.Module) -> Any:
    """``model`` (a GPT of GPT-2's layout) as a ``transformers.GPT2LMHeadModel``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.config
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
    ours = model.state_dict()
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
    return hf.to(model.lm_head.weight.device).eval()
