"""The model registry: ``get_model("vae", latent_dim=16)``."""

from __future__ import annotations

import torch
from torch import nn

from genai.gpt.model import GPT, GPTConfig
from genai.models.gan import GAN, GANConfig
from genai.models.vae import VAE, VAEConfig
from genai.validation import coerce_config

MODELS: dict[str, tuple[type, type[nn.Module]]] = {
    "vae": (VAEConfig, VAE),
    "gpt": (GPTConfig, GPT),
    "gan": (GANConfig, GAN),
}


def kind_of(model: nn.Module) -> str:
    """The registry name of a model instance (``"vae"``, ``"gan"`` or ``"gpt"``)."""
    model = getattr(model, "_orig_mod", model)
    for name, (_, cls) in MODELS.items():
        if isinstance(model, cls):
            return name
    raise TypeError(f"{type(model).__name__} is not a genai model ({', '.join(MODELS)})")


def list_models() -> list[str]:
    """The names :func:`get_model` builds."""
    return list(MODELS)


MAX_PARAMETERS = 2**33  # 8.6G parameters (32 GiB in fp32): a larger config is refused


def get_model(name: str, **config) -> nn.Module:
    """Build a registered model from its config fields.

    The model is first built on the ``meta`` device (no memory), so that a config whose size is
    absurd is a ``ValueError`` naming the parameter count instead of an allocation failure.

    Args:
        name: one of :func:`list_models` (``"vae"``, ``"gan"``, ``"gpt"``).
        **config: fields of that model's config (``get_model("gpt", n_layer=2)``).

    Raises:
        ValueError: unknown name, invalid config, or more than ``MAX_PARAMETERS`` parameters.
        TypeError: a config field of the wrong type.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    config_cls, model_cls = MODELS[name]
    config = coerce_config(config, config_cls)  # a misspelled field is named
    try:
        with torch.device("meta"):
            count = sum(p.numel() for p in model_cls(config).parameters())
    except (RuntimeError, OverflowError, TypeError) as e:  # torch refuses sizes past int64
        reason = str(e).split(" Exception raised from")[0].splitlines()[0][:200]
        raise ValueError(f"{config} builds no model ({reason})") from None
    if count > MAX_PARAMETERS:
        raise ValueError(
            f"{name} config has {count:,} parameters, more than genai builds ({MAX_PARAMETERS:,})"
        )
    return model_cls(config)


__all__ = [
    "GAN",
    "GPT",
    "MODELS",
    "VAE",
    "GANConfig",
    "GPTConfig",
    "VAEConfig",
    "get_model",
    "kind_of",
    "list_models",
]
