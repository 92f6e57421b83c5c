"""Where a run's data comes from: the flags that name it, what a run records, loading it again.

Two sources cover every model kind: :data:`IMAGES` (named datasets, folders, ``.npz`` files)
and :data:`TEXT` (files, folders, globs and named corpora, with a tokenizer). A new run loads
what the flags name; a resumed run (or ``genai eval``) loads what its ``config.json`` recorded,
with the flags given replacing the recorded values.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genai.data.dataset import ImageDataset, MissingSplitError, as_dataset
from genai.data.images import load_images, load_recorded
from genai.data.named import NAMED
from genai.data.text import (
    CORPORA,
    TOKENIZERS,
    Tokenizer,
    build_tokenizer,
    load_text,
    tokenizer_from_dict,
)

log = logging.getLogger(__name__)


def nonempty(value: str) -> str:
    """An argparse type for a path or name flag: an empty string is a mistake, never a default."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def _named(value: Any) -> bool:
    """Whether a ``--download [NAME]`` value names something (a Hub model)."""
    return isinstance(value, str)


def _given(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    """``{request key: value}`` of the flags (``names``: request key -> args attribute) given."""
    values = {key: getattr(args, attr, None) for key, attr in names.items()}
    return {key: value for key, value in values.items() if value not in (None, False)}


@dataclass
class ImageInputs:
    """The image data of a run: the training split and, when there is one, the test split."""

    train: ImageDataset
    test: ImageDataset | None
    missing_test: str | None = None  # why there is no test split
    with_eval: bool = True

    @property
    def train_kwargs(self) -> dict[str, Any]:
        return {"data": self.train, **({"eval_data": self.test} if self.with_eval else {})}

    def model_fields(self, given: dict[str, Any]) -> dict[str, Any]:
        shape = self.train.image_shape
        wanted = given.get("image_shape")
        if wanted is not None and tuple(wanted) != shape:
            raise ValueError(
                f"--image-shape {' '.join(map(str, wanted))} differs from the data's {shape}; "
                f"resize the data instead (--image-size {wanted[-1]}, --image-channels "
                f"{wanted[0]})"
            )
        return {"image_shape": shape}


class ImageSource:
    """Images for the image models (VAE, GAN, diffusion)."""

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data",
            "--dataset",
            dest="data",
            metavar="NAME_OR_PATH",
            type=nonempty,
            default=None,
            help=f"a dataset ({', '.join(NAMED)}), a folder of images or an .npz file (default: "
            "mnist for a new run; the run's recorded data for --resume and genai eval)",
        )
        parser.add_argument(
            "--root", type=nonempty, default=None, help="folder that holds a named dataset"
        )
        parser.add_argument(
            "--download",
            action="store_true",
            default=False,
            help="allow downloading the dataset (and, for eval, the Inception-v3 FID weights)",
        )
        parser.add_argument(
            "--image-size", type=int, default=None, help="resize images to this square size"
        )
        parser.add_argument(
            "--image-channels",
            type=int,
            choices=(1, 3),
            default=None,
            help="convert images to gray (1) or RGB (3)",
        )

    def request(self, args: argparse.Namespace) -> dict[str, Any]:
        names = {"source": "data", "root": "root", "image_size": "image_size"}
        return _given(args, {**names, "channels": "image_channels", "download": "download"})

    def split(
        self, request: dict[str, Any], saved: dict | None, split: str, progress: bool = True
    ) -> ImageDataset:
        """One split of the requested data, else of the data ``saved`` records, else MNIST."""
        flags = {k: request.get(k) for k in ("root", "image_size", "channels")}
        flags.update(download=request.get("download", False), progress=progress)
        if saved is not None:
            return load_recorded(saved.get("data"), split, source=request.get("source"), **flags)
        return load_images(request.get("source") or "mnist", split, **flags)

    def load(
        self, request: dict[str, Any], saved: dict | None, eval_split: bool, progress: bool = True
    ) -> ImageInputs:
        if "memory" in request:  # images given in memory: no test split
            return ImageInputs(
                as_dataset(request["memory"]), None, "images given in memory", eval_split
            )
        train = self.split(request, saved, "train", progress)
        inputs = ImageInputs(train, None, with_eval=eval_split)
        if eval_split:
            try:
                inputs.test = self.split(request, saved, "test", progress)
            except MissingSplitError as e:
                inputs.missing_test = " ".join(str(e).split())
        return inputs


@dataclass
class TextInputs:
    """The text of a run, its tokenizer, and what ``config.json`` records of its source."""

    text: str
    tokenizer: Tokenizer
    record: dict[str, Any]
    train: Any = None  # no split files for text: the run holds out its own validation tokens
    test: Any = None
    missing_test: str | None = None

    @property
    def train_kwargs(self) -> dict[str, Any]:
        return {"text": self.text, "tokenizer": self.tokenizer, "source": self.record}

    def model_fields(self, given: dict[str, Any]) -> dict[str, Any]:
        size = given.get("vocab_size", self.tokenizer.vocab_size)  # given, or the data's
        if size < self.tokenizer.vocab_size:
            raise ValueError(
                f"--vocab-size {size} is smaller than the tokenizer's vocabulary "
                f"({self.tokenizer.vocab_size} tokens)"
            )
        return {"vocab_size": size}


class TextSource:
    """Text for the language model, read with the run's tokenizer (or a new one)."""

    def add_flags(self, parser: argparse.ArgumentParser) -> None:
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--text", type=nonempty, default=None, help="a text file, folder or glob to train on"
        )
        source.add_argument("--corpus", choices=CORPORA, default=None, help="a named corpus")
        parser.add_argument(
            "--root", type=nonempty, default=None, help="local path of the named corpus"
        )
        parser.add_argument(
            "--download",
            nargs="?",
            const=True,
            default=False,
            metavar="HUB_MODEL",
            help="allow downloading the corpus; with a name (Qwen/Qwen2.5-0.5B), fetch that "
            "Hugging Face Hub model into the Hugging Face cache and start from it (as --init)",
        )
        parser.add_argument(
            "--tokenizer",
            choices=TOKENIZERS,
            default=None,
            help="(default: char; a run keeps its own; --init uses the model's)",
        )
        parser.add_argument(
            "--bpe-vocab", type=int, default=1024, help="vocabulary size of a trained BPE tokenizer"
        )

    def request(self, args: argparse.Namespace) -> dict[str, Any]:
        request = _given(args, {"root": "root", "tokenizer": "tokenizer"})
        if getattr(args, "download", False):  # --download, or --download NAME (a model: --init)
            request["download"] = True
        if "tokenizer" in request and (
            getattr(args, "init", None) or _named(getattr(args, "download", None))
        ):
            raise ValueError("--tokenizer cannot be given with --init: the model keeps its own")
        source = getattr(args, "text", None) or getattr(args, "corpus", None)
        if source is not None:
            request["source"] = source
        if getattr(args, "bpe_vocab", 1024) != 1024:
            if request.get("tokenizer") != "bpe":
                raise ValueError("--bpe-vocab is the vocabulary size of --tokenizer bpe")
            request["bpe_vocab"] = args.bpe_vocab
        return request

    def load(
        self, request: dict[str, Any], saved: dict | None, eval_split: bool, progress: bool = True
    ) -> TextInputs:
        if saved is not None:  # the run's own text and tokenizer unless told otherwise
            source, root, tokenizer = self._recorded(request, saved)
        elif "init" in request:  # a pretrained model: its own tokenizer
            source, root = request.get("source") or "python-stdlib", request.get("root")
            tokenizer = self._init_tokenizer(request)
        else:
            source, root, tokenizer = (
                request.get("source") or "python-stdlib",
                request.get("root"),
                None,
            )
        if "text" in request:  # the text itself, given in memory
            text, record = request["text"], {"source": None, "root": None}
        else:
            text = load_text(source, root=root, download=request.get("download", False))
            if source not in CORPORA:  # a file, folder or glob that a resume must find again
                source = os.path.abspath(source)
            record = {"source": source, "root": str(Path(root).resolve()) if root else None}
        if tokenizer is None:
            kind = request.get("tokenizer") or "char"
            tokenizer = build_tokenizer(kind, text, request.get("bpe_vocab", 1024))
        return TextInputs(text, tokenizer, record)

    @staticmethod
    def _init_tokenizer(request: dict[str, Any]) -> Tokenizer:
        if request.get("tokenizer") is not None:
            raise ValueError("--tokenizer cannot be given with --init: the model keeps its own")
        tokenizer = getattr(request["init"], "tokenizer", None)
        if tokenizer is None:
            raise ValueError("the init model has no tokenizer; fine-tuning needs its own")
        return tokenizer

    @staticmethod
    def _recorded(request: dict[str, Any], saved: dict) -> tuple[str, Any, Tokenizer]:
        data = saved.get("data") if isinstance(saved.get("data"), dict) else {}
        source = request.get("source") or data.get("source")
        if not source and "text" not in request:
            raise ValueError(
                "the run was trained on text given in memory (train_gpt without source=); pass "
                "the text again (--text or --corpus; data= in genai.resume)"
            )
        root = request.get("root")
        if not (request.get("source") or root):
            root = data.get("root")
        if not isinstance(saved.get("tokenizer"), dict):
            raise ValueError("the run's config.json has no tokenizer")
        kind = saved["tokenizer"].get("type")
        if request.get("tokenizer") not in (None, kind):
            raise ValueError(f"--tokenizer cannot change when resuming (the run's is {kind!r})")
        return source, root, tokenizer_from_dict(saved["tokenizer"])


IMAGES = ImageSource()
TEXT = TextSource()
