"""The GPT: a GPT-2-style language model, its decoding and sampling, recipes and training.

Modules, bottom to top: :mod:`~genai.gpt.recipes` (named settings), :mod:`~genai.gpt.sampling`
(SamplingConfig, filters), :mod:`~genai.gpt.decoding` (KV cache, CUDA graph, the token loop),
:mod:`~genai.gpt.hf_llama` (the Llama family), :mod:`~genai.gpt.hf` (Hugging Face GPT-2, Llama,
Qwen2), :mod:`~genai.gpt.model` (the architecture), :mod:`~genai.gpt.finetune` (a run from
pretrained weights), :mod:`~genai.gpt.chat` (chat templates), :mod:`~genai.gpt.text` (text in and
out), :mod:`~genai.gpt.evaluate` (validation loss), :mod:`~genai.gpt.train` (the loop).
"""

from genai.data.source import TEXT
from genai.gpt.finetune import load_init
from genai.gpt.model import GPT, GPTConfig
from genai.gpt.recipes import RECIPES
from genai.gpt.sampling import SamplingConfig
from genai.gpt.text import generate_text, stream_text
from genai.gpt.train import GPTTrainConfig, train_gpt
from genai.training.kind import ModelKind

KIND = ModelKind(
    GPT, GPTTrainConfig, train_gpt, TEXT, makes="text", recipes=RECIPES, init=load_init
)

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
