"""RePaint (Lugmayr et al. 2022): fill in missing pixels with a diffusion model's own sampler.

At each sampling step the observed pixels are set to a fresh draw of the forward process at the
new noise level, and ``resample - 1`` times per step the whole image is noised back up one step
and denoised again, so that the filled-in part agrees with the observed part. The three moves of
a step (``observed``, ``forward``, ``back``) come from the DDPM chain or from the flow's ODE.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch

from genai.diffusion import ddpm, flow

Noise = Callable[[], torch.Tensor]


class Moves(NamedTuple):
    """The steps in order, and for step j: the observed pixels' draw at its end, the sampler's
    step (``forward``) and one step of the forward process back up (``back``)."""

    order: list[int]
    observed: Callable[[int], torch.Tensor]
    forward: Callable[[torch.Tensor, int], torch.Tensor]
    back: Callable[[torch.Tensor, int], torch.Tensor]


def ddpm_moves(process, fn, x0: torch.Tensor, steps: int, sampler: str, noise: Noise, generator):
    """The moves over DDPM's subsequence of ``steps`` timesteps (step j: seq[j] -> seq[j-1])."""
    seq = ddpm.timestep_subsequence(process.timesteps, steps)
    abar = [float(process.alpha_bar[i]) for i in seq]

    def level(j: int) -> float:  # abar after step j (x_0 at the end)
        return abar[j - 1] if j > 0 else 1.0

    def observed(j: int) -> torch.Tensor:  # q(x_prev | x_0) of the observed pixels
        return math.sqrt(level(j)) * x0 + math.sqrt(1 - level(j)) * noise()

    def back(z: torch.Tensor, j: int) -> torch.Tensor:  # q(x_t | x_prev): one step up
        a = abar[j] / level(j)
        return math.sqrt(a) * z + math.sqrt(1 - a) * noise()

    def forward(z: torch.Tensor, j: int) -> torch.Tensor:
        if sampler == "ddim":
            return process.ddim_step(fn, z, seq, j)
        return process.ddpm_step(fn, z, seq, j, generator)

    return Moves(list(reversed(range(len(seq)))), observed, forward, back)


def flow_moves(fn, x0: torch.Tensor, steps: int, sampler: str, noise: Noise, generator):
    """The moves over the flow's time grid (step j: grid[j] -> grid[j + 1])."""
    grid = flow.time_grid(steps)
    b = x0.shape[0]

    def observed(j: int) -> torch.Tensor:
        return flow.interpolate(x0, noise(), torch.full((b,), grid[j + 1]))

    def back(z: torch.Tensor, j: int) -> torch.Tensor:
        return flow.renoise(z, grid[j + 1], grid[j], generator)

    def forward(z: torch.Tensor, j: int) -> torch.Tensor:
        return flow.step(fn, z, grid[j], grid[j + 1], sampler)

    return Moves(list(range(steps)), observed, forward, back)


def run(state: torch.Tensor, mask: torch.Tensor, moves: Moves, resample: int) -> torch.Tensor:
    """RePaint's loop from noise ``state``; ``mask`` is True where a pixel is observed."""
    for j in moves.order:
        for r in range(resample):
            z = torch.where(mask, moves.observed(j), moves.forward(state, j))
            state = moves.back(z, j) if r < resample - 1 else z
    return state
