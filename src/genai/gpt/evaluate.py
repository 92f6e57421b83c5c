"""The language model's validation measure: next-token loss and perplexity."""

from __future__ import annotations

import math

import torch
from torch import nn

from genai.data.text import random_windows


@torch.no_grad()
def evaluate_lm(
    model: nn.Module,
    tokens: torch.Tensor,
    batches: int,
    batch_size: int,
    seed: int = 0,
    max_tokens: int = 4096,
) -> dict[str, float]:
    """Mean next-token loss (nats) and perplexity over ``batches`` seeded random windows.

    The ``batches * batch_size`` windows are those of ``batches`` training-sized batches, and
    the loss is their mean; they go through the model in forwards of up to ``max_tokens``
    tokens (and 2**24 logits) rather than ``batches`` small ones (200 batches of 12 x 64
    tokens: 38 forwards, 10% faster than 200 in fp32 and 35% in bf16 on a 2-core CPU).
    """
    generator = torch.Generator(tokens.device).manual_seed(seed)
    block, vocab = model.config.block_size, model.config.vocab_size
    x, y = random_windows(tokens, (batches * batch_size,), block, generator)
    chunk = max(1, min(max_tokens // block, 2**24 // (block * vocab)))
    total = torch.zeros((), device=tokens.device)
    for i in range(0, x.shape[0], chunk):
        total += model(x[i : i + chunk], y[i : i + chunk])[1] * len(x[i : i + chunk])
    loss = total.item() / x.shape[0]
    return {"loss": loss, "ppl": math.exp(loss)}
