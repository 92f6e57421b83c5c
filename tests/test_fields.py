"""Config fields: rules declared with field(), given vs default, and defaults that fit the data."""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

import genai
from genai.cli import main
from genai.core.fields import Config, check_fields, field, fit_default, given, is_default, replace
from genai.gan.model import GAN, GANConfig
from genai.gan.train import GANTrainConfig, train_gan
from genai.training.engine import TrainConfig
from genai.vae.model import VAE, VAEConfig
from genai.vae.train import VAETrainConfig, train_vae

TINY = dict(arch="mlp", latent_dim=4, hidden_dims=(32,))
QUIET = dict(device="cpu", progress=False, max_steps=2, checkpoint_every=0)


@dataclasses.dataclass
class Example(Config):
    size: int = field(8, gt=0)
    rate: float = field(0.5, ge=0, lt=1)
    mode: str = field("a", choices=("a", "b"))
    pair: tuple[float, float] = field((0.1, 0.2), ge=0, le=1, rule="two numbers in [0, 1]")
    name: str = field("x", nonempty=True)
    limit: int | None = field(None, ge=2, rule=">= 2 or None")

    def __post_init__(self) -> None:
        check_fields(self)


@dataclasses.dataclass
class Smaller(Example):
    size: int = 4  # a new default; the rule stays the base class's


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(size=0), "size must be > 0, got 0"),
        (dict(rate=1), r"rate must be in \[0, 1\), got 1.0"),
        (dict(mode="c"), r"mode must be one of \('a', 'b'\), got 'c'"),
        (dict(pair=(0.5, 2)), r"pair must be two numbers in \[0, 1\], got \(0.5, 2.0\)"),
        (dict(name=" "), "name must not be empty"),
        (dict(limit=1), "limit must be >= 2 or None, got 1"),
    ],
)
def test_field_rules_say_what_is_wrong_on_one_line(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        Example(**kwargs)


def test_types_are_checked_before_rules_and_none_passes():
    with pytest.raises(TypeError, match="size must be an integer, got '3'"):
        Example(size="3")
    assert Example(limit=None).limit is None
    assert Example(pair=[0, 1]).pair == (0.0, 1.0)  # converted losslessly, then checked
    with pytest.raises(ValueError, match="size must be > 0, got -1"):
        Smaller(size=-1)
    assert Smaller().size == 4


def test_the_real_configs_keep_their_messages():
    cases = [
        (lambda: TrainConfig(batch_size=0), "batch_size must be > 0, got 0"),
        (lambda: TrainConfig(lr_schedule="step"), "lr_schedule must be one of "),
        (lambda: VAETrainConfig(lr=0), "lr must be > 0, got 0.0"),  # a redeclared default
        (lambda: GANTrainConfig(batch_size=1), "batch_size must be >= 2 for a GAN, got 1"),
        (lambda: VAEConfig(hidden_dims=()), r"hidden_dims must be one or more sizes > 0"),
        (lambda: GANConfig(num_classes=1), "num_classes must be >= 2 or None, got 1"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()


def test_a_config_records_the_fields_its_caller_gave():
    config = VAETrainConfig(lr=3e-4, batch_size=32)
    assert given(config) == {"lr", "batch_size"}
    assert is_default(config, "seed") and not is_default(config, "batch_size")
    assert given(VAETrainConfig("runs/x")) == {"out_dir"}  # positional too
    for same in (copy.copy(config), copy.deepcopy(config), pickle.loads(pickle.dumps(config))):
        assert same == config and given(same) == given(config)
    assert given(replace(config, seed=3)) == {"lr", "batch_size", "seed"}
    everything = {f.name for f in dataclasses.fields(config)}
    assert given(dataclasses.replace(config, seed=3)) == everything  # it passes every field
    assert dataclasses.replace(config, seed=3).seed == 3
    from_dict = genai.vae.train.coerce_config({"lr": 1e-3}, VAETrainConfig)
    assert given(from_dict) == {"lr"}
    saved = json.loads(json.dumps(dataclasses.asdict(config)))  # config.json's train_config
    assert VAETrainConfig(**saved) == config and given(VAETrainConfig(**saved)) == everything


def test_fit_default_lowers_only_a_default(caplog):
    with caplog.at_level(logging.WARNING):
        fitted = fit_default(VAETrainConfig(), "batch_size", 64, "images")
    assert fitted.batch_size == 64
    assert "batch_size: the default 128 is larger than the data (64 images)" in caplog.text
    chosen = VAETrainConfig(batch_size=256)
    assert fit_default(chosen, "batch_size", 64, "images") is chosen
    roomy = VAETrainConfig()
    assert fit_default(roomy, "batch_size", 500, "images") is roomy
    assert fit_default(GANTrainConfig(), "batch_size", 1, "images", minimum=2).batch_size == 64


def test_train_vae_on_fewer_images_than_the_default_batch(tmp_path, caplog):
    """A notebook: 64 random images, no batch size chosen."""
    out = tmp_path / "run"
    config = VAETrainConfig(out_dir=str(out), **QUIET)
    with caplog.at_level(logging.WARNING):
        train_vae(VAE(VAEConfig(**TINY)), torch.rand(64, 1, 28, 28), config)
    assert "the default 128 is larger than the data (64 images); using batch_size=64" in caplog.text
    assert json.loads((out / "config.json").read_text())["train_config"]["batch_size"] == 64
    assert config.batch_size == 128  # the caller's config is not changed

    # resume: the same data fits the default to the same size, which the run recorded
    again = VAETrainConfig(out_dir=str(out), resume=True, **{**QUIET, "max_steps": 3})
    assert train_vae(VAE(VAEConfig(**TINY)), torch.rand(64, 1, 28, 28), again)["step"] == 3


def test_a_batch_size_given_larger_than_the_data_is_still_an_error(tmp_path):
    config = VAETrainConfig(out_dir=str(tmp_path / "run"), batch_size=256, **QUIET)
    message = r"batch_size 256 is larger than the dataset \(64 images\); set a smaller batch_size"
    with pytest.raises(ValueError, match=message):
        train_vae(VAE(VAEConfig(**TINY)), torch.rand(64, 1, 28, 28), config)
    assert not (tmp_path / "run").exists()


def test_train_gan_on_fewer_images_than_the_default_batch(tmp_path):
    out = tmp_path / "gan"
    model = GAN(GANConfig(arch="mlp", latent_dim=4, g_width=8, d_width=8))
    train_gan(model, torch.rand(20, 1, 28, 28), GANTrainConfig(out_dir=str(out), **QUIET))
    assert json.loads((out / "config.json").read_text())["train_config"]["batch_size"] == 20


def test_cli_vae_on_a_folder_of_120_images_and_its_resume(tmp_path, capsys, caplog):
    rng = np.random.default_rng(0)
    folder = tmp_path / "pictures"
    folder.mkdir()
    for i in range(120):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(folder / f"{i}.png")
    run = tmp_path / "run"
    argv = ["-q", "train", "vae", "--data", str(folder), "--out-dir", str(run), "--arch", "mlp"]
    argv += ["--latent-dim", "4", "--hidden-dims", "32", "--device", "cpu", "--max-steps", "2"]
    with caplog.at_level(logging.WARNING):
        assert main(argv) == 0, capsys.readouterr().err
    assert "the default 128 is larger than the data (120 images); using batch_size=120" in (
        caplog.text
    )
    assert json.loads((run / "config.json").read_text())["train_config"]["batch_size"] == 120
    assert main(["-q", "train", "vae", "--resume", str(run), "--max-steps", "3"]) == 0
    assert json.loads((run / "config.json").read_text())["step"] == 3
    assert main([*argv[:-4], "--batch-size", "256", "--overwrite", "--max-steps", "2"]) == 2
    assert "batch_size 256 is larger than the dataset (120 images)" in capsys.readouterr().err
