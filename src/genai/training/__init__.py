"""Training loops on one shared engine."""

from genai.training.engine import NonFiniteLossError, TrainConfig, fit
from genai.training.gan import GANTrainConfig, train_gan
from genai.training.vae import VAETrainConfig, train_vae

__all__ = [
    "GANTrainConfig",
    "train_gan",
    "NonFiniteLossError",
    "TrainConfig",
    "VAETrainConfig",
    "fit",
    "train_vae",
]
