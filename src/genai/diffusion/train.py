"""The diffusion model's training loop: one optimizer, the simple (or flow-matching) loss, and an
EMA update of the weights after every step."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from genai.data.images import ImageBatches, ImageDataset, as_dataset, check_shape, to_float
from genai.diffusion import flow
from genai.diffusion.model import Diffusion, ema_decay_at
from genai.plots import save_grid
from genai.training.engine import (
    Callback,
    TrainConfig,
    Trainer,
    decay_groups,
    fit,
    make_adamw,
    maybe_compile,
)
from genai.validation import check_model, coerce_config


@dataclass
class DiffusionTrainConfig(TrainConfig):
    """Training of a :class:`Diffusion`. Adds to :class:`TrainConfig`:

    Attributes:
        n_grid: images per row of the sample grid (one row per class when conditional; 64
            images in 8 rows when not).
        grid_steps: sampling steps of the sample grids written during training.
        eval_images: test images whose bits/dim (and test loss) each evaluation measures.
        eval_strata: network calls per image that estimate the bound's KL sum (unbiased,
            stratified over the T timesteps; see :meth:`Diffusion.vlb`).
        eval_batch_size: batch size of the evaluation passes.

    The defaults: AdamW at lr 1e-3 (small U-Nets on digits take it; Ho et al.'s 2e-4 is for
    35M parameters), 200 warm-up steps then a cosine decay to 0.1 lr, gradient clipping at 1
    (as Ho et al.), batch 64, and a grid, an evaluation and a checkpoint every 1,000 steps
    (a grid of 100 images costs about as much as 50 training steps).
    """

    out_dir: str = "runs/diffusion"
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 200
    lr_schedule: str = "cosine"
    grad_clip: float = 1.0
    eval_every: int = 1000
    sample_every: int = 1000
    n_grid: int = 10
    grid_steps: int = 25
    eval_images: int = 200
    eval_strata: int = 25
    eval_batch_size: int = 200

    # 1,500 steps of 64: 19 epochs of the 5,000 offline digits, about 15 minutes on 2 cores
    default_max_steps: ClassVar[int] = 1500

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("n_grid", "grid_steps", "eval_images", "eval_strata", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def _check_labels(model: Diffusion, data: ImageDataset) -> None:
    """A conditional model needs labels in range; it takes the data's class names."""
    k = model.config.num_classes
    if k is None:
        return
    if data.labels is None or data.num_classes < 2:
        found = "no labels" if data.labels is None else "one class only"
        raise ValueError(
            f"a conditional diffusion model (num_classes={k}) needs labeled data with at least "
            f"2 classes; {data.name} has {found}"
        )
    if data.labels.min() < 0 or data.labels.max() >= k:
        raise ValueError(
            f"the data's labels span [{int(data.labels.min())}, {int(data.labels.max())}] "
            f"but the model has num_classes={k}"
        )
    names = data.class_names
    if names and len(names) != k:
        raise ValueError(
            f"the model has num_classes={k} but the data ({data.name}) has {len(names)} "
            f"classes ({', '.join(names)})"
        )
    if names and model.config.class_names not in (None, tuple(names)):
        raise ValueError(
            f"the model's class names ({', '.join(model.config.class_names)}) differ from the "
            f"data's ({', '.join(names)}); leave class_names unset to take the data's"
        )
    if names:
        model.config.class_names = tuple(names)  # saved with the run


class DiffusionTask:
    """The diffusion loop for :func:`genai.training.engine.fit`."""

    kind = "diffusion"

    def __init__(
        self,
        model: Diffusion,
        data: ImageDataset,
        config: DiffusionTrainConfig,
        eval_data: ImageDataset | None = None,
    ):
        self.model, self.data, self.config, self.eval_data = model, data, config, eval_data
        check_shape(model.config.image_shape, data)
        _check_labels(model, data)
        if eval_data is not None:
            check_shape(model.config.image_shape, eval_data)
            if len(eval_data) == 0:
                raise ValueError("eval_data holds no images; pass None to train without evaluation")

    def setup(self, device: torch.device) -> ImageBatches:
        self.model.to(device)
        self.device = device
        self.forward = maybe_compile(self.model, self.config)
        k, n = self.model.config.num_classes, self.config.n_grid
        self.grid_labels = torch.arange(k).repeat_interleave(n).tolist() if k else None
        self.grid_cols = n if k else 8
        self.eval_x = self.eval_y = None
        if self.eval_data is not None:
            perm = torch.randperm(
                len(self.eval_data), generator=torch.Generator().manual_seed(self.config.seed)
            )[: self.config.eval_images]  # a seeded subset: MNIST's test set is sorted by writer
            self.eval_x = to_float(self.eval_data.images[perm]).to(device)
        c = self.config
        return ImageBatches(self.data, c.batch_size, c.seed, device)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        c = self.config
        params = decay_groups(self.model.net, c.weight_decay)
        return {"net": make_adamw(params, c.lr, self.device, betas=c.betas)}

    def train_step(self, batch, step: int, trainer: Trainer) -> dict[str, torch.Tensor]:
        x, y = batch
        labels = y if self.model.config.num_classes is not None else None
        with trainer.autocast():
            loss = self.forward(x, labels)["loss"]
        trainer.optimize(loss, "net")
        self.model.update_ema(ema_decay_at(self.model.config.ema_decay, step))
        return {"loss": loss.detach()}

    def evaluate(self) -> dict[str, float]:
        """Test loss and (DDPM) bits/dim of the unconditional model, on ``eval_images``."""
        if self.eval_x is None:
            return {}
        c = self.config
        gen = torch.Generator(self.device).manual_seed(c.seed)
        bpd, loss = [], []
        for x in self.eval_x.split(c.eval_batch_size):
            loss.append(self._ema_loss(x, gen) * x.shape[0])
            if self.model.config.objective == "ddpm":
                bpd.append(self.model.bits_per_dim(x, strata=c.eval_strata, generator=gen))
        out = {"loss": float(sum(loss) / self.eval_x.shape[0])}
        if bpd:
            out["bits_per_dim"] = float(torch.cat(bpd).mean())
        return out

    def _ema_loss(self, x: torch.Tensor, gen: torch.Generator) -> float:
        """The training loss of the EMA net on ``x`` with the null label (seeded)."""
        m = self.model
        x0 = x * 2.0 - 1.0
        noise = torch.randn(x0.shape, device=x0.device, generator=gen)
        fn = m.model_fn(m._null(x0.shape[0], x0.device), 0.0)
        if m.config.objective == "ddpm":
            t = torch.randint(m.config.timesteps, (x0.shape[0],), device=x0.device, generator=gen)
            return float(m.process.loss(fn, x0, t, noise))
        t = torch.rand(x0.shape[0], device=x0.device, generator=gen)
        return float(flow.loss(fn, x0, t, noise))

    def write_samples(self, stem: Path) -> Path:
        c = self.config
        n = len(self.grid_labels) if self.grid_labels else 64
        images = self.model.sample(
            n, labels=self.grid_labels, steps=c.grid_steps, seed=c.seed
        )  # (n, C, H, W): a row per class
        return save_grid(images, stem.with_suffix(".png"), nrow=self.grid_cols)

    def checkpoint_extra(self) -> dict:
        return {"data": self.data.describe()}


def train_diffusion(
    model: Diffusion,
    data: ImageDataset | torch.Tensor | np.ndarray,
    config: DiffusionTrainConfig | None = None,
    eval_data: ImageDataset | torch.Tensor | np.ndarray | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict:
    """Train ``model`` on ``data``: an :class:`ImageDataset` (:func:`genai.load_images`), or
    images ``(N, C, H, W)`` / ``(N, H, W)``, uint8 or float in [0, 1], as a tensor or array. A
    conditional model needs labeled data; it records the data's class names.

    Writes the run directory ``config.out_dir`` (sample grids with a row per class, the loss
    plot, checkpoints) and returns :func:`fit`'s summary; the model is trained in place.
    ``eval_data`` gives the test loss and (DDPM) the bits/dim bound at each eval step.

    Args:
        model: the Diffusion model, trained in place.
        data: the training images (and labels, for a conditional model).
        config: a :class:`DiffusionTrainConfig`, a dict of its fields, or None for defaults.
        eval_data: held-out images, in any form ``data`` takes.
        callbacks: functions called with each metrics record before it is written; a returned
            dict is merged into the record.
    """
    check_model(model, Diffusion, "train_diffusion")
    config = coerce_config(config, DiffusionTrainConfig)
    eval_data = as_dataset(eval_data) if eval_data is not None else None
    return fit(DiffusionTask(model, as_dataset(data), config, eval_data), config, callbacks)
