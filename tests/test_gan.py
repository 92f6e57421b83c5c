"""The GAN: losses, conditioning, the D/G step separation, EMA, checkpoints, CLI and example."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import genai
from genai.cli import main
from genai.data.dataset import ImageDataset
from genai.data.idx import write_idx
from genai.gan.model import GAN, Discriminator, GANConfig, Generator, d_loss, g_loss
from genai.gan.train import (
    GANTask,
    GANTrainConfig,
    diff_augment,
    ema_decay_at,
    kind_config,
    mode_seeking_penalty,
    train_gan,
)
from genai.training.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]
TINY = {"latent_dim": 8, "g_width": 8, "d_width": 8}


def tiny_data(n: int = 64, seed: int = 0) -> ImageDataset:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 10
    return ImageDataset(images, labels, "mnist", "train", "test")


def tiny_config(tmp_path: Path, **kw) -> GANTrainConfig:
    base = {
        "out_dir": str(tmp_path / "run"),
        "epochs": None,
        "max_steps": 2,
        "batch_size": 16,
        "device": "cpu",
        "progress": False,
        "sample_every": 1000,
    }
    return GANTrainConfig(**{**base, **kw})


def task_for(tmp_path: Path, model: GAN, **kw) -> tuple[GANTask, Trainer]:
    config = tiny_config(tmp_path, **kw)
    task = GANTask(model, tiny_data(), config)
    task.setup(torch.device("cpu"))
    trainer = Trainer(config, torch.device("cpu"), task.configure_optimizers())
    return task, trainer


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def changed_params(before: dict, module: torch.nn.Module) -> set[str]:
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p)}


# ---- losses ---------------------------------------------------------------------------------


def test_losses_equal_their_formulas_on_hand_made_logits():
    real = torch.tensor([2.0, -1.0, 0.5, 30.0])
    fake = torch.tensor([-3.0, 0.0, 1.5, -40.0])
    sig = torch.sigmoid
    expected_d = (-torch.log(sig(real))).mean() + (-torch.log(1 - sig(fake))).mean()
    expected_g = (-torch.log(sig(fake))).mean()
    torch.testing.assert_close(d_loss(real, fake), expected_d)
    torch.testing.assert_close(g_loss(fake), expected_g)
    # the non-saturating D loss is exactly binary cross-entropy with logits
    bce = F.binary_cross_entropy_with_logits(real, torch.ones(4)) + (
        F.binary_cross_entropy_with_logits(fake, torch.zeros(4))
    )
    torch.testing.assert_close(d_loss(real, fake), bce)
    hinge_d = (1 - real).clamp_min(0).mean() + (1 + fake).clamp_min(0).mean()
    assert d_loss(real, fake, "hinge").item() == pytest.approx(hinge_d.item())
    assert d_loss(real, fake, "hinge").item() == pytest.approx((2.0 + 0.5) / 4 + (1.0 + 2.5) / 4)
    assert g_loss(fake, "hinge").item() == pytest.approx(41.5 / 4)
    # finite where sigmoid + log would overflow
    assert torch.isfinite(d_loss(torch.tensor([-200.0]), torch.tensor([200.0])))
    with pytest.raises(ValueError, match="loss must be one of"):
        d_loss(real, fake, "wasserstein")
    with pytest.raises(ValueError, match="loss must be one of"):
        g_loss(fake, "minimax")


# ---- architecture and conditioning ----------------------------------------------------------


@pytest.mark.parametrize("arch", ["conv", "mlp"])
@pytest.mark.parametrize("num_classes", [None, 10])
def test_shapes_and_sample_range(arch, num_classes):
    cfg = GANConfig(arch=arch, num_classes=num_classes, **TINY)
    gan = GAN(cfg).eval()
    labels = torch.arange(5) if num_classes else None
    x = gan.generator(torch.randn(5, 8), labels)
    assert x.shape == (5, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert gan.discriminator(x, labels).shape == (5,)
    s = gan.sample(5, labels=labels)
    assert s.shape == (5, 1, 28, 28) and s.min() >= 0 and s.max() <= 1


def test_conditional_sampling_follows_the_requested_labels():
    gan = GAN(GANConfig(num_classes=10, **TINY)).eval()
    with torch.no_grad():  # class gains and biases start equal; make the classes differ
        for p in gan.ema.parameters():
            p.add_(0.5 * torch.randn_like(p))
    labels = torch.tensor([7, 7, 3])
    a = gan.sample(3, labels=labels, generator=torch.Generator().manual_seed(1))
    b = gan.sample(3, labels=torch.tensor([7, 7, 4]), generator=torch.Generator().manual_seed(1))
    assert a.shape == (3, 1, 28, 28)
    assert torch.equal(a[:2], b[:2])  # same noise, same labels: same images
    assert not torch.equal(a[2], b[2])  # same noise, another label: another image
    named = GAN(GANConfig(num_classes=2, class_names=("ant", "bee"), **TINY))
    assert named.as_labels(3, np.array(["bee", "ant", "bee"])).tolist() == [1, 0, 1]
    assert named.as_labels(2, np.array(1)).tolist() == [1, 1]


def test_projection_discriminator_is_linear_plus_label_projection():
    d = Discriminator(GANConfig(num_classes=4, minibatch_std=False, **TINY))
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([0, 3, 1])
    phi = d.features(x)
    expected = phi @ d.out.weight[0] + d.out.bias + (d.embed.weight[y] * phi).sum(1)
    torch.testing.assert_close(d(x, y), expected)


def test_minibatch_std_lets_d_see_a_batch_without_variety():
    d = Discriminator(GANConfig(minibatch_std=True, **TINY)).eval()
    x = torch.randn(4, 1, 28, 28)
    phi = d.features(x)
    spread = phi.std(dim=0, correction=0).mean()
    expected = phi @ d.out.weight[0, :-1] + d.out.bias + d.out.weight[0, -1] * spread
    torch.testing.assert_close(d(x), expected)
    collapsed = x[:1].expand(4, -1, -1, -1)  # four copies of one image: spread 0
    one = d(x[:1]).expand(4)
    torch.testing.assert_close(d(collapsed), one)
    assert not torch.allclose(d(x)[:1], one)  # the same image scores differently in a varied batch


def test_spectral_norm_bounds_discriminator_weights():
    d = Discriminator(GANConfig(spectral_norm=True, **TINY)).train()
    for _ in range(30):  # power iterations converge while D runs in train mode
        d(torch.randn(4, 1, 28, 28))
    w = d.out.weight
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, rel=1e-3)


def test_seeded_sampling_is_reproducible():
    gan = GAN(GANConfig(**TINY)).eval()
    a = gan.sample(4, generator=torch.Generator().manual_seed(3))
    b = gan.sample(4, generator=torch.Generator().manual_seed(3))
    c = gan.sample(4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_generator_takes_a_label_embedding_next_to_z():
    g = Generator(GANConfig(num_classes=3, **TINY)).eval()
    assert g.embed.weight.shape == (3, 8) and g.net[0].in_features == 16
    z = torch.randn(2, 8)
    expected = torch.tanh(g.net(torch.cat([z, g.embed.weight[[2, 0]]], dim=1)))
    torch.testing.assert_close(g(z, torch.tensor([2, 0])), expected)


# ---- the D step and the G step --------------------------------------------------------------


def test_d_step_changes_d_and_leaves_g_untouched(tmp_path):
    gan = GAN(GANConfig(num_classes=10, **TINY))
    task, trainer = task_for(tmp_path, gan, d_steps_per_g_step=2)
    g0, d0, ema0 = snapshot(gan.generator), snapshot(gan.discriminator), snapshot(gan.ema)
    out = task.train_step(_batch(), 0, trainer)  # step 0 of 2 D steps per G step: D only
    assert changed_params(d0, gan.discriminator) == {
        n for n, _ in gan.discriminator.named_parameters()
    }
    assert not changed_params(g0, gan.generator)
    assert same(ema0, snapshot(gan.ema))
    assert all(p.grad is None for p in gan.generator.parameters())
    assert out["g_loss"].item() == 0.0 and out["d_loss"].item() > 0


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    data = tiny_data(16)
    return data.images.float() / 255, data.labels


def test_g_step_changes_g_and_leaves_d_untouched_without_grads(tmp_path):
    gan = GAN(GANConfig(num_classes=10, **TINY))
    task, trainer = task_for(tmp_path, gan)
    g0, d0 = snapshot(gan.generator), snapshot(gan.discriminator)
    labels = torch.randint(10, (16,))
    z = torch.randn(16, 8)
    task.g_step(gan.generator(z, labels), labels, trainer, z)
    assert not changed_params(d0, gan.discriminator)
    assert same(d0, snapshot(gan.discriminator))
    assert all(p.grad is None for p in gan.discriminator.parameters())
    assert all(p.requires_grad for p in gan.discriminator.parameters())  # restored
    assert changed_params(g0, gan.generator) == {n for n, _ in gan.generator.named_parameters()}


def test_train_step_updates_both_nets_and_the_ema(tmp_path):
    gan = GAN(GANConfig(**TINY))
    task, trainer = task_for(tmp_path, gan)
    g0, d0, ema0 = snapshot(gan.generator), snapshot(gan.discriminator), snapshot(gan.ema)
    out = task.train_step(_batch(), 0, trainer)
    assert changed_params(g0, gan.generator) and changed_params(d0, gan.discriminator)
    assert not same(ema0, snapshot(gan.ema))
    assert set(out) == {"loss", "d_loss", "g_loss", "d_real", "d_fake"}
    assert 0 < out["d_real"].item() < 1 and 0 < out["d_fake"].item() < 1
    torch.testing.assert_close(out["loss"], out["d_loss"] + out["g_loss"])


def test_two_optimizers_each_own_one_net(tmp_path):
    gan = GAN(GANConfig(**TINY))
    task, _ = task_for(tmp_path, gan)
    opts = task.configure_optimizers()
    assert set(opts) == {"g", "d"}
    ids = {name: {id(p) for g in o.param_groups for p in g["params"]} for name, o in opts.items()}
    assert ids["g"] == {id(p) for p in gan.generator.parameters()}
    assert ids["d"] == {id(p) for p in gan.discriminator.parameters()}
    assert opts["g"].defaults["lr"] == 2e-4 and opts["g"].defaults["betas"] == (0.5, 0.999)


# ---- EMA ------------------------------------------------------------------------------------


def test_ema_update_is_the_formula_for_weights_and_batchnorm_buffers():
    gan = GAN(GANConfig(**TINY))
    gan.generator.train()
    gan.generator(torch.randn(32, 8))  # move G's BatchNorm running stats away from the EMA's
    with torch.no_grad():
        for p in gan.generator.parameters():
            p.add_(torch.randn_like(p))
    e0, g0 = snapshot(gan.ema), snapshot(gan.generator)
    gan.update_ema(0.9)
    e1 = snapshot(gan.ema)
    for k in e0:
        if e0[k].is_floating_point():
            torch.testing.assert_close(e1[k], 0.9 * e0[k] + 0.1 * g0[k])
        else:  # BatchNorm's num_batches_tracked
            assert torch.equal(e1[k], g0[k])
    assert any("running_var" in k and not torch.equal(e0[k], e1[k]) for k in e0)
    with pytest.raises(ValueError, match="decay must be in"):
        gan.update_ema(1.5)


def test_ema_batchnorm_statistics_belong_to_the_ema_weights(tmp_path):
    # decay 0: the EMA must equal G *including* BatchNorm statistics, so in eval mode it draws
    # exactly what G draws; a copy that kept stale running stats would not.
    gan = GAN(GANConfig(**TINY))
    train_gan(gan, tiny_data(), tiny_config(tmp_path, ema_decay=0.0, ema_warmup=False))
    assert same(snapshot(gan.ema), snapshot(gan.generator))
    z = torch.randn(6, 8)
    torch.testing.assert_close(gan.ema(z), gan.generator.eval()(z))
    assert gan.ema.net[2].running_mean.abs().sum() > 0  # not the initial statistics


def test_ema_stays_in_eval_mode_and_sampling_does_not_move_its_statistics():
    gan = GAN(GANConfig(**TINY)).train()
    assert gan.generator.training and not gan.ema.training
    before = snapshot(gan.ema)
    gan.sample(8)
    assert same(before, snapshot(gan.ema))


def test_ema_warmup_decay():
    config = GANTrainConfig(ema_decay=0.999)
    assert ema_decay_at(config, 0) == pytest.approx(0.1)
    assert ema_decay_at(config, 10**6) == 0.999
    assert ema_decay_at(GANTrainConfig(ema_warmup=False), 0) == 0.999


# ---- checkpoints ----------------------------------------------------------------------------


def test_checkpoint_round_trip_keeps_both_nets_ema_and_both_optimizers(tmp_path):
    gan = GAN(GANConfig(num_classes=10, spectral_norm=True, **TINY))
    train_gan(gan, tiny_data(), tiny_config(tmp_path, max_steps=3))
    loaded = genai.load(tmp_path / "run")
    assert isinstance(loaded, GAN) and loaded.config == gan.config
    assert same(snapshot(gan), snapshot(loaded))
    assert any(k.startswith("ema.") for k in loaded.state_dict())
    state = torch.load(tmp_path / "run" / "state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"g", "d"}
    assert all(len(o["state"]) > 0 for o in state["optimizers"].values())
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(4)
    assert torch.equal(
        gan.eval().sample(4, labels=labels, generator=gen),
        loaded.sample(4, labels=labels, generator=torch.Generator().manual_seed(0)),
    )
    grid = sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert grid, "a fixed-noise sample grid is written"


def test_resume_equals_an_uninterrupted_run(tmp_path):
    data = tiny_data()
    torch.manual_seed(0)
    full = GAN(GANConfig(**TINY))
    torch.manual_seed(0)
    part = GAN(GANConfig(**TINY))
    train_gan(full, data, tiny_config(tmp_path / "a", max_steps=6))
    train_gan(part, data, tiny_config(tmp_path / "b", max_steps=3))
    resumed = GAN(GANConfig(**TINY))  # other weights: resume must restore nets, EMA, optimizers
    train_gan(resumed, data, tiny_config(tmp_path / "b", max_steps=6, resume=True))
    assert same(snapshot(resumed), snapshot(full))
    assert not same(snapshot(part), snapshot(full))


def test_defaults_follow_the_kind_of_gan_and_given_fields_are_kept(tmp_path):
    """Measured over 3 seeds (docs/gan.md): a conditional GAN takes precision "auto", an
    unconditional one lr 4e-4 for 6,240 steps in fp32; config.json records what was chosen."""

    def recorded(name: str, model_config: GANConfig, **kw) -> dict:
        train_gan(GAN(model_config), tiny_data(), tiny_config(tmp_path / name, max_steps=1, **kw))
        return json.loads((tmp_path / name / "run" / "config.json").read_text())["train_config"]

    assert (GANTrainConfig().precision, GANTrainConfig().lr) == ("fp32", 2e-4)
    cond = recorded("conditional", GANConfig(num_classes=10, **TINY))
    assert (cond["precision"], cond["lr"]) == ("auto", 2e-4)
    uncond = recorded("unconditional", GANConfig(**TINY))
    assert (uncond["precision"], uncond["lr"]) == ("fp32", 4e-4)
    given = recorded("given", GANConfig(**TINY), precision="bf16", lr=1e-4)
    assert (given["precision"], given["lr"], given["max_steps"]) == ("bf16", 1e-4, 1)

    per_epoch = 78  # 5,000 digits in batches of 64
    length = {
        (conditional, tuple(kw.items())): kind_config(GANTrainConfig(**kw), conditional)
        for conditional in (True, False)
        for kw in ({}, {"epochs": None}, {"epochs": 3}, {"max_steps": 5})
    }
    assert length[True, ()].total_steps(per_epoch) == 9360  # 120 epochs
    assert length[False, ()].total_steps(per_epoch) == 6240  # 80 epochs
    assert length[False, (("epochs", None),)].total_steps(per_epoch) == 6240  # None: not set
    for conditional in (True, False):
        assert length[conditional, (("epochs", 3),)].total_steps(per_epoch) == 3 * per_epoch
        assert length[conditional, (("max_steps", 5),)].total_steps(per_epoch) == 5


# ---- bad input ------------------------------------------------------------------------------


def test_bad_input_errors_name_the_problem(tmp_path):
    cond, uncond = GAN(GANConfig(num_classes=10, **TINY)), GAN(GANConfig(**TINY))
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], got values in \[3, 10\]"):
        cond.sample(2, labels=torch.tensor([3, 10]))
    with pytest.raises(ValueError, match="labels given to an unconditional GAN"):
        uncond.sample(2, labels=torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        cond.sample(2, labels=torch.tensor([1, 2, 3]))
    for n in (0, -3, 2.5):
        with pytest.raises(ValueError, match="n must be a positive integer"):
            uncond.sample(n)
    for field, value, match in [
        ("latent_dim", 0, "latent_dim must be > 0"),
        ("arch", "resnet", "arch must be one of"),
        ("num_classes", 1, "num_classes must be >= 2"),
        ("d_width", -1, "d_width must be > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            GANConfig(**{field: value})
    for field, value, match in [
        ("betas", (0.5, 1.0), "betas must be two numbers"),
        ("loss", "bce", "loss must be one of"),
        ("d_steps_per_g_step", 0, "d_steps_per_g_step must be >= 1"),
        ("ema_decay", 1.0, r"ema_decay must be in \[0, 1\)"),
        ("mode_seeking", -0.1, "mode_seeking must be >= 0"),
        ("lr", 0.0, "lr must be > 0"),
    ]:
        with pytest.raises(ValueError, match=match):
            GANTrainConfig(**{field: value})
    with pytest.raises(ValueError, match="num_classes=5"):
        train_gan(GAN(GANConfig(num_classes=5, **TINY)), tiny_data(), tiny_config(tmp_path))


# ---- CLI and example ------------------------------------------------------------------------


def write_mnist(root: Path, n_train: int = 64, n_test: int = 32) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("t10k", n_test)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def test_cli_train_sample_eval_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path / "cache"))
    root, run = write_mnist(tmp_path / "mnist"), tmp_path / "run"
    common = ["--root", str(root), "--out-dir", str(run), "--device", "cpu", "--no-progress"]
    sizes = ["--latent-dim", "8", "--g-width", "8", "--d-width", "8"]
    args = ["train", "gan", *common, *sizes, "--num-classes", "10", "--max-steps", "3"]
    assert main([*args, "--batch-size", "16", "--loss", "hinge"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["step"] == 3 and {"d_real", "d_fake", "g_loss"} <= set(summary["train"])
    saved = json.loads((run / "config.json").read_text())
    assert saved["kind"] == "gan" and saved["train_config"]["loss"] == "hinge"

    out = tmp_path / "sevens.png"
    assert main(["sample", str(run), "--label", "7", "--n", "16", "--out", str(out)]) == 0
    assert out.is_file()
    assert main(["sample", str(run), "--label", "12", "--out", str(out)]) == 2
    assert "labels must be in [0, 9]" in capsys.readouterr().err
    assert main(["sample", str(run), "--n", "0", "--out", str(out)]) == 2
    assert "--n must be in [1, 10000]" in capsys.readouterr().err

    ev = ["eval", str(run), "--root", str(root), "--samples", "40", "--classifier-steps", "5"]
    assert main([*ev, "--device", "cpu"]) == 0
    line = capsys.readouterr().out.strip().splitlines()
    assert len(line) == 1
    result = json.loads(line[0])
    assert result["kind"] == "gan" and result["fid"] >= 0
    assert 1.0 <= result["inception_score"] <= 10.0
    assert 0 <= result["classes_covered"] <= 10 and 0 <= result["conditional_accuracy"] <= 1
    assert list((tmp_path / "cache" / "classifiers").glob("mnist-*.safetensors"))

    (run / "model.safetensors").write_bytes(b"not a checkpoint")
    assert main(["sample", str(run), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("genai: error:") and "model.safetensors" in err and "\n" not in err


def test_cli_label_on_unconditional_run_is_an_error(tmp_path, capsys):
    gan = GAN(GANConfig(**TINY))
    train_gan(gan, tiny_data(), tiny_config(tmp_path, max_steps=1))
    assert main(["sample", str(tmp_path / "run"), "--label", "3"]) == 2
    assert "needs a class-conditional model" in capsys.readouterr().err


def test_example_writes_both_grids(tmp_path):
    spec = importlib.util.spec_from_file_location("mnist_gan", ROOT / "examples" / "mnist_gan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = write_mnist(tmp_path / "mnist", n_train=128)
    args = ["--out", str(tmp_path / "out"), "--root", str(root), "--max-steps", "2"]
    paths = module.main([*args, "--device", "cpu"])
    assert [p.name for p in paths] == ["unconditional.png", "digits.png"]
    from PIL import Image

    w, h = Image.open(paths[1]).size
    assert (w, h) == (10 * 30 + 2, 10 * 30 + 2)  # 10x10 digits, 2-pixel padding
    assert math.isclose(Image.open(paths[0]).size[0], 8 * 30 + 2)


def test_cli_eval_of_a_vae_run_reports_its_fid(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path / "cache"))
    root, run = write_mnist(tmp_path / "mnist"), tmp_path / "vae"
    args = ["train", "vae", "--root", str(root), "--out-dir", str(run), "--max-steps", "2"]
    assert main([*args, "--batch-size", "16", "--device", "cpu", "--no-progress"]) == 0
    capsys.readouterr()
    ev = ["eval", str(run), "--root", str(root), "--samples", "20", "--classifier-steps", "5"]
    assert main([*ev, "--k", "2", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip())
    assert result["kind"] == "vae" and result["fid"] > 0 and "elbo" in result
    assert "conditional_accuracy" not in result


def test_conditional_minibatch_std_is_the_spread_within_each_label():
    phi = torch.randn(6, 5)
    labels = torch.tensor([0, 1, 0, 2, 1, 0])
    spread = Discriminator.spread(phi, labels)
    for i, label in enumerate(labels):
        group = phi[labels == label]
        expected = (group.var(dim=0, correction=0) + 1e-8).sqrt().mean()
        torch.testing.assert_close(spread[i, 0], expected)
    # a batch whose classes each hold one repeated image has (almost) no spread, however
    # different the classes are from each other
    collapsed = phi[labels]
    assert Discriminator.spread(collapsed, labels).max() < 1e-3
    assert Discriminator.spread(collapsed, None).min() > 0.1
    # features in bf16 (autocast) give a bf16 spread computed in fp32
    for by in (labels, None):
        low = Discriminator.spread(phi.bfloat16(), by)
        assert low.dtype == torch.bfloat16
        exact = Discriminator.spread(phi.bfloat16().float(), by).bfloat16()
        torch.testing.assert_close(low, exact, rtol=0, atol=0)


def test_diff_augment_shifts_and_cuts_out_differentiably():
    x = torch.full((256, 1, 28, 28), -1.0)
    x[:, :, 14, 14] = 1.0  # one bright pixel
    x.requires_grad_(True)
    y = diff_augment(x)
    assert y.shape == x.shape and set(y.unique().tolist()) <= {-1.0, 1.0}
    bright = (y == 1.0).flatten(1)
    assert bright.sum(1).max() == 1  # the pixel moves or is cut out, never duplicated
    rows, cols = (y == 1.0)[:, 0].nonzero()[:, 1:].T
    assert (rows - 14).abs().max() <= 3 and (cols - 14).abs().max() <= 3
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) > 20  # many offsets
    assert 0.3 < bright.any(1).float().mean() < 0.95  # a 14x14 cutout hides it sometimes
    y.sum().backward()
    visible = bright.any(1).float()
    torch.testing.assert_close(x.grad[:, 0, 14, 14], visible)  # gradient iff it is visible


def test_diff_augment_cuts_out_across_the_whole_width_of_wide_images():
    y = diff_augment(torch.ones(512, 1, 4, 32), shift=0, cut=2)  # 4 high, 32 wide
    cut_columns = (y == -1.0)[:, 0].any(1).nonzero()[:, 1]
    assert cut_columns.max() >= 28  # the cutout reaches the right-hand side, not only x < 4


def test_mode_seeking_penalty_is_the_formula():
    z = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0], [1.0, 3.0]])  # pairs (0, 2), (1, 3)
    fake = torch.zeros(4, 1, 28, 28)
    fake[2] = 0.5  # pair (0, 2): images differ by 0.5 everywhere
    fake[3, 0, 0, :] = 1.0  # pair (1, 3): one row of 28 pixels differs by 1
    image_gap = torch.tensor([0.5, 28 / 784])
    z_gap = torch.tensor([1.0, 1.0])
    expected = (z_gap / (image_gap + 1e-5)).mean()
    torch.testing.assert_close(mode_seeking_penalty(fake, z), expected)


def test_mode_seeking_pairs_share_labels(tmp_path, monkeypatch):
    gan = GAN(GANConfig(num_classes=10, **TINY))
    task, trainer = task_for(tmp_path, gan, mode_seeking=0.1)
    seen = {}

    def record(fake, labels, trainer, z):
        seen["labels"], seen["z"] = labels, z
        return torch.zeros(())

    monkeypatch.setattr(task, "g_step", record)
    task.train_step(_batch(), 0, trainer)
    labels = seen["labels"]
    assert torch.equal(labels[:8], labels[8:]) and seen["z"].shape == (16, 8)
