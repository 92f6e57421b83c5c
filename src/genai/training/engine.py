"""The one training engine every loop runs on.

A loop is a small *task* object (see :class:`Task`): it builds its batches and optimizers and
owns its step (the GAN's step is two optimizer steps, D then G). :func:`fit` owns everything else:
device, precision, LR schedules, gradient clipping, the progress bar, ``metrics.jsonl``, the
eval / sample / checkpoint cadence, exact resume, and stopping on a non-finite loss.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from tqdm.auto import tqdm

from genai import checkpoint
from genai.device import PRECISIONS, autocast, check_precision, grad_scaler, resolve_device
from genai.plots import plot_losses

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine")


@dataclass
class TrainConfig:
    """What every training loop shares. Each loop's config extends it.

    Training length is ``max_steps`` if set, else ``epochs`` passes over the data.
    Cadences are in optimizer steps; 0 means "once per epoch" for eval and samples and
    "only at the end" for checkpoints.
    """

    out_dir: str = "runs/run"
    epochs: int | None = 10
    max_steps: int | None = None
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    lr_schedule: str = "constant"
    min_lr_ratio: float = 0.1
    grad_clip: float = 0.0
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    log_every: int = 50
    eval_every: int = 0
    sample_every: int = 0
    checkpoint_every: int = 1000
    compile: bool = False
    progress: bool = True
    resume: bool = False
    overwrite: bool = False

    def __post_init__(self) -> None:
        _positive(self, "batch_size", "log_every")
        _non_negative(self, "warmup_steps", "eval_every", "sample_every", "checkpoint_every")
        _non_negative(self, "weight_decay", "grad_clip")
        if self.max_steps is None and self.epochs is None:
            raise ValueError("set max_steps or epochs")
        for name in ("max_steps", "epochs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {self.lr_schedule!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")


def _positive(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None or value <= 0:
            raise ValueError(f"{name} must be > 0, got {value}")


def _non_negative(config: Any, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if value is None or value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")


class Batches(Protocol):
    """Training data: the batch of each global step, a pure function of (seed, step)."""

    def __len__(self) -> int: ...  # batches per epoch

    def get(self, step: int) -> Any: ...


class Task(Protocol):
    """What a training loop provides to :func:`fit`."""

    kind: str  # the model registry name, stored in config.json
    model: nn.Module  # what model.safetensors holds

    def setup(self, device: torch.device) -> Batches:
        """Move the model to ``device`` and return the training batches there."""

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Named optimizers; each gets its own LR schedule and grad scaler."""

    def train_step(self, batch: Any, step: int, trainer: Trainer) -> dict[str, torch.Tensor]:
        """One optimization step; returns detached scalar metrics (must include ``loss``)."""

    def evaluate(self) -> dict[str, float]:
        """Validation metrics (may be empty). Runs under ``no_grad`` in eval mode."""

    def write_samples(self, stem: Path) -> Path | None:
        """Write samples to ``stem`` + a suffix; return the path. Runs under ``no_grad``."""

    def checkpoint_extra(self) -> dict:
        """Extra JSON entries for ``config.json`` (e.g. the tokenizer)."""


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


def make_adamw(
    params: Any,
    lr: float,
    device: torch.device,
    betas: tuple[float, float] = (0.9, 0.999),
    weight_decay: float = 0.0,
) -> torch.optim.AdamW:
    """AdamW with the fused kernel where this torch has it (CPU and CUDA)."""
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay, fused=fused)


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Parameter groups that decay matrices (dim >= 2) only, never biases, norms or gains."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def lr_factor(step: int, total: int, config: TrainConfig) -> float:
    """Multiplier of the base LR at ``step``: linear warmup, then constant or cosine decay."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    span = max(1, total - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine


class Trainer:
    """The engine's side of a step: autocast, backward with the grad scaler, clipped updates."""

    def __init__(
        self, config: TrainConfig, device: torch.device, optimizers: dict, world_size: int = 1
    ):
        self.config = config
        self.device = device
        self.optimizers = optimizers
        self.world_size = world_size
        self.scalers = {name: grad_scaler(device, config.precision) for name in optimizers}

    def autocast(self):
        """Context for forward passes at the configured precision."""
        return autocast(self.device, self.config.precision)

    def backward(self, loss: torch.Tensor, name: str) -> None:
        """Backpropagate ``loss`` (scaled for fp16) for optimizer ``name``."""
        self.scalers[name].scale(loss).backward()

    def step(self, name: str) -> None:
        """Clip, step optimizer ``name`` and clear its gradients."""
        optimizer, scaler = self.optimizers[name], self.scalers[name]
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if self.world_size > 1:
            _average_gradients(params, self.world_size)
        if self.config.grad_clip > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    def optimize(self, loss: torch.Tensor, name: str) -> None:
        """``backward`` then ``step``: one full update of optimizer ``name`` from ``loss``."""
        self.backward(loss, name)
        self.step(name)


def _average_gradients(params: list[torch.Tensor], world_size: int) -> None:
    """Data parallelism: one all-reduce of all gradients (flattened), divided by the world size.

    Every rank then holds the gradient of the mean loss over all ranks' batches, as with
    ``DistributedDataParallel``. Doing it here, at the optimizer step, works for any loop
    (also the GAN, whose D takes part in G's step without updating) with no module wrapping.
    """
    grads = [p.grad for p in params if p.grad is not None]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat.div_(world_size)
    for grad, synced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(synced)


def init_distributed(device: torch.device) -> tuple[int, int, torch.device]:
    """Join the process group ``torchrun`` describes; returns ``(rank, world_size, device)``.

    Without ``torchrun`` (``WORLD_SIZE`` unset or 1) this is ``(0, 1, device)``. With CUDA each
    process takes the GPU of its ``LOCAL_RANK`` and NCCL; on CPU the backend is gloo.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def maybe_compile(module: nn.Module, config: TrainConfig) -> nn.Module:
    """``torch.compile(module)`` when ``config.compile``; checkpoints save the original module."""
    return torch.compile(module) if config.compile else module


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
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


def _set_rng_state(state: dict) -> None:
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


# What fit() writes into a run directory; --overwrite removes exactly these, nothing else.
_RUN_FILES = (checkpoint.CONFIG, checkpoint.WEIGHTS, checkpoint.STATE, "metrics.jsonl", "loss.png")


def _prepare_run_dir(run_dir: Path, config: TrainConfig) -> None:
    if config.resume:
        checkpoint.load_config(run_dir)  # raises a clear error if it is not a run
        return
    existing = [name for name in _RUN_FILES if (run_dir / name).exists()]
    if existing and not config.overwrite:
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already holds a run ({', '.join(existing)}); "
            "pass overwrite=True (--overwrite) to replace it or resume=True (--resume) to continue"
        )
    for name in existing:
        (run_dir / name).unlink()
    if config.overwrite and (run_dir / "samples").is_dir():
        shutil.rmtree(run_dir / "samples")
    run_dir.mkdir(parents=True, exist_ok=True)


def _keep_metrics_until(path: Path, step: int) -> None:
    """After a resume, drop log lines written past the checkpoint we resume from."""
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= step]
        checkpoint.atomic_write(
            path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept))
        )


class _MetricsLog:
    """``metrics.jsonl``, written in batches: at most once every ``interval`` seconds, and at
    every :meth:`flush` (before checkpoints, on errors, at the end), so that logging every
    step costs a list append rather than a file open per step."""

    def __init__(self, path: Path, enabled: bool = True, interval: float = 2.0):
        self.path, self.enabled, self.interval = path, enabled, interval
        self.pending: list[str] = []
        self.last_flush = time.monotonic()

    def add(self, record: dict) -> None:
        if self.enabled:
            self.pending.append(json.dumps(record) + "\n")
            if time.monotonic() - self.last_flush >= self.interval:
                self.flush()

    def flush(self) -> None:
        if self.pending:
            with open(self.path, "a") as f:
                f.writelines(self.pending)
            self.pending = []
        self.last_flush = time.monotonic()


def _due(step: int, every: int, per_epoch: int, total: int) -> bool:
    every = every or per_epoch
    return step % every == 0 or step == total


def fit(task: Task, config: TrainConfig) -> dict[str, Any]:
    """Train ``task`` as ``config`` says, writing the run directory ``config.out_dir``.

    Returns:
        A summary: ``run_dir``, ``step``, the last train metrics and the last eval metrics.

    Raises:
        FileExistsError: ``out_dir`` holds a run and neither ``overwrite`` nor ``resume`` is set.
        CheckpointError: ``resume`` is set and ``out_dir`` is not a consistent run.
        NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    rank, world, device = init_distributed(device)
    main_process = rank == 0
    run_dir = Path(config.out_dir)
    if main_process:
        _prepare_run_dir(run_dir, config)
    seed_everything(config.seed + rank)  # same data order (seeded separately), own dropout masks
    batches = task.setup(device)
    # Under torchrun, rank r of w takes the batches r, w + r, 2w + r, ... of the single-process
    # order: w batches of B are exactly the data of one batch of w * B.
    per_epoch = len(batches) // world
    if per_epoch == 0:
        raise ValueError(
            f"{world} processes need at least {world} batches per epoch, got {len(batches)}"
        )
    total = config.max_steps or config.epochs * per_epoch
    optimizers = task.configure_optimizers()
    trainer = Trainer(config, device, optimizers, world)
    schedulers = {
        name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, config))
        for name, opt in optimizers.items()
    }
    start = 0
    if config.resume:
        start = _restore(run_dir, task, optimizers, schedulers, trainer)
        log.info("resuming %s at step %d of %d", run_dir, start, total)
    if world > 1:
        for tensor in task.model.state_dict().values():  # every rank starts from rank 0's weights
            dist.broadcast(tensor, 0)
    metrics_path = run_dir / "metrics.jsonl"
    if main_process:
        _keep_metrics_until(metrics_path, start)

    def save(step: int) -> None:
        state = {
            "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
            "schedulers": {n: s.state_dict() for n, s in schedulers.items()},
            "scalers": {n: s.state_dict() for n, s in trainer.scalers.items()},
            "rng": _rng_state(),
        }
        checkpoint.save_checkpoint(
            run_dir, task.model, task.kind, step, config, state, task.checkpoint_extra()
        )

    metrics_log = _MetricsLog(metrics_path, enabled=main_process)

    sums: dict[str, torch.Tensor] = {}
    count = 0
    first_bad = torch.tensor(-1, device=device)  # step of the first non-finite loss, kept on device
    last_saved = start if config.resume else None
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    t0 = time.perf_counter()

    def check_finite() -> None:
        bad = int(first_bad.item())
        if bad >= 0:
            metrics_log.flush()
            kept = (
                f"the last good checkpoint (step {last_saved})"
                if last_saved is not None
                else "no checkpoint yet"
            )
            raise NonFiniteLossError(
                f"loss became non-finite at step {bad + 1}; training stopped, {run_dir} keeps {kept}"
            )

    task.model.train()
    bar = tqdm(
        total=total,
        initial=start,
        disable=not (config.progress and main_process),
        desc=task.kind,
        unit="step",
    )
    for step in range(start, total):
        out = task.train_step(batches.get(step * world + rank), step, trainer)
        for scheduler in schedulers.values():
            scheduler.step()
        loss = out["loss"]
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        for key, value in out.items():
            sums[key] = sums[key] + value if key in sums else value.detach().float().clone()
        count += 1
        done = step + 1
        bar.update(1)
        if done % config.log_every == 0 or done == total:
            check_finite()  # the one wait for the device; the metrics then copy at once
            keys = sorted(sums)
            stacked = torch.stack([sums[k] for k in keys]) / count
            if world > 1:  # the mean over all ranks
                dist.all_reduce(stacked)
                stacked = stacked / world
            last_train = dict(zip(keys, stacked.tolist(), strict=True))
            elapsed = time.perf_counter() - t0
            lr = next(iter(optimizers.values())).param_groups[0]["lr"]
            metrics_log.add(
                {
                    "step": done,
                    "split": "train",
                    "epoch": done / per_epoch,
                    "lr": lr,
                    "time": elapsed,
                    **last_train,
                }
            )
            # Shown at the bar's next refresh; refreshing here would redraw it every log step.
            bar.set_postfix(loss=f"{last_train['loss']:.4g}", refresh=False)
            sums, count = {}, 0
        evaluate = main_process and _due(done, config.eval_every, per_epoch, total)
        sample = main_process and _due(done, config.sample_every, per_epoch, total)
        if evaluate or sample:
            check_finite()
            task.model.eval()
            with (
                torch.no_grad(),
                torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            ):
                torch.manual_seed(config.seed)
                if evaluate:
                    last_eval = task.evaluate()
                    if last_eval:
                        metrics_log.add({"step": done, "split": "val", **last_eval})
                        log.info("step %d: %s", done, json.dumps(last_eval))
                if sample:
                    path = task.write_samples(run_dir / "samples" / f"step_{done:07d}")
                    if path is not None:
                        log.info("samples: %s", path)
            task.model.train()
        if (config.checkpoint_every and done % config.checkpoint_every == 0) or done == total:
            check_finite()
            metrics_log.flush()  # the log is current whenever a checkpoint is
            if main_process:
                save(done)
            last_saved = done
    bar.close()
    metrics_log.flush()
    if main_process and metrics_path.exists():
        plot_losses(metrics_path, run_dir / "loss.png")
    task.model.eval()
    return {"run_dir": str(run_dir), "step": total, "train": last_train, "eval": last_eval}


def _restore(
    run_dir: Path, task: Task, optimizers: dict, schedulers: dict, trainer: Trainer
) -> int:
    config = checkpoint.load_config(run_dir)
    if config["kind"] != task.kind:
        raise checkpoint.CheckpointError(
            f"{run_dir} is a {config['kind']!r} run, not {task.kind!r}"
        )
    saved = config["model_config"]
    current = dataclasses.asdict(task.model.config)
    if json.loads(json.dumps(current)) != saved:
        raise checkpoint.CheckpointError(
            f"{run_dir}: the model config differs from the run's; resume with the run's config"
        )
    checkpoint.load_weights(run_dir, task.model, config)
    state = checkpoint.load_state(run_dir, config)
    for name, opt in optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
        schedulers[name].load_state_dict(state["schedulers"][name])
        trainer.scalers[name].load_state_dict(state["scalers"][name])
    _set_rng_state(state["rng"])
    return state["step"]
