"""The loggers: one interface (log, flush, close), metrics.jsonl always, TensorBoard and wandb
on request, chosen with TrainConfig.loggers and checked before the run directory changes."""

from __future__ import annotations

import json
import sys

import pytest
import torch

import genai
from genai.training import loggers
from genai.training.engine import TrainConfig
from genai.training.loggers import (
    JsonlLogger,
    LoggerGroup,
    TensorBoardLogger,
    TrainMeans,
    WandbLogger,
    check_loggers,
    scalars,
)
from genai.vae.model import VAE, VAEConfig
from genai.vae.train import VAETrainConfig, train_vae

TINY = dict(arch="mlp", latent_dim=4, hidden_dims=(32,))


def config(out, **kw) -> VAETrainConfig:
    defaults = dict(
        out_dir=str(out), max_steps=8, batch_size=16, device="cpu", progress=False, log_every=2,
        eval_every=4, sample_every=0, checkpoint_every=4, binarize=True,
    )  # fmt: skip
    return VAETrainConfig(**{**defaults, **kw})


@pytest.fixture
def data(idx_root):
    return genai.load_images("mnist", "train", root=idx_root)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_jsonl_logger_writes_in_batches(tmp_path, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(loggers.time, "monotonic", lambda: now[0])
    log = JsonlLogger(tmp_path / "metrics.jsonl", interval=2.0)
    log.log({"step": 1, "split": "train", "loss": 1.0})
    log.log({"step": 2, "split": "train", "loss": 0.5})
    assert not (tmp_path / "metrics.jsonl").exists()  # no file write per record
    now[0] += 2.0
    log.log({"step": 3, "split": "train", "loss": 0.25})  # the interval is over: all three
    assert [r["step"] for r in lines(tmp_path / "metrics.jsonl")] == [1, 2, 3]
    log.log({"step": 4, "split": "val", "elbo": -3.0})
    assert len(lines(tmp_path / "metrics.jsonl")) == 3
    log.flush()
    assert lines(tmp_path / "metrics.jsonl")[-1] == {"step": 4, "split": "val", "elbo": -3.0}
    log.log({"step": 5, "split": "train", "loss": 0.1})
    log.close()  # close flushes
    assert [r["step"] for r in lines(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4, 5]


def test_records_run_the_callbacks_then_every_logger():
    got: list[tuple[str, dict]] = []

    class Memory:
        def __init__(self, name):
            self.name = name

        def log(self, record):
            got.append((self.name, dict(record)))

        def flush(self):
            got.append((self.name, "flush"))

        def close(self):
            got.append((self.name, "close"))

    records = LoggerGroup([Memory("a"), Memory("b")], [lambda r: {"extra": torch.tensor(2.0)}])
    records.log({"step": 1, "split": "train", "loss": 1.0})
    records.flush()
    records.close()
    record = {"step": 1, "split": "train", "loss": 1.0, "extra": 2.0}
    assert got == [("a", record), ("b", record), ("a", "flush"), ("b", "flush")] + [
        ("a", "close"),
        ("b", "close"),
    ]
    assert isinstance(got[0][1]["extra"], float)  # tensors become numbers
    with pytest.raises(TypeError, match="a callback returned int; return a dict"):
        LoggerGroup([Memory("a")], [lambda r: 3]).log({"step": 1, "split": "train"})
    called = []
    LoggerGroup([], [called.append]).log({"step": 1, "split": "train"})  # other ranks: nothing
    assert not called


def test_scalars_are_split_slash_key():
    record = {"step": 3, "split": "val", "elbo": -2.5, "n": 4, "note": "text"}
    assert scalars(record) == {"val/elbo": -2.5, "val/n": 4}


def test_train_means_average_the_interval():
    means = TrainMeans(per_epoch=4)
    means.add({"loss": torch.tensor(1.0), "kl": torch.tensor(4.0)})
    means.add({"loss": torch.tensor(3.0), "kl": torch.tensor(2.0)})
    record = means.record(2, lr=0.5)
    assert {k: record[k] for k in ("step", "split", "epoch", "lr")} == {
        "step": 2, "split": "train", "epoch": 0.5, "lr": 0.5,
    }  # fmt: skip
    assert record["loss"] == 2.0 and record["kl"] == 3.0 and record["time"] >= 0
    assert means.last == {"kl": 3.0, "loss": 2.0}
    means.add({"loss": torch.tensor(5.0), "kl": torch.tensor(0.0)})
    assert means.record(3, lr=0.5)["loss"] == 5.0  # a new interval


def test_tensorboard_logs_every_record_as_scalars(tmp_path, data):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, loggers=("tensorboard",)), eval_data=data)
    board = EventAccumulator(str(out / "tensorboard"))
    board.Reload()
    tags = board.Tags()["scalars"]
    assert {"train/loss", "train/lr", "val/elbo"} <= set(tags), tags
    assert [e.step for e in board.Scalars("train/loss")] == [2, 4, 6, 8]
    jsonl = [r["loss"] for r in lines(out / "metrics.jsonl") if r["split"] == "train"]
    assert [e.value for e in board.Scalars("train/loss")] == pytest.approx(jsonl)


def test_the_logger_interface_is_all_fit_uses(tmp_path, data, monkeypatch):
    """A logger with only log, flush and close, registered by name, gets every record
    metrics.jsonl gets, a flush before each checkpoint, and one close at the end."""
    events: list = []

    class Minimal:
        __slots__ = ()

        def __init__(self, run_dir, config):
            events.append(("open", run_dir.name, config.max_steps))

        def log(self, record):
            events.append(dict(record))

        def flush(self):
            events.append("flush")

        def close(self):
            events.append("close")

    monkeypatch.setitem(loggers.LOGGERS, "minimal", (Minimal, "json", "minimal"))
    saves = []
    real = genai.core.checkpoint.save_checkpoint
    monkeypatch.setattr(
        genai.core.checkpoint,
        "save_checkpoint",
        lambda *a, **k: (saves.append(1), real(*a, **k))[1],
    )
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, loggers=("minimal",)), eval_data=data)
    assert events[0] == ("open", "run", 8) and events[-1] == "close"
    records = [e for e in events if isinstance(e, dict)]
    assert records == lines(out / "metrics.jsonl")
    assert events.count("close") == 1 and events.count("flush") >= len(saves) == 2


def test_wandb_runs_offline_in_the_run_directory_and_resumes_its_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = WandbLogger(run_dir, TrainConfig(out_dir=str(run_dir), max_steps=5))
    first.log({"step": 2, "split": "train", "loss": 1.5, "lr": 0.1})
    first.log({"step": 2, "split": "val", "elbo": -3.0})
    first.flush()
    first.close()
    run_id = (run_dir / "wandb" / WandbLogger.ID_FILE).read_text().strip()
    assert run_id == first.run.id
    offline = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1 and (offline[0] / f"run-{run_id}.wandb").stat().st_size > 0
    again = WandbLogger(run_dir, TrainConfig(out_dir=str(run_dir), max_steps=9, resume=True))
    again.log({"step": 6, "split": "train", "loss": 1.0, "lr": 0.1})
    again.close()
    assert again.run.id == run_id  # the same wandb run goes on


@pytest.mark.parametrize(
    "names, message",
    [
        (
            ("mlflow",),
            r"^loggers: unknown logger 'mlflow'; choose from \('tensorboard', 'wandb'\)$",
        ),
        (("tensorboard", "tensorboard"), r"^loggers: 'tensorboard' is given twice$"),
        (
            ("wandb",),
            r"^loggers=\('wandb',\) needs the wandb package: pip install 'genai\[wandb\]'$",
        ),
        (
            ("tensorboard",),
            r"^loggers=\('tensorboard',\) needs the tensorboard package: "
            r"pip install 'genai\[tensorboard\]'$",
        ),
    ],
)
def test_bad_loggers_are_one_line_errors_before_the_run_directory_changes(
    tmp_path, data, monkeypatch, names, message
):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(ValueError, match=message):
        check_loggers(names)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, loggers=names))
    assert not out.exists()


def test_tensorboard_logger_alone(tmp_path):
    board = TensorBoardLogger(tmp_path)
    board.log({"step": 1, "split": "train", "loss": 2.0})
    board.close()
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


def test_a_run_from_before_loggers_resumes(tmp_path, data):
    """config.json of runs written before ``loggers`` holds ``tensorboard``: still resumable."""
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    saved = json.loads((out / "config.json").read_text())
    del saved["train_config"]["loggers"]
    saved["train_config"]["tensorboard"] = False
    (out / "config.json").write_text(json.dumps(saved))
    summary = train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=6, resume=True))
    assert summary["step"] == 6
    assert [r["step"] for r in lines(out / "metrics.jsonl") if r["split"] == "train"] == [2, 4, 6]
