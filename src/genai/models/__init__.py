"""The model registry: ``get_model("vae", latent_dim=16)``."""

from __future__ import annotations

from torch import nn

from genai.models.gan import GAN, GANConfig
from genai.models.gpt import GPT, GPTConfig
from genai.models.vae import VAE, VAEConfig

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


def get_model(name: str, **config) -> nn.Module:
    """Build a registered model from its config fields.

    Args:
        name: one of :func:`list_models` (``"vae"``, ``"gan"``, ``"gpt"``).
        **config: fields of that model's config (``get_model("gpt", n_layer=2)``).

    Raises:
        ValueError: ``name`` is not registered.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}: expected one of {', '.join(MODELS)}")
    config_cls, model_cls = MODELS[name]
    return model_cls(config_cls(**config))


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
