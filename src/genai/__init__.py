"""genai: trainable generative models for PyTorch (a VAE, a GAN, diffusion and a GPT-style LM)."""

from genai.core.checkpoint import CheckpointError, RunLockedError
from genai.core.device import resolve_device
from genai.data import (
    BPETokenizer,
    ByteTokenizer,
    CharTokenizer,
    load_images,
    load_text,
)
from genai.diffusion import Diffusion, DiffusionConfig, DiffusionTrainConfig, train_diffusion
from genai.evaluation import EvalOptions
from genai.gan import GAN, GANConfig, GANTrainConfig, train_gan
from genai.gpt import (
    GPT,
    GPTConfig,
    GPTTrainConfig,
    SamplingConfig,
    generate_text,
    stream_text,
    train_gpt,
)
from genai.plots import grid, show
from genai.registry import get_model, list_models
from genai.run import Run, load, resume
from genai.training import NonFiniteLossError, TrainConfig, TrainingInterrupted
from genai.vae import VAE, VAEConfig, VAETrainConfig, train_vae
from genai.version import __version__

__all__ = [
    "Diffusion",
    "DiffusionConfig",
    "DiffusionTrainConfig",
    "GAN",
    "GPT",
    "VAE",
    "BPETokenizer",
    "ByteTokenizer",
    "CharTokenizer",
    "CheckpointError",
    "EvalOptions",
    "GANConfig",
    "GANTrainConfig",
    "GPTConfig",
    "GPTTrainConfig",
    "NonFiniteLossError",
    "SamplingConfig",
    "Run",
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
    "resume",
    "show",
    "stream_text",
    "train_diffusion",
    "train_gan",
    "train_gpt",
    "train_vae",
]
