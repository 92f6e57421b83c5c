"""When a run saves, what a save checks, and what the run directory keeps when training stops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from genai.core import checkpoint
from genai.core.rundir import RunDirectory
from genai.training.loggers import Logger
from genai.training.sharding import full_state, nonfinite, sharded
from genai.training.signals import TrainingInterrupted
from genai.training.state import resume_state


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class Checkpointer:
    """The checkpoint side of the loop, for one run.

    * :meth:`watch` notes the first non-finite loss on the device (no wait per step);
      :meth:`check_finite` raises it, naming the step and what the run directory keeps; under
      ``torchrun`` every rank calls it at the same steps and learns of any rank's, so that
      all stop together instead of waiting for a rank that stopped.
    * :meth:`due` is the cadence: every ``checkpoint_every`` steps, the last step, and a stop
      request (unless stopping undoes an overwrite, see :attr:`undoes_overwrite`).
    * :meth:`commit` checks the loss and the weights, flushes the logs and saves (rank 0).
    * :meth:`interrupted` saves the step a stop request ended (if not yet saved) and returns the
      :class:`TrainingInterrupted` to raise.

    Args:
        run: the run directory held by this process (``None`` on ranks other than 0, which
            check but never write).
        task: the training task (its ``model``, ``kind`` and ``checkpoint_extra``).
        config: the train config, stored in ``config.json``.
        optimizers, schedulers, scalers: what ``state.pt`` holds, by name.
        logger: flushed before each save, so the log is current whenever a checkpoint is.
        start: the step training starts (or resumes) from.
        device: where the losses are.
        world_size: processes under ``torchrun``.
    """

    def __init__(
        self,
        run: RunDirectory | None,
        task: Any,
        config: Any,
        optimizers: dict,
        schedulers: dict,
        scalers: dict,
        logger: Logger,
        start: int,
        device: torch.device,
        world_size: int = 1,
    ):
        self.run, self.task, self.config, self.logger = run, task, config, logger
        self.optimizers, self.schedulers, self.scalers = optimizers, schedulers, scalers
        self.run_dir = Path(config.out_dir)
        self.last_saved: int | None = start if config.resume else None
        # The step of the first non-finite loss, kept on the device.
        self.first_bad = torch.tensor(-1, device=device)
        self.world_size = world_size

    def kept(self) -> str:
        """What the run directory holds if training stops now."""
        if self.last_saved is not None:
            return f"the last good checkpoint (step {self.last_saved})"
        return "no checkpoint yet" if not self.config.overwrite else "the previous run"

    def watch(self, step: int, loss: torch.Tensor) -> None:
        """Note ``loss`` of (0-based) ``step`` if it is the first non-finite one."""
        bad = (self.first_bad < 0) & ~torch.isfinite(loss)
        self.first_bad = torch.where(bad, step, self.first_bad)

    def check_finite(self) -> None:
        """Raise :class:`NonFiniteLossError` if a watched loss was not finite, on this rank or
        (under ``torchrun``, a collective: every rank calls it) on any (waits for the device)."""
        bad = self.first_bad
        if self.world_size > 1:  # the first bad step of any rank; a rank without one: never
            never = torch.iinfo(bad.dtype).max
            bad = torch.where(bad < 0, never, bad)
            dist.all_reduce(bad, op=dist.ReduceOp.MIN)
            bad = torch.where(bad == never, -1, bad)
        bad = int(bad.item())
        if bad >= 0:
            self.logger.flush()
            raise NonFiniteLossError(
                f"loss became non-finite at step {bad + 1}; training stopped, {self.run_dir} "
                f"keeps {self.kept()}"
            )

    @property
    def undoes_overwrite(self) -> bool:
        """Stopping now puts the previous run back: an overwrite before its first checkpoint."""
        return self.run is not None and self.run.holds_previous

    def due(self, step: int, total: int, stopping: bool) -> bool:
        """Whether to save after ``step``. A stop saves too, except before an overwriting run's
        first checkpoint (then the old run comes back instead)."""
        every = self.config.checkpoint_every and step % self.config.checkpoint_every == 0
        return bool(every or step == total or (stopping and not self.undoes_overwrite))

    def commit(self, step: int) -> None:
        """Check the loss and the weights, flush the logs and save the checkpoint of ``step``."""
        self.check_finite()
        bad = nonfinite(self.task.model)  # every rank agrees, sharded or not
        if bad:  # e.g. an infinite learning rate: the loss may still look finite
            raise NonFiniteLossError(
                f"weights became non-finite by step {step} ({', '.join(bad[:3])}); training "
                f"stopped, {self.run_dir} keeps {self.kept()}"
            )
        self.logger.flush()  # the log is current whenever a checkpoint is
        task, optimizers = self.task, self.optimizers
        model = task.model
        if sharded(model):  # every rank gathers, rank 0 gets the full weights and moments
            model, optimizers = full_state(model, self.optimizers)
        if self.run is not None:
            state = resume_state(optimizers, self.schedulers, self.scalers)
            checkpoint.save_checkpoint(
                self.run.path, model, task.kind, step, self.config, state,
                task.checkpoint_extra(),
            )  # fmt: skip
            self.run.committed()
        self.last_saved = step

    def interrupted(self, step: int, total: int, signal_name: str) -> TrainingInterrupted:
        """After a stop request at ``step``: save it unless already saved (the signal came during
        an evaluation or samples) or an overwrite is undone; the error says what the run
        directory holds. At the last step the run is complete (and saved)."""
        if step == total:
            return TrainingInterrupted(
                f"training finished its last step ({total}) after {signal_name}; {self.run_dir} "
                "holds the complete run"
            )
        if self.undoes_overwrite:
            return TrainingInterrupted(
                f"training stopped at step {step} of {total} ({signal_name}) before its first "
                f"checkpoint; {self.run_dir} holds the previous run again (the overwrite is "
                "undone)"
            )
        if self.last_saved != step:
            self.commit(step)
        return TrainingInterrupted(
            f"training stopped at step {step} of {total} ({signal_name}); {self.run_dir} holds "
            f"its checkpoint: go on with resume=True (genai train {self.task.kind} --resume "
            f"{self.run_dir})"
        )
