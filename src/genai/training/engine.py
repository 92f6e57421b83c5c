"""The one training engine every loop runs on.

A loop is a small *task* object (see :class:`Task`): it builds its batches and optimizers and
owns its step (the GAN's step is two optimizer steps, D then G). :func:`fit` owns everything else,
each concern in a module of its own under ``genai.training``: the step's precision, scaling and
clipping (``trainer``), LR schedules and cadences (``schedule``), ``metrics.jsonl`` and the other
loggers (``loggers``), checkpoints and stopping on a non-finite loss (``checkpointer``), exact
resume (``state``), Ctrl-C and SIGTERM (``signals``) and ``torchrun`` (``distributed``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from genai.core import rundir as runs
from genai.core.device import resolve_device, resolve_precision
from genai.core.progress import progress_bar
from genai.optim import decay_groups, make_adamw
from genai.plots import plot_losses
from genai.training.checkpointer import Checkpointer, NonFiniteLossError
from genai.training.config import TrainConfig
from genai.training.distributed import barrier, broadcast_weights, init_distributed
from genai.training.loggers import Logger, TrainMeans, check_loggers, open_loggers
from genai.training.schedule import SCHEDULES, due, lr_factor, lr_schedulers
from genai.training.sharding import gathered, is_main, setup, sharded
from genai.training.signals import StopRequest, TrainingInterrupted
from genai.training.state import restore, rng_state, seed_everything, set_rng_state
from genai.training.trainer import Trainer, maybe_compile

# Names the loops, tests and benchmarks import from here (their homes are the modules above).
__all__ = [
    "SCHEDULES",
    "Batches",
    "Callback",
    "NonFiniteLossError",
    "Task",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "decay_groups",
    "fit",
    "init_distributed",
    "lr_factor",
    "make_adamw",
    "maybe_compile",
    "seed_everything",
]

log = logging.getLogger(__name__)


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


def fit(task: Task, config: TrainConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Train ``task`` as ``config`` says, writing the run directory ``config.out_dir``.

    Args:
        task: the loop (see :class:`Task`).
        config: the training settings.
        callbacks: functions called with each metrics record (a dict with ``step``, ``split``
            and the metrics) before it is logged, on the main process; a returned dict is
            merged into the record, so ``lambda r: {"my_metric": ...}`` logs your own metrics.

    Everything that can fail (device, precision, data, sizes, loggers, the run directory) is
    checked before the run directory changes. The caller's RNG states are restored on return.

    Returns:
        A summary: ``run_dir``, ``step``, the last train and eval metrics.

    Raises:
        FileExistsError: ``out_dir`` holds a run and neither ``overwrite`` nor ``resume`` is set.
        CheckpointError: ``resume`` is set and ``out_dir`` is not a consistent run.
        RunLockedError: another process is training in ``out_dir``.
        ValueError: a resumed run is already past the requested length, or a setting that
            fixes the data order (see ``fixed_on_resume``) differs from the run's.
        NonFiniteLossError: the loss or the weights became NaN/inf; the last good checkpoint
            is kept.
        TrainingInterrupted: Ctrl-C or SIGTERM stopped training, after saving a checkpoint.
    """
    callbacks = _callbacks(callbacks)
    with contextlib.ExitStack() as stack:
        stack.callback(set_rng_state, rng_state())  # the caller's RNG states come back at the end
        rank, world, device = _join(config)
        run_dir, main = Path(config.out_dir), rank == 0
        _check(run_dir, config, main)
        seed_everything(config.seed + rank)  # same data order (seeded separately), own dropout
        batches = setup(task, device, config, world)  # task.setup, sharded first under fsdp
        per_epoch, total = _length(len(batches), world, config)
        optimizers = task.configure_optimizers()
        trainer = Trainer(config, device, optimizers, world)
        schedulers = lr_schedulers(optimizers, total, config)
        state = (optimizers, schedulers, trainer.scalers)  # what state.pt holds
        # All checks passed: now the run directory may change (rank 0 repairs it, then all read).
        opened = runs.open_run(run_dir, config.resume, config.overwrite)
        run = stack.enter_context(opened) if main else None
        barrier(world)
        start = restore(run_dir, task, *state, config, total) if config.resume else 0
        broadcast_weights(task.model, world)  # every rank starts from rank 0's weights
        logger = stack.enter_context(open_loggers(run_dir, config, start, callbacks, main))
        saver = Checkpointer(run, task, config, *state, logger, start, device, world)
        means, last_eval = TrainMeans(per_epoch, world), {}
        stop = stack.enter_context(StopRequest(enabled=world == 1))
        bar = stack.enter_context(_bar(task, config, start, total, main))
        task.model.train()
        for step in range(start, total):
            out = task.train_step(batches.get(step * world + rank), step, trainer)
            for scheduler in schedulers.values():
                scheduler.step()
            saver.watch(step, out["loss"])
            means.add(out)
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0 or done == total:
                saver.check_finite()  # the one wait for the device; the metrics then copy at once
                logger.log(means.record(done, lr=_lr(optimizers)))
                bar.set_postfix(loss=f"{means.last['loss']:.4g}", refresh=False)  # next refresh
            # The checkpoint first: an evaluation or sample grid that fails loses no training.
            if saver.due(done, total, stopping=stop.requested):
                saver.commit(done)
            evaluate = due(done, config.eval_every, per_epoch, total)
            sample = due(done, config.sample_every, per_epoch, total)
            if (evaluate or sample) and not stop.requested:
                saver.check_finite()  # on every rank, though under ddp rank 0 alone evaluates
                if main or sharded(task.model):  # fsdp: every rank gathers
                    metrics = _eval_and_sample(task, config, done, evaluate, sample, logger, device)
                    last_eval = last_eval if metrics is None else metrics
            if stop.requested and done < total:
                raise saver.interrupted(done, total, stop.name)
        logger.flush()
        _finish(run_dir, main, stop, saver, total)
        barrier(world)  # every rank returns with the run directory complete, tears down together
        task.model.eval()
        return {"run_dir": str(run_dir), "step": total, "train": means.last, "eval": last_eval}


def _finish(run_dir: Path, main: bool, stop: StopRequest, saver: Checkpointer, total: int) -> None:
    """The loss plot; a signal in the last step: the run is complete, the caller stops too."""
    if main and (run_dir / runs.METRICS).exists():
        plot_losses(run_dir / runs.METRICS, run_dir / "loss.png")
    stop.restore()
    if stop.requested:
        raise saver.interrupted(total, total, stop.name)


def _callbacks(callbacks: Sequence[Callback] | Callback) -> tuple[Callback, ...]:
    callbacks = (callbacks,) if callable(callbacks) else tuple(callbacks)  # one, not in a list
    if not all(callable(c) for c in callbacks):
        raise TypeError("callbacks must be callables taking a metrics record (dict)")
    return callbacks


def _check(run_dir: Path, config: TrainConfig, main: bool) -> None:
    """The checks of the run directory and the loggers (nothing is written)."""
    if main:
        runs.check_run_dir(run_dir, config.resume, config.overwrite)
    check_loggers(config.loggers)


def _lr(optimizers: dict[str, torch.optim.Optimizer]) -> float:
    """The learning rate the train records show: the first optimizer's first group's."""
    return next(iter(optimizers.values())).param_groups[0]["lr"]


def _join(config: TrainConfig) -> tuple[int, int, torch.device]:
    """The device (checked for the precision) and, under torchrun, the process group."""
    device = resolve_device(config.device)
    precision = resolve_precision(config.precision, device)
    if config.precision == "auto":
        log.info("precision auto: %s on %s", precision, device)
    return init_distributed(device)


def _length(batches: int, world: int, config: TrainConfig) -> tuple[int, int]:
    """Steps per epoch and in all.

    Under torchrun, rank r of w takes the batches r, w + r, 2w + r, ... of the single-process
    order: w batches of B are exactly the data of one batch of w * B.
    """
    per_epoch = batches // world
    if per_epoch == 0:
        raise ValueError(
            f"{world} processes need at least {world} batches per epoch, got {batches}"
        )
    return per_epoch, config.total_steps(per_epoch)


def _bar(task: Task, config: TrainConfig, start: int, total: int, main: bool):
    disable = not (config.progress and main)
    return progress_bar(total=total, initial=start, disable=disable, desc=task.kind, unit="step")


def _eval_and_sample(
    task: Task,
    config: TrainConfig,
    step: int,
    evaluate: bool,
    sample: bool,
    logger: Logger,
    device: torch.device,
) -> dict[str, float] | None:
    """Evaluate and/or write samples after ``step``, in eval mode, without gradients and with a
    fixed seed in a forked RNG, so that they neither consume nor depend on the training RNG
    stream. Under fsdp every rank comes here and gathers the whole model; rank 0 alone evaluates
    and samples. Returns the eval metrics (``None``: no evaluation)."""
    metrics = None
    task.model.eval()
    devices = [device] if device.type == "cuda" else []
    with gathered(task.model), torch.no_grad(), torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.seed)
        evaluate, sample = evaluate and is_main(), sample and is_main()  # fsdp: rank 0 alone
        if evaluate:
            metrics = task.evaluate()
            if metrics:
                logger.log({"step": step, "split": "val", **metrics})
                log.info("step %d: %s", step, json.dumps(metrics))
        if sample:
            path = task.write_samples(Path(config.out_dir) / "samples" / f"step_{step:07d}")
            if path is not None:
                log.info("samples: %s", path)
    task.model.train()
    return metrics
