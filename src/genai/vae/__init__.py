"""The variational autoencoder (Kingma & Welling 2014): model, training loop, evaluation."""

from genai.data.source import IMAGES
from genai.training.kind import ModelKind
from genai.vae.evaluate import evaluate, evaluate_vae
from genai.vae.model import VAE, VAEConfig
from genai.vae.train import VAETrainConfig, train_vae

KIND = ModelKind(VAE, VAETrainConfig, train_vae, IMAGES, makes="images", evaluate=evaluate)

__all__ = ["KIND", "VAE", "VAEConfig", "VAETrainConfig", "evaluate_vae", "train_vae"]
