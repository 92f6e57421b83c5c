"""Renamed public names keep working for one release, with a ``DeprecationWarning``."""

from __future__ import annotations

import warnings
from typing import Any

# old name -> (new name, module that defines it); removed in the release after 0.2
RENAMED = {
    "LMTrainConfig": ("GPTTrainConfig", "genai.gpt.train"),
    "train_lm": ("train_gpt", "genai.gpt.train"),
    "generate_text": ("generate_text", "genai.gpt.sampling"),
    "stream_text": ("stream_text", "genai.gpt.sampling"),
}


def renamed(module: str, name: str, names: tuple[str, ...]) -> Any:
    """The object an old ``module.name`` refers to, with a warning; ``AttributeError`` else."""
    import importlib

    if name not in names:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    new, home = RENAMED[name]
    warnings.warn(
        f"{module}.{name} is deprecated; use genai.{new}", DeprecationWarning, stacklevel=3
    )
    return getattr(importlib.import_module(home), new)
