"""The Checkpointer: the checkpoint cadence, the checks before a save, the overwrite undo, and
what the run directory keeps when training stops."""

from __future__ import annotations

import pytest
import torch

from genai.core import checkpoint
from genai.core.rundir import PREVIOUS, RunDirectory
from genai.training.checkpointer import Checkpointer, NonFiniteLossError
from genai.training.engine import TrainConfig, TrainingInterrupted
from genai.training.state import resume_state
from genai.vae.model import VAE, VAEConfig

TINY = dict(arch="mlp", latent_dim=4, hidden_dims=(32,))


class Task:
    kind = "vae"

    def __init__(self):
        self.model = VAE(VAEConfig(**TINY))

    def checkpoint_extra(self):
        return {}


class Log:
    def __init__(self):
        self.flushes = 0

    def log(self, record):
        pass

    def flush(self):
        self.flushes += 1

    def close(self):
        pass


def make(tmp_path, run=True, start=0, **settings):
    config = TrainConfig(out_dir=str(tmp_path / "run"), device="cpu", **settings)
    task = Task()
    opt = torch.optim.SGD(task.model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    scalers = {"opt": torch.amp.GradScaler("cpu", enabled=False)}
    folder = RunDirectory(tmp_path / "run") if run else None
    if run:
        folder.path.mkdir(parents=True)
    log = Log()
    saver = Checkpointer(
        folder, task, config, {"opt": opt}, {"opt": sched}, scalers, log, start, torch.device("cpu")
    )
    return saver, log


def test_cadence_every_n_steps_the_last_step_and_a_stop(tmp_path):
    saver, _ = make(tmp_path, checkpoint_every=4)
    assert [s for s in range(1, 11) if saver.due(s, 10, stopping=False)] == [4, 8, 10]
    assert saver.due(3, 10, stopping=True)
    only_at_end, _ = make(tmp_path / "b", checkpoint_every=0)
    assert [s for s in range(1, 11) if only_at_end.due(s, 10, stopping=False)] == [10]


def test_a_stop_before_an_overwrites_first_checkpoint_saves_nothing(tmp_path):
    saver, _ = make(tmp_path, checkpoint_every=4, overwrite=True)
    (tmp_path / "run" / PREVIOUS).mkdir()  # the old run, set aside
    assert saver.undoes_overwrite and not saver.due(3, 10, stopping=True)
    error = saver.interrupted(3, 10, "SIGINT")
    assert isinstance(error, TrainingInterrupted) and saver.last_saved is None
    assert str(error).endswith("holds the previous run again (the overwrite is undone)")
    saver.commit(4)  # the first checkpoint: the old run goes for good
    assert not saver.undoes_overwrite and not (tmp_path / "run" / PREVIOUS).exists()


def test_commit_saves_the_resume_state_and_flushes_the_log_first(tmp_path):
    saver, log = make(tmp_path)
    assert saver.kept() == "no checkpoint yet"
    saver.commit(3)
    assert log.flushes == 1 and saver.last_saved == 3
    assert saver.kept() == "the last good checkpoint (step 3)"
    saved = checkpoint.load_config(tmp_path / "run")
    state = checkpoint.load_state(tmp_path / "run", saved)
    assert saved["step"] == 3 and set(state) == {
        "optimizers",
        "schedulers",
        "scalers",
        "rng",
        "step",
    }
    assert set(resume_state(saver.optimizers, saver.schedulers, saver.scalers)) == set(state) - {
        "step"
    }


def test_other_ranks_check_but_never_write(tmp_path):
    saver, log = make(tmp_path, run=False)
    saver.commit(2)
    assert saver.last_saved == 2 and log.flushes == 1 and not (tmp_path / "run").exists()


def test_a_non_finite_loss_names_its_step_and_what_is_kept(tmp_path):
    saver, log = make(tmp_path, start=4, resume=True)
    assert saver.kept() == "the last good checkpoint (step 4)"
    for step, loss in enumerate([1.0, 2.0, float("nan"), float("inf")], start=4):
        saver.watch(step, torch.tensor(loss))
    with pytest.raises(NonFiniteLossError, match=r"non-finite at step 7; training stopped, "):
        saver.check_finite()
    assert log.flushes == 1  # the log up to the bad step is written
    with pytest.raises(NonFiniteLossError, match=r"keeps the last good checkpoint \(step 4\)"):
        saver.commit(8)
    fresh, _ = make(tmp_path / "b", overwrite=True)
    assert fresh.kept() == "the previous run"


def test_non_finite_weights_are_never_saved(tmp_path):
    saver, _ = make(tmp_path)
    with torch.no_grad():
        next(saver.task.model.parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteLossError, match=r"weights became non-finite by step 2 \("):
        saver.commit(2)
    assert not (tmp_path / "run" / checkpoint.CONFIG).exists()


def test_interrupted_saves_the_step_once_and_says_how_to_go_on(tmp_path):
    saver, log = make(tmp_path)
    error = saver.interrupted(5, 10, "SIGTERM")
    assert saver.last_saved == 5 and log.flushes == 1
    run = tmp_path / "run"
    assert str(error) == (
        f"training stopped at step 5 of 10 (SIGTERM); {run} holds its checkpoint: go on with "
        f"resume=True (genai train vae --resume {run})"
    )
    saver.interrupted(5, 10, "SIGTERM")
    assert log.flushes == 1  # already saved at that step: not again
    last = saver.interrupted(10, 10, "SIGINT")
    assert str(last) == f"training finished its last step (10) after SIGINT; {run} holds the " + (
        "complete run"
    )
