"""Starting a GPT run from pretrained weights: ``genai train gpt --init DIR_OR_RUN``.

:func:`load_init` is the GPT kind's ``init`` hook (:class:`genai.training.kind.ModelKind`):
it loads a Hugging Face folder (GPT-2, Llama, Qwen2: ``config.json``, safetensors weights,
``tokenizer.json``), a genai run or a ``save_pretrained`` folder, or with ``download`` a Hub
model fetched into the Hugging Face cache. The model's config comes from the init; of the
model settings given with it only those that are safe to change apply (:data:`CHANGEABLE`), and
the block size may only shrink (:func:`crop_block_size`, as nanoGPT's ``crop_block_size``).
The model carries its tokenizer and ``init_from``, which ``config.json`` records as ``"init"``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from genai.core.checkpoint import is_run_dir, read_config
from genai.gpt import hf
from genai.gpt.model import GPT, GPTConfig

# Model settings that may differ from the init's: they change no weight.
CHANGEABLE = ("dropout",)
NO_TOKENIZER = (
    "the model has no tokenizer (tokenizer.json, or vocab.json and merges.txt); fine-tuning "
    "needs the model's own tokenizer"
)


def download_model(name: str) -> Path:
    """The local folder of Hub model ``name`` (``"Qwen/Qwen2.5-0.5B"``), fetched into the
    Hugging Face cache if it is not there (``huggingface_hub.snapshot_download``).

    Raises:
        OSError: no network (or ``HF_HUB_OFFLINE``) and not cached; one line naming the flag.
    """
    hint = "without a network, pass a local folder with --init DIR instead"
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ValueError(
            f"--download {name} needs huggingface_hub (pip install 'genai[hf]'); {hint}"
        ) from None
    patterns = ["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]
    try:
        return Path(snapshot_download(name, allow_patterns=patterns))
    except Exception as e:  # offline, unknown repo, gated model: huggingface_hub's own errors
        reason = " ".join(str(e).split())[:300] or type(e).__name__
        raise OSError(
            f"--download {name}: could not fetch it from the Hugging Face Hub ({reason}); {hint}"
        ) from None


def crop_block_size(model: GPT, block_size: int) -> GPT:
    """Shorten ``model``'s context to ``block_size`` tokens in place (the first positions of a
    learned position table, the rotary table's first rows); a larger one is refused."""
    c = model.config
    if block_size > c.block_size:
        raise ValueError(
            f"block_size {block_size} is larger than the pretrained model's context "
            f"({c.block_size} tokens); give --block-size {c.block_size} or less"
        )
    if block_size == c.block_size:
        return model
    model.config = dataclasses.replace(c, block_size=block_size)
    t = model.transformer
    if "wpe" in t:
        t.wpe.weight = nn.Parameter(t.wpe.weight.detach()[:block_size].clone())
        t.wpe.num_embeddings = block_size
    rotary = t.h[0].attn.rotary  # one table, shared by every block
    if rotary is not None:
        rotary.cos, rotary.sin = rotary.cos[:block_size], rotary.sin[:block_size]
    return model


def _set_dropout(model: GPT, p: float) -> None:
    model.config = dataclasses.replace(model.config, dropout=p)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = p
        elif isinstance(getattr(module, "dropout", None), float):  # attention's own rate
            module.dropout = p


def check_fields(config: dict[str, Any], fields: dict[str, Any], source: str) -> None:
    """Refuse model settings given with an init that differ from its ``config`` (a dict), but
    for :data:`CHANGEABLE` ones and a ``block_size`` no larger; all named in one line."""
    given = json.loads(json.dumps(fields))  # tuples as lists, as in config.json
    free = ("block_size", *CHANGEABLE)
    differ = [k for k, v in given.items() if k not in free and config.get(k) != v]
    if differ:
        named = ", ".join(
            f"{k} ({given[k]!r} given, {config.get(k)!r} in the model)" for k in differ
        )
        raise ValueError(
            f"the model's settings come from the init {source}; these differ from it: {named} "
            f"(only {', '.join(CHANGEABLE)} and a smaller block_size can change)"
        )
    if given.get("block_size", 0) > config["block_size"]:
        raise ValueError(
            f"block_size {given['block_size']} is larger than the pretrained model's context "
            f"({config['block_size']} tokens); give --block-size {config['block_size']} or less"
        )


def apply_fields(model: GPT, fields: dict[str, Any], source: str) -> GPT:
    """Apply the model settings given with an init (see :func:`check_fields`): a smaller
    ``block_size`` crops the context, ``dropout`` is set."""
    check_fields(dataclasses.asdict(model.config), fields, source)
    if "block_size" in fields:
        crop_block_size(model, int(fields["block_size"]))
    if "dropout" in fields and fields["dropout"] != model.config.dropout:
        _set_dropout(model, float(fields["dropout"]))
    return model


def _config_of(path: Path, source: str) -> dict[str, Any]:
    """The GPTConfig fields of an init folder, read before any weight (a genai run's or a
    Hugging Face model's ``config.json``)."""
    if is_run_dir(path):
        record = read_config(path)
        if record["kind"] != GPT.kind:
            raise ValueError(f"--init {source} holds a {record['kind']!r} run, not a 'gpt' one")
        if record.get("tokenizer") is None:
            raise ValueError(f"--init {source}: {NO_TOKENIZER}")
        return record["model_config"]
    if not (path / "config.json").is_file():
        raise ValueError(
            f"--init {source}: {str(path)!r} holds neither a Hugging Face model (config.json, "
            "safetensors weights) nor a genai run"
        )
    if not (path / "tokenizer.json").is_file() and not (path / "vocab.json").is_file():
        raise ValueError(f"--init {source}: {NO_TOKENIZER}")
    from transformers import AutoConfig

    fields = hf.config_fields(AutoConfig.from_pretrained(path, local_files_only=True))
    return dataclasses.asdict(GPTConfig(**fields))


def load_init(
    source: str | Path, fields: dict[str, Any] | None = None, download: bool = False
) -> GPT:
    """The pretrained GPT to start a run from, with its tokenizer, on the CPU in train mode.

    Args:
        source: a Hugging Face model folder, a genai run or ``save_pretrained`` folder, or
            (with ``download``) the name of a Hugging Face Hub model.
        fields: model settings given with it (see :func:`apply_fields`).
        download: fetch ``source`` from the Hub when it is not a local folder.

    Raises:
        ValueError: not a model genai can start from, no tokenizer, or settings that differ.
    """
    path, repo = Path(source), None
    if not path.is_dir():
        if not download:
            raise ValueError(
                f"--init {source}: no such folder (a Hugging Face model folder or a genai run; "
                f"--download {source} fetches a Hub model)"
            )
        repo, path = str(source), download_model(str(source))
    check_fields(_config_of(path, str(source)), fields or {}, str(source))  # before the weights
    model = GPT.from_pretrained(path, "cpu") if is_run_dir(path) else GPT.from_huggingface(path)
    if getattr(model, "tokenizer", None) is None:
        raise ValueError(f"--init {source}: {NO_TOKENIZER}")
    if repo is not None:
        model.init_from["repo_id"] = repo
    model = apply_fields(model, fields or {}, str(source))
    return model.to(torch.device("cpu")).train()
