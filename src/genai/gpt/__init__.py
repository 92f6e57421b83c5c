"""The GPT language model (Radford et al. 2019) and its modern recipe, on any UTF-8 text."""

from genai.data.source import TEXT
from genai.generation import SamplingConfig, generate_text, stream_text
from genai.models.gpt import GPT, GPTConfig
from genai.models.gpt import RECIPES as MODEL_RECIPES
from genai.training.kind import ModelKind
from genai.training.lm import RECIPES as TRAIN_RECIPES
from genai.training.lm import GPTTrainConfig, train_gpt

RECIPES = {name: (MODEL_RECIPES[name], TRAIN_RECIPES[name]) for name in MODEL_RECIPES}
KIND = ModelKind(GPT, GPTTrainConfig, train_gpt, TEXT, makes="text", recipes=RECIPES)

__all__ = [
    "GPT",
    "KIND",
    "GPTConfig",
    "GPTTrainConfig",
    "SamplingConfig",
    "generate_text",
    "stream_text",
    "train_gpt",
]
