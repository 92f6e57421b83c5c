"""Training loops on one shared engine."""

from genai.training.engine import NonFiniteLossError, TrainConfig, fit
from genai.training.gan import GANTrainConfig, train_gan
from genai.training.lm import LMTrainConfig, generate_text, stream_text, train_lm
from genai.training.vae import VAETrainConfig, train_vae

__all__ = [
    "GANTrainConfig",
    "LMTrainConfig",
    "NonFiniteLossError",
    "TrainConfig",
    "VAETrainConfig",
    "fit",
    "generate_text",
    "stream_text",
    "train_gan",
    "train_lm",
    "train_vae",
]
