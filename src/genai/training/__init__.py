"""Training loops on one shared engine."""

from genai.training.engine import NonFiniteLossError, TrainConfig, TrainingInterrupted, fit
from genai.training.gan import GANTrainConfig, train_gan
from genai.training.lm import GPTTrainConfig, train_gpt
from genai.training.vae import VAETrainConfig, train_vae

__all__ = [
    "GANTrainConfig",
    "GPTTrainConfig",
    "NonFiniteLossError",
    "TrainingInterrupted",
    "TrainConfig",
    "VAETrainConfig",
    "fit",
    "train_gan",
    "train_gpt",
    "train_vae",
]
