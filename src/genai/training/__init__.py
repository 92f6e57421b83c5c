"""Training loops on one shared engine."""

from genai.training.engine import NonFiniteLossError, TrainConfig, fit
from genai.training.lm import LMTrainConfig, generate_text, stream_text, train_lm
from genai.training.vae import VAETrainConfig, train_vae

__all__ = [
    "LMTrainConfig",
    "NonFiniteLossError",
    "TrainConfig",
    "VAETrainConfig",
    "fit",
    "generate_text",
    "stream_text",
    "train_lm",
    "train_vae",
]
