"""genai: trainable generative models for PyTorch (a VAE, a GAN and a GPT-style LM)."""

__version__ = "0.1.0"

from genai.checkpoint import CheckpointError, load  # noqa: E402
from genai.data import load_images  # noqa: E402
from genai.device import resolve_device  # noqa: E402
from genai.models import GAN, VAE, GANConfig, VAEConfig, get_model  # noqa: E402
from genai.training import (  # noqa: E402
    GANTrainConfig,
    NonFiniteLossError,
    TrainConfig,
    VAETrainConfig,
    train_gan,
    train_vae,
)

__all__ = [
    "GAN",
    "GANConfig",
    "GANTrainConfig",
    "train_gan",
    "VAE",
    "CheckpointError",
    "NonFiniteLossError",
    "TrainConfig",
    "VAEConfig",
    "VAETrainConfig",
    "__version__",
    "get_model",
    "load",
    "load_images",
    "resolve_device",
    "train_vae",
]
