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
from torch import nn

from genai.core import checkpoint
from genai.core.checkpoint import CheckpointError, RunLockedError
from genai.data.source import IMAGES, nonempty
from genai.demo import run_demo
from genai.evaluation import EvalOptions
from genai.gpt import SamplingConfig, stream_text
from genai.plots import save_grid
from genai.registry import KINDS
from genai.run import Run, start
from genai.training.engine import NonFiniteLossError, TrainingInterrupted
from genai.training.kind import ModelKind

log = logging.getLogger("genai")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


# Fields whose flag is not the field's name (``--logger tensorboard wandb``).
_FLAGS = {"loggers": ("--logger", "--loggers")}

# Fields whose CLI default is not the dataclass's.
_DEFAULTS_ELSEWHERE = {
    "vocab_size": "(default: the tokenizer's vocabulary size)",
    "image_shape": "(default: the data's)",
}


def _add_dataclass_flags(
    parser: argparse.ArgumentParser, cls: type, title: str, skip: tuple[str, ...] = ()
) -> None:
    """One flag per dataclass field; defaults are left out so only given flags are set."""
    group = parser.add_argument_group(title)
    hints = typing.get_type_hints(cls)
    own_help = getattr(cls, "default_help", {})  # a default that depends on other flags
    for field in dataclasses.fields(cls):
        if field.name in ("resume", *skip):  # --resume takes the run directory instead
            continue
        kind = hints[field.name]
        args = typing.get_args(kind)
        optional = typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args
        if optional:
            kind = next(a for a in args if a is not type(None))
        default = (
            field.default if field.default is not dataclasses.MISSING else field.default_factory()
        )
        help_text = own_help.get(field.name) or _DEFAULTS_ELSEWHERE.get(
            field.name, f"(default: {default})"
        )
        if field.name == "max_steps" and field.name not in own_help:  # TrainConfig's rule
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
                *_FLAGS.get(field.name, (_flag(field.name),)),
                dest=field.name,
                type=typing.get_args(kind)[0],
                nargs="+",
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                _flag(field.name),
                type=_parse_optional(kind) if optional else (nonempty if kind is str else kind),
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


def _init(args: argparse.Namespace) -> str | None:
    """Where a new run starts from: ``--init DIR_OR_RUN``, or ``--download NAME`` (a Hub model)."""
    init, download = getattr(args, "init", None), getattr(args, "download", None)
    if isinstance(download, str):  # --download NAME: fetch that model, then as --init
        if init is not None:
            raise ValueError(f"give --init {init} or --download {download}, not both")
        if getattr(args, "init", False) is False:  # the kind has no --init
            raise ValueError(f"--download {download}: a {args.kind!r} run has no --init")
        init = download
    if init is not None and args.resume:
        raise ValueError("--init cannot be given with --resume (the run records where it started)")
    if init is not None and getattr(args, "recipe", None) is not None:
        raise ValueError(
            "--recipe cannot be given with --init (the model's settings are the init's)"
        )
    return init


def _train(args: argparse.Namespace) -> None:
    kind = KINDS[args.kind]
    model_fields, train_fields = _pick(args, kind.config), _pick(args, kind.train_config)
    init = _init(args)
    recipe = getattr(args, "recipe", None)
    if recipe is not None:
        if args.resume:
            raise ValueError("--recipe cannot be given with --resume (the run keeps its settings)")
        model_fields = {**kind.recipes[recipe]["model"], **model_fields}
        train_fields = {**kind.recipes[recipe]["train"], **train_fields}
    if args.quiet and "progress" not in vars(args):  # -q: no training bar either
        train_fields["progress"] = False
    request = kind.data.request(args)
    if args.resume:
        run = Run(args.resume)
        if run.kind is not kind:
            raise CheckpointError(f"{args.resume} is a {run.kind.name!r} run, not {kind.name!r}")
        run.check_model_fields(model_fields, _flag)
        summary = run.resume(data=request, **train_fields)
    else:
        summary = start(kind, model_fields, train_fields, request, init=init)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary
        print(json.dumps(summary))


MAX_SAMPLES = 10_000  # images in one grid
_SAMPLE_OPTIONS = tuple(k.sample_options for k in KINDS.values() if k.sample_options)


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


def _open(run_dir: str, device: str, makes: str, command: str) -> nn.Module:
    """Load a run's model for ``command``, which needs a kind that makes ``makes``."""
    run = Run(run_dir)
    if run.kind.makes != makes:
        other = {"images": "genai sample", "text": "genai generate"}[run.kind.makes]
        names = " or ".join(k for k, v in KINDS.items() if v.makes == makes)
        raise ValueError(
            f"{run_dir} is a {run.kind.name!r} run; genai {command} needs a {names} run "
            f"(use {other})"
        )
    return run.load(device)


def _sample(args: argparse.Namespace) -> None:
    if not 0 < args.n <= MAX_SAMPLES:
        raise ValueError(f"--n must be in [1, {MAX_SAMPLES}], got {args.n}")
    if args.nrow <= 0:
        raise ValueError(f"--nrow must be > 0, got {args.nrow}")
    _check_output(args.out)
    options = _sample_options(args, Run(args.run_dir).kind)
    model = _open(args.run_dir, args.device, "images", "sample")
    generator = torch.Generator(next(model.parameters()).device).manual_seed(args.seed)
    labels = None
    if args.label is not None:
        if len(args.label) > 1:
            raise ValueError(f"--label given {len(args.label)} times; a grid draws one class")
        if getattr(model.config, "num_classes", None) is None:
            raise ValueError(f"--label needs a class-conditional model; {args.run_dir} is not one")
        labels = args.label[0]
    extra = {"labels": labels} if labels is not None else {}
    images = model.sample(args.n, generator=generator, **extra, **options)
    print(save_grid(images, args.out, nrow=args.nrow))


def _fields(cls: type | None) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)} if cls else set()


def _sample_options(args: argparse.Namespace, kind: ModelKind) -> dict:
    """The kind's own ``genai sample`` flags that were given, checked by its options class."""
    given = {k: v for cls in _SAMPLE_OPTIONS for k, v in vars(args).items() if k in _fields(cls)}
    for name in given:
        if name not in _fields(kind.sample_options):
            owners = [k for k, v in KINDS.items() if name in _fields(v.sample_options)]
            raise ValueError(
                f"{_flag(name)} is an option of {' or '.join(owners)} runs; {args.run_dir} is a "
                f"{kind.name!r} run"
            )
    return dataclasses.asdict(kind.sample_options(**given)) if given else {}


def _eval(args: argparse.Namespace) -> None:
    options = EvalOptions(**_pick(args, EvalOptions), progress=not args.quiet)
    result = Run(args.run_dir).evaluate(options, IMAGES.request(args), args.device)
    print(json.dumps(result))


def _generate(args: argparse.Namespace) -> None:
    model = _open(args.run_dir, args.device, "text", "generate")
    sampling = _pick(args, SamplingConfig)
    chat = {"messages": [{"role": "user", "content": args.chat}]} if args.chat else {}
    if chat and args.prompt:
        raise ValueError("give --prompt (text to continue) or --chat (a message), not both")
    prompt = "" if chat else args.prompt
    pieces = stream_text(model, prompt, args.max_new_tokens, seed=args.seed, **chat, **sampling)
    first = next(pieces, "")  # bad input fails here, before anything is printed
    sys.stdout.write(prompt + first)
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _demo(args: argparse.Namespace) -> None:

    if not args.out.strip():
        raise ValueError("--out must name a folder, got an empty path")
    for path in run_demo(Path(args.out), overwrite=args.overwrite, device=args.device):
        print(path)


class _Parser(argparse.ArgumentParser):
    """argparse, with usage errors on one line like every other error (exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"genai: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def _train_parser(sub) -> None:
    train = sub.add_parser("train", help="train a model")
    kinds = train.add_subparsers(dest="kind", required=True)
    for name, kind in KINDS.items():
        p = kinds.add_parser(name, help=f"train a {kind.model.__name__}")
        kind.data.add_flags(p)
        if kind.recipes:
            p.add_argument(
                "--recipe",
                choices=tuple(kind.recipes),
                default=None,
                help="start from a named recipe's model and training settings (flags override "
                "them)",
            )
        p.add_argument(
            "--resume", metavar="RUN_DIR", type=nonempty, default=None, help="continue the run"
        )
        if kind.init is not None:
            p.add_argument(
                "--init",
                metavar="DIR_OR_RUN",
                type=nonempty,
                default=None,
                help="start from pretrained weights: a Hugging Face model folder, a genai run or "
                "save_pretrained folder (its settings and tokenizer; --block-size may shrink)",
            )
        _add_dataclass_flags(p, kind.config, "model")
        _add_dataclass_flags(p, kind.train_config, "training")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="genai", description=__doc__.splitlines()[0])
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="only warnings and errors (no progress bars)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)

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
    for cls in _SAMPLE_OPTIONS:  # a kind's own options (a diffusion model's --steps, ...)
        _add_dataclass_flags(sample, cls, f"{cls.__module__.split('.')[1]} runs")

    ev = sub.add_parser("eval", help="evaluate a run on its test set; prints one JSON line")
    ev.add_argument("run_dir")
    IMAGES.add_flags(ev)
    _add_dataclass_flags(ev, EvalOptions, "evaluation", skip=("download", "progress"))
    ev.add_argument("--device", default="auto")

    gen = sub.add_parser("generate", help="stream text from a trained language model")
    gen.add_argument("run_dir")
    gen.add_argument("--prompt", default="")
    gen.add_argument(
        "--chat",
        metavar="MESSAGE",
        default=None,
        help="a chat model's reply to this user message (the tokenizer's chat template)",
    )
    gen.add_argument("--max-new-tokens", type=int, default=300)
    _add_dataclass_flags(gen, SamplingConfig, "sampling")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--device", default="auto")

    demo = sub.add_parser(
        "demo", help="train the four models on the built-in data and write their samples"
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


def run() -> int:
    """The ``genai`` command (its console script): :func:`main` in a process of its own, which
    first flushes subnormal floats to zero on the CPU (x86 FTZ/DAZ, inherited by the threads
    torch starts later). Adam's moments of weights whose inputs are always zero (the border
    pixels of MNIST-like images) decay into the subnormal range, where x86 arithmetic is many
    times slower; only values below 1.2e-38 change (docs/training.md, "Subnormal floats").
    :func:`main` itself, called from Python, leaves the process's state alone."""
    torch.set_flush_denormal(True)
    return main()


if __name__ == "__main__":
    sys.exit(run())
