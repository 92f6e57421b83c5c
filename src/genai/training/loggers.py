"""Where metrics records go: one small interface, :class:`Logger`, and its implementations.

A record is a dict with ``step``, ``split`` (``"train"`` or ``"val"``) and the metrics. Every
run writes ``metrics.jsonl`` (:class:`JsonlLogger`: the run directory's contract needs it);
``TrainConfig.loggers`` adds others by name (:data:`LOGGERS`): ``"tensorboard"`` and ``"wandb"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from genai.core import rundir as runs
from genai.core.files import atomic_write
from genai.training.distributed import mean_over_ranks


class Logger(Protocol):
    """What the engine talks to: every metrics record, a flush before each checkpoint (and on
    errors), and a close at the end of training."""

    def log(self, record: dict) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonlLogger:
    """``metrics.jsonl``, written in batches: at most once every ``interval`` seconds, and at
    every :meth:`flush` (before checkpoints, on errors, at the end), so that logging every
    step costs a list append rather than a file open per step."""

    def __init__(self, path: Path, interval: float = 2.0):
        self.path, self.interval = path, interval
        self.pending: list[str] = []
        self.last_flush = time.monotonic()

    def log(self, record: dict) -> None:
        self.pending.append(json.dumps(record) + "\n")
        if time.monotonic() - self.last_flush >= self.interval:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            with open(self.path, "a") as f:
                f.writelines(self.pending)
            self.pending = []
        self.last_flush = time.monotonic()

    def close(self) -> None:
        self.flush()


def scalars(record: dict) -> dict[str, float]:
    """The record's numbers as ``split/key`` (``train/loss``, ``val/elbo``, ...)."""
    return {
        f"{record['split']}/{key}": value
        for key, value in record.items()
        if key not in ("step", "split") and isinstance(value, (int, float))
    }


class TensorBoardLogger:
    """Scalars ``split/key`` into ``run_dir/tensorboard`` (needs ``genai[tensorboard]``)."""

    def __init__(self, run_dir: Path, config: Any = None):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, record["step"])

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run in ``run_dir/wandb`` (needs ``genai[wandb]``), logging ``split/key``
    against the metric ``step``, with the train config as the run's config.

    ``WANDB_MODE=offline`` works without an account (``wandb sync run_dir/wandb/offline-run-*``
    uploads later); ``WANDB_PROJECT`` names the project (default ``genai``). The run id is kept
    in ``run_dir/wandb/genai-run-id``, so a resumed run continues the same wandb run.
    """

    ID_FILE = "genai-run-id"

    def __init__(self, run_dir: Path, config: Any):
        import wandb

        folder = run_dir / "wandb"
        folder.mkdir(exist_ok=True)
        id_file = folder / self.ID_FILE
        resume = bool(config.resume) and id_file.is_file()
        run_id = id_file.read_text().strip() if resume else None  # None: wandb makes one
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "genai"),
            name=run_dir.resolve().name,
            dir=str(run_dir),
            id=run_id,
            resume="allow" if resume else None,
            config=json.loads(json.dumps(dataclasses.asdict(config))),
        )
        self.run.define_metric("step")
        self.run.define_metric("*", step_metric="step")
        if not resume:
            run_id = self.run.id
            atomic_write(id_file, lambda tmp: Path(tmp).write_text(run_id + "\n"))

    def log(self, record: dict) -> None:
        self.run.log({"step": record["step"], **scalars(record)})

    def flush(self) -> None:
        pass  # wandb writes in its own process

    def close(self) -> None:
        self.run.finish()


# The optional loggers of TrainConfig.loggers: name -> (class, its module, the pip extra).
LOGGERS: dict[str, tuple[Callable[[Path, Any], Logger], str, str]] = {
    "tensorboard": (TensorBoardLogger, "torch.utils.tensorboard", "tensorboard"),
    "wandb": (WandbLogger, "wandb", "wandb"),
}


def check_loggers(names: Sequence[str]) -> None:
    """Refuse unknown names and loggers whose package is missing (before any file is written).

    Raises:
        ValueError: one line naming the field and, for a missing package, the pip extra.
    """
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"loggers: unknown logger {name!r}; choose from {tuple(LOGGERS)}")
        if list(names).count(name) > 1:
            raise ValueError(f"loggers: {name!r} is given twice")
        _, module, extra = LOGGERS[name]
        try:
            __import__(module)
        except ImportError as e:
            raise ValueError(
                f"loggers=({name!r},) needs the {extra} package: pip install 'genai[{extra}]'"
            ) from e


class LoggerGroup:
    """The one :class:`Logger` the engine holds: runs the callbacks on each record, then hands
    it to every logger, in order. Without loggers (ranks other than 0) it does nothing, and
    calls no callback."""

    def __init__(self, loggers: Sequence[Logger], callbacks: Sequence[Callable] = ()):
        self.loggers, self.callbacks = list(loggers), tuple(callbacks)

    def log(self, record: dict) -> None:
        if not self.loggers:
            return
        for callback in self.callbacks:
            extra = callback(dict(record)) or {}
            if not isinstance(extra, dict):
                raise TypeError(
                    f"a callback returned {type(extra).__name__}; return a dict of metrics "
                    "(or None)"
                )
            for key, value in extra.items():  # a tensor or NumPy number: a plain number
                record[key] = value.item() if hasattr(value, "item") else value
        for logger in self.loggers:
            logger.log(record)

    def flush(self) -> None:
        for logger in self.loggers:
            logger.flush()

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()

    def __enter__(self) -> LoggerGroup:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_loggers(
    run_dir: Path, config: Any, start: int, callbacks: Sequence[Callable], enabled: bool
) -> LoggerGroup:
    """The run's loggers: ``metrics.jsonl`` (cut back to step ``start``, for a resume) and those
    named in ``config.loggers``. ``enabled=False`` (ranks other than 0): none."""
    if not enabled:
        return LoggerGroup([])
    runs.keep_metrics_until(run_dir / runs.METRICS, start)
    loggers: list[Logger] = [JsonlLogger(run_dir / runs.METRICS)]
    try:
        for name in config.loggers:
            loggers.append(LOGGERS[name][0](run_dir, config))
    except BaseException:
        LoggerGroup(loggers).close()
        raise
    return LoggerGroup(loggers, callbacks)


class TrainMeans:
    """The train records: the means of the task's step metrics since the last record (over all
    ranks), with the step, epoch, learning rate and time since training started."""

    def __init__(self, per_epoch: int, world_size: int = 1):
        self.per_epoch, self.world_size = per_epoch, world_size
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.last: dict[str, float] = {}  # the means of the last record
        self.start = time.perf_counter()

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        """Add one step's metrics (device tensors: no wait for the device)."""
        for key, value in metrics.items():
            self.sums[key] = (
                self.sums[key] + value if key in self.sums else value.detach().float().clone()
            )
        self.count += 1

    def record(self, step: int, lr: float) -> dict:
        """The train record of ``step`` (one copy from the device); starts a new interval."""
        keys = sorted(self.sums)
        stacked = torch.stack([self.sums[k] for k in keys]) / self.count
        means = mean_over_ranks(stacked, self.world_size).tolist()
        self.last = dict(zip(keys, means, strict=True))
        self.sums, self.count = {}, 0
        elapsed = time.perf_counter() - self.start
        epoch = step / self.per_epoch
        return {
            "step": step,
            "split": "train",
            "epoch": epoch,
            "lr": lr,
            "time": elapsed,
            **self.last,
        }
