"""Optimizers: AdamW with matrix-only decay, and Muon with its Newton-Schulz step batched."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


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


def muon_params(model: nn.Module) -> list[nn.Parameter]:
    """The hidden 2-D weights of a GPT: every matrix inside the Transformer blocks
    (``model.transformer.h``; not the embeddings, not the head), the parameters Muon
    orthogonalizes."""
    return [p for p in model.transformer.h.parameters() if p.dim() == 2 and p.requires_grad]


def newton_schulz(
    updates: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float
) -> torch.Tensor:
    """Muon's quintic Newton-Schulz orthogonalization of a stack of matrices ``(n, rows, cols)``,
    in bf16, as ``torch.optim.Muon`` does it one matrix at a time: each matrix is scaled to unit
    Frobenius norm, worked on with its short side first, and iterated ``X <- a X + (b A + c A^2)
    X`` with ``A = X X^T``. Returns bf16 ``(n, rows, cols)``."""
    a, b, c = coefficients
    x = updates.bfloat16()
    tall = x.shape[1] > x.shape[2]
    if tall:
        x = x.mT
    x = x / x.norm(dim=(1, 2), keepdim=True).clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.mT
        x = torch.baddbmm(x, torch.baddbmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.mT if tall else x


# torch.optim.Muon where this torch has it (>= 2.9); BatchedMuon needs it only when built.
_Muon: Any = getattr(torch.optim, "Muon", torch.optim.Optimizer)


class BatchedMuon(_Muon):
    """``torch.optim.Muon`` whose step runs the Newton-Schulz iterations of all same-shaped
    matrices as one chain of batched matmuls (see :func:`make_muon`)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            if group["adjust_lr_fn"] not in (None, "original"):
                raise ValueError(
                    f"genai's Muon scales updates as Muon's 'original' only, got "
                    f"adjust_lr_fn={group['adjust_lr_fn']!r}"
                )
            lr, mu = float(group["lr"]), group["momentum"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "momentum_buffer" not in self.state[p]:
                    self.state[p]["momentum_buffer"] = torch.zeros_like(p.grad)
            grads = [p.grad for p in params]
            bufs = [self.state[p]["momentum_buffer"] for p in params]
            # torch's Muon, as one foreach call per operation: buf <- mu buf + (1 - mu) g, and
            # the Nesterov update g + mu (buf - g) (else buf itself).
            torch._foreach_lerp_(bufs, grads, 1 - mu)
            updates = torch._foreach_lerp(grads, bufs, mu) if group["nesterov"] else bufs
            if group["weight_decay"]:
                torch._foreach_mul_(params, 1 - lr * group["weight_decay"])
            by_shape: dict[tuple, list[tuple[torch.Tensor, torch.Tensor]]] = {}
            for p, update in zip(params, updates, strict=True):
                key = (p.shape, p.device, p.dtype)  # the matrices stacked together
                by_shape.setdefault(key, []).append((p, update))
            for ((rows, cols), _, _), pairs in by_shape.items():
                ortho = newton_schulz(
                    torch.stack([u for _, u in pairs]),
                    group["ns_coefficients"],
                    group["ns_steps"],
                    group["eps"],
                )
                scaled_lr = lr * math.sqrt(max(1.0, rows / cols))  # Muon's "original"
                torch._foreach_add_([p for p, _ in pairs], list(ortho.unbind(0)), alpha=-scaled_lr)
        return loss


def make_muon(
    params: list[nn.Parameter], lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """``torch.optim.Muon`` (Nesterov momentum, 5 Newton-Schulz steps, the update of each matrix
    scaled by ``sqrt(max(1, rows / cols))`` as in Keller Jordan's Muon), with its step batched:
    the Newton-Schulz iterations of all same-shaped matrices (the same layer in every block) run
    as one chain of batched matmuls (4 chains instead of 16 at nanoGPT's CPU size: 9.3 ms instead
    of 13.6 for the step's Newton-Schulz work on 2 cores). The updates are torch's up to bf16
    rounding (bit for bit at that size); the optimizer's state (``momentum_buffer`` per matrix)
    and its checkpoints are torch's.

    Raises:
        RuntimeError: this torch has no ``torch.optim.Muon`` (it needs torch >= 2.9).
    """
    if getattr(torch.optim, "Muon", None) is None or _Muon is torch.optim.Optimizer:
        raise RuntimeError(
            f"optimizer='muon' needs torch >= 2.9 (torch.optim.Muon); this is torch "
            f"{torch.__version__}"
        )
    return BatchedMuon(
        params, lr=lr, momentum=momentum, weight_decay=weight_decay, adjust_lr_fn="original"
    )
