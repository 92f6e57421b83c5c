"""A hostile user's sweep of the ``genai`` CLI and API: bad inputs and faults, one JSON line.

Every case runs ``python -m genai.cli ...`` (or a short API script) as a subprocess in its own
folder under a temporary directory, after copying in the tiny runs it needs. An error case
passes when the process exits with status 2, stderr is exactly one line starting
``genai: error:``, no ``Traceback`` appears, and every file that existed in the case's folder
before (a good run's checkpoint, the user's own files) is still there with the same bytes.
API cases turn the library's documented user errors (``ValueError``, ``TypeError``,
``OSError`` and the library's own error classes) into that same one line; anything else
shows its traceback and fails. Fault cases (a SIGKILL mid-run then resume, two trainings on
one folder, an ``--overwrite`` killed before its first checkpoint) have their own checks.

Nothing is downloaded: the data are random IDX files written with
``genai.data.images.write_idx`` and small text files. The process runs as whatever user
starts it; as root, ``chmod 000`` does not stop reads or writes, so unwritable paths are
made with ``/proc`` instead.

    python benchmarks/hostile.py [--workers 2] [--verbose] [--only SUBSTRING] [--keep]

It prints one JSON line (``tried``, ``ok``, ``failures``) and exits with status 1 when a case
failed, so that a script or CI step running it fails too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PY = sys.executable
VAE_FLAGS = (
    "--arch mlp --latent-dim 3 --hidden-dims 16 --batch-size 20 --max-steps 4 --device cpu "
    "--no-progress"
)
GAN_FLAGS = (
    "--arch mlp --latent-dim 3 --g-width 8 --d-width 8 --batch-size 20 --max-steps 4 "
    "--device cpu --no-progress"
)
GPT_FLAGS = (
    "--n-layer 1 --n-head 1 --n-embd 8 --block-size 8 --batch-size 4 --max-steps 4 "
    "--device cpu --no-progress"
)
TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40
API_PRELUDE = """
import sys
from genai.cli import USER_ERRORS
from genai.data.dataset import DatasetError
try:
{body}
except (*USER_ERRORS, DatasetError) as e:
    print("genai: error: " + " ".join(str(e).split()), file=sys.stderr)
    sys.exit(2)
"""


@dataclass
class Case:
    """One hostile input: a command line (or API body), the runs it needs, extra setup."""

    name: str
    argv: str = ""  # genai arguments, with {vae} {gan} {cgan} {gpt} {root} {text} {shared}
    runs: tuple[str, ...] = ()
    setup: Callable[[Path], None] | None = None
    api: str | None = None  # a Python body instead of a CLI call
    expect: str = "error"  # "error": exit 2, one line; "ok": exit 0; "any": either, no traceback
    check: Callable[[Path, Context], str | None] | None = None  # a fault case's own check
    timeout: float = 180.0


@dataclass
class Context:
    base: Path
    root: Path
    text: Path
    results: list = field(default_factory=list)


def genai_cmd(argv: str, ctx: Context) -> list[str]:
    words = argv.split(" ") if argv else []
    subs = {
        "{root}": str(ctx.root),
        "{text}": str(ctx.text),
        "{shared}": str(ctx.base / "shared"),
        "{empty}": "",
    }
    return [PY, "-m", "genai.cli", *[subs.get(w, w) for w in words if w != ""]]


def run(cmd: list[str], cwd: Path, timeout: float = 180.0) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    try:
        return subprocess.run(
            cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(cmd, -999, e.stdout or "", f"TIMEOUT after {timeout}s")


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), skipping what cannot be read."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.is_symlink():
            try:
                out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
            except OSError:
                out[str(p.relative_to(folder))] = "unreadable"
    return out


def judge_error(proc: subprocess.CompletedProcess, expect: str) -> str | None:
    err = proc.stderr or ""
    if proc.returncode == -999:
        return err
    if "Traceback" in err or "Traceback" in (proc.stdout or ""):
        return f"traceback (exit {proc.returncode})"
    if expect == "ok":
        return None if proc.returncode == 0 else f"exit {proc.returncode}, expected 0"
    if expect == "any" and proc.returncode == 0:
        return None
    lines = [line for line in err.splitlines() if line.strip()]
    if proc.returncode != 2:
        return f"exit {proc.returncode}, expected 2"
    errors = [line for line in lines if "error" in line.lower()]
    if not lines or not lines[-1].startswith("genai: error:"):
        return f"last stderr line is not 'genai: error: ...' ({len(lines)} lines)"
    if len(errors) != 1 or any(line.startswith("usage:") for line in lines):
        return f"{len(lines)} stderr lines, expected one error line"
    if "frame #" in lines[-1] or len(lines[-1]) > 500:
        return f"one line, but {len(lines[-1])} characters long (a C++ stack or a dump in it)"
    return None


def run_case(case: Case, ctx: Context) -> dict:
    folder = ctx.base / "cases" / case.name
    folder.mkdir(parents=True)
    for name in case.runs:
        shutil.copytree(ctx.base / "runs" / name, folder / name)
    (folder / "notes.txt").write_text("the user's own file\n")
    if case.setup:
        case.setup(folder)
    before = snapshot(folder)
    t0 = time.time()
    proc = None
    if case.check:
        why = case.check(folder, ctx)
        cmd = "(fault case, see the script)"
    else:
        if case.api is not None:
            body = "\n".join("    " + line for line in case.api.strip().splitlines())
            cmd = [PY, "-c", API_PRELUDE.format(body=body)]
        else:
            cmd = genai_cmd(case.argv, ctx)
        proc = run(cmd, folder, case.timeout)
        why = judge_error(proc, case.expect)
        cmd = case.api.strip() if case.api is not None else "genai " + case.argv
    after = snapshot(folder)
    lost = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    if not case.check and case.expect != "ok" and (lost or changed):
        why = (why + "; " if why else "") + f"lost {lost} changed {changed}"[:400]
    elif lost:  # even a run that succeeds must not delete the user's files
        user = [k for k in lost if "notes.txt" in k]
        if user:
            why = (why + "; " if why else "") + f"lost user files {user}"
    stderr = (proc.stderr if proc else "") or ""
    return {
        "case": case.name,
        "cmd": cmd,
        "ok": why is None,
        "why": why,
        "exit": proc.returncode if proc else None,
        "stderr_tail": stderr.strip()[-600:],
        "seconds": round(time.time() - t0, 1),
    }


# ----------------------------------------------------------------------------- fixtures


def write_images(folder: Path, n_train=100, n_test=40, labels_max=10, seed=0, train_images=None):
    from genai.data.idx import write_idx

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    images = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", images if train_images is None else train_images)
    write_idx(folder / "train-labels-idx1-ubyte", rng.integers(0, labels_max, n_train))
    write_idx(folder / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)))
    write_idx(folder / "t10k-labels-idx1-ubyte", rng.integers(0, 10, n_test))


def build_base(ctx: Context) -> None:
    write_images(ctx.root)
    ctx.text.write_text(TEXT)
    runs = ctx.base / "runs"
    runs.mkdir()
    jobs = {
        "vae": f"train vae --root {ctx.root} {VAE_FLAGS} --out-dir {runs / 'vae'}",
        "gan": f"train gan --root {ctx.root} {GAN_FLAGS} --out-dir {runs / 'gan'}",
        "cgan": f"train gan --root {ctx.root} {GAN_FLAGS} --num-classes 10 "
        f"--out-dir {runs / 'cgan'}",
        "gpt": f"train gpt --text {ctx.text} {GPT_FLAGS} --out-dir {runs / 'gpt'}",
    }
    with ThreadPoolExecutor(2) as pool:
        procs = dict(
            zip(
                jobs,
                pool.map(lambda a: run(genai_cmd(a, ctx), ctx.base), jobs.values()),
                strict=True,
            )
        )
    for name, proc in procs.items():
        if proc.returncode != 0:
            raise SystemExit(f"base run {name} failed:\n{proc.stderr}")


def wfile(rel: str, data: bytes | str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        p = folder / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            p.write_text(data)
        else:
            p.write_bytes(data)

    return setup


def edit_json(rel: str, fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        p = folder / rel
        d = json.loads(p.read_text())
        d = fn(d) or d
        p.write_text(json.dumps(d))

    return setup


def setitem(path: tuple, value) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value

    return fn


def delitem(path: tuple) -> Callable[[dict], None]:
    def fn(d: dict) -> None:
        for k in path[:-1]:
            d = d[k]
        del d[path[-1]]

    return fn


def both(*setups: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        for s in setups:
            s(folder)

    return setup


def remove(rel: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        p = folder / rel
        shutil.rmtree(p) if p.is_dir() else p.unlink()

    return setup


def truncate(rel: str, frac: float = 0.5) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        p = folder / rel
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * frac)])

    return setup


def safetensors_edit(rel: str, fn: Callable[[dict], dict]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        from safetensors import safe_open
        from safetensors.torch import save_file

        p = folder / rel
        with safe_open(str(p), "pt") as f:
            meta = f.metadata()
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        save_file(fn(tensors), str(p), metadata=meta)

    return setup


def nan_first(t: dict) -> dict:
    k = sorted(t)[0]
    t[k] = t[k].clone().fill_(float("nan"))
    return t


def drop_first(t: dict) -> dict:
    del t[sorted(t)[0]]
    return t


def reshape_first(t: dict) -> dict:
    import torch

    k = sorted(t)[0]
    t[k] = torch.zeros(*[s + 1 for s in t[k].shape])
    return t


def half_all(t: dict) -> dict:
    return {k: v.half() for k, v in t.items()}


class Bomb:
    """A pickle that would create a marker file if it ever ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def torch_save(rel: str, make: Callable[[Path], object]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        import torch

        torch.save(make(folder), folder / rel)

    return setup


def raw_pickle_bomb(rel: str) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        import pickle

        (folder / rel).write_bytes(pickle.dumps(Bomb(str(folder / "PWNED"))))

    return setup


def state_edit(rel: str, fn: Callable[[dict], object]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        import torch

        d = torch.load(folder / rel, weights_only=True)
        d = fn(d) or d
        torch.save(d, folder / rel)

    return setup


def no_pwn(folder: Path) -> str | None:
    return "PICKLE PAYLOAD RAN" if (folder / "PWNED").exists() else None


def idx_root(name: str, **kw) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        write_images(folder / name, **kw)

    return setup


def idx_edit(name: str, file: str, fn: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        write_images(folder / name)
        p = folder / name / file
        p.write_bytes(fn(p.read_bytes()))

    return setup


# ----------------------------------------------------------------------------- fault cases


def load_weights(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def same_weights(a: Path, b: Path) -> bool:
    import torch

    wa, wb = load_weights(a), load_weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def kill_resume(folder: Path, ctx: Context) -> str | None:
    """SIGKILL ``train --checkpoint-every 1`` three times at random moments, then resume and
    compare with an uninterrupted run; also sample after each kill."""
    flags = VAE_FLAGS.replace("--max-steps 4", "--max-steps 200") + " --checkpoint-every 1"
    ref = run(genai_cmd(f"train vae --root {ctx.root} {flags} --out-dir ref", ctx), folder)
    if ref.returncode != 0:
        return f"reference run failed: {ref.stderr[-300:]}"
    rng = random.Random(0)
    for i in range(3):
        argv = (
            f"train vae --root {ctx.root} {flags} --out-dir k"
            if i == 0
            else f"train vae --root {ctx.root} --resume k --max-steps 200 --no-progress"
        )
        p = subprocess.Popen(genai_cmd(argv, ctx), cwd=folder, stderr=subprocess.PIPE)
        for _ in range(600):  # the first kill lands after the first checkpoint
            if i > 0 or (folder / "k" / "config.json").exists():
                break
            time.sleep(0.1)
        time.sleep(rng.uniform(0.2, 2.0) if i == 0 else rng.uniform(2.5, 5.0))
        p.send_signal(signal.SIGKILL)
        p.wait()
        s = run(genai_cmd(f"sample k --out s{i}.png --n 4", ctx), folder)
        if s.returncode != 0:
            return f"sample after kill {i} failed: exit {s.returncode}: {s.stderr[-400:]}"
    done = json.loads((folder / "k" / "config.json").read_text())["step"] == 200
    r = (
        run(  # a run the kills came too late for is complete already: nothing to resume
            genai_cmd(f"train vae --root {ctx.root} --resume k --max-steps 200 --no-progress", ctx),
            folder,
        )
        if not done
        else subprocess.CompletedProcess([], 0, "", "")
    )
    if r.returncode != 0:
        return f"final resume failed: exit {r.returncode}: {r.stderr[-400:]}"
    if not same_weights(folder / "k" / "model.safetensors", folder / "ref" / "model.safetensors"):
        return "resumed weights differ from the uninterrupted run"
    return None


def concurrent(folder: Path, ctx: Context) -> str | None:
    """A second ``train`` on a folder that a running ``train`` holds must fail at once."""
    flags = VAE_FLAGS.replace("--max-steps 4", "--max-steps 100000")
    p = subprocess.Popen(
        genai_cmd(f"train vae --root {ctx.root} {flags} --out-dir busy", ctx),
        cwd=folder,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            if (folder / "busy" / ".lock").exists() or (folder / "busy" / "metrics.jsonl").exists():
                break
            time.sleep(0.1)
        time.sleep(1.0)
        for argv in (
            f"train vae --root {ctx.root} {VAE_FLAGS} --out-dir busy",
            f"train vae --root {ctx.root} {VAE_FLAGS} --out-dir busy --overwrite",
            f"train vae --root {ctx.root} --resume busy --max-steps 200000 --no-progress",
        ):
            q = run(genai_cmd(argv, ctx), folder)
            why = judge_error(q, "error")
            if why:
                return f"{argv}: {why}: {q.stderr[-300:]}"
    finally:
        p.kill()
        p.wait()
    return None


def overwrite_killed(folder: Path, ctx: Context) -> str | None:
    """``--overwrite`` killed before its first checkpoint must leave the old run readable."""
    old = load_weights(folder / "vae" / "model.safetensors")
    flags = VAE_FLAGS.replace("--max-steps 4", "--max-steps 100000") + " --checkpoint-every 100000"
    p = subprocess.Popen(
        genai_cmd(f"train vae --root {ctx.root} {flags} --out-dir vae --overwrite", ctx),
        cwd=folder,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(6.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    s = run(genai_cmd("sample vae --out s.png --n 4", ctx), folder)
    if s.returncode != 0:
        return f"sample after killed overwrite failed: {s.stderr[-300:]}"
    r = run(
        genai_cmd(f"train vae --root {ctx.root} --resume vae --max-steps 6 --no-progress", ctx),
        folder,
    )
    if r.returncode != 0:
        return f"resume after killed overwrite failed: {r.stderr[-300:]}"
    import torch

    new = load_weights(folder / "vae" / "model.safetensors")
    if old.keys() != new.keys() or not all(old[k].shape == new[k].shape for k in old):
        return "the old run's weights did not come back"
    del torch
    return None


def ok_then(argv_ok: str, then: Callable[[Path, Context], str | None]):
    def check(folder: Path, ctx: Context) -> str | None:
        r = run(genai_cmd(argv_ok, ctx), folder)
        if "Traceback" in r.stderr:
            return f"traceback: {r.stderr[-400:]}"
        return then(folder, ctx) if r.returncode == 0 else f"exit {r.returncode}: {r.stderr[-300:]}"

    return check


def torn_metrics_resume(folder: Path, ctx: Context) -> str | None:
    """A torn last line of metrics.jsonl (a kill mid-write) is dropped on resume (documented)."""
    with open(folder / "vae" / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    r = run(
        genai_cmd(f"train vae --root {ctx.root} --resume vae --max-steps 6 --no-progress", ctx),
        folder,
    )
    if r.returncode != 0 or "Traceback" in r.stderr:
        return f"exit {r.returncode}: {r.stderr[-300:]}"
    for i, line in enumerate((folder / "vae" / "metrics.jsonl").read_text().splitlines()):
        try:
            json.loads(line)
        except ValueError:
            return f"metrics.jsonl line {i + 1} still torn after resume: {line[:60]!r}"
    return None


def resume_lr_applied(folder: Path, ctx: Context) -> str | None:
    """``--resume RUN --lr X`` is applied and recorded (documented)."""
    r = run(
        genai_cmd(
            f"train vae --root {ctx.root} --resume vae --max-steps 6 --lr 0.0003 --no-progress", ctx
        ),
        folder,
    )
    if r.returncode != 0:
        return f"exit {r.returncode}: {r.stderr[-300:]}"
    cfg = json.loads((folder / "vae" / "config.json").read_text())
    if cfg["train_config"]["lr"] != 0.0003:
        return f"config.json lr is {cfg['train_config']['lr']}, expected 0.0003"
    return None


def seeds_reproducible(kind: str, flags: str, data: str) -> Callable[[Path, Context], str | None]:
    def check(folder: Path, ctx: Context) -> str | None:
        for out in ("a", "b"):
            r = run(genai_cmd(f"train {kind} {data} {flags} --seed 7 --out-dir {out}", ctx), folder)
            if r.returncode != 0:
                return f"exit {r.returncode}: {r.stderr[-300:]}"
        if not same_weights(folder / "a" / "model.safetensors", folder / "b" / "model.safetensors"):
            return f"two {kind} runs with --seed 7 differ"
        return None

    return check


# ----------------------------------------------------------------------------- the cases


def cases() -> list[Case]:
    V = f"train vae --root {{root}} {VAE_FLAGS}"  # noqa: N806
    G = f"train gan --root {{root}} {GAN_FLAGS}"  # noqa: N806
    T = f"train gpt --text {{text}} {GPT_FLAGS}"  # noqa: N806
    out: list[Case] = []

    def add(name: str, argv: str = "", **kw) -> None:
        out.append(Case(name, argv, **kw))

    # --- train vae: flags with wrong types and values (the last flag wins in argparse)
    for flag, value in [
        ("latent-dim", "abc"), ("latent-dim", "3.5"), ("latent-dim", "0"), ("latent-dim", "-3"),
        ("latent-dim", "99999999999999999999999"), ("hidden-dims", "0"), ("hidden-dims", "-16"),
        ("hidden-dims", "16.5"), ("channels", "1 2 3"), ("channels", "0 8"), ("arch", "resnet"),
        ("arch", "{empty}"), ("likelihood", "poisson"), ("batch-size", "0"),
        ("batch-size", "-20"), ("batch-size", "nan"), ("batch-size", "100000"),
        ("batch-size", "1e3"), ("lr", "nan"), ("lr", "inf"), ("lr", "-1"), ("lr", "abc"),
        ("lr", "{empty}"), ("lr", "1e400"), ("betas", "0.9"), ("betas", "2 0.9"),
        ("betas", "nan 0.9"), ("betas", "0.9 0.99 0.999"), ("weight-decay", "-1"),
        ("weight-decay", "inf"), ("warmup-steps", "-1"), ("lr-schedule", "exp"),
        ("min-lr-ratio", "2"), ("min-lr-ratio", "-0.5"), ("grad-clip", "nan"),
        ("grad-clip", "-1"), ("precision", "fp8"), ("precision", "FP32"), ("device", "cuda"),
        ("device", "cuda:99"), ("device", "tpu"), ("device", "{empty}"), ("device", "mps"),
        ("seed", "1.5"), ("seed", "99999999999999999999999"),
        ("log-every", "0"), ("log-every", "-1"), ("eval-every", "-1"),
        ("sample-every", "-5"), ("checkpoint-every", "-1"),
        ("max-steps", "0"), ("max-steps", "-1"), ("max-steps", "1e3"), ("epochs", "0"),
        ("epochs", "-2"), ("beta", "-1"), ("beta", "nan"), ("kl-warmup-steps", "-1"),
        ("eval-batch-size", "0"), ("dataset", "cifar10"), ("out-dir", "{empty}"),
    ]:  # fmt: skip
        add(f"vae --{flag} {value}", f"{V} --out-dir r --{flag} {value}")
    add("vae --seed -1 (torch accepts it)", f"{V} --out-dir r --seed -1", expect="any")
    add("vae --checkpoint-every 0 (documented: at the end)", f"{V} --out-dir r --checkpoint-every 0",
        expect="ok")  # fmt: skip

    add("vae --max-steps and --epochs", f"{V} --out-dir r --epochs 1 --max-steps 3", expect="any")
    add("vae no subcommand kind", "train")
    add("no command at all", "")
    add("unknown command", "fly")
    add("vae unknown flag", f"{V} --out-dir r --turbo")

    # --- data for the image models
    add("vae --root missing", f"train vae --root nowhere {VAE_FLAGS} --out-dir r")
    add("vae --root empty dir", f"train vae --root empty {VAE_FLAGS} --out-dir r",
        setup=lambda f: (f / "empty").mkdir())  # fmt: skip
    add("vae --root is a file", f"train vae --root notes.txt {VAE_FLAGS} --out-dir r")
    add("vae IDX truncated", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-images-idx3-ubyte", lambda b: b[: len(b) // 2]))  # fmt: skip
    add("vae IDX header only", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-images-idx3-ubyte", lambda b: b[:16]))  # fmt: skip
    add("vae IDX empty file", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-images-idx3-ubyte", lambda b: b""))  # fmt: skip
    add("vae IDX garbage bytes", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-images-idx3-ubyte", lambda b: os.urandom(len(b))))  # fmt: skip
    add("vae IDX bad magic dtype", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-images-idx3-ubyte", lambda b: b[:2] + b"\x0d" + b[3:]))  # fmt: skip
    add("vae IDX huge dims in header", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-images-idx3-ubyte",
                       lambda b: b[:4] + (2**31).to_bytes(4, "big") + b[8:]))  # fmt: skip
    add("vae IDX labels count mismatch", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_edit("d", "train-labels-idx1-ubyte",
                       lambda b: b[:4] + (50).to_bytes(4, "big") + b[8:58]))  # fmt: skip
    add("vae IDX 2-D images (N, 784)", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_root("d", train_images=np.zeros((100, 784), np.uint8)))  # fmt: skip
    add("vae IDX gz corrupt", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=both(wfile("d/train-images-idx3-ubyte.gz", b"\x1f\x8bgarbage"),
                   wfile("d/train-labels-idx1-ubyte.gz", b"\x1f\x8bgarbage")))  # fmt: skip
    add("vae IDX 0 images", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_root("d", n_train=0))  # fmt: skip
    add("vae IDX 5 images, batch 20", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=idx_root("d", n_train=5))  # fmt: skip
    add("vae IDX images is a folder", f"train vae --root d {VAE_FLAGS} --out-dir r",
        setup=both(idx_root("d"), remove("d/train-images-idx3-ubyte"),
                   lambda f: (f / "d" / "train-images-idx3-ubyte").mkdir()))  # fmt: skip
    add("gan cond labels out of range", f"train gan --root d {GAN_FLAGS} --num-classes 10 --out-dir r",
        setup=idx_root("d", labels_max=200))  # fmt: skip
    add("vae --download (no network)",
        f"train vae --dataset fashion-mnist --root e --download {VAE_FLAGS} --out-dir r",
        setup=lambda f: (f / "e").mkdir(), timeout=120)  # fmt: skip

    # --- run directories
    add("vae --out-dir is a file", f"{V} --out-dir notes.txt")
    add("vae --out-dir under a file", f"{V} --out-dir notes.txt/sub")
    add("vae --out-dir in /proc", f"{V} --out-dir /proc/genai-run")
    add("vae --out-dir existing run, no --overwrite", f"{V} --out-dir vae", runs=("vae",))
    add("vae --out-dir existing gpt run, no --overwrite", f"{V} --out-dir gpt", runs=("gpt",))
    add("vae --out-dir user folder with config.json --overwrite", f"{V} --out-dir mine --overwrite",
        setup=wfile("mine/config.json", '{"mine": true}'))  # fmt: skip
    add("vae --out-dir user folder with metrics.jsonl --overwrite", f"{V} --out-dir mine --overwrite",
        setup=wfile("mine/metrics.jsonl", '{"mine": 1}\n'))  # fmt: skip
    add("vae --out-dir inside a run's samples", f"{V} --out-dir vae/samples/sub", runs=("vae",))
    add("vae --out-dir = a run's model.safetensors", f"{V} --out-dir vae/model.safetensors",
        runs=("vae",))  # fmt: skip
    for flag, value in [("batch-size", "100000"), ("lr", "nan"), ("device", "cuda"),
                        ("latent-dim", "3.5"), ("precision", "fp8"), ("root", "nowhere")]:  # fmt: skip
        add(f"vae --overwrite with bad --{flag}", f"{V} --out-dir vae --overwrite --{flag} {value}",
            runs=("vae",))  # fmt: skip
    add("gpt --overwrite with missing --text",
        f"train gpt --text nothing.txt {GPT_FLAGS} --out-dir gpt --overwrite", runs=("gpt",))  # fmt: skip
    add("gpt --overwrite n-head 3", f"{T} --out-dir gpt --overwrite --n-head 3", runs=("gpt",))

    # --- resume
    R = "train vae --root {root} --no-progress"  # noqa: N806
    add("resume missing dir", f"{R} --resume nowhere")
    add("resume empty dir", f"{R} --resume e", setup=lambda f: (f / "e").mkdir())
    add("resume a file", f"{R} --resume notes.txt")
    add("resume empty string", f"{R} --resume {{empty}}")
    add("resume gpt run as vae", f"{R} --resume gpt --max-steps 8", runs=("gpt",))
    add("resume gan run as vae", f"{R} --resume gan --max-steps 8", runs=("gan",))
    add(
        "resume vae run as gpt", "train gpt --resume vae --max-steps 8 --no-progress", runs=("vae",)
    )
    add("resume passed target", f"{R} --resume vae --max-steps 2", runs=("vae",))
    add("resume same target", f"{R} --resume vae --max-steps 4", runs=("vae",))
    add("resume --epochs 0", f"{R} --resume vae --epochs 0", runs=("vae",))
    add(
        "resume changed batch size",
        f"{R} --resume vae --max-steps 8 --batch-size 10",
        runs=("vae",),
    )
    add("resume changed seed", f"{R} --resume vae --max-steps 8 --seed 5", runs=("vae",))
    add(
        "resume changed latent dim", f"{R} --resume vae --max-steps 8 --latent-dim 5", runs=("vae",)
    )
    add("resume changed arch", f"{R} --resume vae --max-steps 8 --arch conv", runs=("vae",))
    add("resume lr nan", f"{R} --resume vae --max-steps 8 --lr nan", runs=("vae",))
    add("resume gpt changed grad-accum",
        "train gpt --resume gpt --max-steps 8 --grad-accum 2 --no-progress", runs=("gpt",))  # fmt: skip
    add("resume gpt changed val-fraction",
        "train gpt --resume gpt --max-steps 8 --val-fraction 0.2 --no-progress", runs=("gpt",))  # fmt: skip
    add("resume gpt changed block size",
        "train gpt --resume gpt --max-steps 8 --block-size 16 --no-progress", runs=("gpt",))  # fmt: skip
    add("resume gpt other text file",
        "train gpt --resume gpt --max-steps 8 --text other.txt --no-progress", runs=("gpt",),
        setup=wfile("other.txt", "zzzz qqqq ~~~~ ^^^^ " * 50), expect="any")  # fmt: skip
    add("resume state.pt missing", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=remove("vae/state.pt"))  # fmt: skip
    add("resume state.pt garbage", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=wfile("vae/state.pt", os.urandom(3000)))  # fmt: skip
    add("resume state.pt empty", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=wfile("vae/state.pt", b""))  # fmt: skip
    add("resume state.pt truncated", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=truncate("vae/state.pt"))  # fmt: skip
    add("resume state.pt torch-saved pickle bomb", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=torch_save("vae/state.pt", lambda f: {"step": Bomb(str(f / "PWNED"))}))  # fmt: skip
    add("resume state.pt raw pickle bomb", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=raw_pickle_bomb("vae/state.pt"))  # fmt: skip
    add("resume state.pt missing keys", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=torch_save("vae/state.pt", lambda f: {"step": 3}))  # fmt: skip
    add("resume state.pt a list", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=torch_save("vae/state.pt", lambda f: [1, 2, 3]))  # fmt: skip
    add("resume state.pt step is a string", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=state_edit("vae/state.pt", lambda d: d.__setitem__("step", "3")))  # fmt: skip
    add("resume state.pt step negative", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=state_edit("vae/state.pt", lambda d: d.__setitem__("step", -7)))  # fmt: skip
    add("resume state.pt optimizer of wrong shape", f"{R} --resume vae --max-steps 8",
        runs=("vae", "gan"),
        setup=lambda f: shutil.copy(f / "gan" / "state.pt", f / "vae" / "state.pt"))  # fmt: skip
    add("resume model.safetensors garbage", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=wfile("vae/model.safetensors", os.urandom(2000)))  # fmt: skip
    add("resume metrics.jsonl is a folder", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=both(remove("vae/metrics.jsonl"), lambda f: (f / "vae/metrics.jsonl").mkdir()))  # fmt: skip
    add("resume metrics.jsonl bad middle line", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=lambda f: (f / "vae/metrics.jsonl").write_text(
            "garbage line\n" + (f / "vae/metrics.jsonl").read_text()))  # fmt: skip
    add("resume metrics.jsonl binary", f"{R} --resume vae --max-steps 8", runs=("vae",),
        setup=wfile("vae/metrics.jsonl", b"\xff\xfe\x00\x01" * 50 + b"\n{}\n"))  # fmt: skip
    add("resume config.json train_config lr string", f"{R} --resume vae --max-steps 8",
        runs=("vae",), setup=edit_json("vae/config.json", setitem(("train_config", "lr"), "1e-3")))  # fmt: skip

    # --- config.json and model.safetensors, read by sample
    S = "sample vae --out s.png --n 4"  # noqa: N806
    for name, fn in [
        ("config.json no kind", delitem(("kind",))),
        ("config.json kind unknown", setitem(("kind",), "diffusion")),
        ("config.json kind an int", setitem(("kind",), 5)),
        ("config.json no model_config", delitem(("model_config",))),
        ("config.json model_config a list", setitem(("model_config",), [1, 2])),
        ("config.json latent_dim string", setitem(("model_config", "latent_dim"), "3")),
        ("config.json latent_dim float", setitem(("model_config", "latent_dim"), 3.5)),
        ("config.json latent_dim bool", setitem(("model_config", "latent_dim"), True)),
        ("config.json latent_dim 1e12", setitem(("model_config", "latent_dim"), 10**12)),
        ("config.json hidden_dims absurd", setitem(("model_config", "hidden_dims"), [10**9, 10**9])),
        ("config.json unknown model field", setitem(("model_config", "turbo"), 1)),
        ("config.json changed latent_dim", setitem(("model_config", "latent_dim"), 4)),
        ("config.json a list", lambda d: [d]),
        ("config.json null", lambda d: ["null"]),
    ]:  # fmt: skip
        add(f"sample {name}", S, runs=("vae",), setup=edit_json("vae/config.json", fn))
    for name, data in [("empty", b""), ("not json", "{not json"), ("binary", os.urandom(500)),
                       ("json null", "null"), ("json string", '"vae"')]:  # fmt: skip
        add(f"sample config.json {name}", S, runs=("vae",), setup=wfile("vae/config.json", data))
    add("sample config.json missing", S, runs=("vae",), setup=remove("vae/config.json"))
    add("sample config.json is a folder", S, runs=("vae",),
        setup=both(remove("vae/config.json"), lambda f: (f / "vae/config.json").mkdir()))  # fmt: skip
    for name, setup in [
        ("missing", remove("vae/model.safetensors")),
        ("empty", wfile("vae/model.safetensors", b"")),
        ("garbage", wfile("vae/model.safetensors", os.urandom(5000))),
        ("truncated", truncate("vae/model.safetensors")),
        ("header length huge", wfile("vae/model.safetensors", (2**62).to_bytes(8, "little") + b"{}")),
        ("NaN weights", safetensors_edit("vae/model.safetensors", nan_first)),
        ("missing tensor", safetensors_edit("vae/model.safetensors", drop_first)),
        ("wrong shape", safetensors_edit("vae/model.safetensors", reshape_first)),
        ("float16", safetensors_edit("vae/model.safetensors", half_all)),
        ("a gan's weights", lambda f: shutil.copy(f / "gan/model.safetensors",
                                                  f / "vae/model.safetensors")),
        ("is a folder", both(remove("vae/model.safetensors"),
                             lambda f: (f / "vae/model.safetensors").mkdir())),
    ]:  # fmt: skip
        # fp16 weights load into the fp32 model (safetensors converts them): either outcome
        expect = "any" if name == "float16" else "error"
        add(f"sample model.safetensors {name}", S, runs=("vae", "gan"), setup=setup, expect=expect)
    add("sample a torch pickle as safetensors", S, runs=("vae",),
        setup=torch_save("vae/model.safetensors", lambda f: {"x": Bomb(str(f / "PWNED"))}))  # fmt: skip

    # --- sample flags and outputs
    for flag in ["--n 0", "--n -1", "--n abc", "--n 1000000000000", "--nrow 0", "--nrow -3",
                 "--seed abc", "--device tpu", "--device cuda", "--label 3",
                 "--label abc"]:  # fmt: skip
        add(f"sample vae {flag}", f"sample vae --out s.png --n 4 {flag}", runs=("vae",))
    add("sample cgan --label 10", "sample cgan --out s.png --n 4 --label 10", runs=("cgan",))
    add("sample cgan --label -1", "sample cgan --out s.png --n 4 --label -1", runs=("cgan",))
    add("sample cgan --label 10**20", "sample cgan --out s.png --n 4 --label 100000000000000000000",
        runs=("cgan",))  # fmt: skip
    add("sample gpt run", "sample gpt --out s.png --n 4", runs=("gpt",))
    add("sample missing run", "sample nowhere --out s.png")
    add("sample empty dir", "sample e --out s.png", setup=lambda f: (f / "e").mkdir())
    add("sample run_dir is a file", "sample notes.txt --out s.png")
    add("sample run_dir empty string", "sample {empty}")
    add("sample --out inside run", "sample vae --out vae/x.png --n 4", runs=("vae",))
    add(
        "sample --out = run's weights",
        "sample vae --out vae/model.safetensors --n 4",
        runs=("vae",),
    )
    add(
        "sample --out inside run/samples", "sample vae --out vae/samples/x.png --n 4", runs=("vae",)
    )
    add("sample --out ../run via dots", "sample vae --out sub/../vae/x.png --n 4", runs=("vae",),
        setup=lambda f: (f / "sub").mkdir())  # fmt: skip
    add("sample --out a folder", "sample vae --out sub --n 4", runs=("vae",),
        setup=lambda f: (f / "sub").mkdir())  # fmt: skip
    add("sample --out empty string", "sample vae --n 4 --out {empty}", runs=("vae",))
    add("sample --out user's file (overwrite)", "sample vae --out notes.txt --n 4", runs=("vae",),
        expect="any")  # fmt: skip
    add("sample --out in /proc", "sample vae --out /proc/x.png --n 4", runs=("vae",))
    add("sample --out missing parent", "sample vae --out no/such/x.png --n 4", runs=("vae",),
        expect="any")  # fmt: skip
    add("sample --out .txt extension", "sample vae --out s.txt --n 4", runs=("vae",), expect="any")
    add("sample --out under a file", "sample vae --out notes.txt/x.png --n 4", runs=("vae",))

    # --- generate
    Gn = "generate gpt --max-new-tokens 5"  # noqa: N806
    for flag in ["--max-new-tokens -1", "--max-new-tokens abc", "--temperature 0",
                 "--temperature -1", "--temperature nan", "--temperature inf", "--top-k 0",
                 "--top-k -1", "--top-k 100000", "--top-p 0", "--top-p 1.5", "--top-p nan",
                 "--seed -1", "--device tpu", "--prompt \x01\x02", "--prompt ∑∂ƒ"]:  # fmt: skip
        # temperature 0 is greedy (documented); top-k above the vocabulary and a negative seed
        # are accepted by torch: either outcome is fine as long as it is clean
        lenient = flag in ("--temperature 0", "--top-k 100000", "--seed -1")
        add(
            f"generate {flag!r}",
            f"{Gn} {flag}",
            runs=("gpt",),
            expect="any" if lenient else "error",
        )
    add("generate vae run", "generate vae --max-new-tokens 5", runs=("vae",))
    add("generate gan run", "generate gan --max-new-tokens 5", runs=("gan",))
    add("generate missing run", "generate nowhere")
    add("generate gpt without tokenizer", Gn, runs=("gpt",),
        setup=edit_json("gpt/config.json", delitem(("tokenizer",))))  # fmt: skip
    add("generate gpt tokenizer garbage", Gn, runs=("gpt",),
        setup=edit_json("gpt/config.json", setitem(("tokenizer",), {"type": "char", "chars": 5})))  # fmt: skip
    add("generate gpt tokenizer unknown type", Gn, runs=("gpt",),
        setup=edit_json("gpt/config.json", setitem(("tokenizer",), {"type": "sentencepiece"})))  # fmt: skip
    add("generate gpt vocab_size mismatch", Gn, runs=("gpt",),
        setup=edit_json("gpt/config.json", setitem(("model_config", "vocab_size"), 3)))  # fmt: skip
    add("generate gpt n_head not dividing", Gn, runs=("gpt",),
        setup=edit_json("gpt/config.json", setitem(("model_config", "n_head"), 3)))  # fmt: skip
    add("generate gpt NaN weights", Gn, runs=("gpt",),
        setup=safetensors_edit("gpt/model.safetensors", nan_first))  # fmt: skip

    # --- train gan / gpt flags
    for flag in ["--num-classes 1", "--num-classes 0", "--d-dropout 1", "--d-dropout -0.1",
                 "--loss wasserstein", "--d-steps-per-g-step 0", "--ema-decay 2",
                 "--ema-decay nan", "--n-grid 0", "--mode-seeking -1", "--g-width 0",
                 "--d-width -8", "--minibatch-std 1"]:  # fmt: skip
        add(f"gan {flag}", f"{G} --out-dir r {flag}")
    for flag in ["--n-head 3", "--n-head 0", "--block-size 0", "--block-size 100000",
                 "--vocab-size 5", "--vocab-size 0", "--dropout 1.5", "--dropout nan",
                 "--grad-accum 0", "--val-fraction 1", "--val-fraction -0.1",
                 "--val-fraction nan", "--eval-batches 0", "--sample-tokens -1",
                 "--sample-temperature nan", "--tokenizer sentencepiece",
                 "--bpe-vocab 0", "--tokenizer bpe --bpe-vocab 10", "--n-embd 0",
                 "--n-layer 0", "--bias maybe"]:  # fmt: skip
        add(f"gpt {flag}", f"{T} --out-dir r {flag}")
    add("gpt --sample-temperature 0 (greedy samples, documented)",
        f"{T} --out-dir r --sample-temperature 0", expect="ok")  # fmt: skip
    G2 = f"train gpt {GPT_FLAGS} --out-dir r"  # noqa: N806
    add("gpt --text missing", f"{G2} --text missing.txt")
    add("gpt --text empty file", f"{G2} --text e.txt", setup=wfile("e.txt", ""))
    add("gpt --text whitespace only", f"{G2} --text e.txt", setup=wfile("e.txt", "   \n\n"))
    add("gpt --text binary", f"{G2} --text b.bin", setup=wfile("b.bin", os.urandom(5000)))
    add("gpt --text latin-1", f"{G2} --text l.txt", expect="any",
        setup=wfile("l.txt", ("café naïve " * 300).encode("latin-1")))  # fmt: skip
    add("gpt --text 3 chars", f"{G2} --text s.txt", setup=wfile("s.txt", "abc"))
    add("gpt --text empty folder", f"{G2} --text d", setup=lambda f: (f / "d").mkdir())
    add("gpt --text glob matching nothing", f"{G2} --text *.nomatch")
    add("gpt --text empty string", f"{G2} --text {{empty}}")
    add("gpt --text a folder of binaries", f"{G2} --text d",
        setup=wfile("d/x.bin", os.urandom(3000)))  # fmt: skip
    add(
        "gpt --corpus shakespeare, no root, no download",
        f"{G2} --corpus shakespeare --root nowhere",
    )
    add("gpt --corpus shakespeare --download (no network)",
        f"{G2} --corpus shakespeare --root nowhere --download", timeout=120)  # fmt: skip
    add("gpt --text and --corpus", f"{G2} --text {{text}} --corpus shakespeare")

    # --- eval
    for flag in ["--n -5", "--k 0", "--batch-size 0", "--samples 1", "--classifier-steps 0",
                 "--dataset cifar10", "--root nowhere", "--device tpu"]:  # fmt: skip
        add(f"eval vae {flag}", f"eval vae --root {{root}} --samples 20 --classifier-steps 2 "
            f"--k 2 --n 10 {flag}", runs=("vae",))  # fmt: skip
    add("eval gpt run", "eval gpt --root {root} --samples 20 --classifier-steps 2", runs=("gpt",))
    add("eval missing run", "eval nowhere --root {root}")

    # --- demo
    add("demo --out a file", "demo --out notes.txt --device cpu")
    add("demo --out existing run", "demo --out vae --device cpu", runs=("vae",))
    add("demo --out user folder --overwrite", "demo --out mine --device cpu --overwrite",
        setup=wfile("mine/config.json", '{"mine": true}'))  # fmt: skip
    add("demo --device tpu", "demo --out d --device tpu")
    add("demo --out in /proc", "demo --out /proc/demo --device cpu")

    # --- the Python API (documented user errors, one line; anything else a traceback)
    for name, body in [
        ("VAEConfig latent_dim=True", "import genai; genai.VAEConfig(latent_dim=True)"),
        ("VAEConfig latent_dim=3.5", "import genai; genai.VAEConfig(latent_dim=3.5)"),
        ("VAEConfig channels=(8,)", "import genai; genai.VAEConfig(channels=(8,))"),
        ("GPTConfig bias='yes'", "import genai; genai.GPTConfig(bias='yes')"),
        ("VAEConfig hidden_dims=16", "import genai; genai.VAEConfig(hidden_dims=16)"),
        ("GANConfig num_classes=1.0", "import genai; genai.GANConfig(num_classes=1.0)"),
        ("GPTConfig n_embd='8'", "import genai; genai.GPTConfig(n_embd='8')"),
        ("TrainConfig lr='1e-3'", "import genai; genai.VAETrainConfig(lr='1e-3')"),
        ("TrainConfig betas=(0.9,)", "import genai; genai.VAETrainConfig(betas=(0.9,))"),
        ("TrainConfig device=5", "import genai; genai.VAETrainConfig(device=5)"),
        ("TrainConfig out_dir=None", "import genai; genai.VAETrainConfig(out_dir=None)"),
        ("load missing", "import genai; genai.load('nowhere')"),
        ("load a file", "import genai; genai.load('notes.txt')"),
        ("load None", "import genai; genai.load(None)"),
        ("VAE.sample(-1)", "import genai; genai.VAE(genai.VAEConfig(arch='mlp')).sample(-1)"),
        ("VAE.sample('4')", "import genai; genai.VAE(genai.VAEConfig(arch='mlp')).sample('4')"),
        ("GAN.sample labels out of range",
         "import torch, genai\ng = genai.GAN(genai.GANConfig(arch='mlp', num_classes=10))\n"
         "g.sample(2, labels=torch.tensor([10, 11]))"),
        ("GPT forward tokens >= vocab",
         "import torch, genai\nm = genai.GPT(genai.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))\n"
         "m(torch.tensor([[7, 1]]))"),
        ("GPT forward too long",
         "import torch, genai\nm = genai.GPT(genai.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))\n"
         "m(torch.zeros(1, 9, dtype=torch.long))"),
        ("train_vae on wrong-shape tensor",
         "import torch, genai\ngenai.train_vae(genai.VAE(genai.VAEConfig(arch='mlp')), torch.rand(50, 3, 8, 8),\n"
         "    genai.VAETrainConfig(out_dir='r', max_steps=2, batch_size=10, device='cpu', progress=False))"),
        ("train_vae on NaN tensor",
         "import torch, genai\ngenai.train_vae(genai.VAE(genai.VAEConfig(arch='mlp')), torch.full((50, 1, 28, 28), float('nan')),\n"
         "    genai.VAETrainConfig(out_dir='r', max_steps=2, batch_size=10, device='cpu', progress=False))"),
        ("train_vae on a list", "import genai\ngenai.train_vae(genai.VAE(genai.VAEConfig(arch='mlp')), [1, 2, 3],\n"
         "    genai.VAETrainConfig(out_dir='r', max_steps=2, batch_size=10, device='cpu', progress=False))"),
        ("train_vae config a dict with typo",
         "import torch, genai\ngenai.train_vae(genai.VAE(genai.VAEConfig(arch='mlp')), torch.rand(50, 1, 28, 28),\n"
         "    {'out_dir': 'r', 'max_stepz': 2})"),
        ("train_gpt on empty text",
         "import genai\nm = genai.GPT(genai.GPTConfig(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=8))\n"
         "genai.train_gpt(m, '', genai.CharTokenizer('abcde'), genai.GPTTrainConfig(out_dir='r', max_steps=2, device='cpu', progress=False))"),
        ("generate_text vae model",
         "import genai\ngenai.generate_text(genai.VAE(genai.VAEConfig(arch='mlp')), 'hi', max_new_tokens=3)"),
        ("from_pretrained missing", "import genai; genai.VAE.from_pretrained('nowhere')"),
        ("from_pretrained a gpt run as VAE", "import genai; genai.VAE.from_pretrained('gpt')"),
        ("save_pretrained into a file", "import genai; genai.VAE(genai.VAEConfig(arch='mlp')).save_pretrained('notes.txt')"),
        ("save_pretrained over a run", "import genai; genai.VAE(genai.VAEConfig(arch='mlp')).save_pretrained('vae')"),
        ("load_images bad split", "import genai; genai.load_images('mnist', 'validation', root='.')"),
        ("load_text missing", "import genai; genai.load_text('nowhere.txt')"),
    ]:  # fmt: skip
        add(f"api {name}", api=body, runs=("gpt", "vae") if "pretrained" in name else ())

    # --- faults and documented behaviours with their own checks
    add("fault SIGKILL x3 with --checkpoint-every 1, then resume", check=kill_resume, timeout=600)
    add("fault two trainings on one folder", check=concurrent)
    add(
        "fault --overwrite killed before its first checkpoint",
        runs=("vae",),
        check=overwrite_killed,
    )
    add("doc torn last metrics line dropped on resume", runs=("vae",), check=torn_metrics_resume)
    add("doc --resume --lr applied and recorded", runs=("vae",), check=resume_lr_applied)
    add("doc vae --seed 7 twice same weights",
        check=seeds_reproducible("vae", VAE_FLAGS, "--root {root}"))  # fmt: skip
    add("doc gan --seed 7 twice same weights",
        check=seeds_reproducible("gan", GAN_FLAGS, "--root {root}"))  # fmt: skip
    add("doc gpt --seed 7 twice same weights",
        check=seeds_reproducible("gpt", GPT_FLAGS, "--text {text}"))  # fmt: skip
    add("doc sample after sample: run intact", runs=("vae",), check=ok_then(
        "sample vae --out a.png --n 4", lambda f, c: None if same_weights(
            f / "vae/model.safetensors", c.base / "runs/vae/model.safetensors") else "changed"))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--verbose", action="store_true", help="print each case as it ends")
    parser.add_argument("--only", default=None, help="run the cases whose name has this text")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--part", default=None, help="a slice of the cases, e.g. 200: or 0:100")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="genai-hostile-"))
    ctx = Context(base=base, root=base / "shared" / "idx", text=base / "shared" / "text.txt")
    (base / "shared").mkdir()
    selected = [c for c in cases() if args.only is None or args.only in c.name]
    if args.part:
        start, stop = (int(x) if x else None for x in args.part.split(":"))
        selected = selected[start:stop]
    names = [c.name for c in selected]
    assert len(set(names)) == len(names), "duplicate case names"
    t0 = time.time()
    build_base(ctx)
    shared_before = snapshot(base / "shared")
    runs_before = snapshot(base / "runs")
    results = []

    def one(case: Case) -> dict:
        try:
            r = run_case(case, ctx)
        except Exception as e:  # a harness bug in one case is reported, not fatal
            r = {"case": case.name, "ok": False, "why": f"harness error: {e!r}", "stderr_tail": ""}
        if case.name.startswith("resume state.pt") or "pickle" in case.name:
            pwned = no_pwn(base / "cases" / case.name)
            if pwned:
                r.update(ok=False, why=pwned)
        if args.verbose:
            mark = "ok  " if r["ok"] else "FAIL"
            last = (r["stderr_tail"].splitlines() or [""])[-1][:200]
            print(f"{mark} {r['case']}: {r.get('why') or last}", file=sys.stderr, flush=True)
            if not r["ok"]:
                print(f"     cmd: {r.get('cmd')}\n     stderr: {r['stderr_tail'][-300:]}",
                      file=sys.stderr, flush=True)  # fmt: skip
        return r

    with ThreadPoolExecutor(args.workers) as pool:
        results = list(pool.map(one, selected))
    if snapshot(base / "shared") != shared_before or snapshot(base / "runs") != runs_before:
        results.append({"case": "shared data and base runs unchanged", "ok": False,
                        "why": "changed", "stderr_tail": ""})  # fmt: skip
    failures = [
        {k: r.get(k) for k in ("case", "cmd", "why", "exit", "stderr_tail")}
        for r in results
        if not r["ok"]
    ]
    print(json.dumps({"tried": len(results), "ok": len(results) - len(failures),
                      "seconds": round(time.time() - t0, 1), "failures": failures}))  # fmt: skip
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    else:
        print(f"kept {base}", file=sys.stderr)
    if failures:  # a sweep with failures is a failed command, not only a line that says so
        sys.exit(1)


if __name__ == "__main__":
    main()
