"""A run directory as one object: what it records, and all it takes to load or continue it.

``Run(path)`` reads ``config.json`` (the commit protocol of :mod:`genai.core.checkpoint` makes
it always whole) and knows the run's kind from the registry. From there::

    run.load()                  # the model (and a GPT's tokenizer), in eval mode
    run.metrics()               # metrics.jsonl as a list of records
    run.resume(max_steps=8000)  # go on training with the recorded data, model and settings
    run.evaluate(EvalOptions()) # the kind's evaluation protocol (genai eval)

:func:`start` trains a new run of a kind from its fields and a data request (the CLI's
``genai train``), :func:`resume` and :func:`load` are the public shortcuts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genai.core import checkpoint, rundir
from genai.core.checkpoint import CheckpointError
from genai.evaluation import EvalOptions
from genai.plots import read_metrics
from genai.pretrained import build
from genai.registry import KINDS
from genai.training.kind import ModelKind

log = logging.getLogger(__name__)


def _length(fields: dict[str, Any]) -> dict[str, Any]:
    """One length alone means that length: ``max_steps`` N trains N steps, ``epochs`` E epochs."""
    fields = dict(fields)
    if "max_steps" in fields and "epochs" not in fields:
        fields["epochs"] = None
    if "epochs" in fields and "max_steps" not in fields:
        fields["max_steps"] = None
    return fields


def _as_request(data: Any) -> dict[str, Any]:
    """A data request from ``data``: None (the recorded data), a name or path, a dict of data
    options, or images in memory (a tensor, an array or an ImageDataset)."""
    if data is None:
        return {}
    if isinstance(data, (str, Path)):
        return {"source": str(data)}
    if isinstance(data, dict):
        return dict(data)
    if hasattr(data, "shape") or hasattr(data, "images"):
        return {"memory": data}
    raise TypeError(
        f"data must be a dataset name or path, a dict of data options (source, root, "
        f"image_size, channels, ...; text= for a language model's text), or images in memory, "
        f"got {type(data).__name__}"
    )


class Run:
    """A run directory (or a ``save_pretrained`` folder) written by genai.

    Args:
        path: the folder.

    Raises:
        CheckpointError: ``path`` is not a consistent genai run, or its kind is unknown.
    """

    def __init__(self, path: str | Path):
        if not str(path).strip():
            raise ValueError("Run needs the path of a run directory, got an empty path")
        self.path = Path(path)
        self.record = checkpoint.load_config(self.path)
        name = self.record["kind"]
        if name not in KINDS:
            raise CheckpointError(
                f"{self.path}: unknown model kind {name!r} in config.json (genai has "
                f"{', '.join(KINDS)})"
            )
        self.kind: ModelKind = KINDS[name]

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, kind={self.kind.name!r}, step={self.step})"

    @property
    def step(self) -> int:
        """The step of the checkpoint the folder holds."""
        return self.record["step"]

    @property
    def train_record(self) -> dict[str, Any]:
        """The training settings ``config.json`` records (empty for a saved model)."""
        saved = self.record.get("train_config")
        return saved if isinstance(saved, dict) else {}

    def load(self, device: str | torch.device = "auto") -> nn.Module:
        """The model, in eval mode on ``device`` (a GPT with its tokenizer)."""
        return self.kind.model.from_pretrained(self.path, device)

    def metrics(self) -> list[dict]:
        """The records of ``metrics.jsonl`` (train and eval lines), oldest first."""
        path = self.path / rundir.METRICS
        return read_metrics(path) if path.exists() else []

    def config(self, **overrides: Any):
        """The training config that continues this run: its recorded settings, ``overrides``
        applied (``max_steps=`` extends it; settings that fix the data order cannot change)."""
        cls = self.kind.train_config
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)}")
        if overrides.get("overwrite"):
            raise ValueError("resume and overwrite exclude each other")
        out = overrides.pop("out_dir", None)
        if out is not None and Path(out).resolve() != self.path.resolve():
            raise ValueError(
                f"out_dir {out} differs from the run {self.path}: a resumed run goes on in its "
                "own directory (copy the folder first to branch it)"
            )
        saved = {k: v for k, v in self.train_record.items() if k in known}
        fields = {**saved, **_length(overrides)}
        return cls(**{**fields, "out_dir": str(self.path), "resume": True, "overwrite": False})

    def check_model_fields(self, given: dict[str, Any], name: Callable[[str], str] = str) -> None:
        """Refuse model settings that differ from the run's (``name`` spells a field)."""
        given = json.loads(json.dumps(given))  # tuples as lists, as in config.json
        changed = [k for k, v in given.items() if self.record["model_config"].get(k) != v]
        if changed:
            raise ValueError(
                f"model settings ({', '.join(map(name, changed))}) cannot change when resuming"
            )

    def inputs(self, data: Any = None, eval_split: bool = True, progress: bool = True):
        """The run's data again (``data`` replaces what it recorded): see :mod:`genai.data.source`."""
        return self.kind.data.load(_as_request(data), self.record, eval_split, progress)

    def resume(
        self, data: Any = None, callbacks: Sequence[Callable] = (), **overrides: Any
    ) -> dict:
        """Continue training with the recorded data, model, tokenizer and settings.

        Args:
            data: None for the recorded data, or other data: a name or path, a dict of the
                data options (``{"source": "photos/", "image_size": 32}``, ``{"text": ...}``
                for a language model's text in memory), or images in memory.
            callbacks: as in :func:`genai.training.engine.fit`.
            **overrides: training settings to change (``max_steps=8000`` extends the run).

        Returns:
            The training summary; the run is bit-exact to an uninterrupted one on CPU.
        """
        config = self.config(**overrides)  # every check before any data is read
        inputs = self.inputs(data, self.kind.eval_during_training, config.progress)
        torch.manual_seed(config.seed)  # as a new run: the weights come from the checkpoint
        model = build(self.kind.model, self.record["model_config"])
        if self.record.get("init") is not None:  # where the run started stays recorded
            model.init_from = self.record["init"]
        return self.kind.train(model, config=config, callbacks=callbacks, **inputs.train_kwargs)

    def evaluate(
        self, options: EvalOptions | None = None, data: Any = None, device: str = "auto"
    ) -> dict:
        """The kind's evaluation protocol on the run's test split (``genai eval``)."""
        if self.kind.evaluate is None:
            raise ValueError(
                f"{self.path} is a {self.kind.name!r} run; genai eval measures image models "
                f"({', '.join(k for k, v in KINDS.items() if v.evaluate is not None)})"
            )
        options = options or EvalOptions()
        model = self.load(device)
        inputs = self.inputs(data, eval_split=True, progress=options.progress)
        result, test = {}, inputs.test
        if test is None:  # no test split (or not on disk): say so, use train
            test = inputs.train
            result["split_note"] = (
                f"{inputs.missing_test}: every figure below is on the training images, which "
                "flatters a model that memorised them"
            )
        result.update(self.kind.evaluate(model, inputs.train, test, options, self.train_record))
        n = min(len(test), options.n) if options.n else len(test)
        return {"run_dir": str(self.path), "kind": self.kind.name, "n": n, **result}


def start(
    kind: ModelKind,
    model_fields: dict[str, Any],
    train_fields: dict[str, Any],
    data: Any = None,
    callbacks: Sequence[Callable] = (),
    init: str | Path | None = None,
) -> dict:
    """Train a new run of ``kind``: the model from ``model_fields`` and what the data fixes
    (its image shape, its vocabulary), seeded by the run, on the data ``data`` requests.

    With ``init`` (``--init``) the run starts from pretrained weights instead: a genai run or
    saved folder, or what the kind's ``init`` hook reads (a GPT: a Hugging Face folder, or with
    ``download`` in the data request a Hub model's name). The model's settings are the init's
    (``model_fields`` may change only those the hook allows), its data uses what the model
    fixes (a GPT's tokenizer), and ``config.json`` records the init as ``"init"``.
    """
    config = kind.train_config(**_length(train_fields))
    request = _as_request(data)
    if init is None:
        kind.config(**{k: v for k, v in model_fields.items() if k != "channels"})  # checked first
    else:
        if kind.init is None:
            raise ValueError(f"a {kind.name!r} run cannot start from an init (--init)")
        if init == "":
            raise ValueError("init must name a folder (or a Hub model), got an empty string")
        model = kind.init(str(init), model_fields, bool(request.get("download", False)))
        request["init"] = model
    inputs = kind.data.load(request, None, kind.eval_during_training, config.progress)
    if inputs.missing_test and kind.eval_during_training:
        log.warning("no test split, training without evaluation: %s", inputs.missing_test)
    if init is None:
        fields = {**model_fields, **inputs.model_fields(model_fields)}
        torch.manual_seed(config.seed)  # the model's initialization is part of the seeded run
        model = build(kind.model, fields)
    else:
        inputs.model_fields(dataclasses.asdict(model.config))  # the data fits the model
    return kind.train(model, config=config, callbacks=callbacks, **inputs.train_kwargs)


def load(run_dir: str | Path, device: str | torch.device = "auto") -> nn.Module:
    """Load the model of a run directory, in eval mode, ready for ``.sample()``/``.generate()``.

    A language-model run also gets its tokenizer back as ``model.tokenizer``.

    Args:
        run_dir: a run directory (or a folder written by ``save_pretrained``).
        device: ``"auto"`` (CUDA, then MPS, then CPU), ``"cpu"``, ``"cuda:1"``, ...

    Raises:
        CheckpointError: not a genai run, corrupt or inconsistent files.
    """
    return Run(run_dir).load(device)


def resume(run_dir: str | Path, data: Any = None, **overrides: Any) -> dict:
    """Continue the run in ``run_dir`` from Python, as ``genai train KIND --resume`` does.

    The run's recorded data, model, tokenizer and settings are used; ``overrides`` change
    training settings under the same rules as the CLI's (``max_steps=`` extends the run;
    ``batch_size`` and ``seed`` fix the data order and cannot change). On CPU the result is
    bit-exact to a run that was never interrupted.

    Example: ``genai.resume("runs/vae", max_steps=8000)``.

    Args:
        run_dir: the run directory.
        data: None for the recorded data, or other data (see :meth:`Run.resume`).
        **overrides: training settings to change.
    """
    return Run(run_dir).resume(data=data, **overrides)
