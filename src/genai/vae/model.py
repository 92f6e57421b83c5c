"""Variational autoencoder (Kingma & Welling 2014) for ``(C, H, W)`` images (MNIST by default).

The encoder maps x to the mean and log-variance of a diagonal Gaussian q(z|x); the
reparameterization z = mu + sigma * eps keeps sampling differentiable; the decoder gives the
logits of a Bernoulli p(x|z) (or the mean of a Gaussian or of a discretized logistic with a
learned per-pixel scale). With a
standard normal prior the KL term is analytic, and the ELBO is reported in nats per example::

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))
    KL      = 0.5 * sum_j (mu_j^2 + sigma_j^2 - 1 - log sigma_j^2)

For the discrete likelihoods (Bernoulli on binarized data, discretized logistic on 8-bit pixels)
``nats / (C * H * W * ln 2)`` is the usual bits per dimension; see :meth:`VAE.bits_per_dim`.
``iwae_nll`` is the importance-weighted bound of Burda et al. (2015), and ``impute`` fills in
missing pixels by iterated posterior sampling (Rezende et al. 2014).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from genai.core.device import seeded_generator
from genai.core.fields import Config, check_fields, coerce_config, field, positive_int
from genai.core.layout import check_image_shape, conv_plan
from genai.data.pixels import check_unit_range, to_float
from genai.kernels import at_least_fp32, softplus
from genai.pretrained import Pretrained

ARCHS = ("mlp", "conv")
LIKELIHOODS = ("bernoulli", "gaussian", "logistic")
IMAGE_SHAPE = (1, 28, 28)
LOG_2PI = math.log(2 * math.pi)
MAX_WIDTH = 256


@dataclass
class VAEConfig(Config):
    """Architecture of a :class:`VAE`.

    Attributes:
        latent_dim: size of z.
        arch: ``"mlp"`` (fully connected, any image size) or ``"conv"`` (one stride-2
            convolution per doubling from 7x7 or 4x4 up to the image, each way; see
            :mod:`genai.core.layout`).
        hidden_dims: MLP hidden layer widths, input side first; for ``"conv"`` the first entry
            is the width of the fully connected layer between the convolutions and z.
        channels: the convolution widths of ``"conv"``, image side first, one per stride-2
            block; ``None`` gives 32, 64, 128, 256, 256, ... (32, 64 at 28x28).
        likelihood: ``"bernoulli"`` (logits), ``"gaussian"`` (sigmoid mean, learned per-pixel
            log-scale) or ``"logistic"`` (discretized logistic over the 256 pixel levels, the
            likelihood of natural images); ``None`` picks bernoulli for gray images and
            logistic for color.
        image_shape: ``(C, H, W)`` of the images, C = 1 or 3.
    """

    latent_dim: int = field(32, gt=0)
    arch: str = field("conv", choices=ARCHS)
    hidden_dims: tuple[int, ...] = field((512,), gt=0, nonempty=True, rule="one or more sizes > 0")
    channels: tuple[int, ...] | None = field(None, gt=0, rule="sizes > 0")
    likelihood: str | None = field(None, choices=LIKELIHOODS)
    image_shape: tuple[int, int, int] = IMAGE_SHAPE

    def __post_init__(self) -> None:
        check_fields(self)
        self.image_shape = check_image_shape(self.image_shape)
        if self.likelihood is None:
            self.likelihood = "bernoulli" if self.image_shape[0] == 1 else "logistic"
        if self.arch == "mlp" and self.channels is not None:
            raise ValueError(
                f"channels ({self.channels}) are the widths of arch='conv'; the MLP's are "
                "hidden_dims"
            )
        if self.arch == "conv":
            _, blocks = conv_plan(self.image_shape)
            if self.channels is not None and len(self.channels) != blocks:
                raise ValueError(
                    f"channels must be {blocks} sizes > 0 for image_shape "
                    f"{self.image_shape} (one per stride-2 block), got {self.channels}"
                )

    def conv_widths(self) -> tuple[int, ...]:
        """The convolution widths, image side first (``channels`` or the default)."""
        if self.channels is not None:
            return tuple(self.channels)
        _, blocks = conv_plan(self.image_shape)
        return tuple(min(32 * 2**i, MAX_WIDTH) for i in range(blocks))


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _conv_encoder(
    in_channels: int, widths: tuple[int, ...], base: int, hidden: int, out: int
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip((in_channels, *widths[:-1]), widths, strict=True):
        layers += [nn.Conv2d(a, b, 4, 2, 1), nn.ReLU()]  # halves H and W
    return nn.Sequential(
        *layers,  # (B, widths[-1], base, base)
        nn.Flatten(),
        nn.Linear(widths[-1] * base * base, hidden),
        nn.ReLU(),
        nn.Linear(hidden, out),
    )


def _conv_decoder(
    out_channels: int, widths: tuple[int, ...], base: int, hidden: int, latent: int
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(latent, hidden),
        nn.ReLU(),
        nn.Linear(hidden, widths[-1] * base * base),
        nn.ReLU(),
        nn.Unflatten(1, (widths[-1], base, base)),
    ]
    for a, b in zip(widths[::-1], widths[-2::-1], strict=False):
        layers += [nn.ConvTranspose2d(a, b, 4, 2, 1), nn.ReLU()]  # doubles H and W
    layers.append(nn.ConvTranspose2d(widths[0], out_channels, 4, 2, 1))  # (B, C, H, W) logits
    return nn.Sequential(*layers)


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log Bernoulli(x | sigmoid(logits)) = ``x * logits - softplus(logits)`` per element, in
    nats, for ``x`` in [0, 1]: ``-F.binary_cross_entropy_with_logits``, faster on a CPU.

    For gray ``x`` it is the usual MNIST "BCE" log-likelihood (unnormalized).
    """
    logits = at_least_fp32(logits)  # as F.binary_cross_entropy_with_logits under autocast
    return x * logits - softplus(logits)


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(x) per pixel for x on the 256-level grid {0, 1/255, ..., 1} (Salimans et al. 2017).

    P(x) is the mass of a logistic(mean, exp(log_scale)) in the bin [x - 1/510, x + 1/510],
    with the edge bins stretched to -inf and +inf, so the 256 probabilities sum to 1.
    Elementwise; shapes broadcast.
    """
    inv_s = torch.exp(-log_scale)
    centered = x - mean
    plus = inv_s * (centered + 0.5 / 255)
    minus = inv_s * (centered - 0.5 / 255)
    log_cdf_plus = plus - softplus(plus)  # log sigmoid(plus): the x = 0 bin
    log_one_minus_cdf_minus = -softplus(minus)  # log (1 - sigmoid(minus)): the x = 1 bin
    delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * centered  # when the bin's mass underflows: density times the bin width
    log_mid = mid - log_scale - 2.0 * softplus(mid) - math.log(255.0)
    inner = torch.where(delta > 1e-5, torch.log(delta.clamp(min=1e-12)), log_mid)
    return torch.where(
        x < 0.5 / 255, log_cdf_plus, torch.where(x > 1 - 0.5 / 255, log_one_minus_cdf_minus, inner)
    )


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per example, in nats. ``(B, D) -> (B,)``."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(dim=1)


def gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dim. ``(..., D) -> (...)``."""
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(dim=-1)


class VAE(nn.Module, Pretrained):
    """A VAE for ``(B, C, H, W)`` images in [0, 1] (``config.image_shape``, default (1, 28, 28)).

    Args:
        config: a :class:`VAEConfig`, a dict of its fields, or None for the defaults.

    Example:
        >>> vae = VAE(VAEConfig(latent_dim=16))
        >>> terms = vae.elbo(torch.rand(8, 1, 28, 28))  # dict of nats per example
        >>> images = vae.sample(16)  # (16, 1, 28, 28) in [0, 1]
    """

    kind = "vae"
    config_class = VAEConfig

    def __init__(self, config: VAEConfig | None = None):
        super().__init__()
        self.config = config = coerce_config(config, VAEConfig)
        d, h, shape = config.latent_dim, config.hidden_dims, config.image_shape
        pixels = math.prod(shape)
        if config.arch == "mlp":
            self.encoder = _mlp([pixels, *h, 2 * d])
            self.decoder = nn.Sequential(_mlp([d, *reversed(h), pixels]), nn.Unflatten(1, shape))
        else:
            base, _ = conv_plan(shape)
            widths = config.conv_widths()
            self.encoder = _conv_encoder(shape[0], widths, base, h[0], 2 * d)
            self.decoder = _conv_decoder(shape[0], widths, base, h[0], d)
        if config.likelihood in ("gaussian", "logistic"):
            start = -1.0 if config.likelihood == "gaussian" else -3.0
            self.log_scale = nn.Parameter(torch.full(shape, start))

    def _check(self, x: torch.Tensor, values: bool = False) -> torch.Tensor:
        """``x`` checked (type, shape, device; with ``values``, the [0, 1] range, one device
        sync) and in the weights' float dtype (NumPy's float64 becomes float32; uint8 levels
        0-255 become [0, 1], as everywhere in genai)."""
        if torch.is_tensor(x) and x.dtype == torch.uint8:
            x = to_float(x)
        if not torch.is_tensor(x) or not x.is_floating_point():
            raise TypeError(
                f"expected a float tensor of images in [0, 1] or uint8 levels, got "
                f"{x.dtype if torch.is_tensor(x) else type(x).__name__}"
            )
        if x.dim() != 4 or tuple(x.shape[1:]) != self.config.image_shape:
            raise ValueError(
                f"expected images of shape (B, {', '.join(map(str, self.config.image_shape))}), "
                f"got {tuple(x.shape)}"
            )
        p = next(self.parameters())
        if x.device != p.device:
            raise ValueError(
                f"the images are on {x.device} but the model is on {p.device}; move one: "
                f"x.to({str(p.device)!r}) or model.to(...)"
            )
        if values and x.numel():
            check_unit_range(x, "images")
        return x.to(p.dtype) if x.dtype == torch.float64 else x

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, C, H, W)`` -> mean and log-variance of q(z|x), each ``(B, latent_dim)``."""
        x = self._check(x)
        h = self.encoder(x.flatten(1) if self.config.arch == "mlp" else x)
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, latent_dim)`` -> decoder logits ``(B, C, H, W)``; ``sigmoid`` gives the mean."""
        return self.decoder(z)

    @staticmethod
    def reparameterize(
        mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """z = mu + sigma * eps with eps ~ N(0, I): a sample of q(z|x) that gradients flow through."""
        eps = torch.randn(mu.shape, device=mu.device, dtype=mu.dtype, generator=generator)
        return mu + torch.exp(0.5 * logvar) * eps

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) per example, summed over pixels, in nats. ``(B, C, H, W) -> (B,)``."""
        if self.config.likelihood == "bernoulli":
            return bernoulli_log_prob(logits, x).flatten(1).sum(1)
        log_scale = self.log_scale.clamp(min=-6.0)
        if self.config.likelihood == "logistic":
            log_p = discretized_logistic_log_prob(x, torch.sigmoid(logits), log_scale)
            return log_p.flatten(1).sum(1)
        z = (x - torch.sigmoid(logits)) * torch.exp(-log_scale)
        return (-0.5 * (LOG_2PI + z.pow(2)) - log_scale).flatten(1).sum(1)

    def elbo(self, x: torch.Tensor, beta: float = 1.0) -> dict[str, torch.Tensor]:
        """Single-sample ELBO terms, averaged over the batch, in nats per example.

        Args:
            x: images ``(B, C, H, W)`` in [0, 1].
            beta: weight of the KL term in ``loss`` (beta-VAE, KL warm-up); ``elbo`` is always
                the true bound (beta = 1).

        Returns:
            ``recon`` (= -E_q log p(x|z)), ``kl``, ``loss`` (= recon + beta * kl, minimized) and
            ``elbo`` (= -(recon + kl), a lower bound on log p(x)).
        """
        x = self._check(x)  # the range is not checked here: one device sync per step
        mu, logvar = self.encode(x)
        z = self.reparameterize(mu, logvar)
        recon = -self.log_likelihood(x, self.decode(z)).mean()
        kl = gaussian_kl(mu, logvar).mean()
        return {"loss": recon + beta * kl, "recon": recon, "kl": kl, "elbo": -(recon + kl)}

    def bits_per_dim(self, nats: float | torch.Tensor) -> float | torch.Tensor:
        """Convert a negative log-likelihood in nats per example to bits per dimension.

        Exact for the discrete likelihoods (Bernoulli, discretized logistic). For the Gaussian, a
        density on [0, 1], the 8-bit bin width is added (``+ 8`` bits): the usual
        approximation, meaningful when the data are dequantized.
        """
        bits = nats / (math.prod(self.config.image_shape) * math.log(2))
        return bits + 8.0 if self.config.likelihood == "gaussian" else bits

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Same as :meth:`elbo` with beta = 1 (so ``torch.compile(vae)`` compiles the loss)."""
        return self.elbo(x)

    @torch.no_grad()
    def iwae_nll(self, x: torch.Tensor, k: int = 1000, chunk: int = 250) -> torch.Tensor:
        """Importance-weighted estimate of -log p(x) per example (Burda et al. 2015), in nats.

        -log (1/k) sum_i p(x, z_i) / q(z_i|x) with z_i ~ q(z|x); it is an upper bound on the
        NLL that tightens as k grows, and k = 1 is -ELBO in expectation. Samples are drawn
        ``chunk`` at a time and combined with logsumexp, so memory stays bounded.

        Returns:
            ``(B,)`` NLL estimates.
        """
        if k <= 0 or chunk <= 0:
            raise ValueError(f"k and chunk must be > 0, got k={k}, chunk={chunk}")
        x = self._check(x, values=True)
        mu, logvar = self.encode(x)  # (B, D)
        b = x.shape[0]
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            mu_n, lv_n = mu.repeat(n, 1), logvar.repeat(n, 1)  # (n*B, D), sample-major
            z = self.reparameterize(mu_n, lv_n)
            log_px = self.log_likelihood(x.repeat(n, 1, 1, 1), self.decode(z))
            log_pz = gaussian_log_prob(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = gaussian_log_prob(z, mu_n, lv_n)
            log_w.append((log_px + log_pz - log_qz).view(n, b))
        return -(torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k))

    @torch.no_grad()
    def sample(
        self, n: int, generator: torch.Generator | None = None, seed: int | None = None
    ) -> torch.Tensor:
        """Decode ``n`` draws from the prior: ``(n, C, H, W)`` decoder means in [0, 1].

        ``generator`` (on the model's device) or ``seed`` makes the draws reproducible.
        """
        n = positive_int("n", n)
        p = next(self.parameters())
        generator = seeded_generator(generator, seed, p.device)
        z = torch.randn(
            n, self.config.latent_dim, device=p.device, dtype=p.dtype, generator=generator
        )
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder mean at the posterior mean: ``(B, C, H, W)`` in [0, 1]."""
        mu, _ = self.encode(self._check(x, values=True))
        return torch.sigmoid(self.decode(mu))

    @torch.no_grad()
    def impute(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        steps: int = 50,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Fill in missing pixels by iterated posterior sampling (Rezende et al. 2014, sec. 6).

        Starting from the missing pixels at 0.5, repeat ``steps`` times: z ~ q(z | x_t), then
        set the missing pixels to the decoder mean p(x | z). Observed pixels are never changed.

        Args:
            x: images ``(B, C, H, W)``; values under the missing pixels are ignored.
            mask: bool, True where a pixel is observed; shape of ``x`` or broadcastable to it.
            steps: number of chain steps (>= 1).
            generator: for reproducible chains.

        Returns:
            ``(B, C, H, W)``: ``x`` where observed, the model's completion elsewhere.
        """
        x = self._check(x)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        mask = torch.as_tensor(mask)  # a NumPy array too
        try:
            mask = torch.broadcast_to(mask.to(device=x.device, dtype=torch.bool), x.shape)
        except RuntimeError as e:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not fit x {tuple(x.shape)}"
            ) from e
        self._check(torch.where(mask, x, 0.5), values=True)  # missing pixels may hold anything
        current = torch.where(mask, x, torch.full_like(x, 0.5))
        for _ in range(steps):
            mu, logvar = self.encode(current)
            z = self.reparameterize(mu, logvar, generator)
            current = torch.where(mask, x, torch.sigmoid(self.decode(z)))
        return current
