"""The ``genai`` command line: train / sample / generate / eval / demo.

Every field of a model config and of its training config is a flag (``latent_dim`` ->
``--latent-dim``). Errors are printed on one line, without a traceback, with a non-zero exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import types
import typing
from pathlib import Path

import torch

from genai import checkpoint
from genai.checkpoint import RunLockedError
from genai.data.images import MissingSplitError, check_shape, load_images, load_recorded
from genai.gpt.sampling import SAMPLING
from genai.training.engine import NonFiniteLossError, TrainingInterrupted

log = logging.getLogger("genai")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Fields whose CLI default is not the dataclass's.
_DEFAULTS_ELSEWHERE = {
    "vocab_size": "(default: the tokenizer's vocabulary size)",
    "image_shape": "(default: the data's)",
}


def _add_dataclass_flags(parser: argparse.ArgumentParser, cls: type, title: str) -> None:
    """One flag per dataclass field; defaults are left out so only given flags are set."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name == "resume":  # the CLI's --resume takes the run directory instead
            continue
        kind = hints[field.name]
        args = typing.get_args(kind)
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args
        if optional:
            kind = next(a for a in args if a is not type(None))
        default = (
            field.default if field.default is not dataclasses.MISSING else field.default_factory()
        )
        help_text = _DEFAULTS_ELSEWHERE.get(field.name, f"(default: {default})")
        if field.name == "max_steps":  # the length rule of TrainConfig
            help_text = f"(default: {cls.default_max_steps} when --epochs is not given either)"
        if kind is bool:
            group.add_argument(
                _flag(field.name),
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        elif typing.get_origin(kind) is tuple:
            group.add_argument(
                _flag(field.name),
                type=typing.get_args(kind)[0],
                nargs="+",
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                _flag(field.name),
                type=_parse_optional(kind) if optional else (_text if kind is str else kind),
                default=argparse.SUPPRESS,
                help=help_text,
            )


def _parse_optional(kind: type):
    def parse(text: str):
        return None if text.lower() in ("none", "null") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _pick(args: argparse.Namespace, cls: type) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and k != "resume"}


def _image_flags(parser: argparse.ArgumentParser) -> None:
    from genai.data.named import NAMED

    parser.add_argument(
        "--data",
        "--dataset",
        dest="data",
        metavar="NAME_OR_PATH",
        type=_text,
        default=None,
        help=f"a dataset ({', '.join(NAMED)}), a folder of images or an .npz file (default: "
        "mnist for a new run; the run's recorded data for --resume and genai eval)",
    )
    parser.add_argument(
        "--root", type=_text, default=None, help="folder that holds a named dataset"
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


def _load_split(args: argparse.Namespace, split: str, record: dict | None):
    """A split of the data the flags name, else of the data the run recorded, else MNIST."""
    flags = {
        "root": args.root,
        "image_size": args.image_size,
        "channels": args.image_channels,
        "download": args.download,
        "progress": getattr(args, "progress", True) and not args.quiet,
    }
    if record:  # the flags given replace what the run recorded
        return load_recorded(record, split, source=args.data, **flags)
    return load_images(args.data or "mnist", split, **flags)


def _image_splits(args: argparse.Namespace, config, with_test: bool = True):
    """The train split and, when there is one, the test split (else evaluation is skipped).

    A resumed run reads the data its ``config.json`` records unless ``--data`` names other data.
    """
    record = checkpoint.load_config(config.out_dir).get("data") if config.resume else None
    train = _load_split(args, "train", record)
    if not with_test:
        return train, None
    try:
        test = _load_split(args, "test", record)
    except MissingSplitError as e:
        log.warning("no test split, training without evaluation: %s", e)
        test = None
    return train, test


def _image_model(kind: str, fields: dict, config, args: argparse.Namespace, data):
    """The model of an image run: a new run's takes its image shape from the data, seeded by
    the run; a resumed run's has the recorded fields (a shape mismatch is an error in
    training)."""
    from genai.models import get_model

    shape = data.image_shape
    given = getattr(args, "image_shape", None)
    if given is not None and tuple(given) != shape:
        raise ValueError(
            f"--image-shape {' '.join(map(str, given))} differs from the data's {shape}; "
            f"resize the data instead (--image-size {given[-1]}, --image-channels {given[0]})"
        )
    if not config.resume:
        fields = {**fields, "image_shape": shape}
    torch.manual_seed(config.seed)  # the model's initialization is part of the seeded run
    return get_model(kind, **fields)


def _run_vae(fields: dict, config, args: argparse.Namespace) -> dict:
    from genai.training.vae import train_vae

    train, test = _image_splits(args, config)
    model = _image_model("vae", fields, config, args, train)
    return train_vae(model, train, config, eval_data=test)


def _text_flags(parser: argparse.ArgumentParser) -> None:
    from genai.data.text import CORPORA, TOKENIZERS
    from genai.gpt.recipes import RECIPES

    parser.add_argument(
        "--recipe",
        choices=tuple(RECIPES),
        default=None,
        help="start from a named recipe's model and training settings (flags override them)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--text", type=_text, default=None, help="a text file, folder or glob to train on"
    )
    source.add_argument("--corpus", choices=CORPORA, default=None, help="a named corpus")
    parser.add_argument("--root", type=_text, default=None, help="local path of the named corpus")
    parser.add_argument(
        "--download", action="store_true", default=False, help="allow downloading the corpus"
    )
    parser.add_argument(
        "--tokenizer", choices=TOKENIZERS, default=None, help="(default: char; a run keeps its own)"
    )
    parser.add_argument(
        "--bpe-vocab", type=int, default=1024, help="vocabulary size of a trained BPE tokenizer"
    )


def _run_gpt(fields: dict, config, args: argparse.Namespace) -> dict:
    from genai.data.text import CORPORA, build_tokenizer, load_text, tokenizer_from_dict
    from genai.gpt.train import train_gpt
    from genai.models import get_model

    root = args.root
    if config.resume:  # the run's own data unless told otherwise
        saved = checkpoint.load_config(config.out_dir)
        data = saved.get("data") if isinstance(saved.get("data"), dict) else {}
        source = args.text or args.corpus or data.get("source")
        if not source:
            raise ValueError(
                f"{config.out_dir} was trained on text given in memory (train_gpt without "
                "source=); pass the text again with --text or --corpus"
            )
        root = root if (args.text or args.corpus or root) else data.get("root")
        if not isinstance(saved.get("tokenizer"), dict):
            raise checkpoint.CheckpointError(f"{config.out_dir}: config.json has no tokenizer")
        tokenizer = tokenizer_from_dict(saved["tokenizer"])
        if args.tokenizer not in (None, saved["tokenizer"].get("type")):
            raise ValueError(
                f"--tokenizer cannot change when resuming (the run's is "
                f"{saved['tokenizer'].get('type')!r})"
            )
    else:
        source = args.text or args.corpus or "python-stdlib"
    text = load_text(source, root=root, download=args.download)
    if not config.resume:
        tokenizer = build_tokenizer(args.tokenizer or "char", text, args.bpe_vocab)
        vocab_size = getattr(args, "vocab_size", tokenizer.vocab_size)  # given, or the data's
        if vocab_size < tokenizer.vocab_size:
            raise ValueError(
                f"--vocab-size {vocab_size} is smaller than the tokenizer's vocabulary "
                f"({tokenizer.vocab_size} tokens)"
            )
        fields = {**fields, "vocab_size": vocab_size}  # the vocabulary comes from the data
    torch.manual_seed(config.seed)  # the model's initialization is part of the seeded run
    model = get_model("gpt", **fields)  # checks the size before allocating
    if source not in CORPORA:  # a file, folder or glob that a later --resume must find again
        source = os.path.abspath(source)
    data = {"source": source, "root": str(Path(root).resolve()) if root else None}
    return train_gpt(model, text, tokenizer, config, source=data)


def _run_gan(fields: dict, config, args: argparse.Namespace) -> dict:
    from genai.training.gan import train_gan

    train, _ = _image_splits(args, config, with_test=False)
    model = _image_model("gan", fields, config, args, train)
    return train_gan(model, train, config)


@dataclasses.dataclass
class TrainKind:
    """How the CLI trains one model kind: its configs, its data flags, and the call to its loop."""

    model_config: type
    train_config: type
    add_data_flags: typing.Callable[[argparse.ArgumentParser], None]
    run: typing.Callable[..., dict]


def _train_kinds() -> dict[str, TrainKind]:
    from genai.gpt.model import GPTConfig
    from genai.gpt.train import GPTTrainConfig
    from genai.models.gan import GANConfig
    from genai.models.vae import VAEConfig
    from genai.training.gan import GANTrainConfig
    from genai.training.vae import VAETrainConfig

    return {
        "vae": TrainKind(VAEConfig, VAETrainConfig, _image_flags, _run_vae),
        "gpt": TrainKind(GPTConfig, GPTTrainConfig, _text_flags, _run_gpt),
        "gan": TrainKind(GANConfig, GANTrainConfig, _image_flags, _run_gan),
    }


def _train(args: argparse.Namespace) -> None:

    spec = _train_kinds()[args.kind]
    model_fields, train_fields = _pick(args, spec.model_config), _pick(args, spec.train_config)
    # One length flag alone means that length: --max-steps N trains N steps, --epochs E E epochs.
    if "max_steps" in train_fields and "epochs" not in train_fields:
        train_fields["epochs"] = None
    if "epochs" in train_fields and "max_steps" not in train_fields:
        train_fields["max_steps"] = None
    recipe = getattr(args, "recipe", None)
    if recipe is not None:
        if args.resume:
            raise ValueError("--recipe cannot be given with --resume (the run keeps its settings)")
        model_fields = dataclasses.asdict(spec.model_config.recipe(recipe, **model_fields))
        train_fields = dataclasses.asdict(spec.train_config.recipe(recipe, **train_fields))
    if args.resume:
        if train_fields.get("overwrite"):
            raise ValueError("--resume and --overwrite exclude each other")
        out = train_fields.get("out_dir")
        if out is not None and Path(out).resolve() != Path(args.resume).resolve():
            raise ValueError(
                f"--out-dir {out} differs from --resume {args.resume}: a resumed run goes on in "
                "its own directory (copy the folder first to branch it)"
            )
        saved = checkpoint.load_config(args.resume)
        if saved["kind"] != args.kind:
            raise checkpoint.CheckpointError(
                f"{args.resume} is a {saved['kind']!r} run, not {args.kind!r}"
            )
        given = json.loads(json.dumps(model_fields))  # tuples as lists, as in config.json
        changed = [k for k, v in given.items() if saved["model_config"].get(k) != v]
        if changed:
            raise ValueError(
                f"model flags ({', '.join(map(_flag, changed))}) cannot change when resuming"
            )
        model_fields = saved["model_config"]
        saved_train = saved.get("train_config") or {}
        known = {f.name for f in dataclasses.fields(spec.train_config)}
        train_fields = {**{k: v for k, v in saved_train.items() if k in known}, **train_fields}
        train_fields.update(out_dir=args.resume, resume=True, overwrite=False)
    if args.quiet and "progress" not in vars(args):  # -q: no training bar either
        train_fields["progress"] = False
    # Every check before anything is loaded, built or written (conv widths, which depend on the
    # data's image shape, are checked when the model is built at that shape).
    config = spec.train_config(**train_fields)
    spec.model_config(**{k: v for k, v in model_fields.items() if k != "channels"})
    summary = spec.run(model_fields, config, args)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary))


MAX_SAMPLES = 10_000  # images in one grid


def _check_output(path: str, flag: str = "--out") -> Path:
    """An output file path that cannot destroy: not a folder, not inside a run directory."""
    out = Path(path)
    if out.is_dir():
        raise IsADirectoryError(f"{flag} {path!r} is a directory; give a file name")
    for folder in out.parents:
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{flag} {path!r}: {str(folder)!r} is a file, not a folder")
    for folder in out.resolve().parents:
        if checkpoint.is_run_dir(folder):
            raise ValueError(
                f"{flag} {path!r} is inside the run directory {str(folder)!r}; write elsewhere "
                "so that the run's files stay intact"
            )
    if out.suffix.lower() != ".png":
        raise ValueError(f"{flag} {path!r}: the grid is a PNG image; give a name ending in .png")
    if out.exists() and out.read_bytes()[:8] != b"\x89PNG\r\n\x1a\n":
        raise FileExistsError(f"{flag} {path!r} exists and is not a PNG image; it is not replaced")
    return out


def _load_kind(run_dir: str, device: str, kinds: tuple[str, ...], command: str):
    """Load a run's model, refusing kinds that ``command`` cannot use."""
    kind = checkpoint.load_config(run_dir)["kind"]
    from genai.models import MODELS

    if kind not in MODELS:
        raise checkpoint.CheckpointError(
            f"{run_dir}: unknown model kind {kind!r} in config.json (genai has {', '.join(MODELS)})"
        )
    if kind not in kinds:
        other = "genai generate" if kind == "gpt" else "genai sample"
        raise ValueError(
            f"{run_dir} is a {kind!r} run; genai {command} needs a {' or '.join(kinds)} run "
            f"(use {other})"
        )
    return checkpoint.load(run_dir, device)


def _sample(args: argparse.Namespace) -> None:
    from genai.plots import save_grid

    if not 0 < args.n <= MAX_SAMPLES:
        raise ValueError(f"--n must be in [1, {MAX_SAMPLES}], got {args.n}")
    if args.nrow <= 0:
        raise ValueError(f"--nrow must be > 0, got {args.nrow}")
    _check_output(args.out)
    model = _load_kind(args.run_dir, args.device, ("vae", "gan"), "sample")
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(args.seed)
    if args.label is not None:
        if len(args.label) > 1:
            raise ValueError(f"--label given {len(args.label)} times; a grid draws one class")
        if not hasattr(model, "config") or getattr(model.config, "num_classes", None) is None:
            raise ValueError(f"--label needs a class-conditional model; {args.run_dir} is not one")
        images = model.sample(args.n, labels=args.label[0], generator=generator)
    else:
        images = model.sample(args.n, generator=generator)
    out = save_grid(images, args.out, nrow=args.nrow)
    print(out)


def _eval(args: argparse.Namespace) -> None:
    from genai.metrics import (
        INCEPTION_FEATURE_SPACE,
        draw_samples,
        eval_images,
        evaluate_samples,
        evaluate_vae,
        inception_fid,
        inception_fid_unavailable,
        metric_classifier,
        real_data_floor,
    )

    for flag, value, low in (
        ("--n", args.n, 0),
        ("--k", args.k, 1),
        ("--batch-size", args.batch_size, 1),
        ("--samples", args.samples, 2),
        ("--classifier-steps", args.classifier_steps, 1),
    ):
        if value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    config = checkpoint.load_config(args.run_dir)
    model = _load_kind(args.run_dir, args.device, ("vae", "gan"), "eval")
    device = next(model.parameters()).device
    train_config = config.get("train_config") or {}
    record = config.get("data") or {"dataset": "mnist", "source": "mnist"}
    result = {}
    try:
        test = _load_split(args, "test", record)
    except MissingSplitError as e:  # no test split (or not on disk): say so, use train
        test = _load_split(args, "train", record)
        result["split_note"] = (
            f"{' '.join(str(e).split())}: every figure below is on the training images, which "
            "flatters a model that memorised them"
        )
    check_shape(model.config.image_shape, test)
    if args.n:
        test = test.subset(
            torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[: args.n]
        )
    if config["kind"] == "vae":
        torch.manual_seed(args.seed)
        x = eval_images(test, train_config.get("binarize", False), device)
        result.update(
            evaluate_vae(model, x, args.batch_size, iwae_k=args.k, progress=not args.quiet)
        )
    train = _load_split(args, "train", record)
    check_shape(model.config.image_shape, train)
    k = getattr(model.config, "num_classes", None)
    if k is not None and train.labels is not None and k != train.num_classes:
        raise ValueError(
            f"the model draws {k} classes but the data ({train.name}) has {train.num_classes}; "
            "evaluate it on the data it was trained on"
        )
    names = getattr(model.config, "class_names", None)
    if names and train.class_names and tuple(names) != tuple(train.class_names):
        raise ValueError(
            f"the model's classes ({', '.join(names)}) are not the data's "
            f"({', '.join(train.class_names)}); evaluate it on the data it was trained on"
        )
    if train.labels is None or train.labels.unique().numel() < 2:
        what = "unlabeled" if train.labels is None else "labeled with one class only"
        result["note"] = (
            f"{train.name} is {what}: no metric classifier can be trained on it, so there is "
            "no classifier FID, IS, class coverage or label accuracy"
        )
    else:
        classifier = metric_classifier(train, steps=args.classifier_steps, device=device)
        result["feature_space"] = (
            f"a {args.classifier_steps}-step classifier trained on {train.name} train "
            f"({len(train)} images): compare runs on this dataset only"
        )
        result.update(
            evaluate_samples(model, classifier, test.images, n=args.samples, seed=args.seed)
        )
        result.update(real_data_floor(classifier, train, test, n=args.samples, seed=args.seed))
    missing = inception_fid_unavailable(args.download)
    if args.no_inception or missing:
        result["inception_fid"] = None
        result["inception_fid_note"] = (
            "skipped (--no-inception)" if args.no_inception else f"not computed: {missing}"
        )
    else:
        fake = draw_samples(model, args.samples, args.seed, args.batch_size)
        log.info(
            "Inception FID: %d samples against %d test images (about 11 GFLOP each: slow on a "
            "CPU; --no-inception skips it)",
            len(fake),
            len(test),
        )
        try:
            result["inception_fid"] = inception_fid(
                test.images, fake, args.download, args.batch_size, device
            )
            result["inception_fid_feature_space"] = (
                f"{INCEPTION_FEATURE_SPACE}; here {len(fake)} samples against {len(test)} test "
                "images"
            )
        except (OSError, ValueError) as e:  # no network, a bad weights file: keep the rest
            result["inception_fid"] = None
            result["inception_fid_note"] = f"not computed: {' '.join(str(e).split())}"
    print(
        json.dumps({"run_dir": str(args.run_dir), "kind": config["kind"], "n": len(test), **result})
    )


def _generate(args: argparse.Namespace) -> None:
    from genai.gpt.sampling import SamplingConfig, stream_text

    model = _load_kind(args.run_dir, args.device, ("gpt",), "generate")
    pieces = stream_text(
        model,
        args.prompt,
        args.max_new_tokens,
        SamplingConfig(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p),
        seed=args.seed,
    )
    first = next(pieces, "")  # bad input fails here, before anything is printed
    sys.stdout.write(args.prompt + first)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _demo(args: argparse.Namespace) -> None:
    from genai.demo import run_demo

    if not args.out.strip():
        raise ValueError("--out must name a folder, got an empty path")
    for path in run_demo(Path(args.out), overwrite=args.overwrite, device=args.device):
        print(path)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"genai: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _text(value: str) -> str:
    """A path or name flag: an empty string is a mistake, never "the default"."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genai", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors (no progress bars)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model")
    kinds = train.add_subparsers(dest="kind", required=True)
    for kind, spec in _train_kinds().items():
        p = kinds.add_parser(kind, help=f"train a {kind.upper()}")
        spec.add_data_flags(p)
        p.add_argument(
            "--resume",
            metavar="RUN_DIR",
            type=_text,
            default=None,
            help="continue the run in RUN_DIR",
        )
        _add_dataclass_flags(p, spec.model_config, "model")
        _add_dataclass_flags(p, spec.train_config, "training")

    sample = sub.add_parser("sample", help="write a grid of samples from a trained image model")
    sample.add_argument("run_dir")
    sample.add_argument("--n", type=int, default=64)
    sample.add_argument("--out", default="samples.png")
    sample.add_argument("--nrow", type=int, default=8)
    sample.add_argument(
        "--label",
        action="append",
        default=None,
        help="class to draw, by index or name (conditional models)",
    )
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", default="auto")

    ev = sub.add_parser("eval", help="evaluate a run on its test set; prints one JSON line")
    ev.add_argument("run_dir")
    _image_flags(ev)
    ev.add_argument("--k", type=int, default=1000, help="importance samples of the IWAE NLL (VAE)")
    ev.add_argument(
        "--n", type=int, default=0, help="evaluate on a seeded subset of n test images (0: all)"
    )
    ev.add_argument("--batch-size", type=int, default=100)
    ev.add_argument(
        "--samples", type=int, default=5000, help="generated images for the classifier FID"
    )
    ev.add_argument(
        "--classifier-steps", type=int, default=800, help="training steps of the metric classifier"
    )
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument(
        "--no-inception",
        action="store_true",
        help="skip the Inception FID even when its weights are present (slow on a CPU)",
    )
    ev.add_argument("--device", default="auto")

    gen = sub.add_parser("generate", help="stream text from a trained language model")
    gen.add_argument("run_dir")
    gen.add_argument("--prompt", default="")
    gen.add_argument("--max-new-tokens", type=int, default=300)
    gen.add_argument("--temperature", type=float, default=SAMPLING.temperature)
    gen.add_argument("--top-k", type=_parse_optional(int), default=SAMPLING.top_k)
    gen.add_argument("--top-p", type=_parse_optional(float), default=SAMPLING.top_p)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", default="auto")

    demo = sub.add_parser(
        "demo", help="train the three models on the built-in data and write their samples"
    )
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--overwrite", action="store_true")
    demo.add_argument("--device", default="auto")
    return parser


COMMANDS = {
    "train": _train,
    "sample": _sample,
    "eval": _eval,
    "generate": _generate,
    "demo": _demo,
}


# Expected failures, reported on one line: bad values, bad or busy run directories, files that
# cannot be read or written, no network, a diverged run. Anything else is a bug: a traceback.
USER_ERRORS = (ValueError, TypeError, OSError, RunLockedError, NonFiniteLossError)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, OSError) and error.filename and str(error.filename) not in text:
        text = f"{error.filename}: {text}"
    return text


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # usage errors (one line, status 2) and --help (status 0)
        return stop.code if isinstance(stop.code, int) else 2
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        COMMANDS[args.command](args)
    except USER_ERRORS as e:
        print(f"genai: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # a checkpoint was saved
        print(f"genai: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("genai: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
