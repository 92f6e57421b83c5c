"""The model kinds genai knows, one line each: the CLI, ``genai.load`` and runs read this."""

from __future__ import annotations

from torch import nn

from genai.diffusion import KIND as DIFFUSION
from genai.gan import KIND as GAN
from genai.gpt import KIND as GPT
from genai.pretrained import build
from genai.training.kind import ModelKind
from genai.vae import KIND as VAE

KINDS: dict[str, ModelKind] = {kind.name: kind for kind in (VAE, GPT, GAN, DIFFUSION)}


def get_kind(name: str, what: str = "model") -> ModelKind:
    """The kind called ``name``; a ``ValueError`` naming the known ones otherwise."""
    if name not in KINDS:
        raise ValueError(f"unknown {what} {name!r}: expected one of {', '.join(KINDS)}")
    return KINDS[name]


def kind_of(model: nn.Module) -> str:
    """The registry name of a model instance (``"vae"``, ``"gan"``, ...)."""
    model = getattr(model, "_orig_mod", model)
    for name, kind in KINDS.items():
        if isinstance(model, kind.model):
            return name
    raise TypeError(f"{type(model).__name__} is not a genai model ({', '.join(KINDS)})")


def list_models() -> list[str]:
    """The names :func:`get_model` builds."""
    return list(KINDS)


def get_model(name: str, **config) -> nn.Module:
    """Build a registered model from its config fields: ``get_model("vae", latent_dim=16)``.

    The model is first built on the ``meta`` device (no memory), so that a config whose size is
    absurd is a ``ValueError`` naming the parameter count instead of an allocation failure.

    Args:
        name: one of :func:`list_models` (``"vae"``, ``"gan"``, ``"gpt"``).
        **config: fields of that model's config (``get_model("gpt", n_layer=2)``).

    Raises:
        ValueError: unknown name, invalid config, or more than ``MAX_PARAMETERS`` parameters.
        TypeError: a config field of the wrong type.
    """
    return build(get_kind(name).model, config)
