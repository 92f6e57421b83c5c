"""Sharded data parallelism (strategy "fsdp", FSDP2's fully_shard): two CPU processes (gloo)
equal one process with twice the batch, their checkpoints are full, and resumes cross strategies.

The tolerance: FSDP2 reduce-scatters (sums, then divides) per-rank mean gradients where one
process takes the mean over the doubled batch at once, and Adam divides by sqrt(v): the float
rounding differs by about 1e-7 relative per step; after 10 steps the weights agree to within
rtol 1e-4 / atol 1e-5 (measured: below 1e-6 at this size).
"""

import os
import shutil
import socket

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.tensor import DTensor

import genai
from genai.data.text import CharTokenizer, TokenBatches
from genai.gpt.model import GPT, GPTConfig
from genai.gpt.train import GPTTrainConfig, train_gpt
from genai.optim import make_muon
from genai.training.config import TrainConfig
from genai.training.sharding import check_optimizers, setup, shard

TEXT = "ROMEO: the cat sat on the mat. JULIET: a dog ran in the fog.\n" * 20
TOK = CharTokenizer.from_text(TEXT)
RTOL, ATOL = 1e-4, 1e-5


def windows_in_order(self, step):
    """The batch of ``step``: windows step * B ... step * B + B - 1 of one fixed order, so that
    one batch of 2B is the data of two consecutive batches of B (the engine's rank r of w takes
    the batches r, w + r, ...); TokenBatches draws each step's windows at random instead."""
    B, T = self.batch_size, self.block_size
    starts = (torch.arange(step * B, (step + 1) * B) * 37) % (len(self.tokens) - T)
    windows = self.tokens[starts[:, None] + torch.arange(T + 1)]
    return windows[None, :, :-1], windows[None, :, 1:]  # (A=1, B, T) each


def model(seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    fields = dict(vocab_size=TOK.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16)
    return GPT(GPTConfig(**fields))  # tied head and embedding, as GPT-2


def train(out_dir, batch_size, steps, strategy="ddp", resume=False, seed=0):
    config = GPTTrainConfig(
        out_dir=str(out_dir), max_steps=steps, batch_size=batch_size, device="cpu",
        progress=False, log_every=2, lr=1e-2, weight_decay=0.1, grad_clip=0.05, eval_every=4,
        eval_batches=2, sample_tokens=4, checkpoint_every=0, strategy=strategy, resume=resume,
        precision="fp32",  # equal to float tolerance: fp32's (bf16 rounds 2 x 1 and 1 x 2 apart)
    )  # fmt: skip
    train_gpt(model(seed), TEXT, TOK, config)


def worker(rank, port, tmp):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2",
                      RANK=str(rank), LOCAL_RANK=str(rank))  # fmt: skip
    torch.set_num_threads(1)
    TokenBatches.get = windows_in_order  # a process of its own
    train(tmp / "fsdp", 4, 4, "fsdp")
    if rank == 0:  # the step-4 run, kept as it is and resumed under ddp
        shutil.copytree(tmp / "fsdp", tmp / "fsdp4")
        shutil.copytree(tmp / "fsdp", tmp / "to_ddp")
    torch.distributed.barrier()
    train(tmp / "fsdp", 4, 8, "fsdp", resume=True, seed=9)  # fsdp -> fsdp
    train(tmp / "to_ddp", 4, 8, "ddp", resume=True, seed=9)  # fsdp -> ddp
    train(tmp / "to_ddp", 4, 10, "fsdp", resume=True, seed=9)  # ddp -> fsdp
    check_clipping()
    torch.distributed.destroy_process_group()


def check_clipping():
    """clip_grad_norm_ on the sharded parameters (DTensors) clips by the global norm."""
    sharded, plain = model(), model()
    shard(sharded, torch.device("cpu"), 2)
    x = torch.arange(16).reshape(2, 8) % TOK.vocab_size  # the same batch on both ranks
    for net in (sharded, plain):
        net(x, x)[1].backward()
    norm = nn.utils.clip_grad_norm_(list(sharded.parameters()), 0.05)
    norm = norm.full_tensor() if isinstance(norm, DTensor) else norm
    torch.testing.assert_close(norm, nn.utils.clip_grad_norm_(list(plain.parameters()), 0.05))
    assert norm > 0.1  # it clipped
    for (name, p), q in zip(sharded.named_parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(p.grad.full_tensor(), q.grad, msg=name)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return genai.load(run_dir, device="cpu").state_dict()


def assert_close(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=RTOL, atol=ATOL, msg=name)


def test_two_sharded_processes_equal_one_with_twice_the_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(TokenBatches, "get", windows_in_order)
    train(tmp_path / "one", 8, 4)
    one = {4: weights(tmp_path / "one")}
    for steps in (8, 10):  # single-process resume is exact
        train(tmp_path / "one", 8, steps, resume=True, seed=9)
        one[steps] = weights(tmp_path / "one")
    mp.spawn(worker, args=(free_port(), tmp_path), nprocs=2, join=True)
    assert_close(weights(tmp_path / "fsdp4"), one[4])  # the checkpoint is full: genai.load
    assert not torch.equal(one[4]["lm_head.weight"], model().state_dict()["lm_head.weight"])
    assert_close(weights(tmp_path / "fsdp"), one[8])  # resumed under fsdp
    assert_close(weights(tmp_path / "to_ddp"), one[10])  # fsdp -> ddp -> fsdp
    assert (tmp_path / "fsdp" / "samples").is_dir()  # rank 0 sampled from the gathered model
    loaded = genai.load(tmp_path / "fsdp", device="cpu")
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # still tied


def test_bad_settings_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="strategy") as e:
        TrainConfig(strategy="zero")
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="fp16") as e:
        TrainConfig(strategy="fsdp", precision="fp16")
    assert "\n" not in str(e.value)

    class Task:
        kind, model = "vae", None

    with pytest.raises(ValueError, match=r"supports the gpt kind only, not 'vae'.*'ddp'$"):
        setup(Task(), torch.device("cpu"), TrainConfig(strategy="fsdp"), 2)
    muon = make_muon([torch.nn.Parameter(torch.ones(2, 2))], 0.02, 0.95, 0.0)
    with pytest.raises(ValueError, match="element-wise optimizers.*Muon"):
        check_optimizers({"muon": muon})
