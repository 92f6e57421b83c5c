"""The GAN (Goodfellow et al. 2014; DCGAN nets, Radford et al. 2016), class-conditional or not."""

from genai.data.source import IMAGES
from genai.evaluation import evaluate_sampler
from genai.gan.model import GAN, GANConfig
from genai.gan.train import GANTrainConfig, train_gan
from genai.training.kind import ModelKind

KIND = ModelKind(
    GAN, GANTrainConfig, train_gan, IMAGES, evaluate=evaluate_sampler, eval_during_training=False
)

__all__ = ["GAN", "KIND", "GANConfig", "GANTrainConfig", "train_gan"]
