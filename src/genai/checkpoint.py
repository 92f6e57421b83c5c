"""The one save/load contract: a run directory.

A run directory holds::

    config.json          model kind, model config, train config, tokenizer, library version, step
    model.safetensors    the model's weights (tied weights handled by safetensors' save_model)
    state.pt             resume state: optimizers, schedulers, grad scalers, step, RNG states
    metrics.jsonl        one JSON line per log / eval step
    samples/             sample images (or text) written during training

Every file is written to a temporary name and renamed into place, so a kill never leaves a torn
file. The three checkpoint files all record the step; a mismatch (a kill between two renames) is
reported instead of resuming from inconsistent parts. Nothing is ever unpickled:
``state.pt`` is read with ``torch.load(weights_only=True)``, and the weights come from safetensors.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model

CONFIG, WEIGHTS, STATE = "config.json", "model.safetensors", "state.pt"
FORMAT = "genai-run"


class CheckpointError(ValueError):
    """A path is not a genai run directory, or its files are corrupt or inconsistent."""


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename the temporary file onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(
    run_dir: str | Path,
    model: torch.nn.Module,
    kind: str,
    step: int,
    train_config: Any = None,
    state: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write ``model.safetensors``, then ``state.pt`` (if given), then ``config.json``.

    Args:
        run_dir: the run directory (created if missing).
        model: an ``nn.Module`` with a ``config`` dataclass; compiled modules are unwrapped.
        kind: the registry name of the model (``"vae"``, ``"gan"``, ``"gpt"``).
        step: the training step the weights belong to.
        train_config: the training config dataclass (or dict), stored for reference and resume.
        state: resume state for ``state.pt``; tensors, numbers, strings, lists and dicts only.
        extra: more JSON-able entries for ``config.json`` (e.g. ``{"tokenizer": {...}}``).
    """
    from genai import __version__

    run_dir = Path(run_dir)
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    atomic_write(
        run_dir / WEIGHTS,
        lambda tmp: save_model(model, tmp, metadata={"format": FORMAT, "step": str(step)}),
    )
    if state is not None:
        atomic_write(run_dir / STATE, lambda tmp: torch.save({**state, "step": step}, tmp))
    if train_config is not None and not isinstance(train_config, dict):
        train_config = asdict(train_config)
    config = {
        "format": FORMAT,
        "genai_version": __version__,
        "kind": kind,
        "step": step,
        "model_config": asdict(model.config),
        "train_config": train_config,
        **(extra or {}),
    }
    atomic_write(
        run_dir / CONFIG,
        lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"),
    )


def load_config(run_dir: str | Path) -> dict:
    """Read and check ``config.json`` of a run directory.

    Raises:
        CheckpointError: the folder or its ``config.json`` is missing or not a genai run.
    """
    run_dir = Path(run_dir)
    path = run_dir / CONFIG
    if not run_dir.is_dir():
        raise CheckpointError(f"{str(run_dir)!r} is not a directory")
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a genai run directory (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a genai run config (no 'format': '{FORMAT}')")
    for key in ("kind", "model_config", "step"):
        if key not in config:
            raise CheckpointError(f"{path}: missing field {key!r}")
    return config


def _weights_step(path: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT or "step" not in meta:
        raise CheckpointError(f"{path}: not written by genai (no genai metadata)")
    return int(meta["step"])


def build_model(config: dict) -> torch.nn.Module:
    """Instantiate the model a run's config describes (random weights)."""
    from genai.models import get_model

    return get_model(config["kind"], **config["model_config"])


def load_weights(run_dir: str | Path, model: torch.nn.Module, config: dict | None = None) -> None:
    """Load ``model.safetensors`` into ``model`` in place, checking it matches ``config``'s step."""
    run_dir = Path(run_dir)
    config = config or load_config(run_dir)
    path = run_dir / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} has no {WEIGHTS}")
    step = _weights_step(path)
    if step != config["step"]:
        raise CheckpointError(
            f"{run_dir}: {WEIGHTS} is from step {step} but {CONFIG} says {config['step']} "
            "(an interrupted save); the run cannot be loaded consistently"
        )
    try:
        load_model(getattr(model, "_orig_mod", model), str(path), strict=True)
    except (SafetensorError, RuntimeError) as e:
        raise CheckpointError(f"{path}: weights do not match the model in {CONFIG} ({e})") from e


def load(run_dir: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Load the model of a run directory, in eval mode, ready for ``.sample()``/``.generate()``.

    A language-model run also gets its tokenizer back as ``model.tokenizer``.

    Raises:
        CheckpointError: not a genai run, corrupt or inconsistent files.
    """
    from genai.device import resolve_device

    config = load_config(run_dir)
    try:
        model = build_model(config)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{run_dir}: invalid model config ({e})") from e
    load_weights(run_dir, model, config)
    if config.get("tokenizer") is not None:
        from genai.data.text import tokenizer_from_dict

        model.tokenizer = tokenizer_from_dict(config["tokenizer"])
    return model.to(resolve_device(device)).eval()


def load_state(run_dir: str | Path, config: dict | None = None) -> dict:
    """Read ``state.pt`` with ``weights_only=True`` (no code can run) and check its step."""
    run_dir = Path(run_dir)
    config = config or load_config(run_dir)
    path = run_dir / STATE
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} has no {STATE}: it cannot be resumed")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-running pickles, others for corrupt files
        raise CheckpointError(
            f"{path}: refused to load ({type(e).__name__}: {str(e).splitlines()[0]})"
        ) from e
    if not isinstance(state, dict) or state.get("step") != config["step"]:
        raise CheckpointError(
            f"{path}: resume state is from step {state.get('step') if isinstance(state, dict) else '?'}"
            f" but {CONFIG} says {config['step']} (an interrupted save)"
        )
    return state
