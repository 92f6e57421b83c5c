"""A diffusion model for ``(C, H, W)`` images: one U-Net, two objectives, EMA weights, guidance.

* ``objective="ddpm"`` (Ho et al. 2020): the net predicts v (or the noise eps) of
  ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``; samples by DDIM (Song et al. 2021) or
  ancestral DDPM in any number of steps; :meth:`Diffusion.bits_per_dim` is its variational bound
  (:mod:`genai.diffusion.ddpm`).
* ``objective="flow"`` (Lipman et al. 2023; Liu et al. 2023): the net predicts the velocity
  ``eps - x_0`` of ``x_t = (1 - t) x_0 + t eps``; samples by Euler or Heun
  (:mod:`genai.diffusion.flow`).

Images are [0, 1] outside and ``x_0 = 2 x - 1`` in [-1, 1] inside. A conditional model
(``num_classes``) drops each training label to the null class with probability
``cond_dropout``, so one net is both p(x | y) and p(x), and samples with classifier-free guidance
(Ho & Salimans 2022)::

    out = out(x_t, y) + w (out(x_t, y) - out(x_t, null))

(w = 0: the conditional model; w > 0 extrapolates away from the unconditional one; the same for
eps, v or velocity, each affine in the others at fixed x_t). Sampling always uses ``ema``, an
exponential moving average of the net's weights (:meth:`Diffusion.update_ema`), saved in
``model.safetensors`` beside the net.
"""

from __future__ import annotations

import copy
import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from genai.core.device import seeded_generator
from genai.core.fields import (
    Config,
    check_fields,
    class_name_list,
    coerce_config,
    field,
    positive_int,
)
from genai.core.layout import check_image_shape
from genai.data.dataset import class_index
from genai.data.pixels import check_unit_range
from genai.diffusion import ddpm, flow, repaint
from genai.diffusion.unet import UNet, check_levels, default_channel_mults
from genai.pretrained import Pretrained

IMAGE_SHAPE = (1, 28, 28)
SAMPLERS = {"ddpm": ("ddim", "ddpm"), "flow": ("euler", "heun")}
PREDICTIONS = ("eps", "v")
SCHEDULES = ("cosine", "linear")


@dataclass
class DiffusionConfig(Config):
    """Architecture and process of a :class:`Diffusion`.

    Attributes:
        image_shape: ``(C, H, W)`` of the images, C = 1 or 3.
        num_classes: number of labels to condition on; ``None`` for an unconditional model.
        class_names: one name per class (set from the data by :func:`train_diffusion`).
        objective: ``"ddpm"`` (denoising, Ho et al.) or ``"flow"`` (flow matching).
        prediction: what the DDPM net predicts, ``"v"`` (Salimans & Ho 2022; the default) or
            ``"eps"`` (Ho et al.); the flow net always predicts the velocity. v, because near
            t = T the cosine schedule's alpha-bar is about 0 and eps gives x_0 only through
            ``/ sqrt(alpha-bar)``, which magnifies the net's error there (docs/diffusion.md).
        schedule: DDPM's betas, ``"cosine"`` (Nichol & Dhariwal: less of the chain is spent on
            pure noise, a better bound) or ``"linear"`` (Ho et al.).
        timesteps: T of the DDPM chain.
        base_width: channels of the U-Net's first level.
        channel_mults: width multiplier per level, image side first; ``None`` gives
            ``(1, 2, 4, 4)`` cut to the levels the size allows (28: three, 32 and 64: four).
        blocks_per_level: residual blocks per level (one more on the way up).
        attn_max_side: self-attention at the levels whose map side is at most this (7x7 at
            28x28; 8x8 and 4x4 at 32x32), and always in the middle.
        dropout: dropout in the residual blocks.
        cond_dropout: probability that a training label is replaced by the null class.
        ema_decay: decay of the weights' moving average (with a warm-up, see
            :func:`ema_decay_at`); 0 makes ``ema`` a copy of the net.
        guidance: the default classifier-free guidance weight w of :meth:`Diffusion.sample`;
            0.5 trades a little FID for label accuracy (0 reads as the asked digit less often,
            above 1 the samples lose variety; measured in docs/diffusion.md).
        sample_steps: the default number of sampling steps.
        sampler: the default sampler: ``"ddim"`` or ``"ddpm"`` (objective ddpm), ``"euler"`` or
            ``"heun"`` (flow); ``None`` picks ddim / euler.
    """

    image_shape: tuple[int, int, int] = IMAGE_SHAPE
    num_classes: int | None = field(None, ge=2, rule=">= 2 or None")
    class_names: tuple[str, ...] | None = None
    objective: str = field("ddpm", choices=tuple(SAMPLERS))
    prediction: str = field("v", choices=PREDICTIONS)
    schedule: str = field("cosine", choices=SCHEDULES)
    timesteps: int = field(1000, ge=2)
    base_width: int = field(16, gt=0)
    channel_mults: tuple[int, ...] | None = field(None, gt=0, nonempty=True, rule="sizes > 0")
    blocks_per_level: int = field(1, gt=0)
    attn_max_side: int = field(8, ge=0)
    dropout: float = field(0.0, ge=0, lt=1)
    cond_dropout: float = field(0.1, ge=0, lt=1)
    ema_decay: float = field(0.995, ge=0, lt=1)
    guidance: float = field(0.5, ge=0)
    sample_steps: int = field(50, gt=0)
    sampler: str | None = None

    def __post_init__(self) -> None:
        check_fields(self)
        self.image_shape = check_image_shape(self.image_shape)
        if self.channel_mults is not None:
            check_levels(self.image_shape, self.channel_mults)
        if self.class_names is not None:
            self.class_names = class_name_list(self.class_names)
            if len(self.class_names) != self.num_classes:
                raise ValueError(
                    f"class_names must hold num_classes={self.num_classes} names, got "
                    f"{len(self.class_names)}"
                )
        if self.sampler is None:
            self.sampler = SAMPLERS[self.objective][0]
        if self.sampler not in SAMPLERS[self.objective]:
            raise ValueError(
                f"sampler must be one of {SAMPLERS[self.objective]} for objective "
                f"{self.objective!r}, got {self.sampler!r}"
            )

    def widths(self) -> tuple[int, ...]:
        """The channel multipliers (``channel_mults`` or the default for the image size)."""
        return self.channel_mults or default_channel_mults(self.image_shape)

    def label_index(self, label: int | str) -> int:
        """A class index from an index or a class name (see :func:`class_index`)."""
        return class_index(self.class_names, label)


def ema_decay_at(decay: float, step: int) -> float:
    """The EMA decay at optimizer step ``step``: ``min(decay, (1 + step) / (10 + step))``, so
    the average forgets the random initialization within the first hundred steps."""
    return min(decay, (1.0 + step) / (10.0 + step))


class Diffusion(nn.Module, Pretrained):
    """The U-Net ``net``, its EMA copy ``ema`` (what :meth:`sample` uses) and the process.

    Args:
        config: a :class:`DiffusionConfig`, a dict of its fields, or None for the defaults.

    Example:
        >>> model = Diffusion(DiffusionConfig(num_classes=10))
        >>> loss = model(torch.rand(8, 1, 28, 28), torch.randint(10, (8,)))["loss"]
        >>> images = model.sample(10, labels=7, steps=25)  # (10, 1, 28, 28) in [0, 1]
    """

    kind = "diffusion"
    config_class = DiffusionConfig

    def __init__(self, config: DiffusionConfig | None = None):
        super().__init__()
        self.config = c = coerce_config(config, DiffusionConfig)
        self.net = UNet(
            c.image_shape,
            c.base_width,
            c.widths(),
            c.blocks_per_level,
            c.attn_max_side,
            c.num_classes,
            c.dropout,
        )
        self.ema = copy.deepcopy(self.net).requires_grad_(False).eval()
        self.process = ddpm.GaussianDiffusion(
            ddpm.make_betas(c.schedule, c.timesteps), c.prediction
        )

    def train(self, mode: bool = True) -> Diffusion:
        super().train(mode)
        self.ema.eval()
        return self

    @torch.no_grad()
    def update_ema(self, decay: float) -> None:
        """``ema = decay * ema + (1 - decay) * net`` for every parameter (GroupNorm keeps no
        running statistics, so there are no buffers to average)."""
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            e.lerp_(p, 1.0 - decay)

    # ---- the network as the samplers see it --------------------------------------------------

    def _time(self, t: torch.Tensor) -> torch.Tensor:
        """The net's time input in [0, 1]: (i + 1) / T for DDPM index i, t itself for flow."""
        if self.config.objective == "ddpm":
            return (t.float() + 1.0) / self.config.timesteps
        return t.float()

    def _null(self, n: int, device: torch.device) -> torch.Tensor | None:
        k = self.config.num_classes
        return None if k is None else torch.full((n,), k, device=device, dtype=torch.long)

    def drop_labels(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        """Each label replaced by the null class (index ``num_classes``) with probability
        ``cond_dropout``; no labels (a conditional model trained on them) are all null."""
        k = self.config.num_classes
        if k is None:
            return None
        if labels is None:
            raise ValueError("labels: a conditional model (num_classes set) trains on labels")
        drop = torch.rand(labels.shape, device=labels.device) < self.config.cond_dropout
        return torch.where(drop, torch.full_like(labels, k), labels)

    def model_fn(self, labels: torch.Tensor | None, guidance: float, ema: bool = True):
        """``(x_t, t) -> output`` of the (EMA) net with labels ``(B,)`` and guidance ``w``.

        With w > 0 the conditional and the null-label pass share one batch of 2B.
        """
        net = self.ema if ema else self.net

        def fn(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            time = self._time(t)
            if labels is None or guidance == 0:
                return net(x, time, labels)
            null = self._null(x.shape[0], x.device)
            both = net(torch.cat([x, x]), torch.cat([time, time]), torch.cat([labels, null]))
            cond, uncond = both.chunk(2)
            return cond + guidance * (cond - uncond)

        return fn

    # ---- training ----------------------------------------------------------------------------

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        """The training loss of images ``x (B, C, H, W)`` in [0, 1] (and labels ``(B,)``):
        ``{"loss": L_simple}`` (DDPM) or ``{"loss": the flow-matching loss}``, with t, the noise
        and the label dropout drawn from the global RNG (which training seeds and resumes)."""
        x0 = x * 2.0 - 1.0  # (B, C, H, W) in [-1, 1]
        labels = self.drop_labels(labels)
        noise = torch.randn_like(x0)
        b = x0.shape[0]

        def fn(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.net(xt, self._time(t), labels)

        if self.config.objective == "ddpm":
            t = torch.randint(self.config.timesteps, (b,), device=x0.device)
            return {"loss": self.process.loss(fn, x0, t, noise)}
        t = torch.rand(b, device=x0.device)
        return {"loss": flow.loss(fn, x0, t, noise)}

    # ---- checks ------------------------------------------------------------------------------

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _images(self, x, values: bool = True) -> torch.Tensor:
        """``x`` checked (type, shape, device, range) as float images in [0, 1]."""
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        if torch.is_tensor(x) and x.dtype == torch.uint8:
            x = x.float() / 255.0
        if not torch.is_tensor(x) or not x.is_floating_point():
            found = x.dtype if torch.is_tensor(x) else type(x).__name__
            raise TypeError(f"images: expected float images in [0, 1] or uint8 levels, got {found}")
        shape = self.config.image_shape
        if x.dim() != 4 or tuple(x.shape[1:]) != shape or x.shape[0] == 0:
            raise ValueError(
                f"images must have shape (B, {', '.join(map(str, shape))}) with B > 0, "
                f"got {tuple(x.shape)}"
            )
        device = self._device()
        if x.device != device:
            raise ValueError(f"images are on {x.device} but the model is on {device}")
        if values:
            check_unit_range(x, "images")
        return x.float()

    def as_labels(self, n: int, labels) -> torch.Tensor | None:
        """``labels`` as ``(n,)`` int64 on the model's device: one index or class name for all,
        or ``n`` of them (list, tuple, array, tensor); ``None`` draws them uniformly (seeded
        with the sampler) for a conditional model and stays ``None`` otherwise.

        Raises:
            ValueError: labels for an unconditional model, a wrong count, out of range, or an
                unknown class name. TypeError: labels of another type.
        """
        k = self.config.num_classes
        if labels is None:
            return None
        if k is None:
            raise ValueError("labels: given to an unconditional model (num_classes is None)")
        if isinstance(labels, np.ndarray):
            labels = labels.tolist()
        if torch.is_tensor(labels):
            if labels.dtype.is_floating_point or labels.dtype == torch.bool:
                raise TypeError(f"labels: expected integer labels, got {labels.dtype}")
            labels = labels.tolist()
        if isinstance(labels, (int, str, np.integer)):
            labels = [labels] * n
        if not isinstance(labels, (list, tuple)):
            raise TypeError(f"labels: expected an int, a name or a list, got {labels!r}")
        if len(labels) != n:
            raise ValueError(f"labels: expected {n} labels, got {len(labels)}")
        out = torch.tensor([self.config.label_index(y) for y in labels], dtype=torch.long)
        if out.numel() and (out.min() < 0 or out.max() >= k):
            raise ValueError(
                f"labels must be in [0, {k - 1}], got values in [{int(out.min())}, {int(out.max())}]"
            )
        return out.to(self._device())

    def _guidance(self, guidance) -> float:
        if guidance is None:
            return self.config.guidance if self.config.num_classes is not None else 0.0
        if isinstance(guidance, bool) or not isinstance(guidance, (int, float)):
            raise TypeError(f"guidance must be a number, got {guidance!r}")
        if not math.isfinite(guidance) or guidance < 0:
            raise ValueError(f"guidance must be a finite number >= 0, got {guidance!r}")
        if guidance and self.config.num_classes is None:
            raise ValueError("guidance needs a conditional model (num_classes is None); use 0")
        return float(guidance)

    def _sampler(self, sampler: str | None) -> str:
        sampler = self.config.sampler if sampler is None else sampler
        if sampler not in SAMPLERS[self.config.objective]:
            raise ValueError(
                f"sampler must be one of {SAMPLERS[self.config.objective]} for objective "
                f"{self.config.objective!r}, got {sampler!r}"
            )
        return sampler

    # ---- uses --------------------------------------------------------------------------------

    @torch.no_grad()
    def sample(
        self,
        n: int,
        labels=None,
        steps: int | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        eta: float = 0.0,
    ) -> torch.Tensor:
        """Draw ``n`` images ``(n, C, H, W)`` in [0, 1] with the EMA weights.

        Args:
            n: number of images, > 0.
            labels: one class (index or name) for all, or ``n`` of them; ``None`` draws them
                uniformly (conditional model). Not allowed for an unconditional model.
            steps: network evaluations of the ODE/chain (Heun: two per step); default
                ``config.sample_steps``.
            guidance: classifier-free guidance weight w >= 0 (0: the conditional model);
                default ``config.guidance`` (0 for an unconditional model).
            sampler: ``"ddim"`` / ``"ddpm"`` (objective ddpm) or ``"euler"`` / ``"heun"``
                (flow); default ``config.sampler``.
            seed: seeds a new generator (ignored when ``generator`` is given).
            generator: a ``torch.Generator`` on the model's device.
            eta: DDIM's noise (0 deterministic, 1 ancestral-equivalent).
        """
        n = positive_int("n", n)
        steps = positive_int("steps", self.config.sample_steps if steps is None else steps)
        labels = self.as_labels(n, labels)
        w = self._guidance(guidance)
        sampler = self._sampler(sampler)
        if not (isinstance(eta, (int, float)) and 0.0 <= eta <= 1.0):
            raise ValueError(f"eta must be in [0, 1], got {eta!r}")
        device = self._device()
        generator = seeded_generator(generator, seed, device)
        if labels is None and self.config.num_classes is not None:
            labels = torch.randint(
                self.config.num_classes, (n,), device=device, generator=generator
            )
        x = torch.randn(n, *self.config.image_shape, device=device, generator=generator)
        x = self._run(self.model_fn(labels, w), x, steps, sampler, generator, eta)
        return ((x + 1.0) / 2.0).clamp(0.0, 1.0)

    def _run(self, fn, x, steps, sampler, generator, eta=0.0) -> torch.Tensor:
        if sampler == "ddim":
            return self.process.ddim_sample(fn, x, steps, eta, generator)
        if sampler == "ddpm":
            return self.process.ddpm_sample(fn, x, steps, generator)
        return flow.sample(fn, x, steps, sampler)

    @torch.no_grad()
    def impute(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        steps: int = 50,
        generator: torch.Generator | None = None,
        *,
        labels=None,
        resample: int = 5,
        guidance: float | None = None,
        seed: int | None = None,
    ) -> torch.Tensor:
        """Fill in missing pixels by RePaint (Lugmayr et al. 2022): run the sampler over
        ``steps`` steps; after each, set the observed pixels to a fresh draw of the forward
        process at the new noise level; and ``resample - 1`` times per step, noise the whole
        image back up one step and denoise it again, so the filled-in part agrees with the
        observed part. Observed pixels are never changed.

        Args:
            x: images ``(B, C, H, W)`` in [0, 1] (or uint8); values under missing pixels are
                ignored.
            mask: bool, True where a pixel is observed; shape of ``x`` or broadcastable to it.
            steps: sampling steps (>= 1).
            generator: for reproducible completions (or ``seed``).
            labels: the classes of a conditional model (default: the null class, p(x)).
            resample: RePaint's jumps per step (1: no resampling).
            guidance: as in :meth:`sample` (default 0 without labels).

        Returns:
            ``(B, C, H, W)``: ``x`` where observed, the model's completion elsewhere.
        """
        x = self._images(x, values=False)
        steps = positive_int("steps", steps)
        resample = positive_int("resample", resample)
        mask = torch.as_tensor(mask)
        try:
            mask = torch.broadcast_to(mask.to(device=x.device, dtype=torch.bool), x.shape)
        except RuntimeError as e:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} does not fit x {tuple(x.shape)}"
            ) from e
        check_unit_range(torch.where(mask, x, 0.5), "images")  # missing pixels may hold anything
        b = x.shape[0]
        labels = self.as_labels(b, labels)
        w = self._guidance(guidance) if labels is not None else 0.0
        generator = seeded_generator(generator, seed, x.device)
        fn = self.model_fn(labels, w)
        x0 = x * 2.0 - 1.0
        sampler = self._sampler(None)
        noise = functools.partial(torch.randn, x.shape, device=x.device, generator=generator)
        if self.config.objective == "ddpm":
            moves = repaint.ddpm_moves(self.process, fn, x0, steps, sampler, noise, generator)
        else:
            moves = repaint.flow_moves(fn, x0, steps, sampler, noise, generator)
        state = repaint.run(noise(), mask, moves, resample)
        return torch.where(mask, x, ((state + 1.0) / 2.0).clamp(0.0, 1.0))

    @torch.no_grad()
    def vlb(
        self,
        x: torch.Tensor,
        labels=None,
        strata: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """The variational bound's terms of 8-bit images ``x (B, C, H, W)``, per example, in
        nats (see :meth:`GaussianDiffusion.bound_terms`), with the EMA net.

        ``labels`` bound -log p(x | y); without them a conditional model is bounded with the
        null class, -log p(x), comparable with the VAE's. ``strata`` estimates the KL sum from
        that many network calls (default: all T).
        """
        if self.config.objective != "ddpm":
            raise ValueError("vlb: the variational bound is defined for objective='ddpm' only")
        x = self._images(x)
        x0 = torch.round(x * 255.0) / 127.5 - 1.0  # the 8-bit grid in [-1, 1]
        labels = self.as_labels(x.shape[0], labels)
        if labels is None:
            labels = self._null(x.shape[0], x.device)
        if strata is not None:
            strata = positive_int("strata", strata)
        return self.process.bound_terms(self.model_fn(labels, 0.0), x0, strata, generator)

    @torch.no_grad()
    def bits_per_dim(
        self,
        x: torch.Tensor,
        labels=None,
        strata: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """The variational bound in bits per dimension, ``(B,)``: ``vlb(x)["total"] / (D ln 2)``
        with D = C * H * W, an upper bound on the model's NLL of the 8-bit images, comparable
        with :meth:`VAE.bits_per_dim` (the VAE's nats / (D ln 2))."""
        terms = self.vlb(x, labels, strata, generator)
        return (terms["total"] / (math.prod(self.config.image_shape) * math.log(2))).float()
