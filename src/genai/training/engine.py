"""The one training engine every loop runs on.

A loop is a small *task* object (see :class:`Task`): it builds its batches and optimizers and
owns its step (the GAN's step is two optimizer steps, D then G). :func:`fit` owns everything else:
device, precision, LR schedules, gradient clipping, the progress bar, ``metrics.jsonl``, the
eval / sample / checkpoint cadence, exact resume, and stopping on a non-finite loss.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from genai.core import checkpoint
from genai.core import rundir as runs
from genai.core.device import PRECISIONS, autocast, check_precision, grad_scaler, resolve_device
from genai.core.fields import Config, check_fields, field
from genai.core.files import brief
from genai.core.progress import progress_bar
from genai.plots import plot_losses

log = logging.getLogger(__name__)

SCHEDULES = ("constant", "cosine", "wsd")


@dataclass
class TrainConfig(Config):
    """What every training loop shares. Each loop's config extends it.

    Training length, the same in every loop: ``max_steps`` optimizer steps if set, else
    ``epochs`` passes over the training data if set, else the loop's ``default_max_steps``
    (a number of steps, so that the default run time does not grow with the data). Cadences
    are in optimizer steps; 0 means "once per epoch" for eval and samples and "only at the
    end" for checkpoints.

    Attributes:
        out_dir: the run directory.
        epochs: passes over the training data (used when ``max_steps`` is None).
        max_steps: optimizer steps; wins over ``epochs``.
        batch_size: examples per optimizer step (per process under torchrun); the image loops
            lower a default larger than the data to the number of images.
        lr: peak learning rate.
        betas: Adam's moment decays (beta1, beta2).
        weight_decay: decoupled weight decay (AdamW) of weight matrices and convolution
            kernels; biases, norms and embeddings of dimension < 2 are never decayed.
        warmup_steps: linear warmup of the learning rate from 0.
        lr_schedule: ``"constant"``, ``"cosine"`` (decay to ``min_lr_ratio * lr``) or ``"wsd"``
            (warmup-stable-decay: constant, then a linear decay to ``min_lr_ratio * lr`` over
            the last ``decay_fraction`` of the steps).
        min_lr_ratio: the final learning rate of ``"cosine"`` and ``"wsd"``, as a fraction of
            ``lr``.
        decay_fraction: the fraction of the steps over which ``"wsd"`` decays.
        grad_clip: clip the global gradient norm to this (0: off).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (CUDA only); autocast, fp32 weights.
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ``"mps"``.
        seed: seeds the data order and the training RNGs (seed before building the model
            too: the CLI does).
        log_every: steps between ``metrics.jsonl`` train lines (means over the interval).
        eval_every: steps between evaluations (0: once per epoch).
        sample_every: steps between sample files (0: once per epoch).
        checkpoint_every: steps between checkpoints (0: only at the end).
        compile: ``torch.compile`` the model's forward pass.
        progress: show a progress bar.
        resume: continue the run in ``out_dir``.
        overwrite: replace the run in ``out_dir`` (moved aside until the first checkpoint).
        tensorboard: also log the metrics to ``out_dir/tensorboard`` (needs ``tensorboard``).
    """

    out_dir: str = field("runs/run", nonempty=True)
    epochs: int | None = field(None, gt=0)
    max_steps: int | None = field(None, gt=0)
    batch_size: int = field(128, gt=0)
    lr: float = field(1e-3, gt=0)
    betas: tuple[float, float] = field((0.9, 0.999), ge=0, lt=1, rule="two numbers in [0, 1)")
    weight_decay: float = field(0.0, ge=0)
    warmup_steps: int = field(0, ge=0)
    lr_schedule: str = field("constant", choices=SCHEDULES)
    min_lr_ratio: float = field(0.1, ge=0, le=1)
    decay_fraction: float = field(0.2, gt=0, le=1)
    grad_clip: float = field(0.0, ge=0)
    precision: str = field("fp32", choices=PRECISIONS)
    device: str = "auto"
    seed: int = 0
    log_every: int = field(50, gt=0)
    eval_every: int = field(0, ge=0)
    sample_every: int = field(0, ge=0)
    checkpoint_every: int = field(1000, ge=0)
    compile: bool = False
    progress: bool = True
    resume: bool = False
    overwrite: bool = False
    tensorboard: bool = False

    # Settings that fix the data order: a resumed run must keep them (see fit).
    fixed_on_resume: ClassVar[tuple[str, ...]] = ("batch_size", "seed")
    # The length of a run that sets neither max_steps nor epochs.
    default_max_steps: ClassVar[int] = 1000

    def __post_init__(self) -> None:
        check_fields(self)
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other")

    def total_steps(self, steps_per_epoch: int) -> int:
        """The run's length in optimizer steps (see the class docstring)."""
        if self.max_steps is not None:
            return self.max_steps
        if self.epochs is not None:
            return self.epochs * steps_per_epoch
        return self.default_max_steps


Callback = Callable[[dict], "dict | None"]


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


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training at a step boundary, after a checkpoint was saved."""


class _StopRequest:
    """Turns the first SIGINT / SIGTERM into a request that the loop honours between steps.

    Installed only in the main thread of a single process (under torchrun every rank would have
    to agree on the step). A second signal interrupts at once, as without this.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool):
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                current = signal.getsignal(sig)
                if current in (signal.SIG_IGN, None):  # ignored, or a handler set outside Python
                    continue
                self.previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, sig: int, frame: Any) -> None:
        if self.signal is not None:
            self.restore()
            raise KeyboardInterrupt
        self.signal = sig
        log.warning(
            "%s: stopping after this step and saving a checkpoint (again to stop at once)",
            signal.Signals(sig).name,
        )

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


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
    """Multiplier of the base LR at ``step``: linear warmup, then constant, cosine or WSD."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.lr_schedule == "constant":
        return 1.0
    if config.lr_schedule == "wsd":
        decay = max(1, round(config.decay_fraction * total))
        progress = min(1.0, max(0, step - (total - decay) + 1) / decay)
        return 1.0 - (1.0 - config.min_lr_ratio) * progress
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

    def step(self, *names: str) -> None:
        """Clip, step the optimizers ``names`` and clear their gradients.

        Several names step optimizers that share one backward pass (made with the first name):
        their gradients are clipped together by one norm, and the first name's grad scaler
        unscales and steps them all.
        """
        optimizers = [self.optimizers[name] for name in names]
        scaler = self.scalers[names[0]]
        params = [p for opt in optimizers for group in opt.param_groups for p in group["params"]]
        if self.world_size > 1:
            _average_gradients(params, self.world_size)
        if self.config.grad_clip > 0:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        for optimizer in optimizers:
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


def fit(task: Task, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``task`` as ``config`` says, writing the run directory ``config.out_dir``.

    Args:
        task: the loop (see :class:`Task`).
        config: the training settings.
        callbacks: functions called with each metrics record (a dict with ``step``, ``split``
            and the metrics) before it is written, on the main process; a returned dict is
            merged into the record, so ``lambda r: {"my_metric": ...}`` logs your own metrics
            to ``metrics.jsonl`` (and TensorBoard).

    Everything that can fail (device, precision, data, sizes, the run directory's state) is
    checked before the run directory changes. The caller's global RNG states are restored on
    return: training seeds its own.

    Returns:
        A summary: ``run_dir``, ``step``, the last train metrics and the last eval metrics.

    Raises:
        FileExistsError: ``out_dir`` holds a run and neither ``overwrite`` nor ``resume`` is set.
        CheckpointError: ``resume`` is set and ``out_dir`` is not a consistent run.
        RunLockedError: another process is training in ``out_dir``.
        ValueError: a resumed run is already past the requested length, or a setting that
            fixes the data order (see ``fixed_on_resume``) differs from the run's.
        NonFiniteLossError: the loss or the weights became NaN/inf; the last good checkpoint
            is kept.
    """
    if callable(callbacks):  # one function, not in a list
        callbacks = (callbacks,)
    rng = _rng_state()
    try:
        with contextlib.ExitStack() as stack:
            return _fit(task, config, stack, tuple(callbacks))
    finally:
        _set_rng_state(rng)


def _fit(
    task: Task, config: TrainConfig, stack: contextlib.ExitStack, callbacks: tuple[Callback, ...]
) -> dict[str, Any]:
    if not all(callable(c) for c in callbacks):
        raise TypeError("callbacks must be callables taking a metrics record (dict)")
    device = resolve_device(config.device)
    check_precision(config.precision, device)
    rank, world, device = init_distributed(device)
    main_process = rank == 0
    run_dir = Path(config.out_dir)
    if main_process:
        runs.check_run_dir(run_dir, config.resume, config.overwrite)
        if config.tensorboard:
            _summary_writer(None)  # is tensorboard installed?
    seed_everything(config.seed + rank)  # same data order (seeded separately), own dropout masks
    batches = task.setup(device)
    # Under torchrun, rank r of w takes the batches r, w + r, 2w + r, ... of the single-process
    # order: w batches of B are exactly the data of one batch of w * B.
    per_epoch = len(batches) // world
    if per_epoch == 0:
        raise ValueError(
            f"{world} processes need at least {world} batches per epoch, got {len(batches)}"
        )
    total = config.total_steps(per_epoch)
    optimizers = task.configure_optimizers()
    trainer = Trainer(config, device, optimizers, world)
    schedulers = {
        name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, config))
        for name, opt in optimizers.items()
    }
    run = None
    if main_process:  # all checks passed: now the run directory may change
        run = stack.enter_context(runs.open_run(run_dir, config.resume, config.overwrite))
    board = None
    if main_process and config.tensorboard:
        board = stack.enter_context(contextlib.closing(_summary_writer(run_dir)))
    if world > 1:
        dist.barrier()  # rank 0 has repaired the folder before the others read it
    start = 0
    if config.resume:
        start = _restore(run_dir, task, optimizers, schedulers, trainer, config, total)
        log.info("resuming %s at step %d of %d", run_dir, start, total)
    if world > 1:
        for tensor in task.model.state_dict().values():  # every rank starts from rank 0's weights
            dist.broadcast(tensor, 0)
    metrics_path = run_dir / runs.METRICS
    if main_process:
        runs.keep_metrics_until(metrics_path, start)

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
        run.committed()

    metrics_log = _MetricsLog(metrics_path, enabled=main_process)
    stack.callback(metrics_log.flush)  # whatever ends training, the log is written

    def write(record: dict) -> None:
        if main_process:
            for callback in callbacks:
                extra = callback(dict(record)) or {}
                if not isinstance(extra, dict):
                    raise TypeError(
                        f"a callback returned {type(extra).__name__}; return a dict of metrics "
                        "(or None)"
                    )
                for key, value in extra.items():  # a tensor or NumPy number: a plain number
                    record[key] = value.item() if hasattr(value, "item") else value
            metrics_log.add(record)
            if board is not None:
                for key, value in record.items():
                    if key not in ("step", "split") and isinstance(value, (int, float)):
                        board.add_scalar(f"{record['split']}/{key}", value, record["step"])

    sums: dict[str, torch.Tensor] = {}
    count = 0
    first_bad = torch.tensor(-1, device=device)  # step of the first non-finite loss, kept on device
    last_saved = start if config.resume else None
    last_train: dict[str, float] = {}
    last_eval: dict[str, float] = {}
    t0 = time.perf_counter()

    def kept() -> str:
        if last_saved is not None:
            return f"the last good checkpoint (step {last_saved})"
        return "no checkpoint yet" if not config.overwrite else "the previous run"

    def check_finite() -> None:
        bad = int(first_bad.item())
        if bad >= 0:
            metrics_log.flush()
            raise NonFiniteLossError(
                f"loss became non-finite at step {bad + 1}; training stopped, {run_dir} keeps "
                f"{kept()}"
            )

    def commit(step: int) -> None:
        """Check the weights, flush the log and save the checkpoint of ``step``."""
        nonlocal last_saved
        check_finite()
        bad = checkpoint.check_finite(task.model)
        if bad:  # e.g. an infinite learning rate: the loss may still look finite
            raise NonFiniteLossError(
                f"weights became non-finite by step {step} ({', '.join(bad[:3])}); training "
                f"stopped, {run_dir} keeps {kept()}"
            )
        metrics_log.flush()  # the log is current whenever a checkpoint is
        if main_process:
            save(step)
        last_saved = step

    stop = _StopRequest(enabled=world == 1)
    stack.callback(stop.restore)
    task.model.train()
    bar = stack.enter_context(
        progress_bar(
            total=total,
            initial=start,
            disable=not (config.progress and main_process),
            desc=task.kind,
            unit="step",
        )
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
            write(
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
        # The checkpoint first: an evaluation or sample grid that fails loses no training.
        # Stopped before an overwriting run's first checkpoint: no save, the old run comes back.
        undo = stop.signal is not None and run is not None and run.holds_previous
        every = config.checkpoint_every and done % config.checkpoint_every == 0
        if every or done == total or (stop.signal is not None and not undo):
            commit(done)
        go_on = stop.signal is None  # a stop skips them: they can outlast a grace period
        evaluate = main_process and go_on and _due(done, config.eval_every, per_epoch, total)
        sample = main_process and go_on and _due(done, config.sample_every, per_epoch, total)
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
                        write({"step": done, "split": "val", **last_eval})
                        log.info("step %d: %s", done, json.dumps(last_eval))
                if sample:
                    path = task.write_samples(run_dir / "samples" / f"step_{done:07d}")
                    if path is not None:
                        log.info("samples: %s", path)
            task.model.train()
        if stop.signal is not None and done < total:
            name = signal.Signals(stop.signal).name
            undo = run is not None and run.holds_previous
            if not undo and last_saved != done:  # the signal came during evaluation or samples
                commit(done)
            if undo:
                raise TrainingInterrupted(
                    f"training stopped at step {done} of {total} ({name}) before its first "
                    f"checkpoint; {run_dir} holds the previous run again (the overwrite is undone)"
                )
            raise TrainingInterrupted(
                f"training stopped at step {done} of {total} ({name}); {run_dir} holds its "
                f"checkpoint: go on with resume=True (genai train {task.kind} --resume {run_dir})"
            )
    metrics_log.flush()
    if main_process and metrics_path.exists():
        plot_losses(metrics_path, run_dir / "loss.png")
    stop.restore()
    if stop.signal is not None:  # in the last step: the run is complete, the caller stops too
        raise TrainingInterrupted(
            f"training finished its last step ({total}) after {signal.Signals(stop.signal).name};"
            f" {run_dir} holds the complete run"
        )
    if world > 1:  # every rank returns with the run directory complete, and tears down together
        dist.barrier()
    task.model.eval()
    return {"run_dir": str(run_dir), "step": total, "train": last_train, "eval": last_eval}


def _summary_writer(run_dir: Path | None):
    """A TensorBoard writer logging into ``run_dir/tensorboard`` (``None``: only check)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise ValueError(
            "tensorboard=True needs the tensorboard package: pip install 'genai[tensorboard]'"
        ) from e
    return SummaryWriter(str(run_dir / "tensorboard")) if run_dir is not None else None


def _restore(
    run_dir: Path,
    task: Task,
    optimizers: dict,
    schedulers: dict,
    trainer: Trainer,
    config: TrainConfig,
    total: int,
) -> int:
    """Load a run's weights and resume state; apply the new config's optimizer settings.

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
    _check_resume_settings(run_dir, saved.get("train_config"), config)
    then = saved.get("data") if isinstance(saved.get("data"), dict) else {}
    now = task.checkpoint_extra().get("data") or {}
    if then.get("num_images") not in (None, now.get("num_images")):
        log.warning(
            "resume: the data has changed since step %d (%s images then, %s now): the run goes "
            "on with other batches than it would have had",
            saved["step"],
            then["num_images"],
            now.get("num_images"),
        )
    checkpoint.load_weights(run_dir, task.model, saved)
    state = checkpoint.load_state(run_dir, saved)
    try:
        for name, opt in optimizers.items():
            fresh = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
            opt.load_state_dict(state["optimizers"][name])
            scheduler = schedulers[name]
            scheduler.load_state_dict(state["schedulers"][name])
            for group, settings in zip(opt.param_groups, fresh, strict=True):
                group.update(settings)  # the new config's lr, betas, weight decay
            scheduler.base_lrs = [g["initial_lr"] for g in opt.param_groups]
            for group, base in zip(opt.param_groups, scheduler.base_lrs, strict=True):
                group["lr"] = base * lr_factor(scheduler.last_epoch, total, config)
            scheduler._last_lr = [g["lr"] for g in opt.param_groups]
            trainer.scalers[name].load_state_dict(state["scalers"][name])
        _set_rng_state(state["rng"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        detail = f"no entry {e}" if isinstance(e, KeyError) else brief(e)
        raise checkpoint.CheckpointError(
            f"{run_dir / checkpoint.STATE}: resume state does not fit this run ({detail})"
        ) from e
    return state["step"]


def _check_resume_settings(run_dir: Path, saved: dict | None, config: TrainConfig) -> None:
    """Refuse changes that would change the data order; log the settings that do change."""
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
