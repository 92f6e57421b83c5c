"""The shared engine and the run-directory contract, exercised through the VAE loop."""

import json
import os
import pickle

import pytest
import torch

import genai
from genai.core import checkpoint
from genai.training.engine import NonFiniteLossError, TrainConfig, lr_factor
from genai.vae.model import VAE, VAEConfig
from genai.vae.train import VAETrainConfig, train_vae

TINY = dict(arch="mlp", latent_dim=4, hidden_dims=(32,))


def config(out, **kw) -> VAETrainConfig:
    defaults = dict(
        out_dir=str(out), epochs=None, max_steps=8, batch_size=16, device="cpu", progress=False,
        log_every=2, eval_every=4, sample_every=4, checkpoint_every=4, lr=3e-3, binarize=True,
        lr_schedule="cosine", warmup_steps=2, kl_warmup_steps=0,
    )  # fmt: skip
    return VAETrainConfig(**{**defaults, **kw})


@pytest.fixture
def data(idx_root):
    return genai.load_images("mnist", "train", root=idx_root)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_run_directory_contents(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out), eval_data=data)
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "state.pt",
        "metrics.jsonl",
        "loss.png",
        "samples",
    } <= names
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["kind"] == "vae" and cfg["step"] == 8 and cfg["genai_version"] == genai.__version__
    assert cfg["model_config"]["latent_dim"] == 4 and cfg["train_config"]["max_steps"] == 8
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6, 8]
    assert [r["step"] for r in records if r["split"] == "val"] == [4, 8]
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "step_0000004.png",
        "step_0000008.png",
    ]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_save_load_round_trip_is_exact(tmp_path, data):
    vae = VAE(VAEConfig(**TINY, likelihood="gaussian"))
    train_vae(vae, data, config(tmp_path / "run"))
    loaded = genai.load(tmp_path / "run")
    assert not loaded.training and loaded.config == vae.config
    for (k, a), (_, b) in zip(vae.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(vae.reconstruct(x), loaded.reconstruct(x))
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert torch.equal(vae.sample(4, generator=gen()), loaded.sample(4, generator=gen()))


def test_resume_equals_an_uninterrupted_run(tmp_path, data):
    torch.manual_seed(0)
    full = VAE(VAEConfig(**TINY))
    init = weights(full)
    train_vae(full, data, config(tmp_path / "full", max_steps=16))

    killed = VAE(VAEConfig(**TINY))
    killed.load_state_dict(init)
    elbo, calls = killed.elbo, {"n": 0}

    def dies_at_step_11(x):
        calls["n"] += 1
        if calls["n"] == 11:
            raise KeyboardInterrupt  # killed mid-run, after the step-8 checkpoint
        return elbo(x)

    killed.forward = dies_at_step_11
    with pytest.raises(KeyboardInterrupt):
        train_vae(killed, data, config(tmp_path / "half", max_steps=16, checkpoint_every=8))
    assert checkpoint.load_config(tmp_path / "half")["step"] == 8

    resumed = VAE(VAEConfig(**TINY))  # fresh weights: all state must come from the run
    train_vae(resumed, data, config(tmp_path / "half", max_steps=16, resume=True))
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    read = lambda run: (tmp_path / run / "metrics.jsonl").read_text().splitlines()  # noqa: E731
    full_log, resumed_log = read("full"), read("half")
    assert [json.loads(x)["step"] for x in resumed_log] == [json.loads(x)["step"] for x in full_log]
    for a, b in zip(full_log, resumed_log, strict=True):  # same losses, bit for bit
        a, b = json.loads(a), json.loads(b)
        assert {k: v for k, v in a.items() if k != "time"} == {
            k: v for k, v in b.items() if k != "time"
        }


def test_existing_run_is_never_overwritten_silently(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out))
    before = (out / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a run.*overwrite"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(out))
    assert (out / "model.safetensors").read_bytes() == before
    (out / "notes.txt").write_text("mine")
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, overwrite=True, seed=1))
    assert (out / "model.safetensors").read_bytes() != before
    assert (out / "notes.txt").read_text() == "mine"  # overwrite removes only genai's files


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, data):
    out = tmp_path / "run"
    vae = VAE(VAEConfig(**TINY))
    elbo = vae.elbo
    calls = {"n": 0}

    def poisoned(x, beta=1.0):
        calls["n"] += 1
        terms = elbo(x, beta)
        if calls["n"] == 6:  # the 6th training step
            terms["recon"] = terms["recon"] * float("nan")
        return terms

    vae.forward = poisoned
    with pytest.raises(
        NonFiniteLossError, match=r"non-finite at step 6.*last good checkpoint \(step 4\)"
    ):
        train_vae(vae, data, config(out))
    assert checkpoint.load_config(out)["step"] == 4
    loaded = genai.load(out)
    assert all(torch.isfinite(p).all() for p in loaded.parameters())


def test_logged_metrics_are_the_means_of_the_steps_and_current_at_each_checkpoint(
    tmp_path, data, monkeypatch
):
    out = tmp_path / "run"
    vae = VAE(VAEConfig(**TINY))
    elbo = vae.elbo
    losses = []

    def recorded(x, beta=1.0):
        terms = elbo(x, beta)
        losses.append((terms["recon"] + terms["kl"]).item())
        return terms

    vae.forward = recorded
    save = checkpoint.save_checkpoint
    logged_at_save = {}

    def save_and_read_log(run_dir, model, kind, step, *args):
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        logged_at_save[step] = [json.loads(line)["step"] for line in lines]
        return save(run_dir, model, kind, step, *args)

    monkeypatch.setattr(checkpoint, "save_checkpoint", save_and_read_log)
    train_vae(vae, data, config(out, log_every=3, eval_every=0, sample_every=0))
    train = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in train] == [3, 6, 8]
    means = [sum(losses[0:3]) / 3, sum(losses[3:6]) / 3, sum(losses[6:8]) / 2]
    assert [r["loss"] for r in train] == pytest.approx(means, rel=1e-6)
    # 8 steps of 16 of 200 images end no epoch, and the VAE has no eval data: no val records.
    assert logged_at_save == {4: [3], 8: [3, 6, 8]}


def test_log_lines_before_a_non_finite_loss_are_written(tmp_path, data):
    out = tmp_path / "run"
    vae = VAE(VAEConfig(**TINY))
    elbo = vae.elbo
    calls = {"n": 0}

    def poisoned(x, beta=1.0):
        calls["n"] += 1
        terms = elbo(x, beta)
        if calls["n"] == 3:
            terms["kl"] = terms["kl"] * float("inf")
        return terms

    vae.forward = poisoned
    with pytest.raises(NonFiniteLossError, match="non-finite at step 3"):
        train_vae(vae, data, config(out, log_every=1, checkpoint_every=0))
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_resume_needs_a_run(tmp_path, data):
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="not a genai run directory"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(tmp_path / "empty", resume=True))


def test_resume_refuses_another_model_config(tmp_path, data):
    train_vae(VAE(VAEConfig(**TINY)), data, config(tmp_path / "run", max_steps=4))
    other = VAE(VAEConfig(**{**TINY, "latent_dim": 5}))
    with pytest.raises(checkpoint.CheckpointError, match="model config differs"):
        train_vae(other, data, config(tmp_path / "run", max_steps=8, resume=True))


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


def test_state_that_would_run_code_is_refused(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    with open(out / "state.pt", "wb") as f:
        pickle.dump({"step": 4, "evil": RunsCode()}, f, protocol=2)
    with pytest.raises(checkpoint.CheckpointError, match="state.pt: refused to load"):
        checkpoint.load_state(out)
    assert not (tmp_path / "pwned.txt").exists() and not os.path.exists("pwned.txt")


def test_not_a_checkpoint(tmp_path, data):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(checkpoint.CheckpointError, match="config.json: not valid JSON"):
        genai.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"kind": "vae"}))
    with pytest.raises(checkpoint.CheckpointError, match="not a genai run config"):
        genai.load(tmp_path)
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    (out / "model.safetensors").write_bytes(b"garbage" * 10)
    with pytest.raises(
        checkpoint.CheckpointError, match="model.safetensors: not a readable safetensors"
    ):
        genai.load(out)


def test_files_of_two_checkpoints_are_detected(tmp_path, data):
    import shutil

    old, new = tmp_path / "old", tmp_path / "new"
    train_vae(VAE(VAEConfig(**TINY)), data, config(old, max_steps=4))
    train_vae(VAE(VAEConfig(**TINY)), data, config(new, max_steps=8))
    shutil.copy(old / "state.pt", new / "state.pt")  # state at 4, weights and config at 8
    with pytest.raises(
        checkpoint.CheckpointError, match="resume state is from step 4 but config.json says 8"
    ):
        checkpoint.load_state(new)
    shutil.copy(old / "model.safetensors", new / "model.safetensors")
    with pytest.raises(checkpoint.CheckpointError, match="model.safetensors is from step 4"):
        genai.load(new)


def test_lr_schedule_warmup_then_cosine():
    cfg = TrainConfig(max_steps=10, warmup_steps=2, lr_schedule="cosine", min_lr_ratio=0.1)
    factors = [lr_factor(s, 10, cfg) for s in range(10)]
    assert factors[:3] == [0.5, 1.0, 1.0]
    assert all(a >= b for a, b in zip(factors[1:], factors[2:], strict=False))
    assert abs(lr_factor(10, 10, cfg) - 0.1) < 1e-12
    assert lr_factor(5, 10, TrainConfig(max_steps=10)) == 1.0


def test_train_config_validation():
    with pytest.raises(ValueError, match="epochs must be > 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="max_steps must be > 0"):
        TrainConfig(max_steps=0)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        TrainConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="precision must be one of"):
        TrainConfig(precision="fp64")
    with pytest.raises(ValueError, match="lr must be > 0"):
        TrainConfig(lr=0)


def test_bf16_training_runs_on_cpu_and_stays_close(tmp_path, data):
    a, b = VAE(VAEConfig(**TINY)), VAE(VAEConfig(**TINY))
    b.load_state_dict(a.state_dict())
    sa = train_vae(a, data, config(tmp_path / "a", max_steps=4))
    sb = train_vae(b, data, config(tmp_path / "b", max_steps=4, precision="bf16"))
    assert all(p.dtype == torch.float32 for p in b.parameters())  # master weights stay fp32
    assert abs(sa["train"]["loss"] - sb["train"]["loss"]) < 0.02 * sa["train"]["loss"]
