"""The benchmarks' own flags: a bad value is one line that names the flag, before any training."""

import subprocess
import sys
from pathlib import Path

import pytest

from genai.gan.model import GAN, GANConfig

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def run(script: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *flags], capture_output=True, text=True
    )


@pytest.mark.parametrize(
    ("script", "flags", "message"),
    [
        ("gan.py", ["--fid-epochs", "0"], "--fid-epochs: epochs must be >= 1, got '0'"),
        ("gan.py", ["--fid-epochs", "80,x"], "--fid-epochs: expected epochs like 80,100,120"),
        ("gan.py", ["--batch-size", "1"], "--batch-size must be >= 2 for a GAN, got 1"),
        ("gan.py", ["--lr", "0"], "--lr must be > 0, got 0.0"),
        ("time_to_quality.py", ["--gpt-batch-size", "0"], "--gpt-batch-size must be >= 1, got 0"),
        ("time_to_quality.py", ["--gpt-batch-size", "7"], "--gpt-batch-size must divide"),
        ("diffusion.py", ["--precision", "bf17"], "argument --precision: invalid choice: 'bf17'"),
        ("diffusion.py", ["--seed", "x"], "argument --seed: invalid int value: 'x'"),
    ],
)
def test_a_bad_benchmark_flag_is_one_line(script, flags, message):
    out = run(script, *flags)
    assert out.returncode == 2
    assert message in out.stderr.strip().splitlines()[-1], out.stderr


def test_a_vae_part_without_fashion_mnist_is_one_line_that_names_the_file(tmp_path):
    sys.path.insert(0, str(BENCHMARKS))
    try:
        from anchors import FASHION_FILES, missing_fashion
    finally:
        sys.path.remove(str(BENCHMARKS))
    for name in FASHION_FILES[:-1]:
        (tmp_path / name).write_bytes(b"")
    reason = missing_fashion(tmp_path)
    assert f"in {tmp_path}, and t10k-labels-idx1-ubyte.gz is not there" in reason
    assert "apt-get install dataset-fashion-mnist" in reason and "\n" not in reason
    (tmp_path / FASHION_FILES[-1]).write_bytes(b"")
    assert missing_fashion(tmp_path) is None


def test_diffusion_gan_run_must_be_a_conditional_gan_run(tmp_path):
    out = run("diffusion.py", "--gan-run", str(tmp_path / "missing"))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"--gan-run: '{tmp_path / 'missing'}' is not a directory"
    ]
    GAN(GANConfig()).save_pretrained(tmp_path / "unconditional")
    out = run("diffusion.py", "--gan-run", str(tmp_path / "unconditional"))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        f"--gan-run {tmp_path / 'unconditional'}: not a GAN conditioned on 10 classes"
    ]
