"""Generative adversarial network (Goodfellow et al. 2014) for ``(C, H, W)`` images (MNIST by default).

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

The conv nets follow DCGAN (Radford et al. 2016) at every size: G maps z to a 4x4 map (7x7 for
the 28x28 family) and doubles it with stride-2 transposed convolutions, widths halving as the
resolution grows; D mirrors it with stride-2 convolutions. At 64x64x3 with the default widths
(64) G is the DCGAN paper's generator (z -> 512x4x4 -> 256x8x8 -> 128x16x16 -> 64x32x32 ->
3x64x64, BatchNorm and ReLU, tanh) and D its discriminator's stack (64-128-256-512 channels,
4x4 stride-2 convolutions, LeakyReLU 0.2, a linear read-out of the 4x4 map) without BatchNorm and
with the minibatch-std feature (``minibatch_std=False`` removes it).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from genai.core.device import seeded_generator
from genai.core.fields import (
    Config,
    check_fields,
    class_name_list,
    coerce_config,
    field,
    positive_int,
)
from genai.core.layout import check_image_shape, conv_plan
from genai.data.dataset import class_index
from genai.pretrained import Pretrained

ARCHS = ("conv", "mlp")
LOSSES = ("non-saturating", "hinge")
IMAGE_SHAPE = (1, 28, 28)


@dataclass
class GANConfig(Config):
    """Architecture of a :class:`GAN`.

    Attributes:
        latent_dim: size of the noise z.
        arch: ``"conv"`` (DCGAN-style: transposed convolutions with BatchNorm in G, strided
            convolutions with LeakyReLU in D) or ``"mlp"``.
        num_classes: number of labels to condition on; ``None`` for an unconditional GAN.
        g_width: G's base width: channels of the layer just below the image (conv: 14x14 at
            28x28, 32x32 at 64x64; each smaller layer has twice as many) or of the first hidden
            layer (mlp; the second has twice as many).
        d_width: D's base width, mirrored the same way.
        spectral_norm: spectral normalization of every weight in D (Miyato et al. 2018).
        d_dropout: dropout after each hidden layer of D, which slows D's memorising of a small
            training set.
        minibatch_std: give D the standard deviation of its features across the batch as one
            more feature (Karras et al. 2018), so that it can see a batch lacking variety.
        image_shape: ``(C, H, W)`` of the images, C = 1 or 3.
        class_names: one name per class of a conditional GAN (set from the data by
            :func:`genai.train_gan`), so that samples can be asked for by name.
    """

    latent_dim: int = field(64, gt=0)
    arch: str = field("conv", choices=ARCHS)
    num_classes: int | None = field(None, ge=2, rule=">= 2 or None")
    g_width: int = field(64, gt=0)
    d_width: int = field(64, gt=0)
    spectral_norm: bool = False
    d_dropout: float = field(0.0, ge=0, lt=1)
    minibatch_std: bool = True
    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    class_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        self.image_shape = check_image_shape(self.image_shape)
        if self.arch == "conv":
            conv_plan(self.image_shape)  # raises for a size the conv nets cannot build
        if self.class_names is not None:
            self.class_names = class_name_list(self.class_names)
            if len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"class_names must hold num_classes={self.num_classes} names, got "
                    f"{len(self.class_names)}"
                )

    def label_index(self, label: int | str) -> int:
        """A class index from an index or a class name (see :func:`class_index`)."""
        return class_index(self.class_names, label)


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


def _widths(width: int, blocks: int) -> list[int]:
    """Channels from the smallest map up: ``width * 2^(blocks - 1)``, ..., ``width``."""
    return [width * 2 ** (blocks - 1 - i) for i in range(blocks)]


class Generator(nn.Module):
    """z ``(B, latent_dim)`` (+ labels ``(B,)``) -> images ``(B, C, H, W)`` in [-1, 1]."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c, shape = config, config.image_shape
        w = c.g_width
        self.embed = nn.Embedding(c.num_classes, c.latent_dim) if c.num_classes else None
        z_dim = c.latent_dim * (2 if c.num_classes else 1)
        if c.arch == "conv":
            base, blocks = conv_plan(shape)
            widths = _widths(w, blocks)  # e.g. 28x28: 2w at 7x7, w at 14x14
            layers: list[nn.Module] = [
                nn.Linear(z_dim, widths[0] * base * base, bias=False),
                nn.Unflatten(1, (widths[0], base, base)),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(),
            ]
            for a, b in zip(widths[:-1], widths[1:], strict=True):
                layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b)]
                layers.append(nn.ReLU())  # each block doubles H and W
            layers.append(nn.ConvTranspose2d(widths[-1], shape[0], 4, 2, 1))  # (B, C, H, W)
            self.net = nn.Sequential(*layers)
        else:
            self.net = nn.Sequential(
                nn.Linear(z_dim, w, bias=False),
                nn.BatchNorm1d(w),
                nn.ReLU(),
                nn.Linear(w, 2 * w, bias=False),
                nn.BatchNorm1d(2 * w),
                nn.ReLU(),
                nn.Linear(2 * w, math.prod(shape)),
                nn.Unflatten(1, shape),
            )

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)  # (B, 2 * latent_dim)
        return torch.tanh(self.net(z))  # (B, C, H, W)


class Discriminator(nn.Module):
    """Images ``(B, C, H, W)`` in [-1, 1] (+ labels ``(B,)``) -> logits ``(B,)``."""

    def __init__(self, config: GANConfig):
        super().__init__()
        c, shape = config, config.image_shape
        w = c.d_width
        sn = _spectral_norm if c.spectral_norm else (lambda m: m)
        if c.arch == "conv":
            base, blocks = conv_plan(shape)
            widths = _widths(w, blocks)[::-1]  # e.g. 28x28: w at 14x14, 2w at 7x7
            layers: list[nn.Module] = []
            for a, b in zip([shape[0], *widths[:-1]], widths, strict=True):
                layers += [sn(nn.Conv2d(a, b, 4, 2, 1)), nn.LeakyReLU(0.2)]  # halves H and W
                layers.append(nn.Dropout(c.d_dropout))
            self.features = nn.Sequential(*layers, nn.Flatten())
            n_features = widths[-1] * base * base
        else:
            self.features = nn.Sequential(
                nn.Flatten(),
                sn(nn.Linear(math.prod(shape), 2 * w)),
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
        sq = torch.zeros_like(mean).index_add(0, labels, (x - mean.index_select(0, labels)).pow(2))
        std = (sq / count.clamp(min=1) + 1e-8).sqrt().mean(dim=1, keepdim=True)  # (K, 1)
        return std.index_select(0, labels).to(phi.dtype)  # (B, 1); its backward is an index_add

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

    Args:
        config: a :class:`GANConfig`, a dict of its fields, or None for the defaults.
    """

    kind = "gan"
    config_class = GANConfig

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

    def as_labels(self, n: int, labels) -> torch.Tensor | None:
        """``labels`` as a ``(n,)`` int64 tensor: one int or class name (repeated), or ``n`` of
        them in a list, tuple, array or tensor. ``None`` stays ``None``.

        Raises:
            ValueError: labels for an unconditional GAN, a wrong count, or out of range.
            TypeError: labels of another type.
        """
        if labels is None:
            return None
        if self.config.num_classes is None:
            raise ValueError("labels given to an unconditional GAN (num_classes is None)")
        if isinstance(labels, np.ndarray):  # indices or names, as Python values
            labels = labels.tolist()
        scalar = torch.is_tensor(labels) and labels.dim() == 0
        if isinstance(labels, np.integer) or (
            scalar and not labels.dtype.is_floating_point and labels.dtype != torch.bool
        ):
            labels = int(labels)  # one class, as a NumPy integer or a 0-d integer tensor
        if isinstance(labels, (int, str)):
            labels = [labels] * n
        if isinstance(labels, (list, tuple)):
            labels = torch.tensor([self.config.label_index(x) for x in labels], dtype=torch.long)
        elif not torch.is_tensor(labels):
            labels = torch.as_tensor(labels)
        self.check_labels(n, labels)
        return labels.long()

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
        labels: torch.Tensor | int | str | list | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` images from the EMA generator.

        Args:
            n: number of images, > 0.
            labels: for a conditional GAN, one class (an index or a name) for all ``n``, or
                ``n`` of them (list or ``(n,)`` tensor); if omitted, labels are drawn
                uniformly. Not allowed for an unconditional GAN.
            generator: a ``torch.Generator`` on the model's device, for reproducible samples.
            seed: seeds a new generator instead (ignored when ``generator`` is given).

        Returns:
            Images ``(n, C, H, W)`` in [0, 1].
        """
        n = positive_int("n", n)
        labels = self.as_labels(n, labels)
        p = next(self.ema.parameters())
        generator = seeded_generator(generator, seed, p.device)
        z = torch.randn(n, self.config.latent_dim, device=p.device, generator=generator)
        if self.config.num_classes is not None and labels is None:
            labels = torch.randint(
                self.config.num_classes, (n,), device=p.device, generator=generator
            )
        if labels is not None:
            labels = labels.to(p.device, torch.long)
        return (self.ema(z, labels) + 1.0) / 2.0  # (n, C, H, W)
