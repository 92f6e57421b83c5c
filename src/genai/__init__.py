"""genai: trainable generative models for PyTorch (a VAE, a GAN and a GPT-style LM)."""

__version__ = "0.1.0"

from genai.checkpoint import CheckpointError, load  # noqa: E402
from genai.data import (  # noqa: E402
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    load_images,
    load_text,
)
from genai.device import resolve_device  # noqa: E402
from genai.models import GAN, GPT, VAE, GANConfig, GPTConfig, VAEConfig, get_model  # noqa: E402
from genai.training import (  # noqa: E402
    GANTrainConfig,
    LMTrainConfig,
    NonFiniteLossError,
    TrainConfig,
    VAETrainConfig,
    generate_text,
    stream_text,
    train_gan,
    train_lm,
    train_vae,
)

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
    "LMTrainConfig",
    "NonFiniteLossError",
    "TrainConfig",
    "VAEConfig",
    "VAETrainConfig",
    "__version__",
    "generate_text",
    "get_model",
    "load",
    "load_images",
    "load_text",
    "resolve_device",
    "stream_text",
    "train_gan",
    "train_lm",
    "train_vae",
]
