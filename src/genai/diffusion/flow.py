"""Flow matching with straight paths: conditional flow matching with the optimal-transport path
of Lipman et al. (2023, eq. 20-23, sigma_min = 0) = rectified flow (Liu et al. 2023, eq. 1).

Convention: time runs from data to noise, t = 0 is data and t = 1 is noise::

    x_t = (1 - t) x_0 + t eps,        x_0 ~ data (in [-1, 1]),  eps ~ N(0, I),  t ~ U[0, 1]
    u_t = d x_t / dt = eps - x_0      (the velocity target)
    L   = E_{t, x_0, eps} ||v_theta(x_t, t) - (eps - x_0)||^2

The minimizer is the marginal velocity v*(x, t) = E[eps - x_0 | x_t = x], whose ODE
dx/dt = v*(x, t) carries N(0, I) at t = 1 to the data at t = 0 (Lipman et al. theorem 1).
Sampling integrates it backwards from t = 1 to t = 0 on a uniform grid of ``steps`` intervals:
Euler (one network call per step) or Heun's second-order method (two per step; Karras et
al. 2022's algorithm 1, whose last step is Euler only because their velocity is singular at
sigma = 0, which a straight path's is not). The network's prediction of the data is
``x0^ = x_t - t v`` and of the noise ``eps^ = x_t + (1 - t) v``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

SAMPLERS = ("euler", "heun")

VelocityFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t (B,)) -> velocity


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps, with ``t (B,)`` broadcast over the other dimensions."""
    t = t.to(x0).view(-1, *([1] * (x0.dim() - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """u = eps - x_0, the time derivative of :func:`interpolate`."""
    return noise - x0


def loss(
    velocity_fn: VelocityFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """The flow-matching loss: mean over batch and dimensions of (v_theta(x_t, t) - u)^2."""
    out = velocity_fn(interpolate(x0, noise, t), t)
    return (out.float() - velocity_target(x0, noise)).pow(2).mean()


def renoise(x: torch.Tensor, t_from: float, t_to: float, generator=None) -> torch.Tensor:
    """A draw of x_{t_to} given x_{t_from} along the path's marginals, ``t_to >= t_from``: the data
    part shrinks by (1 - t_to) / (1 - t_from) and Gaussian noise tops the noise up to t_to.
    (RePaint's forward jump, for :meth:`Diffusion.impute`.)"""
    scale = (1 - t_to) / (1 - t_from)
    extra = max(0.0, t_to**2 - (scale * t_from) ** 2) ** 0.5
    noise = torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
    return scale * x + extra * noise


def step(
    velocity_fn: VelocityFn, x: torch.Tensor, t: float, t_next: float, sampler: str = "euler"
) -> torch.Tensor:
    """One step from t to t_next < t. Euler: x - h v(x, t) with h = t - t_next. Heun: the Euler
    proposal x', then x - h (v(x, t) + v(x', t_next)) / 2."""
    b, h = x.shape[0], t - t_next
    v = velocity_fn(x, torch.full((b,), t, device=x.device)).to(x.dtype)
    out = x - h * v
    if sampler == "heun":
        v2 = velocity_fn(out, torch.full((b,), t_next, device=x.device)).to(x.dtype)
        out = x - h * 0.5 * (v + v2)
    return out


def time_grid(steps: int) -> list[float]:
    """The ``steps + 1`` uniform times 1, ..., 0 the samplers step through."""
    return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).tolist()


@torch.no_grad()
def sample(
    velocity_fn: VelocityFn, x: torch.Tensor, steps: int, sampler: str = "euler"
) -> torch.Tensor:
    """Integrate dx/dt = v(x, t) from ``x`` at t = 1 to t = 0 in ``steps`` uniform steps
    (:func:`step`)."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {SAMPLERS}, got {sampler!r}")
    grid = time_grid(steps)
    for i in range(steps):
        x = step(velocity_fn, x, grid[i], grid[i + 1], sampler)
    return x
