"""A run is one object: ``genai.Run`` and ``genai.resume`` continue a run from Python.

For each model kind (VAE, GAN, GPT, diffusion) a run trained to 8 steps in one go, and the same run stopped by Ctrl-C at
step 4 and continued by ``genai.resume`` with its recorded data, model and tokenizer, end with
the same weights bit for bit and the same training metrics.
"""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import genai
from genai.core.checkpoint import CheckpointError

COMMON = dict(log_every=2, eval_every=4, sample_every=4, checkpoint_every=4, progress=False, seed=3)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _metrics(run_dir) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in lines]


def _ctrl_c_at(step: int):
    """A callback that sends this process SIGINT (Ctrl-C) at the train record of ``step``."""

    def callback(record: dict) -> None:
        if record["split"] == "train" and record["step"] == step:
            os.kill(os.getpid(), signal.SIGINT)

    return callback


def _vae(root, out, steps, callbacks=()):
    torch.manual_seed(0)  # the same initial weights in each run
    model = genai.get_model("vae", arch="mlp", latent_dim=4, hidden_dims=(32,))
    data = genai.load_images("mnist", root=root)
    test = genai.load_images("mnist", "test", root=root)
    config = genai.VAETrainConfig(out_dir=str(out), max_steps=steps, batch_size=32, **COMMON)
    return genai.train_vae(model, data, config, eval_data=test, callbacks=callbacks)


def _gan(root, out, steps, callbacks=()):
    torch.manual_seed(0)
    model = genai.get_model("gan", arch="mlp", latent_dim=8, g_width=32, d_width=32, num_classes=10)
    data = genai.load_images("mnist", root=root)
    config = genai.GANTrainConfig(out_dir=str(out), max_steps=steps, batch_size=32, **COMMON)
    return genai.train_gan(model, data, config, callbacks=callbacks)


def _gpt(root, out, steps, callbacks=()):
    text_file = root / "corpus.txt"
    if not text_file.exists():
        text_file.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    text = genai.load_text(text_file)
    tokenizer = genai.CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = genai.get_model(
        "gpt", vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16
    )
    config = genai.GPTTrainConfig(
        out_dir=str(out), max_steps=steps, batch_size=8, sample_tokens=8, eval_batches=2, **COMMON
    )
    return genai.train_gpt(
        model, text, tokenizer, config, source=str(text_file), callbacks=callbacks
    )


def _diffusion(root, out, steps, callbacks=()):
    torch.manual_seed(0)
    model = genai.get_model(
        "diffusion", num_classes=10, base_width=8, channel_mults=(1, 2), timesteps=20
    )
    data = genai.load_images("mnist", root=root)
    test = genai.load_images("mnist", "test", root=root)
    config = genai.DiffusionTrainConfig(
        out_dir=str(out), max_steps=steps, batch_size=16, n_grid=2, grid_steps=2, eval_images=8,
        eval_strata=2, **COMMON,
    )  # fmt: skip
    return genai.train_diffusion(model, data, config, eval_data=test, callbacks=callbacks)


TRAIN = {"vae": _vae, "gan": _gan, "gpt": _gpt, "diffusion": _diffusion}


@pytest.mark.parametrize("kind", list(TRAIN))
def test_resume_from_python_is_bit_exact(kind, tmp_path, idx_root):
    whole, split = tmp_path / "whole", tmp_path / "split"
    TRAIN[kind](idx_root, whole, 8)
    with pytest.raises(genai.TrainingInterrupted):
        TRAIN[kind](idx_root, split, 8, callbacks=[_ctrl_c_at(4)])
    run = genai.Run(split)
    assert (run.kind.name, run.step) == (kind, 4)
    summary = genai.resume(split)  # the recorded data, model, tokenizer and length
    assert summary["step"] == 8 and genai.Run(split).step == 8
    assert _same_weights(genai.load(whole, "cpu"), genai.load(split, "cpu"))
    train = [[r for r in _metrics(d) if r["split"] == "train"] for d in (whole, split)]
    assert train[0] == train[1] and len(train[0]) == 4
    assert genai.Run(split).metrics()[-1]["step"] == 8


def test_run_reads_what_a_run_directory_records(tmp_path, idx_root):
    _vae(idx_root, tmp_path / "vae", 4)
    run = genai.Run(tmp_path / "vae")
    assert "kind='vae'" in repr(run) and run.train_record["batch_size"] == 32
    assert [r["split"] for r in run.metrics()].count("val") == 1
    model = run.load("cpu")
    assert isinstance(model, genai.VAE) and not model.training
    config = run.config(max_steps=12)
    assert (config.resume, config.max_steps, config.epochs, config.batch_size) == (
        True,
        12,
        None,
        32,
    )


def test_resume_refuses_what_the_cli_refuses(tmp_path, idx_root):
    _vae(idx_root, tmp_path / "vae", 4)
    with pytest.raises(TypeError, match="VAETrainConfig has no field"):
        genai.resume(tmp_path / "vae", max_step=8)
    with pytest.raises(ValueError, match="batch_size cannot change when resuming"):
        genai.resume(tmp_path / "vae", max_steps=8, batch_size=16)
    with pytest.raises(ValueError, match="already at step 4"):
        genai.resume(tmp_path / "vae")
    with pytest.raises(ValueError, match="exclude each other"):
        genai.resume(tmp_path / "vae", max_steps=8, overwrite=True)
    with pytest.raises(ValueError, match="differs from the run"):
        genai.resume(tmp_path / "vae", max_steps=8, out_dir=str(tmp_path / "elsewhere"))
    with pytest.raises(TypeError, match="data must be a dataset name or path"):
        genai.resume(tmp_path / "vae", data=42, max_steps=8)
    with pytest.raises(CheckpointError, match="not a genai run directory"):
        genai.resume(tmp_path, max_steps=8)
    with pytest.raises(ValueError, match="empty path"):
        genai.Run("")
    with pytest.raises(ValueError, match="model settings \\(latent_dim\\) cannot change"):
        genai.Run(tmp_path / "vae").check_model_fields({"latent_dim": 5})


def test_resume_of_data_in_memory_asks_for_the_data(tmp_path):
    model = genai.get_model("vae", arch="mlp", latent_dim=4, hidden_dims=(32,))
    images = torch.rand(64, 1, 28, 28)
    config = dict(out_dir=str(tmp_path / "run"), max_steps=2, batch_size=32, progress=False)
    genai.train_vae(model, images, config)
    with pytest.raises(ValueError, match="in-memory array; pass --data"):
        genai.resume(tmp_path / "run", max_steps=4)
    assert genai.resume(tmp_path / "run", data=images, max_steps=4)["step"] == 4


def test_resume_of_text_in_memory_takes_the_text_again(tmp_path):
    text = "abcdefgh " * 200
    tokenizer = genai.CharTokenizer.from_text(text)
    model = genai.get_model(
        "gpt", vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=16
    )
    config = dict(
        out_dir=str(tmp_path / "run"), max_steps=2, batch_size=4, sample_tokens=0, progress=False
    )
    genai.train_gpt(model, text, tokenizer, config)
    with pytest.raises(ValueError, match="given in memory"):
        genai.resume(tmp_path / "run", max_steps=4)
    assert genai.resume(tmp_path / "run", data={"text": text}, max_steps=4)["step"] == 4
    assert genai.load(tmp_path / "run", "cpu").tokenizer.vocab_size == tokenizer.vocab_size
