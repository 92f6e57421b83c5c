"""Generative adversarial network (Goodfellow et al. 2014) for 28x28 single-channel images.

A generator G maps noise z ~ N(0, I) (and, when conditional, a label y) to an image in [-1, 1];
a discriminator D maps an image (and y) to one real-valued *logit*. Losses are written on logits,
never on sigmoid outputs, so they stay finite when D is confident::

    non-saturating  L_D = softplus(-D(x)) + softplus(D(G(z)))      L_G = softplus(-D(G(z)))
    hinge           L_D = relu(1 - D(x)) + relu(1 + D(G(z)))       L_G = -D(G(z))

(softplus(-l) = -log sigmoid(l), so the non-saturating D loss is the binary cross-entropy with
logits.) Class conditioning concatenates a label embedding to z in G, and uses a projection
discriminator in D (Miyato & Koyama 2018): D(x, y) = w . phi(x) + b + embed(y) . phi(x).

:class:`GAN` holds both nets and an exponential moving average of G's weights *and* BatchNorm
statistics, which is what :meth:`GAN.sample` draws from.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genai.checkpoint import Pretrained
from genai.validation import check_fields, coerce_config

ARCHS = ("conv", "mlp")
LOSSES = ("non-saturating", "hinge")
IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28


@dataclass
class GANConfig:
    """Architecture of a :class:`GAN`.

    Attributes:
        latent_dim: size of the noise z.
        arch: ``"conv"`` (DCGAN-style: transposed convolutions with BatchNorm in G, strided
            convolutions with LeakyReLU in D) or ``"mlp"``.
        num_classes: number of labels to condition on; ``None`` for an unconditional GAN.
        g_width: G's base width: channels of the 14x14 layer (conv; the 7x7 layer has twice as
            many) or the first hidden layer (mlp; the second has twice as many).
        d_width: D's base width, mirrored the same way.
        spectral_norm: spectral normalization of every weight in D (Miyato et al. 2018).
        d_dropout: dropout after each hidden layer of D, which slows D's memorising of a small
            training set.
        minibatch_std: give D the standard deviation of its features across the batch as one
            more feature (Karras et al. 2018), so that it can see a batch lacking variety.
    """

    latent_dim: int = 64
    arch: str = "conv"
    num_classes: int | None = None
    g_width: int = 64
    d_width: int = 64
    spectral_norm: bool = False
    d_dropout: float = 0.0
    minibatch_std: bool = True

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("latent_dim", "g_width", "d_width"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.arch not in ARCHS:
            raise ValueError(f"arch must be one of {ARCHS}, got {self.arch!r}")
        if not 0.0 <= self.d_dropout < 1.0:
            raise ValueError(f"d_dropout must be in [0, 1), got {self.d_dropout}")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 or None, got {self.num_classes}")


def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, loss: str = "non-saturating"):
    """The discriminator's loss, a scalar, from D's logits on real ``(B,)`` and fake ``(B,)``."""
    if loss == "non-saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if loss == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def g_loss(fake_logits: torch.Tensor, loss: str = "non-saturating") -> torch.Tensor:
    """The generator's loss, a scalar, from D's logits on generated images ``(B,)``."""
    if loss == "non-saturating":
        return F.softplus(-fake_logits).mean()
    if loss == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


class Generator(nn.Module):
    """z ``(B, latent_dim)`` (+ labels ``(B,)``) -> images ``(B, 1, 28, 28)`` in [-1, 1]."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c, w = config, config.g_width
        self.embed = nn.Embedding(c.num_classes, c.latent_dim) if c.num_classes else None
        z_dim = c.latent_dim * (2 if c.num_classes else 1)
        if c.arch == "conv":
            self.net = nn.Sequential(
                nn.Linear(z_dim, 2 * w * 49, bias=False),
                nn.Unflatten(1, (2 * w, 7, 7)),
                nn.BatchNorm2d(2 * w),
                nn.ReLU(),
                nn.ConvTranspose2d(2 * w, w, 4, 2, 1, bias=False),  # (B, w, 14, 14)
                nn.BatchNorm2d(w),
                nn.ReLU(),
                nn.ConvTranspose2d(w, 1, 4, 2, 1),  # (B, 1, 28, 28)
            )
        else:
            self.net = nn.Sequential(
                nn.Linear(z_dim, w, bias=False),
                nn.BatchNorm1d(w),
                nn.ReLU(),
                nn.Linear(w, 2 * w, bias=False),
                nn.BatchNorm1d(2 * w),
                nn.ReLU(),
                nn.Linear(2 * w, PIXELS),
                nn.Unflatten(1, IMAGE_SHAPE),
            )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, 2 * latent_dim)
        return torch.tanh(self.net(z))  # (B, 1, 28, 28)


class Discriminator(nn.Module):
    """Images ``(B, 1, 28, 28)`` in [-1, 1] (+ labels ``(B,)``) -> logits ``(B,)``."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c, w = config, config.d_width
        sn = _spectral_norm if c.spectral_norm else (lambda m: m)
        if c.arch == "conv":
            self.features = nn.Sequential(
                sn(nn.Conv2d(1, w, 4, 2, 1)),  # (B, w, 14, 14)
                nn.LeakyReLU(0.2),
                nn.Dropout(c.d_dropout),
                sn(nn.Conv2d(w, 2 * w, 4, 2, 1)),  # (B, 2w, 7, 7)
                nn.LeakyReLU(0.2),
                nn.Dropout(c.d_dropout),
                nn.Flatten(),
            )
            n_features = 2 * w * 49
        else:
            self.features = nn.Sequential(
                nn.Flatten(),
                sn(nn.Linear(PIXELS, 2 * w)),
                nn.LeakyReLU(0.2),
                nn.Dropout(c.d_dropout),
                sn(nn.Linear(2 * w, w)),
                nn.LeakyReLU(0.2),
                nn.Dropout(c.d_dropout),
            )
            n_features = w
        self.minibatch_std = c.minibatch_std
        n_features += int(c.minibatch_std)
        self.out = sn(nn.Linear(n_features, 1))
        self.embed = sn(nn.Embedding(c.num_classes, n_features)) if c.num_classes else None

    @staticmethod
    def spread(phi: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Minibatch standard deviation of the features, averaged over features: ``(B, 1)``.

        Unconditional: one value for the whole batch. Conditional: the spread among the samples
        that share each sample's label, so that a generator drawing one image per class is
        visible to D even though the batch as a whole (many classes) varies a lot. Computed in
        fp32 whatever the autocast dtype of ``phi``, and returned in that dtype.
        """
        x = phi.float()
        if labels is None:
            return x.std(dim=0, correction=0).mean().expand(x.shape[0], 1).to(phi.dtype)
        k = int(labels.max()) + 1
        count = torch.bincount(labels, minlength=k).to(x.dtype).unsqueeze(1)  # (K, 1)
        mean = torch.zeros(k, x.shape[1], dtype=x.dtype, device=x.device)
        mean = mean.index_add(0, labels, x) / count.clamp(min=1)  # (K, F)
        sq = torch.zeros_like(mean).index_add(0, labels, (x - mean[labels]).pow(2))
        std = (sq / count.clamp(min=1) + 1e-8).sqrt().mean(dim=1, keepdim=True)  # (K, 1)
        return std[labels].to(phi.dtype)  # (B, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        phi = self.features(x)  # (B, F)
        if self.minibatch_std:
            phi = torch.cat([phi, self.spread(phi, labels)], dim=1)  # (B, F + 1)
        logits = self.out(phi).squeeze(1)  # (B,)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * phi).sum(dim=1)  # the projection term
        return logits


class GAN(nn.Module, Pretrained):
    """A generator, a discriminator and the EMA generator that :meth:`sample` uses.

    The EMA generator (``ema``) is always in eval mode; :meth:`update_ema` averages G's
    parameters *and* its BatchNorm running statistics, so the EMA net's statistics belong to
    its own (averaged) weights.
    """

    def __init__(self, config: GANConfig | None = None):
        super().__init__()
        self.config = coerce_config(config, GANConfig)
        self.generator = Generator(self.config)
        self.discriminator = Discriminator(self.config)
        self.ema = copy.deepcopy(self.generator).requires_grad_(False).eval()

    def train(self, mode: bool = True) -> GAN:
        super().train(mode)
        self.ema.eval()
        return self

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * G`` for every float parameter and buffer.

        Integer buffers (BatchNorm's batch counter) are copied.
        """
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        pairs = list(zip(self.ema.parameters(), self.generator.parameters(), strict=True))
        pairs += list(zip(self.ema.buffers(), self.generator.buffers(), strict=True))
        for e, g in pairs:
            if e.is_floating_point():
                e.lerp_(g, 1.0 - decay)
            else:
                e.copy_(g)

    def check_labels(self, n: int, labels: torch.Tensor | None) -> None:
        """Raise ``ValueError`` unless ``labels`` fit this model and a batch of ``n``."""
        k = self.config.num_classes
        if k is None:
            if labels is not None:
                raise ValueError("labels given to an unconditional GAN (num_classes is None)")
            return
        if labels is None:
            return
        if labels.dtype not in (torch.int64, torch.int32) or labels.shape != (n,):
            raise ValueError(
                f"labels must be an integer tensor of shape ({n},), got {labels.dtype} "
                f"{tuple(labels.shape)}"
            )
        if labels.numel() and (labels.min() < 0 or labels.max() >= k):
            raise ValueError(
                f"labels must be in [0, {k - 1}], got values in "
                f"[{int(labels.min())}, {int(labels.max())}]"
            )

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images from the EMA generator.

        Args:
            n: number of images, > 0.
            labels: ``(n,)`` class indices for a conditional GAN; if omitted, labels are drawn
                uniformly. Not allowed for an unconditional GAN.
            generator: a ``torch.Generator`` on the model's device, for reproducible samples.

        Returns:
            Images ``(n, 1, 28, 28)`` in [0, 1].
        """
        if not isinstance(n, int) or n <= 0:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        self.check_labels(n, labels)
        p = next(self.ema.parameters())
        z = torch.randn(n, self.config.latent_dim, device=p.device, generator=generator)
        if self.config.num_classes is not None and labels is None:
            labels = torch.randint(
                self.config.num_classes, (n,), device=p.device, generator=generator
            )
        if labels is not None:
            labels = labels.to(p.device, torch.long)
        return (self.ema(z, labels) + 1.0) / 2.0  # (n, 1, 28, 28)
