"""The resume state: RNG states, what ``state.pt`` holds, and restoring a run from it."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genai.core import checkpoint
from genai.core.files import brief
from genai.training.schedule import lr_factor
from genai.training.sharding import load_optimizer, load_weights

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """The Python, NumPy, torch (and CUDA) RNG states, as tensors, numbers and lists only (so
    ``state.pt`` loads with ``weights_only=True``)."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states :func:`rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def resume_state(optimizers: dict, schedulers: dict, scalers: dict) -> dict:
    """What ``state.pt`` holds besides the step: every optimizer (or its state dict), LR
    scheduler and grad scaler by name, and the RNG states."""
    return {
        "optimizers": {
            n: o if isinstance(o, dict) else o.state_dict() for n, o in optimizers.items()
        },
        "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
        "scalers": {n: s.state_dict() for n, s in scalers.items()},
        "rng": rng_state(),
    }


def restore(
    run_dir: Path,
    task: Any,
    optimizers: dict,
    schedulers: dict,
    scalers: dict,
    config: Any,
    total: int,
) -> int:
    """Load a run's weights and resume state into ``task`` and the engine's objects; apply the
    new config's optimizer settings. Returns the step to go on from.

    The moments, steps and RNG states come from the run; learning rates, betas and weight decay
    come from ``config`` (so ``--resume --lr 3e-4`` trains at 3e-4, and config.json records it).
    """
    saved = checkpoint.load_config(run_dir)
    if saved["kind"] != task.kind:
        raise checkpoint.CheckpointError(f"{run_dir} is a {saved['kind']!r} run, not {task.kind!r}")
    current = dataclasses.asdict(task.model.config)
    if json.loads(json.dumps(current)) != saved["model_config"]:
        raise checkpoint.CheckpointError(
            f"{run_dir}: the model config differs from the run's; resume with the run's config"
        )
    if saved["step"] >= total:
        raise ValueError(
            f"{run_dir} is already at step {saved['step']}; resuming to step {total} trains "
            "nothing: set max_steps (or epochs) beyond it"
        )
    check_resume_settings(run_dir, saved.get("train_config"), config)
    _warn_on_changed_data(saved, task.checkpoint_extra().get("data") or {})
    load_weights(run_dir, task.model, saved)  # a sharded model takes its shards
    state = checkpoint.load_state(run_dir, saved)
    try:
        for name, opt in optimizers.items():
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
            load_optimizer(task.model, opt, state["optimizers"][name])
            scheduler = schedulers[name]
            scheduler.load_state_dict(state["schedulers"][name])
            for group, settings in zip(opt.param_groups, fresh, strict=True):
                group.update(settings)  # the new config's lr, betas, weight decay
            scheduler.base_lrs = [g["initial_lr"] for g in opt.param_groups]
            for group, base in zip(opt.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * lr_factor(scheduler.last_epoch, total, config)
            scheduler._last_lr = [g["lr"] for g in opt.param_groups]
            scalers[name].load_state_dict(state["scalers"][name])
        set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        detail = f"no entry {e}" if isinstance(e, KeyError) else brief(e)
        raise checkpoint.CheckpointError(
            f"{run_dir / checkpoint.STATE}: resume state does not fit this run ({detail})"
        ) from e
    return state["step"]


def _warn_on_changed_data(saved: dict, now: dict) -> None:
    then = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    if then.get("num_images") not in (None, now.get("num_images")):
        log.warning(
            "resume: the data has changed since step %d (%s images then, %s now): the run goes "
            "on with other batches than it would have had",
            saved["step"],
            then["num_images"],
            now.get("num_images"),
        )


def check_resume_settings(run_dir: Path, saved: dict | None, config: Any) -> None:
    """Refuse changes that would change the data order (``config.fixed_on_resume``); log the
    settings that do change."""
    if not isinstance(saved, dict):
        return
    new = json.loads(json.dumps(dataclasses.asdict(config)))
    for name in config.fixed_on_resume:
        if name in saved and saved[name] != new[name]:
            raise ValueError(
                f"{name} cannot change when resuming ({run_dir} was trained with {saved[name]!r}, "
                f"got {new[name]!r}): it fixes the run's data order; start a new run instead"
            )
    ignored = {"resume", "overwrite", "out_dir"}
    for name, value in new.items():
        if name not in ignored and name in saved and saved[name] != value:
            log.info("resume: %s changes from %r to %r", name, saved[name], value)
