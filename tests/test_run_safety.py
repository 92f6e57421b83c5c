"""A run survives anything: kills at every stage of a save, overwrite, locks, resume semantics,
typed configs, and one-line CLI errors."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import genai
from genai.cli import main
from genai.core import checkpoint, files
from genai.core import rundir as runs
from genai.gan.model import GANConfig
from genai.gpt.model import GPTConfig
from genai.gpt.train import GPTTrainConfig
from genai.training.engine import NonFiniteLossError, TrainConfig
from genai.vae.model import VAE, VAEConfig
from genai.vae.train import VAETrainConfig, train_vae

TINY = dict(arch="mlp", latent_dim=4, hidden_dims=(32,))


def config(out, **kw) -> VAETrainConfig:
    defaults = dict(
        out_dir=str(out), epochs=None, max_steps=8, batch_size=16, device="cpu", progress=False,
        log_every=2, eval_every=4, sample_every=4, checkpoint_every=4, lr=3e-3, warmup_steps=0,
        lr_schedule="constant",  # runs of different lengths share their first steps exactly
    )  # fmt: skip
    return VAETrainConfig(**{**defaults, **kw})


@pytest.fixture
def data(idx_root):
    return genai.load_images("mnist", "train", root=idx_root)


def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def same_start():
    """A factory of tiny VAEs that all start from one seeded initialization."""
    torch.manual_seed(0)
    init = state(VAE(VAEConfig(**TINY)))

    def model():
        m = VAE(VAEConfig(**TINY))
        m.load_state_dict(init)
        return m

    return model


class Killed(BaseException):
    """A kill: not an Exception, so nothing on the way catches it."""


def count_renames(monkeypatch, run) -> int:
    calls = []
    real = files._replace
    monkeypatch.setattr(files, "_replace", lambda a, b: (calls.append(1), real(a, b)))
    run()
    monkeypatch.setattr(files, "_replace", real)
    return len(calls)


def kill_at_rename(monkeypatch, k: int):
    """Make the k-th rename from now on raise :class:`Killed` instead of happening."""
    real, calls = files._replace, {"n": 0}

    def replace(a, b):
        calls["n"] += 1
        if calls["n"] == k:
            raise Killed
        return real(a, b)

    monkeypatch.setattr(files, "_replace", replace)
    return lambda: monkeypatch.setattr(files, "_replace", real)


def test_a_kill_between_any_two_renames_leaves_one_whole_checkpoint(tmp_path, data, monkeypatch):
    """Kill the step-8 save at each of its renames: the run loads (step 4 or 8, each with its own
    weights) and resumes to exactly the weights of an uninterrupted run."""
    model = same_start()
    full = model()
    train_vae(full, data, config(tmp_path / "full", max_steps=12))
    at4, at8 = model(), model()
    train_vae(at4, data, config(tmp_path / "at4", max_steps=4))
    train_vae(at8, data, config(tmp_path / "at8", max_steps=8))

    # renames in one save: the commit rename + one per file (sample and metrics writes are others)
    n = count_renames(
        monkeypatch, lambda: checkpoint.save_checkpoint(tmp_path / "x", at4, "vae", 1)
    )
    assert n == 1 + 2  # no state: commit + weights + config
    for k in range(1, 5 + 1):
        out = tmp_path / f"killed{k}"
        train_vae(model(), data, config(out, max_steps=4, sample_every=0, eval_every=0))
        undo = kill_at_rename(monkeypatch, k)
        with pytest.raises(Killed):  # steps 5..8 then the save of step 8
            train_vae(
                model(),
                data,
                config(out, max_steps=8, resume=True, sample_every=100, eval_every=100),
            )
        undo()
        loaded = genai.load(out, device="cpu")  # whole, never a mix
        step = checkpoint.load_config(out)["step"]
        assert step in (4, 8)
        assert_same(state(loaded), state(at4 if step == 4 else at8))
        assert checkpoint.load_state(out)["step"] == step
        resumed = VAE(VAEConfig(**TINY))  # all state comes from the run
        train_vae(resumed, data, config(out, max_steps=12, resume=True))
        assert_same(state(resumed), state(full))
        assert not {p.name for p in out.iterdir()} & {checkpoint.STAGING, checkpoint.COMMIT}
        assert not [p for p in out.rglob("*.tmp")]


def test_sigkill_loop_resumes_to_the_uninterrupted_weights(tmp_path, idx_root):
    """Real SIGKILLs of `genai train --checkpoint-every 1` at random moments."""
    args = [sys.executable, "-m", "genai.cli", "-q", "train", "vae", "--root", str(idx_root),
            "--arch", "mlp", "--latent-dim", "4", "--hidden-dims", "64", "--batch-size", "16",
            "--max-steps", "80", "--checkpoint-every", "1", "--log-every", "1", "--device", "cpu",
            "--no-progress", "--eval-every", "1000", "--sample-every", "1000"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    full = tmp_path / "full"
    subprocess.run([*args, "--out-dir", str(full)], check=True, env=env, capture_output=True)
    out, rng, kills = tmp_path / "killed", random.Random(0), 0
    for _ in range(6):  # four kills, then a run to the end
        resume = checkpoint.is_run_dir(out)
        cmd = [*args, "--resume", str(out)] if resume else [*args, "--out-dir", str(out)]
        if resume and checkpoint.load_config(out)["step"] == 80:
            break
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        start = checkpoint.load_config(out)["step"] if resume else 0
        deadline = time.time() + 120
        while kills < 4 and time.time() < deadline and proc.poll() is None:  # progress, then kill
            try:
                if checkpoint.load_config(out)["step"] >= start + 3:
                    break
            except checkpoint.CheckpointError:
                pass
            time.sleep(0.01)
        time.sleep(rng.uniform(0, 0.05))
        if kills < 4 and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        if checkpoint.is_run_dir(out):  # after any kill: loads, consistent
            step = checkpoint.load_config(out)["step"]
            genai.load(out, device="cpu")
            assert checkpoint.load_state(out)["step"] == step
    assert kills >= 3
    assert checkpoint.load_config(out)["step"] == 80
    assert_same(state(genai.load(out, "cpu")), state(genai.load(full, "cpu")))
    assert not [p for p in out.rglob("*.tmp")] and not (out / checkpoint.STAGING).exists()


def test_interrupted_save_leftovers_are_cleaned_on_the_next_start(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    (out / checkpoint.STAGING).mkdir()
    (out / checkpoint.STAGING / checkpoint.WEIGHTS).write_bytes(b"half a file")
    (out / ".model.safetensors.0123abcd.tmp").write_bytes(b"x" * 1000)
    assert checkpoint.load_config(out)["step"] == 4  # an uncommitted save is invisible
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=8, resume=True))
    names = {p.name for p in out.iterdir()}
    assert checkpoint.STAGING not in names and ".model.safetensors.0123abcd.tmp" not in names


def test_overwrite_checks_everything_before_touching_the_old_run(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out))
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="batch_size 100000 is larger"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, overwrite=True, batch_size=100000))
    with pytest.raises(ValueError, match="unknown device"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, overwrite=True, device="tpu"))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_overwrite_puts_the_old_run_back_if_the_new_one_fails_early(tmp_path, data):
    out = tmp_path / "run"
    old = VAE(VAEConfig(**TINY))
    train_vae(old, data, config(out))
    (out / "samples" / "my_notes.txt").write_text("mine")
    new = VAE(VAEConfig(**TINY))
    forward, calls = new.elbo, {"n": 0}

    def dies(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return forward(x)

    new.forward = dies
    with pytest.raises(KeyboardInterrupt):
        train_vae(new, data, config(out, overwrite=True))
    assert_same(state(genai.load(out, "cpu")), state(old))
    assert (out / "samples" / "my_notes.txt").read_text() == "mine"
    assert not (out / runs.PREVIOUS).exists()
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, overwrite=True, seed=1))
    assert not (out / runs.PREVIOUS).exists()  # gone once the new run has a checkpoint
    assert (out / "samples" / "my_notes.txt").read_text() == "mine"  # never genai's to delete
    assert sorted(p.name for p in (out / "samples").iterdir()) == [
        "my_notes.txt", "step_0000004.png", "step_0000008.png"
    ]  # fmt: skip


def test_an_overwrite_killed_before_its_first_checkpoint_is_undone_next_time(tmp_path, data):
    out = tmp_path / "run"
    old = VAE(VAEConfig(**TINY))
    train_vae(old, data, config(out))
    runs._move_aside(out)  # the state a SIGKILL leaves: old run aside, no new checkpoint
    (out / runs.METRICS).write_text('{"step": 2, "split": "train", "loss": 1.0}\n')
    assert_same(state(genai.load(out, "cpu")), state(old))  # readers see the old run meanwhile
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=12, resume=True))
    records = [json.loads(x) for x in (out / runs.METRICS).read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6, 8, 10, 12]


def test_files_genai_did_not_write_are_never_replaced(tmp_path, data):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"my": "settings"}')
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="genai did not write"):
            train_vae(VAE(VAEConfig(**TINY)), data, config(out, overwrite=overwrite))
    assert (out / "config.json").read_text() == '{"my": "settings"}'


def test_one_process_per_run_directory(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    busy = f"in use by another genai process \\(pid {os.getpid()}\\)"
    with (
        checkpoint.run_lock(out),
        pytest.raises(genai.RunLockedError, match=busy),
    ):  # another process
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=8, resume=True))
    # a process that died holding the lock does not keep it
    code = f"from genai import checkpoint; import os\nwith checkpoint.run_lock({str(out)!r}): os.kill(os.getpid(), 9)"
    subprocess.run([sys.executable, "-c", code], check=False)
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=8, resume=True))
    assert checkpoint.load_config(out)["step"] == 8


def test_resume_applies_and_records_new_optimizer_settings(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4, lr_schedule="constant"))
    train_vae(
        VAE(VAEConfig(**TINY)),
        data,
        config(out, max_steps=8, resume=True, lr=0.05, lr_schedule="constant"),
    )
    records = [json.loads(x) for x in (out / runs.METRICS).read_text().splitlines()]
    lrs = {r["step"]: r["lr"] for r in records if r["split"] == "train"}
    assert lrs[4] == 3e-3 and lrs[6] == lrs[8] == 0.05
    assert checkpoint.load_config(out)["train_config"]["lr"] == 0.05
    state = checkpoint.load_state(out)
    assert state["optimizers"]["vae"]["param_groups"][0]["lr"] == 0.05


def test_resume_refuses_a_target_already_reached_and_data_order_changes(tmp_path, data):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=8))
    weights = (out / checkpoint.WEIGHTS).read_bytes()
    for max_steps in (4, 8):
        with pytest.raises(ValueError, match="already at step 8; resuming to step"):
            train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=max_steps, resume=True))
    with pytest.raises(ValueError, match="batch_size cannot change when resuming"):
        train_vae(
            VAE(VAEConfig(**TINY)), data, config(out, max_steps=12, resume=True, batch_size=8)
        )
    assert (out / checkpoint.WEIGHTS).read_bytes() == weights


@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_cli_seed_makes_image_runs_reproducible(tmp_path, idx_root, kind):
    small = {
        "vae": ["--arch", "mlp", "--latent-dim", "3", "--hidden-dims", "16"],
        "gan": ["--arch", "mlp", "--latent-dim", "4", "--g-width", "8", "--d-width", "8"],
    }
    for name in ("a", "b", "c"):
        seed = "8" if name == "c" else "7"
        assert main(["-q", "train", kind, "--root", str(idx_root), *small[kind], "--batch-size", "20",
                     "--max-steps", "2", "--device", "cpu", "--no-progress", "--seed", seed,
                     "--out-dir", str(tmp_path / name)]) == 0  # fmt: skip
    a, b, c = (state(genai.load(tmp_path / n, "cpu")) for n in "abc")
    assert_same(a, b)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_training_leaves_the_callers_global_rng_alone(tmp_path, data):
    model = VAE(VAEConfig(**TINY))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_vae(model, data, config(tmp_path / "run", max_steps=2))
    assert torch.equal(torch.rand(3), expected)


def test_diverging_weights_are_never_saved(tmp_path, data):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="keeps no checkpoint yet"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, lr=1e30, max_steps=4))
    assert not checkpoint.is_run_dir(out)
    good = VAE(VAEConfig(**TINY))
    with torch.no_grad():
        next(good.parameters())[0, 0] = float("nan")
    with pytest.raises(ValueError, match="non-finite values in encoder"):
        checkpoint.save_checkpoint(out, good, "vae", 1)
    save = tmp_path / "saved"
    checkpoint.save_checkpoint(save, VAE(VAEConfig(**TINY)), "vae", 1)
    weights = {k: v.clone() for k, v in VAE(VAEConfig(**TINY)).state_dict().items()}
    weights["decoder.0.0.bias"][0] = float("inf")
    save_file(weights, save / checkpoint.WEIGHTS, metadata={"format": "genai-run", "step": "1"})
    with pytest.raises(checkpoint.CheckpointError, match="non-finite values in decoder"):
        genai.load(save)


def test_files_follow_the_umask(tmp_path, data):
    old = os.umask(0o022)
    try:
        out = tmp_path / "run"
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors", "state.pt", "metrics.jsonl", "loss.png"):
        assert (out / name).stat().st_mode & 0o777 == 0o644, name
    assert (out / "samples" / "step_0000004.png").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: VAEConfig(latent_dim=3.5), "latent_dim must be an integer, got 3.5"),
        (lambda: VAEConfig(latent_dim=True), "latent_dim must be an integer, got True"),
        (lambda: VAEConfig(hidden_dims=(64, "8")), r"hidden_dims\[1\] must be an integer"),
        (lambda: GANConfig(spectral_norm=1), "spectral_norm must be True or False"),
        (lambda: GPTConfig(dropout="0.1"), "dropout must be a number"),
        (lambda: TrainConfig(lr="1e-3"), "lr must be a number, got '1e-3'"),
        (lambda: TrainConfig(batch_size=16.5), "batch_size must be an integer, got 16.5"),
        (lambda: TrainConfig(lr=float("inf")), "lr must be a finite number"),
        (lambda: TrainConfig(grad_clip=float("nan")), "grad_clip must be a finite number"),
        (lambda: TrainConfig(max_steps="10"), "max_steps must be an integer"),
        (lambda: GPTTrainConfig(grad_accum=2.0), "grad_accum must be an integer"),
    ],
)
def test_configs_check_types(make, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make()


def test_configs_convert_losslessly():
    assert VAEConfig(hidden_dims=[64, 32]).hidden_dims == (64, 32)
    assert TrainConfig(lr=1).lr == 1.0 and isinstance(TrainConfig(lr=1).lr, float)


@pytest.fixture
def vae_run(tmp_path, data):
    out = tmp_path / "vae_run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    return out


@pytest.fixture
def gpt_run(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("hello world, hello genai. " * 40)
    out = tmp_path / "gpt_run"
    assert main(["-q", "train", "gpt", "--text", str(text), "--n-layer", "1", "--n-head", "2",
                 "--n-embd", "16", "--block-size", "16", "--max-steps", "2", "--device", "cpu",
                 "--no-progress", "--out-dir", str(out), "--sample-tokens", "0"]) == 0  # fmt: skip
    return out


def one_line_error(argv, capsys) -> str:
    code = main(["-q", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("genai: error: ") and len(err.strip().splitlines()) == 1, err
    return err


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_cli_errors_on_runs_and_outputs(tmp_path, vae_run, gpt_run, capsys):
    png = str(tmp_path / "x.png")
    assert "is a 'gpt' run; genai sample needs" in one_line_error(
        ["sample", str(gpt_run), "--out", png], capsys
    )
    assert "is a 'vae' run; genai generate needs" in one_line_error(
        ["generate", str(vae_run)], capsys
    )
    assert "--nrow must be > 0" in one_line_error(
        ["sample", str(vae_run), "--nrow", "0", "--out", png], capsys
    )
    assert "is a directory" in one_line_error(
        ["sample", str(vae_run), "--out", str(tmp_path)], capsys
    )
    weights = (vae_run / "model.safetensors").read_bytes()
    err = one_line_error(
        ["sample", str(vae_run), "--out", str(vae_run / "model.safetensors")], capsys
    )
    assert "inside the run directory" in err
    assert (vae_run / "model.safetensors").read_bytes() == weights
    assert "inside the run directory" in one_line_error(
        ["sample", str(vae_run), "--out", str(vae_run / "samples" / "x.png")], capsys
    )
    assert "batch_size must be >= 1" in one_line_error(
        ["eval", str(vae_run), "--batch-size", "0"], capsys
    )
    assert "n must be >= 0" in one_line_error(["eval", str(vae_run), "--n", "-5"], capsys)
    assert "temperature must be a finite number" in one_line_error(
        ["generate", str(gpt_run), "--temperature", "inf"], capsys
    )
    (tmp_path / "file").write_text("x")
    err = one_line_error(
        ["train", "vae", "--out-dir", str(tmp_path / "file" / "run"), "--max-steps", "1"], capsys
    )
    assert "is a file" in err


def test_cli_errors_on_damaged_runs(tmp_path, vae_run, gpt_run, capsys):
    png = str(tmp_path / "x.png")
    edit_json(
        vae_run / "config.json", lambda c: c["model_config"].update(hidden_dims=[10**6, 10**6])
    )
    assert "more than genai builds" in one_line_error(
        ["sample", str(vae_run), "--out", png], capsys
    )
    edit_json(
        vae_run / "config.json",
        lambda c: c["model_config"].update(hidden_dims=[32], latent_dim="4"),
    )
    assert "latent_dim must be an integer" in one_line_error(
        ["sample", str(vae_run), "--out", png], capsys
    )
    edit_json(vae_run / "config.json", lambda c: c["model_config"].update(latent_dim=4))
    assert main(["-q", "sample", str(vae_run), "--out", png]) == 0
    torch.save({"step": 4}, vae_run / "state.pt")
    err = one_line_error(["train", "vae", "--resume", str(vae_run), "--max-steps", "8"], capsys)
    assert "state.pt: resume state does not fit this run" in err
    resume_gpt = ["train", "gpt", "--resume", str(gpt_run), "--max-steps", "3"]
    err = one_line_error([*resume_gpt, "--tokenizer", "byte"], capsys)
    assert "--tokenizer cannot change when resuming (the run's is 'char')" in err
    assert main(["-q", *resume_gpt, "--tokenizer", "char"]) == 0  # the run's own: fine
    edit_json(gpt_run / "config.json", lambda c: c.pop("tokenizer"))
    assert "has no tokenizer" in one_line_error(["generate", str(gpt_run)], capsys)
    assert "has no tokenizer" in one_line_error(
        ["train", "gpt", "--resume", str(gpt_run), "--max-steps", "4"], capsys
    )


def test_cli_errors_on_metrics_logs(tmp_path, data, capsys):
    out = tmp_path / "run"
    train_vae(VAE(VAEConfig(**TINY)), data, config(out, max_steps=4))
    with open(out / runs.METRICS, "a") as f:
        f.write('{"step": 5, "spl')  # a kill tore the last line
    assert main(["-q", "train", "vae", "--resume", str(out), "--max-steps", "6"]) == 0
    lines = (out / runs.METRICS).read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines if '"train"' in x] == [2, 4, 6]
    (out / runs.METRICS).write_text('{"step": 2, "split": "train"}\nnot json\n{"step": 4}\n')
    err = one_line_error(["train", "vae", "--resume", str(out), "--max-steps", "8"], capsys)
    assert "metrics.jsonl: line 2 is not a metrics record" in err
    (out / runs.METRICS).unlink()
    (out / runs.METRICS).mkdir()
    assert "metrics.jsonl" in one_line_error(
        ["train", "vae", "--resume", str(out), "--max-steps", "8"], capsys
    )


def test_cli_errors_on_data(tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    (tmp_path / "empty").mkdir()
    err = one_line_error(
        ["train", "vae", "--root", str(tmp_path / "empty"), "--max-steps", "1"], capsys
    )
    assert "no mnist train split found" in err  # an explicit root never falls back
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 100)
    err = one_line_error(["train", "gpt", "--text", str(latin), "--max-steps", "1"], capsys)
    assert "latin.txt (byte 3 is not UTF-8)" in err

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    err = one_line_error(
        ["train", "gpt", "--corpus", "shakespeare", "--download", "--max-steps", "1"], capsys
    )
    assert "could not download tiny-shakespeare" in err
    text = tmp_path / "t.txt"
    text.write_text("abcdefgh" * 200)
    err = one_line_error(
        ["train", "gpt", "--text", str(text), "--vocab-size", "5", "--max-steps", "1"], capsys
    )
    assert "--vocab-size 5 is smaller than the tokenizer's vocabulary (8 tokens)" in err


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["train", "vae", "--latent-dim", "3.5"],
            "argument --latent-dim: invalid int value: '3.5'",
        ),
        (["train", "vae", "--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
        (["train", "vae", "--turbo"], "unrecognized arguments: --turbo"),
        (["fly"], "invalid choice: 'fly'"),
        (["train"], "the following arguments are required: kind"),
        (["train", "vae", "--out-dir", ""], "argument --out-dir: must not be empty"),
        (["train", "gpt", "--text", ""], "argument --text: must not be empty"),
        (["train", "vae", "--resume", ""], "argument --resume: must not be empty"),
        (["train", "vae", "--latent-dim", "99999999999999999999999"], "latent_dim is out of range"),
        (
            ["train", "vae", "--latent-dim", "9999999999", "--max-steps", "1"],
            "more than genai builds",
        ),
    ],
)
def test_usage_errors_are_one_line(argv, message, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("genai: error: ") and message in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_outputs_never_replace_a_users_file_or_nest_runs(tmp_path, vae_run, capsys):
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    assert "ending in .png" in one_line_error(["sample", str(vae_run), "--out", str(notes)], capsys)
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    assert "is not a PNG image" in one_line_error(
        ["sample", str(vae_run), "--out", str(fake)], capsys
    )
    assert notes.read_text() == "mine" and fake.read_text() == "not an image"
    grid = tmp_path / "grid.png"
    for _ in range(2):  # a previous grid may be replaced
        assert main(["-q", "sample", str(vae_run), "--n", "4", "--out", str(grid)]) == 0
    assert "--n must be in [1, 10000]" in one_line_error(
        ["sample", str(vae_run), "--n", "1000000000000", "--out", str(grid)], capsys
    )
    err = one_line_error(
        ["train", "vae", "--out-dir", str(vae_run / "samples" / "sub"), "--max-steps", "1"], capsys
    )
    assert "is inside the run directory" in err


def test_ctrl_c_stops_at_a_step_boundary_with_a_checkpoint(tmp_path, data):
    """The first SIGINT (or SIGTERM) stops training after the step in progress, saves it and
    raises TrainingInterrupted; resuming then ends with the uninterrupted run's weights. A
    second signal interrupts at once."""
    model = same_start()
    full = model()
    train_vae(full, data, config(tmp_path / "full"))
    before = signal.getsignal(signal.SIGINT)

    def interrupt_at(step, sig=signal.SIGINT, times=1):
        def callback(record):
            if record["split"] == "train" and record["step"] == step:
                for _ in range(times):
                    os.kill(os.getpid(), sig)

        return callback

    out = tmp_path / "run"
    with pytest.raises(genai.TrainingInterrupted, match=r"stopped at step 3 of 8 \(SIGINT\)"):
        train_vae(model(), data, config(out, log_every=1), callbacks=[interrupt_at(3)])
    assert checkpoint.load_config(out)["step"] == 3  # checkpoint_every is 4: saved on the signal
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    resumed = model()
    train_vae(resumed, data, config(out, resume=True))
    assert_same(state(resumed), state(full))

    term = tmp_path / "term"
    with pytest.raises(genai.TrainingInterrupted, match=r"step 5 of 8 \(SIGTERM\)"):
        train_vae(
            model(), data, config(term, log_every=1), callbacks=[interrupt_at(5, signal.SIGTERM)]
        )
    assert checkpoint.load_config(term)["step"] == 5

    twice = tmp_path / "twice"
    with pytest.raises(KeyboardInterrupt) as info:
        train_vae(model(), data, config(twice, log_every=1), callbacks=[interrupt_at(6, times=2)])
    assert not isinstance(info.value, genai.TrainingInterrupted)
    assert checkpoint.load_config(twice)["step"] == 4  # the last regular checkpoint
    assert signal.getsignal(signal.SIGINT) is before

    # in the last step: the run completes, then the caller is told
    with pytest.raises(genai.TrainingInterrupted, match="finished its last step"):
        train_vae(
            model(),
            data,
            config(twice, max_steps=8, log_every=1, resume=True),
            callbacks=[interrupt_at(8)],
        )
    assert checkpoint.load_config(twice)["step"] == 8

    # an overwriting run stopped before its first checkpoint saves nothing: the old run is back
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(genai.TrainingInterrupted, match="the overwrite is undone"):
        train_vae(
            model(), data, config(out, log_every=1, overwrite=True), callbacks=[interrupt_at(2)]
        )
    assert (
        checkpoint.load_config(out)["step"] == 8
        and (out / "model.safetensors").read_bytes() == weights
    )

    # a SIGINT the caller ignores stays ignored
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        train_vae(
            model(), data, config(tmp_path / "ignored", log_every=1), callbacks=[interrupt_at(3)]
        )
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
    assert checkpoint.load_config(tmp_path / "ignored")["step"] == 8


def test_checkpoints_are_saved_before_evaluations_that_fail_or_are_interrupted(
    tmp_path, data, monkeypatch, caplog
):
    from genai.vae.train import VAETask

    evaluate = VAETask.evaluate
    calls = []

    def failing(self):
        calls.append(1)
        raise RuntimeError("the evaluation broke")

    monkeypatch.setattr(VAETask, "evaluate", failing)
    out = tmp_path / "run"
    with pytest.raises(RuntimeError, match="the evaluation broke"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(out, eval_every=0, max_steps=8))
    assert calls and checkpoint.load_config(out)["step"] == 8  # the training is kept

    def interrupted(self):  # a Ctrl-C while evaluating at step 6, between checkpoints
        if self.model.training is False and len(calls) == 2:
            os.kill(os.getpid(), signal.SIGINT)
        calls.append(1)
        return evaluate(self)

    calls.clear()
    monkeypatch.setattr(VAETask, "evaluate", interrupted)
    run = tmp_path / "stopped"
    with pytest.raises(genai.TrainingInterrupted, match=r"stopped at step 6 of 8"):
        train_vae(VAE(VAEConfig(**TINY)), data, config(run, eval_every=2))
    assert checkpoint.load_config(run)["step"] == 6

    # resuming on other data than the run's says so
    monkeypatch.setattr(VAETask, "evaluate", evaluate)
    fewer = data.subset(torch.arange(len(data) - 16))
    train_vae(VAE(VAEConfig(**TINY)), fewer, config(run, resume=True))
    assert f"the data has changed since step 6 ({len(data)} images then" in caplog.text
