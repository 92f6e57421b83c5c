"""genai.optim: AdamW's parameter groups, and the batched Muon against its plain form."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from genai.optim import BatchedMuon, decay_groups, make_adamw, make_muon, newton_schulz

SHAPES = [
    (48, 16),
    (16, 16),
    (16, 48),
    (48, 16),
    (16, 48),
    (16, 16),
    (32, 16),
]  # tall, square, wide


def test_decay_groups_decay_matrices_only():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Conv2d(1, 2, 3))
    model[0].bias.requires_grad_(False)
    decayed, kept = decay_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and kept["weight_decay"] == 0.0
    assert {p.dim() for p in decayed["params"]} == {2, 4}
    assert all(p.dim() < 2 for p in kept["params"]) and len(kept["params"]) == 3  # no frozen bias
    opt = make_adamw(decay_groups(model, 0.1), 1e-3, torch.device("cpu"), betas=(0.8, 0.9))
    assert opt.defaults["fused"] and opt.param_groups[0]["betas"] == (0.8, 0.9)


def plain_muon_step(params, grads, buffers, lr, momentum, weight_decay, coefficients, ns_steps):
    """Muon one matrix at a time, as written in Keller Jordan's Muon (Nesterov, 'original'
    scaling), with genai's Newton-Schulz on stacks of one."""
    for p, g, buf in zip(params, grads, buffers, strict=True):
        buf.lerp_(g, 1 - momentum)
        update = g.lerp(buf, momentum)
        ortho = newton_schulz(update[None], coefficients, ns_steps, 1e-7)[0]
        rows, cols = p.shape
        p.mul_(1 - lr * weight_decay)
        p.add_(ortho, alpha=-lr * math.sqrt(max(1.0, rows / cols)))


def test_batched_muon_equals_the_plain_form_over_steps_with_mixed_shapes():
    gen = torch.Generator().manual_seed(0)
    start = [torch.randn(s, generator=gen) for s in SHAPES]
    ours = [nn.Parameter(w.clone()) for w in start]
    plain = [w.clone() for w in start]
    buffers = [torch.zeros_like(w) for w in start]
    kwargs = dict(lr=0.02, momentum=0.9, weight_decay=0.1)
    batched = make_muon(ours, **kwargs)
    assert isinstance(batched, BatchedMuon)
    group = batched.param_groups[0]
    reference = None
    if hasattr(torch.optim, "Muon"):  # torch's own Muon too, where this torch has it
        ref_params = [nn.Parameter(w.clone()) for w in start]
        reference = (ref_params, torch.optim.Muon(ref_params, **kwargs, adjust_lr_fn="original"))
    for _ in range(4):
        grads = [torch.randn(s, generator=gen) for s in SHAPES]
        for p, g in zip(ours, grads, strict=True):
            p.grad = g.clone()
        batched.step()
        with torch.no_grad():
            plain_muon_step(
                plain, grads, buffers, **kwargs,
                coefficients=group["ns_coefficients"], ns_steps=group["ns_steps"],
            )  # fmt: skip
        if reference is not None:
            for p, g in zip(reference[0], grads, strict=True):
                p.grad = g.clone()
            reference[1].step()
    # Newton-Schulz runs in bf16, and a stack of 2 rounds its matmuls differently from a stack
    # of 1: after 4 steps (lr 0.02) the weights agree to 1e-3 (3e-4 seen), the momentum
    # buffers (no Newton-Schulz in them) exactly.
    for p, q, buf, w0 in zip(ours, plain, buffers, start, strict=True):
        assert (p - w0).abs().max() > 0.02  # it moved (by up to 0.05 an entry)
        torch.testing.assert_close(p.detach(), q, rtol=0, atol=1e-3)
        torch.testing.assert_close(batched.state[p]["momentum_buffer"], buf, rtol=0, atol=0)
    if reference is not None:
        for p, q in zip(ours, reference[0], strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-3)


def test_batched_muon_refuses_other_lr_scalings():
    p = nn.Parameter(torch.randn(4, 4))
    opt = make_muon([p], lr=0.02, momentum=0.9, weight_decay=0.0)
    opt.param_groups[0]["adjust_lr_fn"] = "match_rms_adamw"
    p.grad = torch.randn(4, 4)
    with pytest.raises(ValueError, match="'original' only"):
        opt.step()
