"""What a model kind tells the rest of genai: one :class:`ModelKind` per folder.

``genai/vae/__init__.py`` ends with ``KIND = ModelKind(VAE, VAETrainConfig, train_vae, ...)``,
and ``genai/registry.py`` lists the kinds. The CLI, :class:`genai.run.Run`, ``genai.load`` and
``genai eval`` read only this: none of them has a branch per kind.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


class Inputs(Protocol):
    """The data of one run, loaded: what the train function takes, and the model fields the
    data fixes (an image model's ``image_shape``, a language model's ``vocab_size``)."""

    train_kwargs: dict[str, Any]  # e.g. {"data": train, "eval_data": test}

    def model_fields(self, given: dict[str, Any]) -> dict[str, Any]:
        """The fields a new run's model takes from the data, checked against ``given``."""


class DataSource(Protocol):
    """How a kind's runs get their data: flags, the request they make, loading it."""

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        """Add the data flags of ``genai train KIND`` (and ``genai eval``)."""

    def request(self, args: argparse.Namespace) -> dict[str, Any]:
        """The data the flags ask for (only what was given), as keyword arguments of ``load``."""

    def load(
        self, request: dict[str, Any], saved: dict | None, eval_split: bool, progress: bool
    ) -> Inputs:
        """Load the data: ``request`` wins over what run config ``saved`` recorded (a resume)."""


@dataclass(frozen=True)
class ModelKind:
    """One model kind, as the CLI and the run directory see it.

    Attributes:
        model: the ``nn.Module`` class; its ``kind`` is the registry name, its
            ``config_class`` the model config.
        train_config: the training config dataclass (a :class:`TrainConfig`).
        train: ``train(model, config=..., callbacks=..., **inputs.train_kwargs)``.
        data: its :class:`DataSource` (images or text).
        makes: ``"images"`` (``genai sample``) or ``"text"`` (``genai generate``).
        evaluate: ``evaluate(model, train, test, options) -> dict`` for ``genai eval``, or None.
        eval_during_training: whether ``train`` takes the test split as ``eval_data``.
        recipes: named starting points, ``name -> {"model": fields, "train": fields}``.
        sample_options: a config class whose fields are ``genai sample``'s extra flags for this
            kind, passed to ``model.sample`` (a diffusion model's ``--steps``), or None.
        init: ``init(source, fields, download) -> model``: the pretrained model a new run
            starts from (``genai train KIND --init``: a genai run, or another library's folder
            such as a GPT's Hugging Face model), with the model settings ``fields`` given
            applied or refused, carrying ``init_from`` (what ``config.json`` records) and what
            its data must use (a language model's ``tokenizer``); None: the kind has no
            ``--init``.
    """

    model: type
    train_config: type
    train: Callable[..., dict]
    data: DataSource
    makes: str = "images"
    evaluate: Callable[..., dict] | None = None
    eval_during_training: bool = True
    recipes: Mapping[str, dict[str, dict]] = field(default_factory=dict)
    sample_options: type | None = None
    init: Callable[..., Any] | None = None

    @property
    def name(self) -> str:
        return self.model.kind

    @property
    def config(self) -> type:
        return self.model.config_class
