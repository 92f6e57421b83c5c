"""The command line end to end, on tiny IDX files the test writes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genai
from genai.cli import main

TINY = ["--arch", "mlp", "--latent-dim", "3", "--hidden-dims", "16", "--batch-size", "20"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def train_args(idx_root, out, *extra):
    return ["-q", "train", "vae", "--root", str(idx_root), "--out-dir", str(out), *TINY,
            "--max-steps", "6", "--device", "cpu", "--no-progress", *extra]  # fmt: skip


def test_train_sample_eval(tmp_path, idx_root, capsys):
    out = tmp_path / "run"
    assert main(train_args(idx_root, out, "--binarize", "--beta", "0.5")) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 6 and "elbo" in summary["eval"]
    config = json.loads((out / "config.json").read_text())
    assert config["train_config"]["beta"] == 0.5 and config["train_config"]["binarize"] is True
    assert config["model_config"]["hidden_dims"] == [16] and config["data"]["dataset"] == "mnist"

    assert main(["-q", "sample", str(out), "--n", "16", "--out", str(tmp_path / "grid.png")]) == 0
    assert (tmp_path / "grid.png").stat().st_size > 100

    assert (
        main(["-q", "eval", str(out), "--root", str(idx_root), "--k", "10", "--device", "cpu"]) == 0
    )
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["kind"] == "vae" and result["n"] == 60
    assert result["iwae_nll"] <= result["loss"] + 1e-3  # the IWAE bound is tighter than -ELBO


def test_resume_continues_a_run(tmp_path, idx_root, capsys):
    out = tmp_path / "run"
    assert main(train_args(idx_root, out)) == 0
    assert (
        main(
            [
                "-q",
                "train",
                "vae",
                "--root",
                str(idx_root),
                "--resume",
                str(out),
                "--max-steps",
                "9",
            ]
        )
        == 0
    )
    assert json.loads((out / "config.json").read_text())["step"] == 9
    assert main(["-q", "train", "vae", "--resume", str(out), "--latent-dim", "5"]) == 2
    assert "cannot change when resuming" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "vae", "--latent-dim", "0"], "latent_dim must be > 0"),
        (["train", "vae", "--root", "/no/such/dir"], "dataset root '/no/such/dir' does not exist"),
        (["train", "vae", "--device", "quantum"], "unknown device 'quantum'"),
        (["sample", "/no/such/run"], "'/no/such/run' is not a directory"),
        (["eval", "."], "is not a genai run directory"),
    ],
)
def test_errors_are_one_line_without_traceback(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", *argv, *(["--max-steps", "1"] if argv[0] == "train" else [])]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genai: error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_existing_run_needs_overwrite(tmp_path, idx_root, capsys):
    out = tmp_path / "run"
    assert main(train_args(idx_root, out)) == 0
    weights = (out / "model.safetensors").read_bytes()
    assert main(train_args(idx_root, out)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "model.safetensors").read_bytes() == weights
    assert main(train_args(idx_root, out, "--overwrite", "--seed", "3")) == 0
    assert (out / "model.safetensors").read_bytes() != weights


def test_corrupt_idx_is_reported(tmp_path, idx_root, capsys):
    path = idx_root / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    assert main(train_args(idx_root, tmp_path / "run")) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "genai.cli", "eval", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 2 and "not a genai run directory" in result.stderr


def test_example_script(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "mnist_vae.py"), "--max-steps", "3", "--out", str(tmp_path), "--device", "cpu"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in (
        "vae/samples.png",
        "vae/reconstructions.png",
        "vae/completions.png",
        "vae2d/latent_traversal.png",
    ):
        assert (tmp_path / name).stat().st_size > 100


def test_demo_writes_its_pictures_and_text(tmp_path):
    from genai.demo import run_demo

    paths = run_demo(tmp_path / "demo", device="cpu", steps=3, sample_steps=2)
    names = sorted(p.relative_to(tmp_path / "demo").as_posix() for p in paths)
    assert names == [
        "diffusion/digits.png",
        "gan/digits.png",
        "gpt/sample.txt",
        "vae/completions.png",
        "vae/reconstructions.png",
        "vae/samples.png",
    ]
    from PIL import Image

    assert Image.open(tmp_path / "demo" / "gan" / "digits.png").size == (10 * 30 + 2, 10 * 30 + 2)
    sample = (tmp_path / "demo" / "gpt" / "sample.txt").read_text(encoding="utf-8")
    assert sample.startswith("def ") and len(sample) == 4 + 500  # one character per token
    # the same demo each time: the models' initializations are seeded, whatever the global RNG
    first = {p.name: p.read_bytes() for p in (tmp_path / "demo" / "vae").glob("*.png")}
    torch.manual_seed(12345)
    run_demo(tmp_path / "again", device="cpu", steps=3, sample_steps=2)
    again = {p.name: p.read_bytes() for p in (tmp_path / "again" / "vae").glob("*.png")}
    assert first == again
    for kind in ("gan", "diffusion"):
        picture = tmp_path / "demo" / kind / "digits.png"
        assert (tmp_path / "again" / kind / "digits.png").read_bytes() == picture.read_bytes()
    assert Image.open(tmp_path / "demo" / "diffusion" / "digits.png").size == (302, 302)
    assert genai.load(tmp_path / "demo" / "gpt").config.block_size == 64


def test_the_command_flushes_subnormals_and_main_leaves_the_process_alone():
    """``genai`` (the console script, ``cli.run``) sets FTZ/DAZ for its own process; ``main``
    called from Python does not touch it (a subnormal times 1 stays itself)."""
    code = (
        "import sys, torch; from genai import cli\n"
        "tiny = lambda: (torch.full((64,), 1e-39) * 1.0)[0].item()\n"
        "assert cli.main(['--help']) == 0 and tiny() > 0, 'main changed the process'\n"
        "sys.argv = ['genai', '--help']\n"
        "assert cli.run() == 0\n"
        "print(tiny())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert float(out.stdout.split()[-1]) == 0.0
