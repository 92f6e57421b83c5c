"""The engine's smaller pieces, one by one: RNG state and resume checks (state), LR schedules and
cadences (schedule), the stop request (signals), the single-process collectives (distributed)
and the Trainer's clipped step (trainer)."""

from __future__ import annotations

import logging
import os
import random
import signal

import numpy as np
import pytest
import torch
from torch import nn

from genai.training.distributed import (
    barrier,
    broadcast_weights,
    init_distributed,
    mean_over_ranks,
)
from genai.training.engine import TrainConfig
from genai.training.schedule import SCHEDULES, due, lr_factor, lr_schedulers
from genai.training.signals import StopRequest
from genai.training.state import (
    check_resume_settings,
    rng_state,
    seed_everything,
    set_rng_state,
)
from genai.training.trainer import Trainer, maybe_compile


def draws():
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_rng_state_round_trips_every_generator():
    seed_everything(3)
    state = rng_state()
    first = draws()
    seed_everything(4)
    assert draws() != first
    set_rng_state(state)
    assert draws() == first
    seed_everything(3)
    assert draws() == first
    # What state.pt holds: tensors, numbers and lists only (torch.load(weights_only=True)).
    path = "rng.pt"
    torch.save(state, path)
    set_rng_state(torch.load(path, weights_only=True))
    assert draws() == first
    os.remove(path)


def test_resume_refuses_a_new_data_order_and_logs_other_changes(tmp_path, caplog):
    saved = {"batch_size": 16, "seed": 0, "lr": 1e-3, "out_dir": "elsewhere", "tensorboard": False}
    check_resume_settings(tmp_path, None, TrainConfig())  # a run without a train config
    with pytest.raises(ValueError, match=r"^batch_size cannot change when resuming \("):
        check_resume_settings(tmp_path, saved, TrainConfig(batch_size=32))
    with caplog.at_level(logging.INFO):
        check_resume_settings(tmp_path, saved, TrainConfig(batch_size=16, lr=3e-4))
    assert "resume: lr changes from 0.001 to 0.0003" in caplog.text
    assert "out_dir" not in caplog.text  # where the run is, not a setting


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_lr_schedulers_follow_lr_factor(schedule):
    config = TrainConfig(lr_schedule=schedule, warmup_steps=2, min_lr_ratio=0.1)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.5)
    (name, sched), = lr_schedulers({"opt": opt}, 10, config).items()  # fmt: skip
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert name == "opt"
    assert seen == pytest.approx([0.5 * lr_factor(s, 10, config) for s in range(10)])
    assert seen[:2] == pytest.approx([0.25, 0.5])  # the warmup


def test_eval_cadence_every_n_steps_or_once_per_epoch_and_at_the_end():
    assert [s for s in range(1, 11) if due(s, 3, per_epoch=5, total=10)] == [3, 6, 9, 10]
    assert [s for s in range(1, 13) if due(s, 0, per_epoch=5, total=12)] == [5, 10, 12]


def test_stop_request_turns_the_first_signal_into_a_request(caplog):
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(enabled=True) as stop:
        assert not stop.requested
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested and stop.name == "SIGTERM"
        assert "SIGTERM: stopping after this step" in caplog.text
        with pytest.raises(KeyboardInterrupt):  # a second signal: at once
            os.kill(os.getpid(), signal.SIGINT)
        assert signal.getsignal(signal.SIGTERM) is before  # and the handlers are back
    assert signal.getsignal(signal.SIGTERM) is before


def test_stop_request_leaves_ignored_signals_and_other_processes_alone():
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        with StopRequest(enabled=True):
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    with StopRequest(enabled=False) as off:  # under torchrun
        assert off.previous == {} and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_single_process_collectives_change_nothing(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    cpu = torch.device("cpu")
    assert init_distributed(cpu) == (0, 1, cpu)
    barrier(1)
    model = nn.Linear(2, 2)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    broadcast_weights(model, 1)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    x = torch.tensor([1.0, 3.0])
    assert mean_over_ranks(x, 1) is x


def test_trainer_clips_steps_and_clears_gradients():
    model = nn.Linear(4, 1, bias=False)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = Trainer(TrainConfig(grad_clip=0.5), torch.device("cpu"), {"opt": opt})
    before = model.weight.detach().clone()
    with trainer.autocast():
        loss = model(torch.full((1, 4), 100.0)).sum()
    trainer.optimize(loss, "opt")
    assert model.weight.grad is None
    assert float((before - model.weight.detach()).norm()) == pytest.approx(
        0.5
    )  # the step of a clipped gradient
    assert maybe_compile(model, TrainConfig()) is model
