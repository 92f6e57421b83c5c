"""The language model's validation measure: next-token loss and perplexity."""

from __future__ import annotations

import math

import torch
from torch import nn

from genai.data.text import random_windows


@torch.no_grad()
def evaluate_lm(
    model: nn.Module, tokens: torch.Tensor, batches: int, batch_size: int, seed: int = 0
) -> dict[str, float]:
    """Mean next-token loss (nats) and perplexity over ``batches`` seeded random windows."""
    generator = torch.Generator(tokens.device).manual_seed(seed)
    x, y = random_windows(tokens, (batches, batch_size), model.config.block_size, generator)
    total = torch.zeros((), device=tokens.device)
    for i in range(batches):
        total += model(x[i], y[i])[1]
    loss = total.item() / batches
    return {"loss": loss, "ppl": math.exp(loss)}
