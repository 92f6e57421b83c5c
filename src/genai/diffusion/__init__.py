"""Denoising diffusion (Ho et al. 2020) and flow matching (Lipman et al. 2023) on one U-Net:
``Diffusion(DiffusionConfig(num_classes=10))``, trained by :func:`train_diffusion`."""

from genai.diffusion.model import Diffusion, DiffusionConfig
from genai.diffusion.train import DiffusionTrainConfig, train_diffusion

__all__ = ["Diffusion", "DiffusionConfig", "DiffusionTrainConfig", "train_diffusion"]
