"""Sharded data parallelism (``strategy="fsdp"``): PyTorch's FSDP2 (``fully_shard``) under
``torchrun``, and the full (unsharded) weights and optimizer state that checkpoints hold.

Under ``fsdp`` each rank keeps 1/world of every parameter, gradient and optimizer moment; a
layer's weights are all-gathered for its forward and backward and its gradients reduce-scattered
(averaged). Checkpoints stay what a single process writes: rank 0 saves the full weights
(``model.safetensors``) and the full optimizer state (``state.pt``), gathered on the CPU, and a
resume loads them whole and re-shards them. In a single process nothing is sharded.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from genai.core import checkpoint

log = logging.getLogger(__name__)

STRATEGIES = ("ddp", "fsdp")
# The kinds whose training step runs through the model's forward (what FSDP2's hooks gather).
FSDP_KINDS = ("gpt",)
# Element-wise optimizers: a shard's update needs only the shard (Muon needs whole matrices).
ELEMENTWISE = (torch.optim.AdamW, torch.optim.Adam, torch.optim.SGD)
# torch's FSDP2 and distributed state dicts are imported by the functions that use them, on a
# sharded model only: importing them costs every run half a second of start-up.


def sharded(model: nn.Module) -> bool:
    """Whether ``model`` is sharded by ``fully_shard`` (then collectives run in its forward,
    its backward and the gathers below, on every rank). Without FSDP2 imported, nothing is."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(model, fsdp.FSDPModule)


def setup(task: Any, device: torch.device, config: Any, world: int) -> Any:
    """``task.setup(device)``, with the model sharded first under ``strategy="fsdp"`` (before it
    moves to ``device``: the full model never sits on one accelerator)."""
    if config.strategy == "fsdp":
        if task.kind not in FSDP_KINDS:
            raise ValueError(
                f"strategy 'fsdp' supports the {', '.join(FSDP_KINDS)} kind only, not "
                f"{task.kind!r}: use strategy 'ddp'"
            )
        if world > 1:
            shard(task.model, device, world)
    return task.setup(device)


def shard(model: nn.Module, device: torch.device, world: int) -> None:
    """Every rank takes rank 0's weights, then ``fully_shard`` each element of every
    ``nn.ModuleList`` (a transformer's blocks: one all-gather per block) and then the root (the
    rest: embeddings, final norm, head; tied weights stay tied)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    for tensor in model.state_dict().values():  # one tensor at a time on the device (NCCL)
        moved = tensor.to(device)
        dist.broadcast(moved, 0)
        tensor.copy_(moved)
    mesh = init_device_mesh(device.type, (world,))
    blocks = [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]
    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    log.info("fsdp: %d blocks and the root sharded over %d ranks", len(blocks), world)


def check_optimizers(optimizers: dict[str, torch.optim.Optimizer]) -> None:
    """Refuse an optimizer whose update of a shard needs more than the shard."""
    for name, optimizer in optimizers.items():
        if not isinstance(optimizer, ELEMENTWISE):
            raise ValueError(
                f"strategy 'fsdp' needs element-wise optimizers (AdamW, Adam, SGD); {name!r} is "
                f"{type(optimizer).__name__}: use strategy 'ddp' or optimizer 'adamw'"
            )


class FullWeights(nn.Module):
    """The full weights of a sharded model, as ``save_checkpoint`` takes a model: its
    ``config`` and ``state_dict()`` (tied weights share one tensor, as in the model)."""

    def __init__(self, config: Any, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.config, self.weights = config, weights

    def state_dict(self, *args, **kwargs) -> dict[str, torch.Tensor]:
        return self.weights


def _tied(model: nn.Module) -> list[list[str]]:
    """Groups of parameter names that are one parameter (a tied head and embedding)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def full_state(model: nn.Module, optimizers: dict) -> tuple[nn.Module, dict]:
    """What a checkpoint saves: the model (or its :class:`FullWeights`) and each optimizer's
    state dict. On a sharded model this gathers (every rank must call it) the full weights and
    the full optimizer states (keyed by parameter name) onto rank 0's CPU; other ranks get
    empty ones."""
    if not sharded(model):
        return model, {name: opt.state_dict() for name, opt in optimizers.items()}
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    full = StateDictOptions(full_state_dict=True, cpu_offload=True)  # rank 0 gets it, on the CPU
    weights = {n: _own(t) for n, t in get_model_state_dict(model, options=full).items()}
    for names in _tied(model):
        if names[0] in weights:
            for name in names[1:]:
                weights[name] = weights[names[0]]
    states = {
        name: get_optimizer_state_dict(model, opt, options=full) for name, opt in optimizers.items()
    }
    return FullWeights(model.config, weights), states


def _own(t: torch.Tensor) -> torch.Tensor:
    """``t`` in a storage of its own (a gathered tensor may view a larger buffer, which
    safetensors refuses to save)."""
    return t if t.untyped_storage().nbytes() == t.nbytes else t.clone()


def nonfinite(model: nn.Module) -> list[str]:
    """Names of the model's floating-point tensors that hold NaN or infinity; on a sharded
    model each rank checks its shards and all ranks agree on the answer."""
    if not sharded(model):
        return checkpoint.check_finite(model)
    from torch.distributed.tensor import DTensor

    names, flags = [], []
    for name, t in model.state_dict().items():
        local = t.to_local() if isinstance(t, DTensor) else t
        if local.is_floating_point():
            names.append(name)
            flags.append(not bool(torch.isfinite(local).all()))
    flag = torch.tensor(flags, dtype=torch.int32, device=_device(model))
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return [name for name, bad in zip(names, flag.tolist(), strict=True) if bad]


def load_weights(run_dir: Any, model: nn.Module, saved: dict) -> None:
    """Load ``model.safetensors`` into ``model``; a sharded model takes its shards of it."""
    if not sharded(model):
        checkpoint.load_weights(run_dir, model, saved)
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    weights = checkpoint.read_weights(run_dir, saved)
    for names in _tied(model):  # the file holds a tied tensor once
        for name in names:
            weights.setdefault(name, next(weights[n] for n in names if n in weights))
    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(model, weights, options=options)


def load_optimizer(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a saved optimizer state (full; keyed by parameter index, as a single process saves
    it, or by name, as ``fsdp`` saves it) into ``optimizer``; a sharded one takes its shards."""
    if not sharded(model):
        optimizer.load_state_dict(state)  # by position: names or indices alike
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )

    if all(isinstance(k, int) for k in state["state"]):  # a single process's: name the indices
        local = get_optimizer_state_dict(model, optimizer)  # names in the optimizer's order
        names = [n for group in local["param_groups"] for n in group["params"]]
        index = [i for group in state["param_groups"] for i in group["params"]]
        if len(names) != len(index):
            raise ValueError(f"{len(index)} saved parameters, the optimizer has {len(names)}")
        by_index = dict(zip(index, names, strict=True))
        state = {
            "state": {by_index[i]: s for i, s in state["state"].items()},
            "param_groups": [
                {**g, "params": [by_index[i] for i in g["params"]]} for g in state["param_groups"]
            ],
        }
    set_optimizer_state_dict(
        model, optimizer, state, options=StateDictOptions(full_state_dict=True)
    )


@contextlib.contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Every rank holds the whole model inside (no collective runs in its forward passes), so
    that rank 0 alone may evaluate and sample; its shards come back after. Every rank enters
    it; a model that is not sharded is left alone."""
    units = [m for m in model.modules() if sharded(m)]
    for unit in units:
        unit.unshard()
        unit.set_reshard_after_forward(False, recurse=False)
    try:
        yield
    finally:
        for unit in units:
            unit.set_reshard_after_forward(unit is not model, recurse=False)
            unit.reshard()


def is_main() -> bool:
    """Rank 0, or the only process."""
    return not dist.is_initialized() or dist.get_rank() == 0


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
