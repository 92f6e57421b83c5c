"""The GAN's training loop: two optimizers, a D step on detached fakes, then a G step.

Each engine step is one discriminator update; every ``d_steps_per_g_step``-th step is followed by
one generator update, which reuses that step's fakes (so a batch costs one G forward pass).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from genai.core.fields import check_model, coerce_config, field, fit_default, is_default, replace
from genai.data.batches import ImageBatches
from genai.data.dataset import ImageDataset, as_dataset, check_shape, take_classes
from genai.gan.model import GAN, LOSSES, d_loss, g_loss
from genai.optim import decay_groups, make_adamw
from genai.plots import save_grid
from genai.training.engine import Callback, TrainConfig, Trainer, fit, maybe_compile


@dataclass
class GANTrainConfig(TrainConfig):
    """Training of a GAN. Adds to :class:`TrainConfig` (``lr`` is both nets' Adam LR):

    Attributes:
        betas: Adam's betas for both optimizers (DCGAN's (0.5, 0.999)).
        loss: ``"non-saturating"`` or ``"hinge"``.
        d_steps_per_g_step: discriminator updates per generator update (WGAN's n_critic).
        ema_decay: decay of the generator's moving average; 0 makes the EMA a copy of G.
        ema_warmup: use ``min(ema_decay, (1 + t) / (10 + t))`` at G update t, so the average
            does not start from G's random initialization.
        n_grid: images per row of the fixed-noise sample grid (one row per class when
            conditional; 64 images in 8 rows when not).
        augment: differentiable augmentation (Zhao et al. 2020): D sees every real and every
            generated image randomly shifted by up to 1/8 of its side and with a square of half
            its side blanked (3 pixels and 14x14 at 28x28), in both steps, so it cannot
            memorise a small training set.
        mode_seeking: weight of the mode-seeking term (Mao et al. 2019) in G's loss. The batch's
            noise comes in pairs (z1, z2) with the same label and G is penalised by
            mean|z1 - z2| / mean|G(z1) - G(z2)|, so it cannot map all noise of a class to one
            image. 0 turns it off.

    A field left at its default takes the default of the kind of GAN (:attr:`kind_defaults`;
    :func:`train_gan` chooses, ``config.json`` records the choice), each measured over 3 seeds
    of the default run (docs/gan.md):

    - conditional: ``precision="auto"`` (bf16 autocast where the device computes bf16 natively,
      fp32 elsewhere): bf16 held FID and label accuracy, 1.40x faster on a CPU with AMX. The
      fields' own defaults otherwise: lr 2e-4 for 9,360 steps (120 epochs of the 5,000
      offline digits); at lr 4e-4 its label accuracy fell.
    - unconditional: fp32 (bf16 drew one class fewer), and ``lr=4e-4`` for 6,240 steps (80
      epochs), which matched lr 2e-4 for 120 epochs in two thirds of the steps. The length
      applies when neither ``max_steps`` nor ``epochs`` is set.
    """

    out_dir: str = "runs/gan"
    # G's BatchNorm and the mode-seeking pairs need two images
    batch_size: int = field(64, ge=2, rule=">= 2 for a GAN")
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    loss: str = field("non-saturating", choices=LOSSES)
    d_steps_per_g_step: int = field(1, ge=1)
    ema_decay: float = field(0.999, ge=0, lt=1)
    ema_warmup: bool = True
    n_grid: int = field(10, gt=0)
    augment: bool = True
    mode_seeking: float = field(0.05, ge=0)

    default_max_steps: ClassVar[int] = 9360  # 120 epochs of the 5,000 offline digits
    # what a field left at its default becomes for a conditional (True) or unconditional GAN
    kind_defaults: ClassVar[dict[bool, dict]] = {
        True: {"precision": "auto"},
        False: {"lr": 4e-4, "max_steps": 6240},  # 80 epochs of the 5,000 offline digits
    }
    default_help: ClassVar[dict[str, str]] = {  # the same numbers, for --help
        "precision": "(default: auto with --num-classes, fp32 without)",
        "lr": f"(default: {lr} with --num-classes, {kind_defaults[False]['lr']} without)",
        "max_steps": f"(default: {default_max_steps} with --num-classes, "
        f"{kind_defaults[False]['max_steps']} without, when --epochs is not given either)",
    }


def kind_config(config: GANTrainConfig, conditional: bool) -> GANTrainConfig:
    """``config`` with the fields left at their defaults set to the defaults of a conditional
    or an unconditional GAN (:attr:`GANTrainConfig.kind_defaults`); given fields are kept. The
    length (``max_steps``) is set only when neither ``max_steps`` nor ``epochs`` is set."""
    unset = {"max_steps": config.max_steps is None and config.epochs is None}
    changes = {
        name: value
        for name, value in config.kind_defaults[conditional].items()
        if unset.get(name, is_default(config, name))
    }
    return replace(config, **changes) if changes else config


def diff_augment(x: torch.Tensor, shift: int | None = None, cut: int | None = None) -> torch.Tensor:
    """Random translation and cutout of ``(B, C, H, W)`` images in [-1, 1], differentiably.

    Each image is shifted by an integer offset in [-shift, shift] per axis (background, -1,
    fills the gap) and a ``cut`` x ``cut`` square at a random place is set to -1. Gradients
    flow to every pixel that stays visible. By default ``shift = H // 8`` and ``cut = H // 2``
    (DiffAugment's fractions; 3 and 14 at 28x28).
    """
    b, _, h, w = x.shape
    shift = h // 8 if shift is None else shift
    cut = h // 2 if cut is None else cut
    offsets = torch.randint(-shift, shift + 1, (2, b, 1, 1), device=x.device)
    rows = torch.arange(h, device=x.device).view(1, h, 1) - offsets[0]  # (B, H, 1) source row
    cols = torch.arange(w, device=x.device).view(1, 1, w) - offsets[1]  # (B, 1, W) source col
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)  # (B, H, W)
    flat = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).flatten(1)  # (B, H * W)
    shifted = x.flatten(2).gather(2, flat.unsqueeze(1).expand(-1, x.shape[1], -1)).view_as(x)
    if h == w:
        centre = torch.randint(0, h, (2, b, 1, 1), device=x.device)
    else:  # the cutout's row within the height, its column within the width
        centre = torch.stack([torch.randint(0, n, (b, 1, 1), device=x.device) for n in (h, w)])
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    cutout = ((ys - centre[0]).abs() <= cut // 2) & ((xs - centre[1]).abs() <= cut // 2)
    keep = (inside & ~cutout).unsqueeze(1)  # (B, 1, H, W)
    return torch.where(keep, shifted, torch.full_like(shifted, -1.0))


def mode_seeking_penalty(fake: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mao et al. (2019): mean over pairs of mean|z1 - z2| / mean|G(z1) - G(z2)|.

    The pairs are rows i and i + B/2 of ``fake`` ``(B, C, H, W)`` and ``z`` ``(B, Z)``. Small
    when different noise gives different images; large when G ignores its noise.
    """
    half = fake.shape[0] // 2
    image_gap = (fake[:half] - fake[half : 2 * half]).abs().flatten(1).mean(1)  # (B/2,)
    z_gap = (z[:half] - z[half : 2 * half]).abs().mean(1)  # (B/2,)
    return (z_gap / (image_gap + 1e-5)).mean()


def ema_decay_at(config: GANTrainConfig, g_updates: int) -> float:
    """The EMA decay after ``g_updates`` generator updates (with the optional warm-up)."""
    if not config.ema_warmup:
        return config.ema_decay
    return min(config.ema_decay, (1.0 + g_updates) / (10.0 + g_updates))


class GANTask:
    """The GAN loop for :func:`genai.training.engine.fit`."""

    kind = "gan"

    def __init__(self, model: GAN, data: ImageDataset, config: GANTrainConfig):
        self.model, self.data, self.config = model, data, config
        check_shape(model.config.image_shape, data)
        take_classes(model.config, data, "a conditional GAN")

    def setup(self, device: torch.device) -> ImageBatches:
        self.model.to(device)
        self.device = device
        self.G = maybe_compile(self.model.generator, self.config)
        self.D = maybe_compile(self.model.discriminator, self.config)
        self.last_g_loss = torch.zeros((), device=device)
        gen = torch.Generator(device).manual_seed(self.config.seed)
        k, n = self.model.config.num_classes, self.config.n_grid
        conditional = k is not None
        rows = k if conditional else 64 // 8
        cols = n if conditional else 8
        self.grid_z = torch.randn(
            rows * cols, self.model.config.latent_dim, device=device, generator=gen
        )
        self.grid_labels = (
            torch.arange(k, device=device).repeat_interleave(cols) if conditional else None
        )
        self.grid_cols = cols
        c = self.config
        return ImageBatches(self.data, c.batch_size, c.seed, device)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config  # AdamW without weight decay (the default) is Adam
        return {
            name: make_adamw(decay_groups(net, c.weight_decay), c.lr, self.device, betas=c.betas)
            for name, net in (("g", self.model.generator), ("d", self.model.discriminator))
        }

    def d_step(
        self,
        x: torch.Tensor,
        labels: torch.Tensor | None,
        fake: torch.Tensor,
        fake_labels: torch.Tensor | None,
        trainer: Trainer,
    ) -> dict[str, torch.Tensor]:
        """One update of D on real ``x`` and *detached* ``fake`` ``(B, C, H, W)`` in [-1, 1]."""
        fake = fake.detach()  # no gradient reaches G
        if self.config.augment:
            x, fake = diff_augment(x), diff_augment(fake)
        with trainer.autocast():
            real_logits = self.D(x, labels)  # (B,)
            fake_logits = self.D(fake, fake_labels)  # (B,)
            loss = d_loss(real_logits, fake_logits, self.config.loss)
        trainer.optimize(loss, "d")
        return {
            "d_loss": loss.detach(),
            "d_real": torch.sigmoid(real_logits.detach().float()).mean(),
            "d_fake": torch.sigmoid(fake_logits.detach().float()).mean(),
        }

    def g_step(
        self,
        fake: torch.Tensor,
        fake_labels: torch.Tensor | None,
        trainer: Trainer,
        z: torch.Tensor,
    ) -> torch.Tensor:
        """One update of G through D on ``fake`` = G(z); D is frozen, so it gets no gradient.

        ``z`` ``(B, Z)`` is the noise of ``fake``, in pairs (rows i and i + B/2 share a label)
        for the mode-seeking term.
        """
        self.model.discriminator.requires_grad_(False)
        images = diff_augment(fake) if self.config.augment else fake
        try:
            with trainer.autocast():
                loss = g_loss(self.D(images, fake_labels), self.config.loss)
                if self.config.mode_seeking > 0:
                    loss = loss + self.config.mode_seeking * mode_seeking_penalty(fake, z)
            trainer.optimize(loss, "g")
        finally:
            self.model.discriminator.requires_grad_(True)
        return loss.detach()

    def train_step(self, batch, step: int, trainer: Trainer) -> dict[str, torch.Tensor]:
        x, y = batch
        x = x * 2.0 - 1.0  # (B, C, H, W) in [-1, 1], the range of G's tanh
        k = self.model.config.num_classes
        g_turn = (step + 1) % self.config.d_steps_per_g_step == 0
        b = x.shape[0]
        z = torch.randn(b, self.model.config.latent_dim, device=x.device)  # (B, Z)
        fake_labels = None
        if k is not None:  # in pairs (i, i + B/2) with one label, for the mode-seeking term
            fake_labels = torch.randint(k, ((b + 1) // 2,), device=x.device).repeat(2)[:b]
        with torch.set_grad_enabled(g_turn), trainer.autocast():
            fake = self.G(z, fake_labels)  # (B, C, H, W); the G step reuses it
        out = self.d_step(x, y if k is not None else None, fake, fake_labels, trainer)
        if g_turn:
            self.last_g_loss = self.g_step(fake, fake_labels, trainer, z)
            g_updates = (step + 1) // self.config.d_steps_per_g_step - 1
            self.model.update_ema(ema_decay_at(self.config, g_updates))
        return {"loss": out["d_loss"] + self.last_g_loss, "g_loss": self.last_g_loss, **out}

    def evaluate(self) -> dict[str, float]:
        return {}

    def write_samples(self, stem: Path) -> Path:
        images = (self.model.ema(self.grid_z, self.grid_labels) + 1.0) / 2.0
        return save_grid(images, stem.with_suffix(".png"), nrow=self.grid_cols)

    def checkpoint_extra(self) -> dict:
        return {"data": self.data.describe()}


def train_gan(
    model: GAN,
    data: ImageDataset | torch.Tensor | np.ndarray,
    config: GANTrainConfig | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train ``model`` on ``data``: an :class:`ImageDataset` (:func:`genai.load_images`), or
    unlabeled images ``(N, C, H, W)`` / ``(N, H, W)``, uint8 or float in [0, 1], as a tensor or
    NumPy array. A conditional model needs labeled data; it records the data's class names.

    Writes the run directory ``config.out_dir`` (with a fixed-noise sample grid per epoch, one
    row per class when conditional) and returns :func:`fit`'s summary; the model is trained in
    place. ``metrics.jsonl`` logs ``d_loss``, ``g_loss``, ``d_real`` = mean D(x) and ``d_fake``
    = mean D(G(z)) (as probabilities), and ``loss`` = their sum of losses. ``config`` may be a
    dict of :class:`GANTrainConfig` fields; ``callbacks`` are as in :func:`fit`. A default
    ``batch_size`` larger than the data becomes the number of images (at least 2; logged, and
    recorded in ``config.json``); a ``batch_size`` you give is never changed. Other defaults
    follow the kind of GAN (:func:`kind_config`: the precision, and an unconditional GAN's lr
    and length; see :class:`GANTrainConfig`).

    Args:
        model: the GAN, trained in place.
        data: the training images (and labels, for a conditional model).
        config: a :class:`GANTrainConfig`, a dict of its fields, or None for the defaults.
        callbacks: functions called with each metrics record before it is written; a returned
            dict is merged into the record.
    """
    check_model(model, GAN, "train_gan")
    config = coerce_config(config, GANTrainConfig)
    data = as_dataset(data)
    config = fit_default(config, "batch_size", len(data), "images", minimum=2)
    config = kind_config(config, conditional=bool(model.config.num_classes))
    return fit(GANTask(model, data, config), config, callbacks)
