"""Denoising diffusion probabilistic models (Ho et al. 2020), improved (Nichol & Dhariwal 2021),
and their deterministic sampler DDIM (Song et al. 2021), as functions of a schedule.

Data ``x_0`` live in [-1, 1] (images ``2 x - 1``). Timesteps are 0-indexed here: index
``i = 0 .. T-1`` is Ho et al.'s ``t = i + 1``, so ``alpha_bar[0] = 1 - beta_1``.

Forward process (Ho et al. eq. 2 and 4)::

    q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I)
    q(x_t | x_0)     = N(sqrt(abar_t) x_0, (1 - abar_t) I),   abar_t = prod_{s<=t} (1 - beta_s)

Posterior (eq. 6-7)::

    q(x_{t-1} | x_t, x_0) = N(mu~_t, beta~_t I)
    mu~_t   = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t
    beta~_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t

Parameterizations of the network output at ``x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps``, each
an exact affine function of another given ``x_t`` (v: Salimans & Ho 2022, eq. 8 ff.)::

    x_0 = (x_t - sqrt(1 - abar) eps) / sqrt(abar)
    v   = sqrt(abar) eps - sqrt(1 - abar) x_0
    x_0 = sqrt(abar) x_t - sqrt(1 - abar) v,    eps = sqrt(1 - abar) x_t + sqrt(abar) v

The simple loss (Ho et al. eq. 14) is ``E_{t, x_0, eps} ||target - net(x_t, t)||^2`` with the
target eps (or v). The reverse process p(x_{t-1} | x_t) = N(mu_theta, sigma_t^2 I) plugs the
predicted x_0 into mu~_t, with sigma_t^2 = beta~_t (Ho et al. sec. 3.2's second choice, the one
DDIM with eta = 1 reproduces). Fewer sampling steps use a subsequence tau of the timesteps with
the respaced betas ``1 - abar_{tau_i} / abar_{tau_{i-1}}`` (Nichol & Dhariwal sec. 4).

The variational bound (eq. 5), in nats, summed over the dimensions::

    L = L_T + sum_{t=2}^T L_{t-1} + L_0
    L_T     = KL(q(x_T | x_0) || N(0, I))
    L_{t-1} = KL(q(x_{t-1} | x_t, x_0) || p(x_{t-1} | x_t))
    L_0     = -log p(x_0 | x_1)    (the discretized Gaussian decoder, eq. 13)

divided by ``D ln 2`` it is bits per dimension of the 8-bit data, an upper bound on the
model's negative log-likelihood comparable with the VAE's (:meth:`VAE.bits_per_dim`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

SCHEDULES = ("linear", "cosine")
PREDICTIONS = ("eps", "v", "x0")

ModelFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t index (B,)) -> output


def linear_betas(timesteps: int) -> torch.Tensor:
    """Ho et al.'s schedule: beta linear from 1e-4 to 0.02 at T = 1000, both ends scaled by
    1000 / T for other T (Nichol & Dhariwal's rescaling). ``(T,)`` float64."""
    scale = 1000.0 / timesteps
    return torch.linspace(scale * 1e-4, scale * 0.02, timesteps, dtype=torch.float64)


def cosine_betas(timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's schedule (eq. 17): abar(t) = f(t) / f(0) with
    f(t) = cos((t / T + s) / (1 + s) * pi / 2)^2, beta_t = 1 - abar(t) / abar(t - 1) clipped to
    ``max_beta``. ``(T,)`` float64."""
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    return (1 - f[1:] / f[:-1]).clamp(max=max_beta)


def make_betas(schedule: str, timesteps: int) -> torch.Tensor:
    if schedule == "linear":
        return linear_betas(timesteps)
    if schedule == "cosine":
        return cosine_betas(timesteps)
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")


def normal_kl(mean1, logvar1, mean2, logvar2) -> torch.Tensor:
    """KL(N(mean1, e^logvar1) || N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) - 1.0) + 0.5 * (
        mean1 - mean2
    ) ** 2 * torch.exp(-logvar2)


def _std_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per element of ``x`` on the 256-level grid of [-1, 1] (Ho et al. eq. 13): the mass
    of N(mean, e^(2 log_scale)) in the bin [x - 1/255, x + 1/255], the edge bins stretched to
    -inf and +inf, so the 256 probabilities sum to 1."""
    inv_std = torch.exp(-log_scale)
    cdf_plus = _std_normal_cdf(inv_std * (x - mean + 1.0 / 255))
    cdf_minus = _std_normal_cdf(inv_std * (x - mean - 1.0 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_minus = torch.log((1.0 - cdf_minus).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_minus).clamp(min=1e-12))
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_minus, log_delta)
    )


def _at(values: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``values[t]`` ``(B,)`` as ``(B, 1, ..., 1)`` in ``x``'s dtype and device."""
    out = values.to(t.device)[t].to(x.dtype)
    return out.view(-1, *([1] * (x.dim() - 1)))


def timestep_subsequence(timesteps: int, steps: int) -> list[int]:
    """``steps`` indices evenly spread over ``0 .. T-1``, ascending, the last always ``T - 1``
    (the "trailing" spacing of Lin et al. 2024: sampling starts from pure noise even at one
    step): ``round(T (i + 1) / steps) - 1``; all T indices when ``steps >= T``."""
    steps = min(steps, timesteps)
    return sorted({round(timesteps * (i + 1) / steps) - 1 for i in range(steps)})


class GaussianDiffusion:
    """A beta schedule and everything computed from it (float64 tables, indexed per batch).

    Args:
        betas: ``(T,)`` noise variances, each in (0, 1).
        prediction: what the network predicts: ``"eps"``, ``"v"`` or ``"x0"``.
    """

    def __init__(self, betas: torch.Tensor, prediction: str = "eps"):
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        self.betas = betas = betas.double()
        self.timesteps = betas.shape[0]
        self.alpha_bar = torch.cumprod(1.0 - betas, dim=0)
        self.alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar[:-1]])
        # beta~_t (eq. 7), the reverse variance sigma_t^2; 0 at t = 1, where the decoder uses
        # beta~_2 instead (as Ho et al.'s code: posterior_log_variance_clipped)
        posterior_var = (1 - self.alpha_bar_prev) / (1 - self.alpha_bar) * betas
        self.model_logvar = torch.log(torch.cat([posterior_var[1:2], posterior_var[1:]]))

    # ---- the forward process ------------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps: a draw of q(x_t | x_0) (eq. 4)."""
        ab = _at(self.alpha_bar, t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def q_posterior(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, prev=None):
        """Mean and variance of q(x_prev | x_t, x_0) (eq. 6-7), ``prev`` the previous index
        (default ``t - 1``; any earlier index for a respaced chain, -1 meaning x_0 itself)."""
        ab = _at(self.alpha_bar, t, xt)
        if prev is None:
            ab_prev = _at(self.alpha_bar_prev, t, xt)
        else:
            table = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])
            ab_prev = _at(table, prev + 1, xt)
        beta = 1 - ab / ab_prev  # the (respaced) beta_t
        mean = (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * xt) / (1 - ab)
        var = (1 - ab_prev) / (1 - ab) * beta
        return mean, var

    # ---- parameterizations ---------------------------------------------------------------------

    def eps_to_x0(self, xt, t, eps):
        ab = _at(self.alpha_bar, t, xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def x0_to_eps(self, xt, t, x0):
        ab = _at(self.alpha_bar, t, xt)
        return (xt - ab.sqrt() * x0) / (1 - ab).sqrt()

    def v_target(self, x0, t, eps):
        """v = sqrt(abar) eps - sqrt(1 - abar) x_0."""
        ab = _at(self.alpha_bar, t, x0)
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0

    def v_to_x0(self, xt, t, v):
        ab = _at(self.alpha_bar, t, xt)
        return ab.sqrt() * xt - (1 - ab).sqrt() * v

    def v_to_eps(self, xt, t, v):
        ab = _at(self.alpha_bar, t, xt)
        return (1 - ab).sqrt() * xt + ab.sqrt() * v

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """What the network is trained to output for ``x_t = q_sample(x0, t, noise)``."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "v":
            return self.v_target(x0, t, noise)
        return x0

    def to_x0_eps(self, xt, t, out, clip: bool = False):
        """The network output ``out`` as (x_0, eps) predictions; ``clip`` clamps x_0 to [-1, 1]
        (and recomputes eps from it), as Ho et al.'s sampler does."""
        if self.prediction == "eps":
            x0 = self.eps_to_x0(xt, t, out)
        elif self.prediction == "v":
            x0 = self.v_to_x0(xt, t, out)
        else:
            x0 = out
        if clip:
            x0 = x0.clamp(-1, 1)
        elif self.prediction == "eps":
            return x0, out
        return x0, self.x0_to_eps(xt, t, x0)

    # ---- training ------------------------------------------------------------------------------

    def loss(
        self, model_fn: ModelFn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
    ) -> torch.Tensor:
        """L_simple (eq. 14): the mean over the batch and dimensions of (target - output)^2."""
        out = model_fn(self.q_sample(x0, t, noise), t)
        return (self.target(x0, t, noise) - out.float()).pow(2).mean()

    # ---- sampling ------------------------------------------------------------------------------

    def ddim_step(self, model_fn, x, seq, j, eta=0.0, generator=None, clip=True):
        """One DDIM step (Song et al. 2021, eq. 12) from index ``seq[j]`` to ``seq[j - 1]``
        (to x_0 at j = 0)::

            x_prev = sqrt(abar_prev) x0^ + sqrt(1 - abar_prev - sigma^2) eps^ + sigma z
            sigma  = eta sqrt((1 - abar_prev) / (1 - abar)) sqrt(1 - abar / abar_prev)

        eta = 0 is deterministic; eta = 1 is the ancestral step with sigma^2 = beta~ (eq. 16).
        """
        t = torch.full((x.shape[0],), seq[j], device=x.device, dtype=torch.long)
        x0, eps = self.to_x0_eps(x, t, model_fn(x, t).to(x.dtype), clip)
        ab = float(self.alpha_bar[seq[j]])
        ab_prev = float(self.alpha_bar[seq[j - 1]]) if j > 0 else 1.0
        sigma = eta * math.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
        out = math.sqrt(ab_prev) * x0 + math.sqrt(max(0.0, 1 - ab_prev - sigma**2)) * eps
        return out + sigma * _randn(x, generator) if sigma > 0 else out

    def ddpm_step(self, model_fn, x, seq, j, generator=None, clip=True):
        """One ancestral step (Ho et al. algorithm 2) from ``seq[j]`` to ``seq[j - 1]``:
        x_prev ~ N(mu~(x0^, x_t), beta~ I) with the (respaced) posterior; the mean at j = 0."""
        t = torch.full((x.shape[0],), seq[j], device=x.device, dtype=torch.long)
        x0, _ = self.to_x0_eps(x, t, model_fn(x, t).to(x.dtype), clip)
        prev = torch.full_like(t, seq[j - 1] if j > 0 else -1)
        mean, var = self.q_posterior(x0, x, t, prev)
        return mean + var.sqrt() * _randn(x, generator) if j > 0 else mean

    @torch.no_grad()
    def ddim_sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        steps: int,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        clip: bool = True,
    ) -> torch.Tensor:
        """DDIM from ``x = x_T`` over ``steps`` timesteps (:func:`timestep_subsequence`)."""
        seq = timestep_subsequence(self.timesteps, steps)
        for j in reversed(range(len(seq))):
            x = self.ddim_step(model_fn, x, seq, j, eta, generator, clip)
        return x

    @torch.no_grad()
    def ddpm_sample(
        self,
        model_fn: ModelFn,
        x: torch.Tensor,
        steps: int | None = None,
        generator: torch.Generator | None = None,
        clip: bool = True,
    ) -> torch.Tensor:
        """Ancestral sampling from ``x = x_T`` over all T timesteps, or over ``steps`` of them
        with respaced betas ``1 - abar_{tau_i} / abar_{tau_{i-1}}``."""
        seq = timestep_subsequence(self.timesteps, steps or self.timesteps)
        for j in reversed(range(len(seq))):
            x = self.ddpm_step(model_fn, x, seq, j, generator, clip)
        return x

    # ---- the variational bound -----------------------------------------------------------------

    @torch.no_grad()
    def prior_kl(self, x0: torch.Tensor) -> torch.Tensor:
        """L_T = KL(q(x_T | x_0) || N(0, I)) per example, in nats. ``(B, ...) -> (B,)``."""
        t = torch.full((x0.shape[0],), self.timesteps - 1, device=x0.device, dtype=torch.long)
        ab = _at(self.alpha_bar, t, x0).double()
        mean, logvar = ab.sqrt() * x0.double(), torch.log(1 - ab).expand_as(x0)
        return (
            normal_kl(mean, logvar, torch.zeros_like(mean), torch.zeros_like(mean))
            .flatten(1)
            .sum(1)
        )

    @torch.no_grad()
    def vb_term(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor,
    ) -> torch.Tensor:
        """The bound's term at index ``t`` ``(B,)``, per example, in nats: L_{t-1} (a KL) for
        t > 0 and L_0 = -log p(x_0 | x_1) (the discretized Gaussian decoder) for t = 0."""
        xt = self.q_sample(x0, t, noise)
        x0_hat, _ = self.to_x0_eps(xt, t, model_fn(xt, t).to(xt.dtype), clip=False)
        x0, xt = x0.double(), xt.double()
        true_mean, _ = self.q_posterior(x0, xt, t)
        model_mean, _ = self.q_posterior(x0_hat.double(), xt, t)
        logvar = _at(self.model_logvar, t, xt)
        kl = normal_kl(true_mean, logvar, model_mean, logvar).flatten(1).sum(1)
        log_p = discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * logvar)
        decoder = -log_p.flatten(1).sum(1)
        return torch.where(t == 0, decoder, kl)

    @torch.no_grad()
    def bound_terms(
        self,
        model_fn: ModelFn,
        x0: torch.Tensor,
        strata: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """The variational bound of ``x0`` ``(B, ...)`` in [-1, 1] on the 8-bit grid, per example,
        in nats: ``prior`` (L_T), ``diffusion`` (sum of L_{t-1}, t = 2..T), ``decoder`` (L_0),
        ``total`` (their sum) and ``terms`` ``(B, T)`` (L_0, L_1, ..., L_{T-1}; zero where not
        computed).

        ``strata=None`` computes all T terms (one noise draw each). ``strata=S`` splits the KL
        terms t = 1..T-1 into at most S runs, log-spaced (the small-t terms are the large ones,
        so they get runs of one), and computes one term per run and example, at an index drawn
        uniformly within the run, weighted by the run's length: an unbiased estimate of the sum
        in about S network calls instead of T.
        """
        b, big_t = x0.shape[0], self.timesteps
        terms = torch.zeros(b, big_t, dtype=torch.float64, device=x0.device)
        if strata is None or strata >= big_t - 1:
            edges = list(range(1, big_t + 1))
        else:
            edges = sorted({round(big_t ** (k / strata)) for k in range(strata + 1)} | {1, big_t})
        diffusion = torch.zeros(b, dtype=torch.float64, device=x0.device)
        t0 = torch.zeros(b, device=x0.device, dtype=torch.long)
        terms[:, 0] = self.vb_term(model_fn, x0, t0, _randn(x0, generator))
        rows = torch.arange(b, device=x0.device)
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            pick = torch.randint(hi - lo, (b,), generator=_cpu(generator)).to(x0.device) + lo
            term = self.vb_term(model_fn, x0, pick, _randn(x0, generator))
            terms[rows, pick] = term
            diffusion += (hi - lo) * term
        prior, decoder = self.prior_kl(x0), terms[:, 0]
        return {
            "prior": prior,
            "diffusion": diffusion,
            "decoder": decoder,
            "total": prior + diffusion + decoder,
            "terms": terms,
        }


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """``generator`` when it draws on the CPU (the strata's indices are drawn there)."""
    return generator if generator is not None and generator.device.type == "cpu" else None


def _randn(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, device=x.device, dtype=x.dtype, generator=generator)
