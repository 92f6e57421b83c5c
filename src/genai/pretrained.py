"""``save_pretrained`` / ``from_pretrained``: a model folder over the run-directory contract.

Every model class mixes in :class:`Pretrained` and names two things: ``kind`` (its registry
name, stored in ``config.json``) and ``config_class`` (its config dataclass). A saved folder
holds ``config.json`` and ``model.safetensors`` (and a GPT's tokenizer inside ``config.json``):
it is a run directory without resume state, so :func:`genai.load` reads both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from genai.core import checkpoint
from genai.core.checkpoint import CONFIG, FILES, STATE, CheckpointError
from genai.core.device import resolve_device
from genai.core.fields import coerce_config
from genai.data.text import tokenizer_from_dict

MAX_PARAMETERS = 2**33  # 8.6G parameters (32 GiB in fp32): a larger config is refused


def build(model_cls: type[nn.Module], fields: Any = None) -> nn.Module:
    """``model_cls`` built from its config (a config, a dict of its fields, or None).

    The model is first built on the ``meta`` device (no memory), so that a config whose size is
    absurd is a ``ValueError`` naming the parameter count instead of an allocation failure.

    Raises:
        ValueError: invalid config, or more than ``MAX_PARAMETERS`` parameters.
        TypeError: a config field of the wrong type, or a field the config does not have.
    """
    config = coerce_config(fields, model_cls.config_class)  # a misspelled field is named
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in model_cls(config).parameters())
    except (RuntimeError, OverflowError, TypeError) as e:  # torch refuses sizes past int64
        reason = str(e).split(" Exception raised from")[0].splitlines()[0][:200]
        raise ValueError(f"{config} builds no model ({reason})") from None
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{model_cls.kind} config has {count:,} parameters, more than genai builds "
            f"({MAX_PARAMETERS:,})"
        )
    return model_cls(config)


def read_model(path: str | Path, model_cls: type[nn.Module], config: dict) -> nn.Module:
    """The model of checkpoint folder ``path`` whose ``config.json`` is ``config``, on CPU."""
    try:
        with torch.random.fork_rng(devices=[]):  # its random init is overwritten: leave the RNG
            model = build(model_cls, config["model_config"])
    except (TypeError, ValueError, RuntimeError, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{path}: invalid model config in {CONFIG} ({e})") from e
    model._load_weights(path, config)
    model.init_from = {"source": str(Path(path).resolve()), "kind": "genai", "step": config["step"]}
    if isinstance(config.get("init"), dict):  # where that run started, in turn
        model.init_from["init"] = config["init"]
    if config.get("tokenizer") is not None:
        try:
            model.tokenizer = tokenizer_from_dict(config["tokenizer"])
        except (KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{Path(path) / CONFIG}: invalid tokenizer ({e})") from e
    return model


class Pretrained:
    """``save_pretrained`` / ``from_pretrained`` for a model class (see the module docstring)."""

    kind: ClassVar[str]  # the registry name, stored in config.json
    config_class: ClassVar[type]  # the config dataclass

    def save_pretrained(self, path: str | Path) -> Path:
        """Write the model (and its tokenizer, if it has one) to folder ``path``.

        A folder holding a saved model is replaced whole (crash-consistently); a folder
        holding a training run (with resume state or metrics) or other files named like
        genai's is refused, so that nothing is lost.

        Raises:
            FileExistsError: ``path`` holds a training run or files genai did not write.
        """
        if not str(path).strip():
            raise ValueError("save_pretrained needs a folder name, got an empty path")
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{str(path)!r} is a file; save_pretrained needs a folder")
        saved = checkpoint.is_run_dir(path)
        if saved and ((path / STATE).exists() or (path / "metrics.jsonl").exists()):
            raise FileExistsError(
                f"{str(path)!r} holds a training run; save_pretrained into another folder"
            )
        if not saved and any((path / name).exists() for name in FILES):
            raise FileExistsError(f"{str(path)!r} holds files genai did not write")
        tokenizer = getattr(self, "tokenizer", None)
        extra = {"tokenizer": tokenizer.to_dict()} if tokenizer is not None else {}
        if getattr(self, "lora", None) is not None:  # adapters kept separate (genai.gpt.lora)
            extra["lora"] = self.lora
        path.mkdir(parents=True, exist_ok=True)
        with checkpoint.run_lock(path):
            checkpoint.save_checkpoint(path, self, self.kind, step=0, extra=extra)
        return path

    def _load_weights(self, path: str | Path, config: dict) -> None:
        """Read the weights of checkpoint folder ``path`` (``config.json``: ``config``) into the
        model; a class may add to it (the GPT's LoRA adapters)."""
        checkpoint.load_weights(path, self, config)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "auto"):
        """Load a model saved by :meth:`save_pretrained` or trained into a run directory.

        Returns it in eval mode on ``device`` (``"auto"``: CUDA, then MPS, then CPU).

        Raises:
            CheckpointError: ``path`` is not a genai checkpoint, or holds another kind of model.
        """
        device = resolve_device(device)

        def read() -> nn.Module:
            config = checkpoint.read_config(path)
            if config["kind"] != cls.kind:
                raise CheckpointError(
                    f"{path} holds a {config['kind'].upper()} ({config['kind']!r}), not a "
                    f"{cls.__name__}"
                )
            return read_model(path, cls, config)

        return checkpoint.consistent(path, read).to(device).eval()
