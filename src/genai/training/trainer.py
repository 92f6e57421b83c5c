"""The engine's side of a step: autocast, backward with the grad scaler, clipped updates."""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

from genai.core.device import autocast, grad_scaler
from genai.training.sharding import check_optimizers


class Trainer:
    """What a task's ``train_step`` uses: autocast, backward with the grad scaler, clipped updates.

    Args:
        config: the :class:`~genai.training.engine.TrainConfig` (its ``precision`` and
            ``grad_clip``).
        device: the device the model is on.
        optimizers: the task's named optimizers; each gets its own grad scaler.
        world_size: processes under ``torchrun``; above 1, gradients are averaged over them
            (under ``strategy="fsdp"`` FSDP2 reduce-scatters them in the backward pass).
    """

    def __init__(self, config: Any, device: torch.device, optimizers: dict, world_size: int = 1):
        self.config = config
        self.device = device
        self.optimizers = optimizers
        self.world_size = world_size
        self.scalers = {name: grad_scaler(device, config.precision) for name in optimizers}
        self.sharded = world_size > 1 and getattr(config, "strategy", "ddp") == "fsdp"
        if self.sharded:
            check_optimizers(optimizers)

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
        if self.world_size > 1 and not self.sharded:
            average_gradients(params, self.world_size)
        if self.config.grad_clip > 0:
            for optimizer in optimizers:
                scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(params, self.config.grad_clip)  # sharded: the global norm
        for optimizer in optimizers:
            scaler.step(optimizer)
        scaler.update()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)

    def optimize(self, loss: torch.Tensor, name: str) -> None:
        """``backward`` then ``step``: one full update of optimizer ``name`` from ``loss``."""
        self.backward(loss, name)
        self.step(name)


def average_gradients(params: list[torch.Tensor], world_size: int) -> None:
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


def maybe_compile(module: nn.Module, config: Any) -> nn.Module:
    """``torch.compile(module)`` when ``config.compile``; checkpoints save the original module."""
    return torch.compile(module) if config.compile else module
