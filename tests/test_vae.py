"""The VAE's math: KL, reparameterization, ELBO vs IWAE, imputation, and its training loop."""

import math

import pytest
import torch
import torch.nn.functional as F

import genai
from genai.training.engine import Trainer
from genai.vae.model import (
    VAE,
    VAEConfig,
    bernoulli_log_prob,
    gaussian_kl,
    gaussian_log_prob,
)
from genai.vae.train import VAETask, VAETrainConfig, train_vae

TINY = dict(arch="mlp", latent_dim=4, hidden_dims=(32,))


def tiny_config(tmp_path, **kw) -> VAETrainConfig:
    defaults = dict(
        out_dir=str(tmp_path / "run"), epochs=None, max_steps=6, batch_size=16, device="cpu",
        progress=False, log_every=2, eval_every=3, sample_every=3, checkpoint_every=3,
    )  # fmt: skip
    return VAETrainConfig(**{**defaults, **kw})


def test_analytic_kl_matches_monte_carlo():
    torch.manual_seed(0)
    mu, logvar = torch.randn(3, 5), torch.randn(3, 5) * 0.5
    z = mu + torch.exp(0.5 * logvar) * torch.randn(200_000, 3, 5)  # (S, B, D)
    zeros = torch.zeros_like(z)
    mc = (gaussian_log_prob(z, mu, logvar) - gaussian_log_prob(z, zeros, zeros)).mean(0)
    torch.testing.assert_close(gaussian_kl(mu, logvar), mc, atol=0.03, rtol=0.01)
    assert (gaussian_kl(mu, logvar) > 0).all()


def test_kl_is_zero_when_q_is_the_prior():
    assert gaussian_kl(torch.zeros(2, 7), torch.zeros(2, 7)).abs().max() == 0


def test_gaussian_log_prob_matches_torch_distributions():
    z, mu, logvar = torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3)
    ref = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(gaussian_log_prob(z, mu, logvar), ref)


def test_reparameterization_sends_gradients_to_the_encoder():
    vae = VAE(VAEConfig(**TINY))
    x = torch.rand(8, 1, 28, 28)
    mu, logvar = vae.encode(x)
    z = vae.reparameterize(mu, logvar)
    recon = -vae.log_likelihood(x, vae.decode(z)).mean()  # the reconstruction term alone
    recon.backward()
    grads = [p.grad for p in vae.encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    # and through sigma: d z / d logvar = 0.5 * sigma * eps, not zero
    mu = torch.zeros(1, 3, requires_grad=True)
    logvar = torch.zeros(1, 3, requires_grad=True)
    eps_gen = torch.Generator().manual_seed(1)
    VAE.reparameterize(mu, logvar, eps_gen).sum().backward()
    eps = torch.randn(1, 3, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(logvar.grad, 0.5 * eps)
    torch.testing.assert_close(mu.grad, torch.ones(1, 3))


def test_elbo_terms_are_nats_per_example():
    vae = VAE(VAEConfig(**TINY))
    x = torch.bernoulli(torch.rand(6, 1, 28, 28))
    torch.manual_seed(1)
    terms = vae.elbo(x)
    torch.manual_seed(1)
    mu, logvar = vae.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    p = torch.sigmoid(vae.decode(z))
    log_px = (x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)
    torch.testing.assert_close(terms["recon"], -log_px.mean(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(terms["kl"], gaussian_kl(mu, logvar).mean())
    torch.testing.assert_close(terms["elbo"], -(terms["recon"] + terms["kl"]))
    torch.manual_seed(1)
    torch.testing.assert_close(vae.elbo(x, beta=0.0)["loss"], terms["recon"])


def test_beta_weights_only_the_kl_term():
    vae = VAE(VAEConfig(**TINY))
    x = torch.rand(4, 1, 28, 28)
    torch.manual_seed(2)
    a = vae.elbo(x, beta=1.0)
    torch.manual_seed(2)
    b = vae.elbo(x, beta=3.0)
    torch.testing.assert_close(b["loss"] - a["loss"], 2 * a["kl"], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(a["elbo"], b["elbo"])


def test_iwae_bounds_order():
    torch.manual_seed(0)
    vae = VAE(VAEConfig(**TINY))
    x = torch.bernoulli(torch.rand(5, 1, 28, 28))
    many = x.repeat(400, 1, 1, 1)  # 400 independent draws for each image
    elbos = vae.elbo(many)["elbo"]
    iwae1 = -vae.iwae_nll(many, k=1).mean()
    iwae200 = -vae.iwae_nll(x, k=200, chunk=64).mean()
    # k = 1 is the ELBO in expectation; a larger k gives a tighter (higher) bound
    assert abs(iwae1 - elbos) < 0.01 * abs(elbos)
    assert iwae200 > elbos + 1.0


def test_iwae_is_exact_when_the_posterior_is_exact():
    """With a decoder that ignores z, q = prior is the true posterior: every weight is p(x)."""
    vae = VAE(VAEConfig(**TINY))
    with torch.no_grad():
        for p in vae.parameters():
            p.zero_()
    x = torch.bernoulli(torch.full((3, 1, 28, 28), 0.5))
    exact = 784 * math.log(2)  # sigmoid(0) = 0.5 for every pixel
    torch.testing.assert_close(vae.iwae_nll(x, k=7), torch.full((3,), exact))
    torch.testing.assert_close(-vae.elbo(x)["elbo"], torch.tensor(exact))


def test_impute_keeps_observed_pixels():
    vae = VAE(VAEConfig(**TINY))
    x = torch.rand(3, 1, 28, 28)
    mask = torch.zeros(1, 1, 28, 28, dtype=torch.bool)
    mask[..., :14, :] = True
    out = vae.impute(x, mask, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[..., :14, :], x[..., :14, :])
    assert not torch.equal(out[..., 14:, :], x[..., 14:, :])
    again = vae.impute(x, mask, steps=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="mask of shape"):
        vae.impute(x, torch.ones(2, 1, 28, 28, dtype=torch.bool))


def test_conv_widths_on_an_mlp_are_refused():
    with pytest.raises(ValueError, match="channels .* are the widths of arch='conv'"):
        VAEConfig(arch="mlp", channels=(1, 2, 3))


def test_shapes_and_sampling():
    for arch, channels in (("mlp", None), ("conv", (4, 8))):
        vae = VAE(VAEConfig(arch=arch, latent_dim=3, hidden_dims=(16,), channels=channels))
        x = torch.rand(2, 1, 28, 28)
        mu, logvar = vae.encode(x)
        assert mu.shape == logvar.shape == (2, 3)
        assert vae.decode(mu).shape == (2, 1, 28, 28)
        s = vae.sample(5, generator=torch.Generator().manual_seed(0))
        assert s.shape == (5, 1, 28, 28) and s.min() >= 0 and s.max() <= 1
        assert torch.equal(s, vae.sample(5, generator=torch.Generator().manual_seed(0)))
        assert vae.reconstruct(x).shape == (2, 1, 28, 28)


def test_gaussian_likelihood_is_a_normal_log_density():
    vae = VAE(VAEConfig(**TINY, likelihood="gaussian"))
    x, logits = torch.rand(2, 1, 28, 28), torch.randn(2, 1, 28, 28)
    ref = torch.distributions.Normal(torch.sigmoid(logits), vae.log_scale.exp()).log_prob(x)
    torch.testing.assert_close(vae.log_likelihood(x, logits), ref.flatten(1).sum(1))


def test_bad_input():
    vae = VAE(VAEConfig(**TINY))
    with pytest.raises(
        ValueError, match=r"expected images of shape \(B, 1, 28, 28\), got \(2, 28, 28\)"
    ):
        vae.elbo(torch.rand(2, 28, 28))
    with pytest.raises(
        TypeError, match="expected a float tensor.*or uint8 levels, got torch.int64"
    ):
        vae.elbo(torch.zeros(2, 1, 28, 28, dtype=torch.long))
    levels = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)  # 0-255, as load_images
    torch.testing.assert_close(vae.reconstruct(levels), vae.reconstruct(levels / 255.0))
    with pytest.raises(ValueError, match="n must be a positive integer, got 0"):
        vae.sample(0)
    for field, value, message in (
        ("latent_dim", 0, "latent_dim must be > 0"),
        ("arch", "rnn", "arch must be one of"),
        ("likelihood", "poisson", "likelihood must be one of"),
        ("hidden_dims", (0,), "hidden_dims must be"),
    ):
        with pytest.raises(ValueError, match=message):
            VAEConfig(**{**TINY, field: value})
    with pytest.raises(ValueError, match="beta must be >= 0"):
        VAETrainConfig(beta=-1)
    with pytest.raises(ValueError, match="batch_size must be > 0"):
        VAETrainConfig(batch_size=0)


def test_loss_falls_on_real_digits(tmp_path):
    digits = genai.load_images("mnist", "train")  # the 5k real digits (offline)
    batch = digits.subset(
        torch.randperm(len(digits), generator=torch.Generator().manual_seed(0))[:256]
    )
    vae = VAE(VAEConfig(**TINY))
    config = tiny_config(
        tmp_path, max_steps=60, batch_size=64, lr=3e-3, warmup_steps=0, log_every=10, eval_every=60
    )
    summary = train_vae(vae, batch, config, eval_data=batch)
    records = genai.plots.read_metrics(tmp_path / "run" / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < 0.75 * losses[0]
    assert summary["eval"]["loss"] < 300  # nats per digit; an untrained model is ~550


def test_default_precision_is_auto_and_the_test_elbo_is_computed_in_fp32(
    tmp_path, idx_root, monkeypatch
):
    """bf16 where the device has it natively (docs/vae.md, 3 seeds); the evaluation stays fp32."""
    assert VAETrainConfig().precision == "auto"
    assert genai.GANTrainConfig().precision == "fp32"  # the unconditional GAN lost a class in bf16
    seen, original = [], genai.vae.train.evaluate_vae

    def evaluate(*args, **kwargs):
        seen.append(torch.is_autocast_enabled("cpu"))
        return original(*args, **kwargs)

    monkeypatch.setattr(genai.vae.train, "evaluate_vae", evaluate)
    data = genai.load_images("mnist", "train", root=idx_root)
    summary = train_vae(VAE(VAEConfig(**TINY)), data, tiny_config(tmp_path, precision="bf16"), data)
    assert seen == [False, False] and math.isfinite(summary["eval"]["loss"])


def test_train_step_changes_params_and_eval_does_not(tmp_path, idx_root):
    data = genai.load_images("mnist", "train", root=idx_root)
    vae = VAE(VAEConfig(**TINY))
    task = VAETask(vae, data, tiny_config(tmp_path), eval_data=data)
    batches = task.setup(torch.device("cpu"))
    trainer = Trainer(task.config, torch.device("cpu"), task.configure_optimizers())
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with torch.no_grad():
        task.evaluate()
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    task.train_step(batches.get(0), 0, trainer)
    assert all(not torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert all(p.grad is None for p in vae.parameters())  # cleared with set_to_none


def test_kl_warmup_ramps_the_weight(tmp_path, idx_root):
    data = genai.load_images("mnist", "train", root=idx_root)
    task = VAETask(
        VAE(VAEConfig(**TINY)), data, tiny_config(tmp_path, kl_warmup_steps=4, beta=2.0), None
    )
    assert [task.kl_weight(s) for s in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]


@pytest.mark.parametrize("scale", [1.0, 30.0, 200.0])
def test_bernoulli_log_prob_and_its_gradient_match_torch(scale):
    logits = (torch.randn(64, 784, dtype=torch.float64) * scale).requires_grad_()
    x = torch.rand(64, 784, dtype=torch.float64)
    x[:8] = x[:8].round()  # binary pixels too
    ours = bernoulli_log_prob(logits, x)
    ref = -F.binary_cross_entropy_with_logits(logits, x, reduction="none")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g = torch.randn_like(x)
    (d_ours,) = torch.autograd.grad(ours, logits, g)
    (d_ref,) = torch.autograd.grad(ref, logits, g)
    torch.testing.assert_close(d_ours, d_ref, rtol=1e-12, atol=1e-12)
    # fp32: within a few fp32 ulps of the float64 reference, per pixel and per image sum
    ours32 = bernoulli_log_prob(logits.detach().float(), x.float())
    torch.testing.assert_close(ours32.double(), ref.detach(), rtol=1e-6, atol=2e-6 * scale)
