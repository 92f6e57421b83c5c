"""Denoising diffusion (Ho et al. 2020) and flow matching (Lipman et al. 2023) on one U-Net:
``Diffusion(DiffusionConfig(num_classes=10))``, trained by :func:`train_diffusion`."""

from dataclasses import dataclass

from genai.core.fields import Config, check_fields, field
from genai.data.source import IMAGES
from genai.diffusion.evaluate import evaluate, evaluate_diffusion
from genai.diffusion.model import Diffusion, DiffusionConfig
from genai.diffusion.train import DiffusionTrainConfig, train_diffusion
from genai.training.kind import ModelKind


@dataclass
class SampleOptions(Config):
    """``genai sample``'s options for a diffusion run (None: the model's defaults).

    Attributes:
        steps: sampling steps.
        guidance: the classifier-free guidance weight (0: the plain conditional model).
        sampler: ``ddim`` or ``ddpm`` (DDPM objective), ``euler`` or ``heun`` (flow).
    """

    steps: int | None = field(None, gt=0)
    guidance: float | None = field(None, ge=0)
    sampler: str | None = field(None, choices=("ddim", "ddpm", "euler", "heun"))

    def __post_init__(self) -> None:
        check_fields(self)


KIND = ModelKind(
    Diffusion,
    DiffusionTrainConfig,
    train_diffusion,
    IMAGES,
    evaluate=evaluate,
    sample_options=SampleOptions,
)

__all__ = [
    "KIND",
    "Diffusion",
    "DiffusionConfig",
    "DiffusionTrainConfig",
    "SampleOptions",
    "evaluate_diffusion",
    "train_diffusion",
]
