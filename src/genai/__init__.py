"""genai: trainable generative models for PyTorch (a VAE, a GAN and a GPT-style LM)."""

__version__ = "0.1.0"

from genai.checkpoint import CheckpointError, load  # noqa: E402
from genai.data import load_images  # noqa: E402
from genai.device import resolve_device  # noqa: E402
from genai.models import VAE, VAEConfig, get_model  # noqa: E402
from genai.training import NonFiniteLossError, TrainConfig, VAETrainConfig, train_vae  # noqa: E402

__all__ = [
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
