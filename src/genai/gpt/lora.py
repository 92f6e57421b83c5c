"""LoRA for the GPT (Hu et al. 2021), through ``peft``, and the memory options of fine-tuning.

``GPTTrainConfig(lora_rank=8)`` freezes every weight of the model and adds to each target Linear
(``lora_targets``, default the attention's ``attn.c_attn`` (q, k, v) and ``attn.c_proj``) a
low-rank update ``(alpha / rank) * B A``, with ``A`` random and ``B`` zero at the start, so the
model starts as it was. Only ``A`` and ``B`` train (and sit in the optimizer). The adapters are
``peft``'s own (``peft.LoraConfig``, ``peft.inject_adapter_in_model`` on genai's modules), so
their initialization, dropout and merge are the field's.

A run's ``model.safetensors`` holds the frozen base and the adapters apart (what resume needs,
bit-exact) and ``config.json`` holds :func:`settings` as ``"lora"``. With ``lora_merge=True``
(the default) the run gives back a plain GPT: :func:`genai.load` merges the adapters into the
base (``W + (alpha / rank) B A``), and so does ``train_gpt`` with the model it trained; then
``to_huggingface`` exports a plain model. With ``lora_merge=False`` both give the GPT with its
adapters (``model.lora`` holds their settings; ``save_pretrained`` keeps them separate too);
:func:`merge` merges them later.

The memory options (applied by the task, not part of the model): ``grad_checkpoint`` recomputes
each block's activations in the backward pass (:attr:`GPT.grad_checkpoint`), and
``weights_dtype="bf16"`` stores the frozen weights in bf16 while the adapters and their
optimizer state stay fp32.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genai.core import checkpoint

# The Linear layers of a block that can carry an adapter (q, k, v are one layer: attn.c_attn).
TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
ATTENTION = ("attn.c_attn", "attn.c_proj")
WEIGHTS_DTYPES = ("fp32", "bf16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
_KEYS = ("rank", "alpha", "dropout", "targets", "merge")


def _peft() -> Any:
    try:
        import peft
    except ImportError as e:
        raise ValueError("lora_rank > 0 needs the peft package: pip install 'genai[lora]'") from e
    return peft


def settings(config: Any) -> dict | None:
    """The LoRA settings of a ``GPTTrainConfig`` as ``config.json`` records them (None: no
    LoRA, ``lora_rank=0``)."""
    if config.lora_rank == 0:
        return None
    return {
        "rank": config.lora_rank,
        "alpha": config.lora_alpha,
        "dropout": config.lora_dropout,
        "targets": list(config.lora_targets),
        "merge": config.lora_merge,
    }


def check_config(config: Any) -> None:
    """The rules of a ``GPTTrainConfig``'s LoRA and memory fields that tie fields together."""
    targets = config.lora_targets
    if len(set(targets)) != len(targets):
        raise ValueError(f"lora_targets must name each module once, got {list(targets)}")
    if config.weights_dtype != "fp32" and config.lora_rank == 0:
        raise ValueError(
            f"weights_dtype={config.weights_dtype!r} needs lora_rank > 0 (it stores the frozen "
            "weights in bf16; full fine-tuning keeps fp32 weights: use precision='bf16')"
        )
    if config.lora_rank and config.optimizer != "adamw":
        raise ValueError(
            f"lora_rank > 0 trains the adapters with optimizer='adamw', got {config.optimizer!r}"
        )


def has_adapters(model: nn.Module) -> bool:
    """Whether ``model`` holds LoRA layers (genai's or anyone's peft adapters)."""
    return getattr(model, "lora", None) is not None or any(
        hasattr(m, "lora_A") for m in model.modules()
    )


def add(model: nn.Module, lora: dict) -> nn.Module:
    """Add LoRA adapters of ``lora`` (:func:`settings`) to ``model`` in place and freeze every
    other weight (peft's ``inject_adapter_in_model``); the adapters are fp32 whatever the
    base's dtype, and ``model.lora`` records them."""
    peft = _peft()
    if has_adapters(model):
        raise ValueError("the model has LoRA adapters already: merge them first (lora.merge)")
    config = peft.LoraConfig(
        r=lora["rank"],
        lora_alpha=lora["alpha"],
        lora_dropout=lora["dropout"],
        target_modules=list(lora["targets"]),
        bias="none",
    )
    peft.inject_adapter_in_model(config, model)
    model.__dict__.pop("peft_config", None)  # peft's note of its config: ours is model.lora
    with torch.no_grad():  # peft gives the adapters the base's dtype: they train in fp32
        for p in model.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    model.lora = {k: lora[k] for k in _KEYS}
    return model


def merge(model: nn.Module) -> nn.Module:
    """Merge the LoRA adapters of ``model`` into its weights, in place: each adapted Linear
    becomes a plain ``nn.Linear`` again (``W + (alpha / rank) B A``, in the weights' dtype),
    every weight trainable, ``model.lora`` gone. Returns ``model``."""
    for name, module in list(model.named_modules()):
        if hasattr(module, "lora_A") and hasattr(module, "get_base_layer"):
            module.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent), child, module.get_base_layer())
    model.__dict__.pop("lora", None)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def trainable_params(model: nn.Module) -> int:
    """The number of parameters that train (each shared tensor once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def cast_frozen(model: nn.Module, dtype: torch.dtype) -> None:
    """Store the frozen parameters of ``model`` in ``dtype`` (a tied weight stays one tensor;
    buffers such as the rotary angles keep theirs)."""
    with torch.no_grad():
        for p in model.parameters():
            if not p.requires_grad:
                p.data = p.data.to(dtype)


def prepare(model: nn.Module, config: Any, device: torch.device) -> None:
    """The task's part (before the model moves to ``device``): adapters, the frozen weights'
    dtype, activation checkpointing; a resumed run keeps its adapters' shape."""
    lora = settings(config)
    if config.resume:
        _check_resume(Path(config.out_dir), lora)
    if lora is not None:
        add(model, lora)
    if config.weights_dtype == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"weights_dtype='bf16': {device} has no bf16; use 'fp32'")
        cast_frozen(model, _DTYPES[config.weights_dtype])
    model.grad_checkpoint = config.grad_checkpoint


def finish(model: nn.Module, config: Any) -> None:
    """After training: the model as :func:`genai.load` gives the run back (fp32 weights; the
    adapters merged unless ``lora_merge=False``)."""
    if config.lora_rank == 0:
        return
    cast_frozen(model, torch.float32)
    if config.lora_merge:
        merge(model)


def _check_resume(run_dir: Path, lora: dict | None) -> None:
    """Refuse a resume that changes the adapters' shape (the checkpoint holds the old one)."""
    try:
        saved = checkpoint.load_config(run_dir).get("lora")
    except checkpoint.CheckpointError:
        return  # the engine's own checks say what is wrong with the run
    then = (saved["rank"], saved["targets"]) if isinstance(saved, dict) else (0, None)
    now = (lora["rank"], lora["targets"]) if lora else (0, None)
    for name, a, b in zip(("lora_rank", "lora_targets"), then, now, strict=True):
        if a != b:
            raise ValueError(
                f"{name} cannot change when resuming ({run_dir} was trained with {a!r}, got "
                f"{b!r}): its checkpoint holds adapters of that shape"
            )


def record(model: nn.Module) -> dict:
    """What ``config.json`` records of the model's training: its LoRA settings (if any) and the
    count of trainable parameters."""
    extra = {"trainable_params": trainable_params(model)}
    if getattr(model, "lora", None) is not None:
        extra["lora"] = model.lora
    return extra


def _checked(lora: Any, shown: Path) -> dict:
    """A ``config.json`` ``"lora"`` entry, checked (else a :class:`CheckpointError`)."""
    types = {"rank": int, "alpha": (int, float), "dropout": (int, float), "targets": list}
    ok = isinstance(lora, dict) and all(isinstance(lora.get(k), t) for k, t in types.items())
    if ok and lora["rank"] > 0 and set(lora["targets"]) <= set(TARGETS):
        return {**lora, "merge": bool(lora.get("merge", True))}
    raise checkpoint.CheckpointError(f"{shown}: invalid 'lora' entry {lora!r}")


def load_weights(model: nn.Module, path: Any, config: dict, load: Callable) -> None:
    """Read a checkpoint's weights into ``model`` (``GPT._load_weights``): with a ``"lora"``
    entry, the adapters are added first and merged after, unless the run keeps them separate."""
    if config.get("lora") is None:
        load(path, config)
        return
    lora = _checked(config["lora"], Path(path) / checkpoint.CONFIG)
    add(model, lora)
    load(path, config)
    if lora["merge"]:
        merge(model)
