"""Training loops on one shared engine."""

from genai.training.engine import NonFiniteLossError, TrainConfig, fit
from genai.training.vae import VAETrainConfig, train_vae

__all__ = ["NonFiniteLossError", "TrainConfig", "VAETrainConfig", "fit", "train_vae"]
