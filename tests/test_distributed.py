"""Data parallelism under torchrun: two CPU processes (gloo) equal one process with twice the batch."""

import json
import os
import socket
import time
from dataclasses import dataclass

import torch
import torch.multiprocessing as mp
from torch import nn

from genai.optim import make_adamw
from genai.training.engine import TrainConfig, fit


@dataclass
class Config:
    latent_dim: int = 0  # the engine stores model.config in config.json


class Regression(nn.Module):
    def __init__(self):
        super().__init__()
        self.config = Config()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))


class Batches:
    """64 fixed examples; batch ``step`` is a seeded slice, like ImageBatches."""

    def __init__(self, batch_size: int):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(64, 6, generator=gen)
        self.y = self.x.sum(1, keepdim=True).sin()
        self.batch_size = batch_size

    def __len__(self):
        return 64 // self.batch_size

    def get(self, step):
        epoch, i = divmod(step, len(self))
        perm = torch.randperm(64, generator=torch.Generator().manual_seed(epoch))
        idx = perm[i * self.batch_size : (i + 1) * self.batch_size]
        return self.x[idx], self.y[idx]


class RegressionTask:
    kind = "regression"

    def __init__(self, model, batch_size):
        self.model, self.batch_size = model, batch_size

    def setup(self, device):
        return Batches(self.batch_size)

    def configure_optimizers(self):
        return {"opt": make_adamw(self.model.parameters(), 1e-2, torch.device("cpu"))}

    def train_step(self, batch, step, trainer):
        x, y = batch
        loss = (self.model.net(x) - y).pow(2).mean()
        trainer.optimize(loss, "opt")
        return {"loss": loss.detach()}

    def evaluate(self):
        return {}

    def write_samples(self, stem):
        return None

    def checkpoint_extra(self):
        return {}


def train(out_dir, batch_size, steps=6):
    torch.manual_seed(0)
    model = Regression()
    config = TrainConfig(out_dir=str(out_dir), epochs=None, max_steps=steps, device="cpu",
                         progress=False, log_every=3, batch_size=batch_size)  # fmt: skip
    fit(RegressionTask(model, batch_size), config)
    return model


def worker(rank, port, out_dir, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    model = train(out_dir, batch_size=8)
    torch.save(model.state_dict(), results / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_with_twice_the_batch(tmp_path):
    mp.spawn(worker, args=(free_port(), tmp_path / "ddp", tmp_path), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    single = train(tmp_path / "single", batch_size=16).state_dict()
    for name, value in single.items():
        assert torch.equal(rank0[name], rank1[name]), name  # the ranks never drift apart
        torch.testing.assert_close(rank0[name], value, rtol=1e-5, atol=1e-6)
    torch.manual_seed(0)
    assert not torch.equal(rank0["net.0.weight"], Regression().net[0].weight)  # it did train
    # only rank 0 writes the run, and its log holds the mean loss of both ranks
    ddp_log = (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()
    single_log = (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()
    assert len(ddp_log) == len(single_log) == 2
    for a, b in zip(ddp_log, single_log, strict=True):
        assert abs(json.loads(a)["loss"] - json.loads(b)["loss"]) < 1e-5


class NaNOnRankOne(RegressionTask):
    """Rank 1's loss is NaN at (0-based) step 2, the last of a log interval: rank 0's own
    losses are finite up to that check, and its weights turn NaN only in the update after it."""

    def train_step(self, batch, step, trainer):
        x, y = batch
        loss = (self.model.net(x) - y).pow(2).mean()
        if step == 2 and torch.distributed.get_rank() == 1:
            loss = loss * float("nan")
        trainer.optimize(loss, "opt")
        return {"loss": loss.detach()}


def nan_worker(rank, port, out_dir, results):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    torch.manual_seed(0)
    config = TrainConfig(out_dir=str(out_dir), epochs=None, max_steps=6, device="cpu",
                         progress=False, log_every=3, batch_size=8)  # fmt: skip
    try:
        fit(NaNOnRankOne(Regression(), 8), config)
        outcome = "finished"
    except Exception as e:  # what each rank ended with
        outcome = f"{type(e).__name__}: {e}"
    (results / f"rank{rank}.txt").write_text(outcome)
    torch.distributed.destroy_process_group()


def test_a_nan_on_one_rank_stops_every_rank_at_the_same_step(tmp_path):
    context = mp.start_processes(
        nan_worker, args=(free_port(), tmp_path / "run", tmp_path), nprocs=2, join=False
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise AssertionError("a rank waited for one that had stopped")
    for rank in (0, 1):
        outcome = (tmp_path / f"rank{rank}.txt").read_text()
        assert outcome.startswith("NonFiniteLossError: loss became non-finite at step 3"), outcome
