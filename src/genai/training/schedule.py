"""When things happen: the learning rate of each step, and the steps that evaluate or sample."""

from __future__ import annotations

import math
from typing import Any

import torch

SCHEDULES = ("constant", "cosine", "wsd")


def lr_factor(step: int, total: int, config: Any) -> float:
    """Multiplier of the base LR at ``step``: linear warmup, then constant, cosine or WSD.

    ``config`` is a :class:`~genai.training.engine.TrainConfig` (its ``warmup_steps``,
    ``lr_schedule``, ``min_lr_ratio`` and ``decay_fraction``).
    """
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


def lr_schedulers(
    optimizers: dict[str, torch.optim.Optimizer], total: int, config: Any
) -> dict[str, torch.optim.lr_scheduler.LambdaLR]:
    """One ``LambdaLR`` per named optimizer, scaling its LRs by :func:`lr_factor`."""
    return {
        name: torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, config))
        for name, opt in optimizers.items()
    }


def due(step: int, every: int, per_epoch: int, total: int) -> bool:
    """Whether an evaluation (or a sample) is due after optimizer step ``step``: every ``every``
    steps (0: once per epoch of ``per_epoch`` steps) and at the last step, ``total``."""
    every = every or per_epoch
    return step % every == 0 or step == total
