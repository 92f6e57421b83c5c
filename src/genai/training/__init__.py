"""Training loops on one shared engine."""

from genai.training.engine import NonFiniteLossError, TrainConfig, TrainingInterrupted, fit
from genai.training.gan import GANTrainConfig, train_gan
from genai.training.vae import VAETrainConfig, train_vae

# genai.gpt's training loop is built on this package's engine (genai.gpt.train imports
# genai.training.engine, which runs this file first), so its names are looked up on first use.
_FROM_GPT = ("GPTTrainConfig", "train_gpt")

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


def __getattr__(name: str):
    if name in _FROM_GPT:
        from genai import gpt  # the layer above this one: imported here, when genai.gpt is done

        return getattr(gpt, name)
    from genai.deprecation import renamed

    return renamed(__name__, name, ("LMTrainConfig", "train_lm", "generate_text", "stream_text"))
