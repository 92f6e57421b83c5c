"""The VAE and the GAN at every image shape: build rule, training, sampling, save/load, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import genai
from genai.core.layout import buildable_sizes, conv_plan
from genai.data.images import load_images
from genai.gan.model import GAN, GANConfig
from genai.gan.train import GANTrainConfig, train_gan
from genai.vae import evaluate_vae
from genai.vae.model import VAE, VAEConfig, discretized_logistic_log_prob
from genai.vae.train import VAETrainConfig, train_vae

SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]


def _colored(shape, n=24, classes=3, seed=0):
    """Labeled images whose class decides the mean color (as uint8)."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, *shape), dtype=torch.uint8, generator=gen)
    images[:, labels[0] % shape[0]] += (labels * 60).view(-1, 1, 1).to(torch.uint8)
    names = [f"class{k}" for k in range(classes)]
    return load_images(images, labels=labels, class_names=names)


def _train_config(cls, tmp_path, **kw):
    base = dict(
        out_dir=str(tmp_path / "run"),
        epochs=None,
        max_steps=2,
        batch_size=8,
        device="cpu",
        progress=False,
        checkpoint_every=0,
    )
    return cls(**{**base, **kw})


def test_conv_plan_follows_dcgan_rule():
    assert conv_plan((1, 28, 28)) == (7, 2)
    assert conv_plan((3, 32, 32)) == (4, 3)
    assert conv_plan((3, 64, 64)) == (4, 4)
    assert conv_plan((3, 128, 128)) == (4, 5)
    assert {28, 32, 64, 128} <= set(buildable_sizes())
    for bad in ((3, 30, 30), (3, 32, 64), (1, 2, 2)):
        with pytest.raises(ValueError, match=r"conv nets need square images.*arch='mlp'"):
            conv_plan(bad)


def test_dcgan_64_architecture():
    gan = GAN(GANConfig(image_shape=(3, 64, 64)))
    convt = [m for m in gan.generator.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.in_channels for m in convt] == [512, 256, 128, 64]
    assert convt[-1].out_channels == 3
    assert gan.generator.net[0].out_features == 512 * 4 * 4  # z -> 512x4x4
    convs = [m for m in gan.discriminator.features if isinstance(m, torch.nn.Conv2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [
        (3, 64),
        (64, 128),
        (128, 256),
        (256, 512),
    ]
    assert all(m.kernel_size == (4, 4) and m.stride == (2, 2) for m in convs)


def test_vae_default_widths_and_likelihood_by_shape():
    assert VAEConfig().conv_widths() == (32, 64) and VAEConfig().likelihood == "bernoulli"
    rgb = VAEConfig(image_shape=(3, 64, 64))
    assert rgb.conv_widths() == (32, 64, 128, 256) and rgb.likelihood == "logistic"
    with pytest.raises(ValueError, match=r"channels must be 3 sizes .* \(3, 32, 32\)"):
        VAEConfig(image_shape=(3, 32, 32), channels=(8, 16))
    with pytest.raises(ValueError, match=r"image_shape must be \(C, H, W\) with C = 1 or 3"):
        VAEConfig(image_shape=(4, 32, 32))
    with pytest.raises(ValueError, match="conv nets need square images"):
        GANConfig(image_shape=(3, 48, 48))
    mlp = VAE(VAEConfig(arch="mlp", image_shape=(3, 30, 20), hidden_dims=(16,), latent_dim=4))
    assert mlp.sample(2).shape == (2, 3, 30, 20)  # the MLP takes any size
    gan = GAN(GANConfig(arch="mlp", image_shape=(3, 10, 6), g_width=8, d_width=8))
    assert gan.sample(3).shape == (3, 3, 10, 6)


def test_discretized_logistic_is_a_distribution_over_256_levels():
    levels = torch.arange(256.0) / 255.0  # every pixel value
    for mean, log_scale in ((0.3, -3.0), (0.0, -6.0), (0.99, -1.0), (0.5, 1.0)):
        log_p = discretized_logistic_log_prob(levels, torch.tensor(mean), torch.tensor(log_scale))
        assert torch.all(log_p <= 0)
        assert log_p.exp().sum().item() == pytest.approx(1.0, abs=1e-4)
    # a sharp logistic puts almost all its mass on the level nearest its mean
    log_p = discretized_logistic_log_prob(levels, torch.tensor(100 / 255), torch.tensor(-8.0))
    assert log_p.exp()[100].item() > 0.99


def test_vae_bits_per_dim_is_nats_over_dims_ln2():
    vae = VAE(VAEConfig(image_shape=(3, 32, 32), latent_dim=4, hidden_dims=(16,)))
    x = torch.randint(0, 256, (4, 3, 32, 32)).float() / 255
    out = evaluate_vae(vae, x, batch_size=4)
    assert out["bits_per_dim"] == pytest.approx(out["loss"] / (3 * 32 * 32 * math.log(2)))


@pytest.mark.parametrize("shape", SHAPES)
def test_vae_trains_samples_saves_and_loads_at_each_shape(shape, tmp_path):
    data = _colored(shape)
    torch.manual_seed(0)
    vae = VAE(VAEConfig(image_shape=shape, latent_dim=4, hidden_dims=(16,)))
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    train_vae(vae, data, _train_config(VAETrainConfig, tmp_path))
    assert any(not torch.equal(before[k], v) for k, v in vae.state_dict().items())
    gen = torch.Generator().manual_seed(0)
    samples = vae.sample(3, generator=gen)
    assert samples.shape == (3, *shape) and samples.min() >= 0 and samples.max() <= 1
    loaded = genai.load(tmp_path / "run")
    assert loaded.config == vae.config
    torch.testing.assert_close(
        loaded.sample(3, generator=torch.Generator().manual_seed(0)), samples
    )
    record = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert record["image_shape"] == list(shape) and record["class_names"][0] == "class0"


@pytest.mark.parametrize("shape", SHAPES)
def test_conditional_gan_trains_samples_saves_and_loads_at_each_shape(shape, tmp_path):
    data = _colored(shape)
    torch.manual_seed(0)
    gan = GAN(GANConfig(image_shape=shape, num_classes=3, latent_dim=8, g_width=8, d_width=8))
    g0 = [p.clone() for p in gan.generator.parameters()]
    train_gan(gan, data, _train_config(GANTrainConfig, tmp_path))
    assert any(not torch.equal(a, b) for a, b in zip(g0, gan.generator.parameters(), strict=True))
    assert gan.config.class_names == ("class0", "class1", "class2")  # taken from the data
    loaded = genai.load(tmp_path / "run")
    assert loaded.config.class_names == ("class0", "class1", "class2")
    a = gan.sample(4, labels="class2", generator=torch.Generator().manual_seed(1))
    b = loaded.sample(4, labels=2, generator=torch.Generator().manual_seed(1))
    assert a.shape == (4, *shape)
    torch.testing.assert_close(a, b)


def test_gan_sample_labels_int_list_tensor_and_name():
    gan = GAN(GANConfig(num_classes=3, class_names=("a", "b", "c"), latent_dim=8, g_width=8))
    ref = gan.sample(3, labels=torch.tensor([1, 1, 1]), generator=torch.Generator().manual_seed(0))
    for labels in (1, "b", [1, 1, 1], ["b", "b", "1"], (1, 1, 1)):
        out = gan.sample(3, labels=labels, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match=r"unknown class 'dog'; class names: a, b, c"):
        gan.sample(2, labels="dog")
    with pytest.raises(ValueError, match=r"labels must be in \[0, 2\]"):
        gan.sample(2, labels=5)
    with pytest.raises(ValueError, match=r"integer tensor of shape \(2,\)"):
        gan.sample(2, labels=[0, 1, 2])
    with pytest.raises(TypeError, match="a label is an int or a class name"):
        gan.sample(2, labels=[0.5, 1.0])
    with pytest.raises(ValueError, match="class_names must hold num_classes=3 names"):
        GANConfig(num_classes=3, class_names=("a", "b"))


def test_bad_data_for_the_model_is_a_named_error(tmp_path):
    rgb = _colored((3, 28, 28))
    with pytest.raises(ValueError, match=r"model takes \(1, 28, 28\) images .* \(3, 28, 28\)"):
        train_vae(VAE(), rgb, _train_config(VAETrainConfig, tmp_path))
    assert not (tmp_path / "run").exists()  # nothing written
    conditional = GAN(GANConfig(num_classes=2, latent_dim=8, g_width=8, d_width=8))
    gray = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8)
    with pytest.raises(ValueError, match="needs labeled data .* has no labels"):
        train_gan(conditional, gray, _train_config(GANTrainConfig, tmp_path))
    one_class = load_images(gray, labels=torch.zeros(16, dtype=torch.long))
    with pytest.raises(ValueError, match="at least 2 classes; array has one class only"):
        train_gan(conditional, one_class, _train_config(GANTrainConfig, tmp_path))
    assert not (tmp_path / "run").exists()


def test_class_names_must_agree_with_the_data(tmp_path):
    """A conditional GAN's class names are the data's: other names, or another class count,
    would put the wrong name on a class (``--label cat`` drawing dogs)."""
    data = _colored((1, 28, 28), classes=2)  # class0, class1
    swapped = GAN(GANConfig(num_classes=2, class_names=("class1", "class0"), g_width=8))
    with pytest.raises(ValueError, match=r"class names \(class1, class0\) differ from the data's"):
        train_gan(swapped, data, _train_config(GANTrainConfig, tmp_path))
    wider = GAN(GANConfig(num_classes=5, g_width=8, d_width=8))
    with pytest.raises(ValueError, match=r"num_classes=5 but the data \(array\) has 2 classes"):
        train_gan(wider, data, _train_config(GANTrainConfig, tmp_path))
    assert not (tmp_path / "run").exists()


def test_each_trainer_names_the_model_it_trains(tmp_path):
    data = _colored((1, 28, 28))
    for fit, model in ((train_gan, VAE()), (train_vae, GAN()), (train_vae, "x")):
        with pytest.raises(TypeError, match=f"{fit.__name__} trains a (VAE|GAN), got"):
            fit(model, data, _train_config(VAETrainConfig, tmp_path))
    with pytest.raises(TypeError, match="train_gpt trains a GPT, got VAE"):
        genai.train_gpt(VAE(), "some text", genai.CharTokenizer("abc"))
    with pytest.raises(ValueError, match="n must be a positive integer, got 2.5"):
        VAE().sample(2.5)
    with pytest.raises(ValueError, match=r"no images to show: shape \(0, 1, 28, 28\)"):
        genai.show(torch.zeros(0, 1, 28, 28))
    assert not (tmp_path / "run").exists()


def test_float_and_numpy_images_train_directly(tmp_path):
    x = torch.rand(16, 1, 28, 28)
    vae = VAE(VAEConfig(latent_dim=4, hidden_dims=(16,)))
    train_vae(vae, x, _train_config(VAETrainConfig, tmp_path))
    gan = GAN(GANConfig(latent_dim=8, g_width=8, d_width=8))
    train_gan(gan, x.numpy(), _train_config(GANTrainConfig, tmp_path, overwrite=True))
    assert (tmp_path / "run" / "model.safetensors").is_file()


def test_vae_inputs_are_checked_and_float64_converted():
    vae = VAE(VAEConfig(arch="mlp", hidden_dims=(16,), latent_dim=2))
    x = torch.rand(3, 1, 28, 28)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*divide by 255"):
        vae.reconstruct(x * 255)  # forgot / 255: was silently garbage, and NaN in iwae_nll
    with pytest.raises(ValueError, match="must lie in"):
        vae.iwae_nll(x * 255, k=2)
    with pytest.raises(ValueError, match="the images are on meta but the model is on cpu"):
        vae.reconstruct(x.to("meta"))
    torch.testing.assert_close(vae.reconstruct(x.double()), vae.reconstruct(x))  # NumPy's dtype
    mask = torch.rand(3, 1, 28, 28) > 0.5
    torch.manual_seed(0)
    a = vae.impute(x, mask.numpy(), steps=2)
    torch.manual_seed(0)
    torch.testing.assert_close(a, vae.impute(x, mask, steps=2))
    holes = torch.where(mask, x, torch.nan)  # missing pixels may hold anything, NaN included
    torch.manual_seed(0)
    torch.testing.assert_close(vae.impute(holes, mask, steps=2), a)


def test_show_and_grid_take_levels_and_refuse_other_ranges():
    x = torch.rand(4, 1, 8, 8)
    levels = (x * 255).round()
    torch.testing.assert_close(genai.grid(levels.long()), genai.grid(levels.to(torch.uint8)))
    assert genai.show([x[0], x[1]]).size == genai.show(x[:2]).size  # a list of images
    assert genai.grid(x, nrow=torch.tensor(2)).shape == genai.grid(x, nrow=2).shape
    for bad, match in (
        (x * 255, r"float images must lie in \[0, 1\].*x / 255"),
        (x * 2 - 1, r"\(x \+ 1\) / 2"),
        (torch.full((1, 1, 4, 4), float("nan")), "must lie in"),
        (levels.long() + 300, "0-255 levels"),
        (torch.rand(8, 8, 3), r"channels last\?"),
    ):
        with pytest.raises(ValueError, match=match):
            genai.show(bad)
    with pytest.raises(ValueError, match="padding must be a positive integer, got -1"):
        genai.grid(x, padding=-1)
    with pytest.raises(ValueError, match=r"x.permute\(0, 3, 1, 2\)"):
        genai.show(torch.rand(2, 8, 8, 3))
    gan = genai.GAN(GANConfig(num_classes=3, g_width=8))
    assert gan.as_labels(2, torch.tensor(1)).tolist() == [1, 1]
    assert gan.as_labels(2, np.int64(2)).tolist() == [2, 2]
    for bad in (torch.tensor(1.9), torch.tensor(True)):
        with pytest.raises((TypeError, ValueError)):
            gan.as_labels(2, bad)
