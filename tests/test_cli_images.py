"""The CLI on image folders: --data, --image-size, recorded data on resume/eval, --label NAME."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from genai.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

GAN_TINY = ["--latent-dim", "8", "--g-width", "8", "--d-width", "8", "--batch-size", "8"]
COMMON = ["--device", "cpu", "--no-progress", "--max-steps", "2", "--checkpoint-every", "0"]


@pytest.fixture
def color_folder(tmp_path):
    """train/ and test/ with two classes of 40x40 RGB PNGs: red 'apple', blue 'sea'."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 6)):
        for name, channel in (("apple", 0), ("sea", 2)):
            for i in range(n):
                img = rng.integers(0, 40, (40, 40, 3), dtype=np.uint8)
                img[..., channel] = 220
                path = tmp_path / "fruit" / split / name / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(path)
    return tmp_path / "fruit"


def test_gan_on_a_folder_records_its_data_and_samples_by_name(tmp_path, color_folder, capsys):
    run = tmp_path / "run"
    argv = ["-q", "train", "gan", "--data", str(color_folder), "--image-size", "32"]
    argv += ["--num-classes", "2", "--out-dir", str(run), *GAN_TINY, *COMMON]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model_config"]["image_shape"] == [3, 32, 32]
    assert config["model_config"]["class_names"] == ["apple", "sea"]
    assert config["data"]["source"] == str(color_folder.resolve())
    assert config["data"]["image_size"] == 32

    grid = tmp_path / "sea.png"
    assert main(["-q", "sample", str(run), "--label", "sea", "--n", "4", "--out", str(grid)]) == 0
    assert Image.open(grid).mode == "RGB"
    assert main(["-q", "sample", str(run), "--label", "pear", "--out", str(grid)]) == 2
    assert "unknown class 'pear'; class names: apple, sea" in capsys.readouterr().err
    twice = ["-q", "sample", str(run), "--label", "sea", "--label", "apple", "--out", str(grid)]
    assert main(twice) == 2
    assert "--label given 2 times; a grid draws one class" in capsys.readouterr().err

    # --resume reads the recorded folder and size: no --data needed
    assert main(["-q", "train", "gan", "--resume", str(run), "--max-steps", "3"]) == 0
    assert json.loads((run / "config.json").read_text())["step"] == 3

    # eval finds the test split of the recorded folder, trains its classifier, gives the floor
    capsys.readouterr()
    ev = ["-q", "eval", str(run), "--device", "cpu", "--samples", "20", "--classifier-steps", "3"]
    assert main(ev) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["n"] == 12 and "fid" in result and "fid_real_floor" in result
    assert 0.0 <= result["conditional_accuracy"] <= 1.0
    assert "classifier trained on fruit train" in result["feature_space"]


def test_gray_run_resumed_on_rgb_data_is_refused(tmp_path, color_folder, capsys):
    run = tmp_path / "gray"
    argv = ["-q", "train", "gan", "--data", str(color_folder), "--image-size", "28"]
    argv += ["--image-channels", "1", "--out-dir", str(run), *GAN_TINY, *COMMON]
    assert main(argv) == 0
    weights = (run / "model.safetensors").read_bytes()
    resume = ["-q", "train", "gan", "--resume", str(run), "--max-steps", "4"]
    assert main([*resume, "--data", str(color_folder), "--image-channels", "3"]) == 2
    err = capsys.readouterr().err
    assert "model takes (1, 28, 28) images but the data (fruit train) are (3, 28, 28)" in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "model.safetensors").read_bytes() == weights  # nothing written over

    # a resumed run with --overwrite, a new run whose --image-shape is not its data's: one line
    assert main([*resume, "--overwrite"]) == 2
    assert "resume and overwrite exclude each other" in capsys.readouterr().err
    shaped = ["-q", "train", "gan", "--data", str(color_folder), "--image-size", "32"]
    shaped += ["--image-shape", "3", "16", "16", "--out-dir", str(tmp_path / "s"), *GAN_TINY]
    assert main([*shaped, *COMMON]) == 2
    err = capsys.readouterr().err
    assert "--image-shape 3 16 16 differs from the data's (3, 32, 32)" in err
    assert "--image-size 16" in err and not (tmp_path / "s").exists()
    assert (run / "model.safetensors").read_bytes() == weights


def test_vae_on_an_unbuildable_size_and_a_bad_folder(tmp_path, color_folder, capsys):
    argv = ["-q", "train", "vae", "--data", str(color_folder), "--image-size", "30"]
    assert main([*argv, "--out-dir", str(tmp_path / "v"), *COMMON]) == 2
    assert "conv nets need square images" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    argv = ["-q", "train", "vae", "--data", str(tmp_path / "empty")]
    assert main([*argv, "--out-dir", str(tmp_path / "v"), *COMMON]) == 2
    assert "no images" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_unlabeled_folder_eval_says_what_it_cannot_compute(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for i in range(10):
            path = tmp_path / "flat" / split / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(path)
    run = tmp_path / "run"
    argv = ["-q", "train", "vae", "--data", str(tmp_path / "flat"), "--out-dir", str(run)]
    argv += ["--arch", "mlp", "--hidden-dims", "16", "--latent-dim", "3", "--batch-size", "5"]
    assert main([*argv, *COMMON]) == 0
    capsys.readouterr()
    assert main(["-q", "eval", str(run), "--device", "cpu", "--k", "5"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "bits_per_dim" in result and "fid" not in result
    assert "unlabeled" in result["note"]
    assert result["inception_fid"] is None
    assert result["inception_fid_note"].startswith("not computed")
    assert "split_note" not in result

    # a broken test split is an error, not "no test split": training stops before writing
    odd = tmp_path / "odd"
    for split, name in (("train", "cat"), ("test", "bird")):
        path = odd / split / name / "0.png"
        path.parent.mkdir(parents=True)
        Image.fromarray(np.zeros((28, 28), np.uint8)).save(path)
    odd_argv = ["-q", "train", "vae", "--data", str(odd), "--out-dir", str(tmp_path / "o")]
    assert main([*odd_argv, "--batch-size", "1", *COMMON]) == 2
    assert "class folders bird are not classes of" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()

    # a folder without train/ and test/: eval says that its figures are on the training images
    lone = tmp_path / "lone"
    argv[argv.index("--data") + 1] = str(tmp_path / "flat" / "train")
    argv[argv.index("--out-dir") + 1] = str(lone)
    assert main([*argv, *COMMON]) == 0
    capsys.readouterr()
    assert main(["-q", "eval", str(lone), "--device", "cpu", "--k", "5"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "no test split" in result["split_note"] and "training images" in result["split_note"]
    assert "bits_per_dim" in result


def _eval_tiny_vae(tmp_path, idx_root, capsys, *flags: str) -> dict:
    """Train a tiny VAE on ``idx_root`` for 2 steps, then ``genai eval`` it on 2 test images
    and 2 samples with ``flags``; returns the JSON line."""
    run = tmp_path / "run"
    if not run.exists():
        argv = ["-q", "train", "vae", "--root", str(idx_root), "--out-dir", str(run)]
        argv += ["--arch", "mlp", "--hidden-dims", "16", "--latent-dim", "3", "--batch-size", "5"]
        assert main([*argv, *COMMON]) == 0
        capsys.readouterr()
    evaluate = ["-q", "eval", str(run), "--root", str(idx_root), "--device", "cpu", "--k", "2"]
    evaluate += ["--n", "2", "--samples", "2", "--classifier-steps", "1"]
    assert main([*evaluate, *flags]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_eval_adds_the_inception_fid_when_its_weights_are_there(
    tmp_path, capsys, idx_root, inception_home
):
    result = _eval_tiny_vae(tmp_path, idx_root, capsys)
    assert result["inception_fid"] > 0
    assert "2 samples against 2 test images" in result["inception_fid_feature_space"]
    result = _eval_tiny_vae(tmp_path, idx_root, capsys, "--no-inception")
    assert result["inception_fid"] is None and "--no-inception" in result["inception_fid_note"]


def test_eval_without_a_network_keeps_its_other_figures(tmp_path, capsys, idx_root, monkeypatch):
    """--download with no network: the Inception FID is null with the reason; the rest prints."""
    import urllib.error

    fi = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fi, "load_state_dict_from_url", offline)
    result = _eval_tiny_vae(tmp_path, idx_root, capsys, "--download")
    assert result["inception_fid"] is None and "could not download" in result["inception_fid_note"]
    assert "iwae_nll" in result and "fid" in result


def _example(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cifar10_gan_example_on_the_on_disk_format(tmp_path, cifar10_root):
    out = tmp_path / "out"
    args = ["--root", str(cifar10_root.parent), "--out", str(out), "--max-steps", "2"]
    grid = _example("cifar10_gan").main([*args, "--device", "cpu"])
    assert Image.open(grid).size == (10 * 34 + 2, 10 * 34 + 2)  # 10 classes x 10, 32x32 + pad
    config = json.loads((out / "run" / "config.json").read_text())
    assert config["model_config"]["class_names"][9] == "truck"


def test_folder_vae_example(tmp_path, color_folder):
    args = [str(color_folder), "--image-size", "32", "--out", str(tmp_path / "out")]
    scores = _example("folder_vae").main([*args, "--max-steps", "2", "--device", "cpu"])
    assert scores["bits_per_dim"] > 0 and scores["kl"] >= 0
    assert (tmp_path / "out" / "samples.png").is_file()


def test_examples_print_a_user_error_on_one_line(tmp_path):
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "folder_vae.py"), str(tmp_path / "nowhere")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.strip() == f"error: {tmp_path / 'nowhere'}: no such folder or file"
    few = tmp_path / "few"  # 3 images: none left for the held-out 10%, said before training
    few.mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(few / f"{i}.png")
    run = subprocess.run(
        [sys.executable, str(EXAMPLES / "folder_vae.py"), str(few), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1 and "leave none for the held-out 10%" in run.stderr
    assert not (tmp_path / "o").exists()


def test_output_paths_that_are_empty_or_under_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["-q", "demo", "--out", ""]) == 2
    assert "--out must name a folder" in capsys.readouterr().err
    run = tmp_path / "run"
    argv = ["-q", "train", "vae", "--arch", "mlp", "--hidden-dims", "8", "--latent-dim", "2"]
    assert main([*argv, "--batch-size", "8", "--out-dir", str(run), *COMMON]) == 0
    capsys.readouterr()
    assert main(["-q", "sample", str(run), "--out", str(tmp_path / "afile" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert f"{str(tmp_path / 'afile')!r} is a file, not a folder" in err


def test_eval_checks_the_data_against_the_model(tmp_path, color_folder, capsys):
    run = tmp_path / "run"
    argv = ["-q", "train", "gan", "--data", str(color_folder), "--image-size", "32"]
    assert main([*argv, "--num-classes", "2", "--out-dir", str(run), *GAN_TINY, *COMMON]) == 0
    ev = ["-q", "eval", str(run), "--device", "cpu", "--no-inception", "--samples", "8"]
    assert main([*ev, "--image-size", "16"]) == 2
    err = capsys.readouterr().err
    assert "model takes (3, 32, 32) images but the data (fruit test) are (3, 16, 16)" in err
    other = tmp_path / "other"  # two other classes, same size: the model's names are not its
    for name in ("cat", "dog"):
        (other / name).mkdir(parents=True)
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(other / name / "0.png")
    assert main([*ev, "--data", str(other)]) == 2
    assert "the model's classes (apple, sea) are not the data's (cat, dog)" in (
        capsys.readouterr().err
    )
    one = tmp_path / "one" / "cat"  # labeled with one class only: nothing to classify
    one.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 9 * i, np.uint8)).save(one / f"{i}.png")
    vae = tmp_path / "vae"
    argv = ["-q", "train", "vae", "--data", str(one.parent), "--out-dir", str(vae)]
    argv += ["--arch", "mlp", "--hidden-dims", "8", "--latent-dim", "2", "--batch-size", "2"]
    assert main([*argv, *COMMON]) == 0
    capsys.readouterr()
    assert main(["-q", "eval", str(vae), "--device", "cpu", "--k", "2", "--no-inception"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "labeled with one class only" in result["note"] and "fid" not in result


def test_conv_widths_fit_the_datas_size_and_a_gan_needs_two_images(tmp_path, color_folder, capsys):
    run = tmp_path / "v"
    argv = ["-q", "train", "vae", "--data", str(color_folder), "--image-size", "32"]
    argv += ["--channels", "4", "8", "8", "--latent-dim", "2", "--out-dir", str(run)]
    assert main([*argv, "--batch-size", "4", *COMMON]) == 0
    config = json.loads((run / "config.json").read_text())["model_config"]
    assert config["channels"] == [4, 8, 8] and config["image_shape"] == [3, 32, 32]
    argv = ["-q", "train", "gan", "--data", str(color_folder), "--out-dir", str(tmp_path / "g")]
    assert main([*argv, *GAN_TINY, "--batch-size", "1", *COMMON]) == 2
    assert "batch_size must be >= 2 for a GAN, got 1" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()
