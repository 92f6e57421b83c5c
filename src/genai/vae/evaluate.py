"""The VAE's likelihood on held-out images: ELBO terms and the IWAE NLL, in nats per image."""

from __future__ import annotations

import torch
from torch import nn

from genai.core.progress import progress_bar
from genai.data.dataset import ImageDataset
from genai.data.pixels import fixed_binarization, to_float
from genai.evaluation import EvalOptions, evaluate_images, held_out


def eval_images(
    data: ImageDataset, binarize: bool, device: torch.device, seed: int = 0
) -> torch.Tensor:
    """The evaluation images as float on ``device``: a fixed binarization, or the intensities."""
    images = data.images.to(device)
    return fixed_binarization(images, seed) if binarize else to_float(images)


@torch.no_grad()
def evaluate_vae(
    model: nn.Module,
    x: torch.Tensor,
    batch_size: int = 1000,
    iwae_k: int = 0,
    progress: bool = False,
) -> dict[str, float]:
    """Mean ELBO terms (and, if ``iwae_k`` > 0, the IWAE NLL) of ``x`` in nats per example.

    ``bits_per_dim`` is the negative ELBO (or the IWAE NLL when computed) in bits per dimension
    (see :meth:`VAE.bits_per_dim`). ``progress`` shows a bar over the images (the IWAE NLL
    with k = 1000 takes about a second per image on a CPU).
    """
    if x.shape[0] == 0:
        raise ValueError("evaluate_vae needs at least one image, got none")
    totals = {"recon": 0.0, "kl": 0.0, "elbo": 0.0, "iwae_nll": 0.0}
    desc = f"IWAE NLL, k={iwae_k}" if iwae_k else "ELBO"
    with progress_bar(total=x.shape[0], disable=not progress, desc=desc, unit="image") as bar:
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size]
            terms = model.elbo(batch)
            for key in ("recon", "kl", "elbo"):
                totals[key] += terms[key].item() * batch.shape[0]
            if iwae_k:
                totals["iwae_nll"] += model.iwae_nll(batch, iwae_k).sum().item()
            bar.update(batch.shape[0])
    out = {key: value / x.shape[0] for key, value in totals.items()}
    out["loss"] = -out["elbo"]
    if not iwae_k:
        del out["iwae_nll"]
    out["bits_per_dim"] = float(model.bits_per_dim(out.get("iwae_nll", out["loss"])))
    return out


def evaluate(
    model: nn.Module,
    train: ImageDataset,
    test: ImageDataset,
    options: EvalOptions,
    train_config: dict,
) -> dict:
    """``genai eval`` of a VAE run: the test ELBO (and IWAE NLL), then the sample metrics."""
    test = held_out(model, test, options)
    device = next(model.parameters()).device
    torch.manual_seed(options.seed)
    x = eval_images(test, train_config.get("binarize", False), device)
    likelihood = evaluate_vae(
        model, x, options.batch_size, iwae_k=options.k, progress=options.progress
    )
    return {**likelihood, **evaluate_images(model, train, test, options)}
