"""Diffusion on held-out images: the test loss and, for DDPM, the bound in bits per dimension."""

from __future__ import annotations

import torch
from torch import nn

from genai.data.dataset import ImageDataset
from genai.data.pixels import to_float
from genai.diffusion import flow
from genai.evaluation import EvalOptions, evaluate_images, held_out


def ema_loss(model: nn.Module, x: torch.Tensor, generator: torch.Generator) -> float:
    """The training loss of the EMA net on images ``x`` in [0, 1] with the null label."""
    x0 = x * 2.0 - 1.0
    noise = torch.randn(x0.shape, device=x0.device, generator=generator)
    fn = model.model_fn(model._null(x0.shape[0], x0.device), 0.0)
    if model.config.objective == "ddpm":
        t = torch.randint(
            model.config.timesteps, (x0.shape[0],), device=x0.device, generator=generator
        )
        return float(model.process.loss(fn, x0, t, noise))
    t = torch.rand(x0.shape[0], device=x0.device, generator=generator)
    return float(flow.loss(fn, x0, t, noise))


@torch.no_grad()
def evaluate_diffusion(
    model: nn.Module, x: torch.Tensor, batch_size: int = 200, strata: int = 25, seed: int = 0
) -> dict[str, float]:
    """The mean test ``loss`` and (DDPM objective) ``bits_per_dim`` of images ``x`` in [0, 1].

    ``bits_per_dim`` is the variational bound (see :meth:`Diffusion.bits_per_dim`) with its KL
    sum estimated on ``strata`` timesteps per image, seeded by ``seed``.
    """
    if x.shape[0] == 0:
        raise ValueError("evaluate_diffusion needs at least one image, got none")
    generator = torch.Generator(x.device).manual_seed(seed)
    bpd, loss = [], []
    for batch in x.split(batch_size):
        loss.append(ema_loss(model, batch, generator) * batch.shape[0])
        if model.config.objective == "ddpm":
            bpd.append(model.bits_per_dim(batch, strata=strata, generator=generator))
    out = {"loss": float(sum(loss) / x.shape[0])}
    if bpd:
        out["bits_per_dim"] = float(torch.cat(bpd).mean())
    return out


def evaluate(
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    options: EvalOptions,
    train_config: dict,
) -> dict:
    """``genai eval`` of a diffusion run: the test loss and bits/dim, then the sample metrics."""
    test = held_out(model, test, options)
    x = to_float(test.images).to(next(model.parameters()).device)
    strata = train_config.get("eval_strata", 25)
    likelihood = evaluate_diffusion(model, x, options.batch_size, strata, options.seed)
    return {**likelihood, **evaluate_images(model, train, test, options)}
