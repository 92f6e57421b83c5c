"""Named GPT recipes: the model layout and the training settings of each, in one table.

``GPTConfig.recipe(name, **overrides)`` reads the ``"model"`` side, ``GPTTrainConfig.recipe(name,
**overrides)`` the ``"train"`` side; ``genai train gpt --recipe NAME`` uses both.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # GPT-2's layout with nanoGPT's AdamW settings: the defaults of GPTConfig and GPTTrainConfig.
    "gpt2": {"model": {}, "train": {}},
    # The combination measured best in docs/gpt.md (modded-nanogpt's small-model choices).
    "modern": {
        "model": {
            "pos_emb": "rope",
            "norm": "rmsnorm",
            "qk_norm": True,
            "mlp": "relu2",
            "tie_weights": False,
            "zero_init": True,
            "logit_softcap": 15.0,
            "bias": False,
        },
        "train": {
            "optimizer": "muon",
            "lr": 0.008,
            "muon_lr": 0.02,
            "betas": (0.8, 0.95),
            "weight_decay": 0.0,
            "warmup_steps": 0,
            "lr_schedule": "wsd",
            "decay_fraction": 0.4,
            "min_lr_ratio": 0.0,
        },
    },
}


def recipe(name: str, part: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The ``part`` ("model" or "train") fields of recipe ``name``, with ``overrides`` applied.

    Raises:
        ValueError: ``name`` is not a recipe.
    """
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}: expected one of {', '.join(RECIPES)}")
    return {**RECIPES[name][part], **overrides}
