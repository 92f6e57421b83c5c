"""genai: trainable generative models for PyTorch (a VAE, a GAN and a GPT-style LM)."""

from genai.checkpoint import CheckpointError, RunLockedError, load
from genai.data import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    load_images,
    load_text,
)
from genai.device import resolve_device
from genai.generation import SamplingConfig, generate_text, stream_text
from genai.models import GAN, GPT, VAE, GANConfig, GPTConfig, VAEConfig, get_model, list_models
from genai.plots import grid, show
from genai.training import (
    GANTrainConfig,
    GPTTrainConfig,
    NonFiniteLossError,
    TrainConfig,
    TrainingInterrupted,
    VAETrainConfig,
    train_gan,
    train_gpt,
    train_vae,
)
from genai.version import __version__

__all__ = [
    "GAN",
    "GPT",
    "VAE",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "CheckpointError",
    "GANConfig",
    "GANTrainConfig",
    "GPTConfig",
    "GPTTrainConfig",
    "NonFiniteLossError",
    "SamplingConfig",
    "RunLockedError",
    "TrainConfig",
    "TrainingInterrupted",
    "VAEConfig",
    "VAETrainConfig",
    "__version__",
    "generate_text",
    "get_model",
    "grid",
    "list_models",
    "load",
    "load_images",
    "load_text",
    "resolve_device",
    "show",
    "stream_text",
    "train_gan",
    "train_gpt",
    "train_vae",
]
