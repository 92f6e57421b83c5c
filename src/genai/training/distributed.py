"""Data parallelism under ``torchrun``: joining the process group, and the collective helpers
the engine calls (each a no-op in a single process)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn

from genai.training.sharding import sharded


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


def barrier(world_size: int) -> None:
    """Wait for every rank (nothing to wait for in a single process)."""
    if world_size > 1:
        dist.barrier()


def broadcast_weights(module: nn.Module, world_size: int) -> None:
    """Every rank takes rank 0's weights (and buffers); a sharded model took them before
    sharding (:func:`genai.training.sharding.shard`)."""
    if world_size > 1 and not sharded(module):
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, 0)


def mean_over_ranks(tensor: torch.Tensor, world_size: int) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (``tensor`` itself in a single process)."""
    if world_size > 1:
        dist.all_reduce(tensor)
        tensor = tensor / world_size
    return tensor
