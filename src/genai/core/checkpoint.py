"""The one save/load contract: a run directory, and checkpoints that are always whole.

A run directory holds::

    config.json          model kind, model config, train config, data, tokenizer, version, step
    model.safetensors    the model's weights (tied weights handled by safetensors' save_model)
    state.pt             resume state: optimizers, schedulers, grad scalers, step, RNG states
    metrics.jsonl        one JSON line per log / eval step
    samples/             sample images (or text) written during training

**Crash consistency.** The checkpoint files change together or not at all. A save writes the new
files and a ``MANIFEST`` naming them into ``.checkpoint-staging/`` and fsyncs them; renaming that folder to
``.checkpoint-commit/`` is the commit point (one atomic rename); only then are the files moved
over the old ones, and the folder removed. A reader resolves every checkpoint file through the
commit folder first, so whenever it is killed, a run directory shows one complete checkpoint:
the old one (nothing committed yet) or the new one (committed, perhaps not yet moved). The next
writer finishes a committed save and deletes an uncommitted one (:func:`recover`).

Nothing is ever unpickled: ``state.pt`` is read with ``torch.load(weights_only=True)`` and the
weights come from safetensors. Files are created with the user's umask.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, load_model, save_model

from genai.core import files
from genai.core.files import brief, fsync, fsync_dir, umask
from genai.version import __version__

CONFIG, WEIGHTS, STATE = "config.json", "model.safetensors", "state.pt"
FILES = (WEIGHTS, STATE, CONFIG)
STAGING, COMMIT, LOCK = ".checkpoint-staging", ".checkpoint-commit", ".lock"
MANIFEST = "MANIFEST"
ASIDE = ".previous-run"  # an overwritten run, kept until the new run's first checkpoint
FORMAT = "genai-run"
_TMP = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


class CheckpointError(ValueError):
    """A path is not a genai run directory, or its files are corrupt or inconsistent."""


class RunLockedError(RuntimeError):
    """Another process is training in the same run directory."""


def config_dict(
    model: torch.nn.Module,
    kind: str,
    step: int,
    train_config: Any = None,
    extra: dict | None = None,
) -> dict:
    """The ``config.json`` of a checkpoint of ``model`` at ``step``.

    A model that started from pretrained weights carries ``model.init_from`` (where they came
    from: ``{"source": ..., "kind": "huggingface" | "genai", ...}``), recorded as ``"init"``.
    """
    if train_config is not None and not isinstance(train_config, dict):
        train_config = asdict(train_config)
    init = getattr(model, "init_from", None)
    return {
        "format": FORMAT,
        "genai_version": __version__,
        "kind": kind,
        "step": step,
        "model_config": asdict(model.config),
        "train_config": train_config,
        **({"init": init} if init is not None else {}),
        **(extra or {}),
    }


def check_finite(model: torch.nn.Module) -> list[str]:
    """Names of the floating-point tensors of ``model`` that hold NaN or infinity."""
    return [
        name
        for name, t in model.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]


def save_checkpoint(
    run_dir: str | Path,
    model: torch.nn.Module,
    kind: str,
    step: int,
    train_config: Any = None,
    state: dict | None = None,
    extra: dict | None = None,
) -> None:
    """Write a whole checkpoint: weights, resume state (if given) and config, all or nothing.

    Args:
        run_dir: the run directory (created if missing).
        model: an ``nn.Module`` with a ``config`` dataclass; compiled modules are unwrapped.
        kind: the registry name of the model (``"vae"``, ``"gan"``, ``"gpt"``).
        step: the training step the weights belong to.
        train_config: the training config dataclass (or dict), stored for reference and resume.
        state: resume state for ``state.pt``; tensors, numbers, strings, lists and dicts only.
            Without it an older ``state.pt`` is removed (it would belong to another step).
        extra: more JSON-able entries for ``config.json`` (e.g. ``{"tokenizer": {...}}``).

    Raises:
        ValueError: the model's weights are not finite (such a checkpoint is never written).
    """
    run_dir = Path(run_dir)
    model = getattr(model, "_orig_mod", model)  # torch.compile wraps the module
    bad = check_finite(model)
    if bad:
        raise ValueError(f"not saving step {step}: non-finite values in {', '.join(bad[:3])}")
    config = config_dict(model, kind, step, train_config, extra)
    run_dir.mkdir(parents=True, exist_ok=True)
    recover(run_dir)
    staging = run_dir / STAGING
    staging.mkdir()
    save_model(model, str(staging / WEIGHTS), metadata={"format": FORMAT, "step": str(step)})
    if state is not None:
        torch.save({**state, "step": step}, staging / STATE)
    (staging / CONFIG).write_text(json.dumps(config, indent=2) + "\n")
    (staging / MANIFEST).write_text("\n".join(p.name for p in sorted(staging.iterdir())) + "\n")
    mode = 0o666 & ~umask()  # safetensors and torch.save may create files 0600
    for path in staging.iterdir():
        path.chmod(mode)
        fsync(path)
    fsync_dir(staging)
    files._replace(staging, run_dir / COMMIT)  # the commit point
    fsync_dir(run_dir)
    _finish_commit(run_dir)


def _manifest(commit: Path) -> list[str]:
    """The files of a committed checkpoint (a file not listed is removed when it completes)."""
    return (commit / MANIFEST).read_text().split()


def _finish_commit(run_dir: Path) -> None:
    """Move a committed checkpoint's files over the old ones, then drop the commit folder."""
    commit = run_dir / COMMIT
    if (commit / MANIFEST).exists():  # else a kill came after its files were all in place
        listed = _manifest(commit)
        for name in FILES:  # config.json last: a reader that sees it finds the rest beside it
            if name not in listed:
                (run_dir / name).unlink(missing_ok=True)  # e.g. state.pt of an older step
            elif (commit / name).exists():
                files._replace(commit / name, run_dir / name)
        fsync_dir(run_dir)
        (commit / MANIFEST).unlink()
    commit.rmdir()
    fsync_dir(run_dir)


def recover(run_dir: str | Path) -> None:
    """Finish a committed save and remove what an interrupted one left (staging, ``*.tmp``).

    Called by writers (training, saving) before they write; readers never change a run.
    """
    run_dir = Path(run_dir)
    if (run_dir / COMMIT).is_dir():
        _finish_commit(run_dir)
    if (run_dir / STAGING).is_dir():
        shutil.rmtree(run_dir / STAGING)
    for folder in (run_dir, run_dir / "samples"):
        if folder.is_dir():
            for path in folder.iterdir():
                if _TMP.match(path.name) and path.is_file():
                    path.unlink()


def _file(run_dir: Path, name: str) -> Path:
    """Where checkpoint file ``name`` of ``run_dir`` is now: a committed save's copy first."""
    commit = run_dir / COMMIT
    try:
        listed = _manifest(commit)
    except OSError:  # no save in progress
        if not (run_dir / CONFIG).exists() and (run_dir / ASIDE / CONFIG).exists():
            return run_dir / ASIDE / name  # an overwrite before its first checkpoint
        return run_dir / name
    return commit / name if name not in listed or (commit / name).exists() else run_dir / name


def _save_stamp(run_dir: Path) -> tuple:
    """What changes when a save commits: the commit folder and ``config.json``'s mtime."""
    try:
        mtime = (run_dir / CONFIG).stat().st_mtime_ns
    except OSError:
        mtime = None
    return (run_dir / COMMIT).exists(), mtime


def consistent(run_dir: str | Path, read: Callable[[], Any]) -> Any:
    """Run ``read``; if a save committed under it, read again (a save takes milliseconds)."""
    run_dir = Path(run_dir)
    for _ in range(50):
        before = _save_stamp(run_dir)
        try:
            return read()
        except (CheckpointError, FileNotFoundError):
            after = _save_stamp(run_dir)
            if before == after and not after[0]:
                raise
            time.sleep(0.02)
    return read()


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``run_dir/.lock`` exclusively: one training process per run directory.

    The operating system drops the lock when its process dies, so a crash never leaves a run
    locked. Where file locks are not available the lock is skipped.

    Raises:
        RunLockedError: another live process holds the lock.
    """
    path = Path(run_dir) / LOCK
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "?"
            raise RunLockedError(
                f"{run_dir} is in use by another genai process (pid {owner}); wait for it to "
                "finish or choose another --out-dir"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a genai checkpoint (a run or a saved model)."""
    try:
        read_config(path)
    except CheckpointError:
        return False
    return True


def read_config(run_dir: str | Path) -> dict:
    """Read and check ``config.json`` of a run directory (see :func:`load_config`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{str(run_dir)!r} is not a directory")
    path = _file(run_dir, CONFIG)
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} is not a genai run directory (no {CONFIG})")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{run_dir / CONFIG}: not valid JSON ({e})") from e
    except OSError as e:
        raise CheckpointError(f"{run_dir / CONFIG}: cannot be read ({e})") from e
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise CheckpointError(
            f"{run_dir / CONFIG}: not a genai run config (no 'format': '{FORMAT}')"
        )
    for key, kind in (("kind", str), ("model_config", dict), ("step", int)):
        if key not in config:
            raise CheckpointError(f"{run_dir / CONFIG}: missing field {key!r}")
        if not isinstance(config[key], kind) or isinstance(config[key], bool):
            raise CheckpointError(
                f"{run_dir / CONFIG}: field {key!r} must be a {kind.__name__}, got {config[key]!r}"
            )
    return config


def load_config(run_dir: str | Path) -> dict:
    """Read and check ``config.json`` of a run directory.

    Raises:
        CheckpointError: the folder or its ``config.json`` is missing, corrupt, or not a run.
    """
    return consistent(run_dir, lambda: read_config(run_dir))


def _weights_step(path: Path, shown: Path) -> int:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{shown}: not a readable safetensors file ({e})") from e
    if meta.get("format") != FORMAT or not str(meta.get("step", "")).isdigit():
        raise CheckpointError(f"{shown}: not written by genai (no genai metadata)")
    return int(meta["step"])


def load_weights(run_dir: str | Path, model: torch.nn.Module, config: dict | None = None) -> None:
    """Load ``model.safetensors`` into ``model`` in place, checking it matches ``config``'s step."""
    run_dir = Path(run_dir)
    path = _weights_file(run_dir, config or load_config(run_dir))
    try:
        load_model(getattr(model, "_orig_mod", model), str(path), strict=True)
    except (SafetensorError, RuntimeError) as e:
        raise CheckpointError(
            f"{run_dir / WEIGHTS}: weights do not match the model in {CONFIG} ({brief(e)})"
        ) from e
    bad = check_finite(model)
    if bad:
        raise CheckpointError(f"{run_dir / WEIGHTS}: non-finite values in {', '.join(bad[:3])}")


def read_weights(run_dir: str | Path, config: dict | None = None) -> dict[str, torch.Tensor]:
    """``model.safetensors`` as a state dict on the CPU (a tied tensor under one name), checked
    as :func:`load_weights` checks it: its step, and finite values."""
    run_dir = Path(run_dir)
    path = _weights_file(run_dir, config or load_config(run_dir))
    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{run_dir / WEIGHTS}: not readable ({brief(e)})") from e
    bad = [n for n, t in weights.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise CheckpointError(f"{run_dir / WEIGHTS}: non-finite values in {', '.join(bad[:3])}")
    return weights


def _weights_file(run_dir: Path, config: dict) -> Path:
    """The weights file of a run, checked to be of the step ``config`` says."""
    path = _file(run_dir, WEIGHTS)
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} has no {WEIGHTS}")
    step = _weights_step(path, run_dir / WEIGHTS)
    if step != config["step"]:
        raise CheckpointError(
            f"{run_dir}: {WEIGHTS} is from step {step} but {CONFIG} says {config['step']} "
            "(files of two checkpoints); the run cannot be loaded consistently"
        )
    return path


def load_state(run_dir: str | Path, config: dict | None = None) -> dict:
    """Read ``state.pt`` with ``weights_only=True`` (no code can run) and check its step."""
    run_dir = Path(run_dir)
    config = config or load_config(run_dir)
    path = _file(run_dir, STATE)
    shown = run_dir / STATE
    if not path.is_file():
        raise CheckpointError(f"{str(run_dir)!r} has no {STATE}: it cannot be resumed")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # UnpicklingError for code-running pickles, others for corrupt files
        raise CheckpointError(f"{shown}: refused to load ({brief(e)})") from e
    if not isinstance(state, dict) or state.get("step") != config["step"]:
        raise CheckpointError(
            f"{shown}: resume state is from step {state.get('step') if isinstance(state, dict) else '?'}"
            f" but {CONFIG} says {config['step']} (files of two checkpoints)"
        )
    return state
