"""The diffusion model at the level of its math: the forward process, the parameterizations, the
bound, the samplers against analytic toys, guidance, RePaint, EMA, resume, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import genai
from genai.diffusion import (
    Diffusion,
    DiffusionConfig,
    DiffusionTrainConfig,
    ddpm,
    flow,
    train_diffusion,
)
from genai.diffusion.model import ema_decay_at

TINY = {
    "image_shape": (1, 8, 8),
    "base_width": 8,
    "channel_mults": (1, 2),
    "timesteps": 50,
    "sample_steps": 4,
}


def tiny_model(**kw) -> Diffusion:
    return Diffusion(DiffusionConfig(**{**TINY, **kw}))


def randomized(model: Diffusion) -> Diffusion:
    """Random weights everywhere (the zero-initialized output would hide every difference)."""
    with torch.no_grad():
        for p in model.net.parameters():
            p.normal_(0.0, 0.1)
        model.ema.load_state_dict(model.net.state_dict())
    return model


def tiny_data(n: int = 32) -> genai.data.images.ImageDataset:
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 8, 8), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 3
    return genai.load_images(images, labels=labels, class_names=["a", "b", "c"])


def tiny_train(tmp_path, **kw) -> DiffusionTrainConfig:
    base = {
        "out_dir": str(tmp_path / "run"),
        "max_steps": 4,
        "batch_size": 8,
        "device": "cpu",
        "progress": False,
        "lr_schedule": "constant",
        "warmup_steps": 0,
        "checkpoint_every": 2,
        "sample_every": 1000,
        "eval_every": 1000,
        "n_grid": 2,
        "grid_steps": 2,
        "log_every": 2,
    }
    return DiffusionTrainConfig(**{**base, **kw})


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- analytic toys: Gaussian data, whose optimal predictors are known ----------------------------

M, S = 0.1, 0.3  # data x_0 ~ N(M, S^2) per dimension


def exact_eps(process: ddpm.GaussianDiffusion):
    """E[eps | x_t] for Gaussian data: sqrt(1 - abar) (x_t - sqrt(abar) M) / Var(x_t)."""

    def fn(xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = process.alpha_bar[t].to(xt.dtype).view(-1, *([1] * (xt.dim() - 1)))
        var = ab * S**2 + 1 - ab
        return (1 - ab).sqrt() * (xt - ab.sqrt() * M) / var

    return fn


def exact_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[eps - x_0 | x_t] for the straight path from N(M, S^2) (t = 0) to N(0, 1) (t = 1)."""
    t = t.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    var = (1 - t) ** 2 * S**2 + t**2
    return -M + (t - (1 - t) * S**2) / var * (x - (1 - t) * M)


# ---- the forward process and the parameterizations --------------------------------------------


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_closed_form_q_matches_the_iterated_chain(schedule):
    process = ddpm.GaussianDiffusion(ddpm.make_betas(schedule, 100))
    x0 = torch.tensor([-0.8, 0.0, 0.6], dtype=torch.float64)
    n = 100_000
    x = x0.expand(n, 3).clone()
    gen = torch.Generator().manual_seed(0)
    for i in range(100):
        beta = process.betas[i]
        x = (1 - beta).sqrt() * x + beta.sqrt() * torch.randn(x.shape, dtype=x.dtype, generator=gen)
        if i in (0, 9, 49, 99):
            ab = process.alpha_bar[i]
            mean_se = (1 - ab).sqrt() / math.sqrt(n)
            assert torch.allclose(x.mean(0), ab.sqrt() * x0, atol=5 * float(mean_se))
            assert torch.allclose(x.var(0), (1 - ab).expand(3), rtol=0.02)
            t = torch.full((n,), i)
            closed = process.q_sample(x0.expand(n, 3), t, torch.randn(n, 3, dtype=x.dtype))
            assert torch.allclose(closed.mean(0), x.mean(0), atol=10 * float(mean_se))
            assert torch.allclose(closed.var(0), x.var(0), rtol=0.03)


def test_schedules():
    lin, cos = ddpm.linear_betas(1000), ddpm.cosine_betas(1000)
    assert lin[0] == pytest.approx(1e-4) and lin[-1] == pytest.approx(0.02)
    assert torch.allclose(ddpm.linear_betas(500)[[0, -1]], torch.tensor([2e-4, 0.04]).double())
    ab = torch.cumprod(1 - cos, 0)
    f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert float(ab[499]) == pytest.approx(f(0.5) / f(0.0), rel=1e-9)
    assert bool((cos > 0).all() and (cos <= 0.999).all())


@pytest.mark.parametrize("prediction", ["eps", "v", "x0"])
def test_parameterizations_convert_exactly(prediction):
    process = ddpm.GaussianDiffusion(ddpm.cosine_betas(1000), prediction)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.rand(16, 2, 3, 3, dtype=torch.float64, generator=gen) * 2 - 1
    eps = torch.randn(16, 2, 3, 3, dtype=torch.float64, generator=gen)
    t = torch.randint(1000, (16,), generator=gen)
    xt = process.q_sample(x0, t, eps)
    v = process.v_target(x0, t, eps)
    assert torch.allclose(process.eps_to_x0(xt, t, eps), x0, atol=1e-9)
    assert torch.allclose(process.x0_to_eps(xt, t, x0), eps, atol=1e-9)
    assert torch.allclose(process.v_to_x0(xt, t, v), x0, atol=1e-12)
    assert torch.allclose(process.v_to_eps(xt, t, v), eps, atol=1e-12)
    out = process.target(x0, t, eps)  # what the net is trained to output
    x0_hat, eps_hat = process.to_x0_eps(xt, t, out)
    assert torch.allclose(x0_hat, x0, atol=1e-9) and torch.allclose(eps_hat, eps, atol=1e-9)


def test_posterior_is_the_forward_chain_reversed():
    """q(x_{t-1} | x_t, x_0) from eq. 7 equals Bayes on two Gaussians, at every t."""
    process = ddpm.GaussianDiffusion(ddpm.cosine_betas(100))
    x0, xt = torch.tensor([0.3]).double(), torch.tensor([-0.2]).double()
    for i in (1, 10, 99):
        t = torch.tensor([i])
        mean, var = process.q_posterior(x0, xt, t)
        ab_prev, beta = process.alpha_bar[i - 1], process.betas[i]
        # prior N(sqrt(ab_prev) x0, 1 - ab_prev) times likelihood N(x_t; sqrt(1 - beta) x, beta)
        precision = 1 / (1 - ab_prev) + (1 - beta) / beta
        expected = (ab_prev.sqrt() * x0 / (1 - ab_prev) + (1 - beta).sqrt() * xt / beta) / precision
        assert torch.allclose(var, 1 / precision) and torch.allclose(mean, expected)


# ---- the variational bound ---------------------------------------------------------------------


def test_bound_is_above_the_true_nll_and_its_terms_add_up():
    """Pixels iid from a discretized Gaussian on the 256-level grid: the entropy H is exact, and
    E[bound] >= E[-log p_theta] >= H for any model, here the exact-Gaussian denoiser."""
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    edges = torch.cat(
        [torch.tensor([-math.inf]), (levels[1:] + levels[:-1]) / 2, torch.tensor([math.inf])]
    )
    cdf = 0.5 * (1 + torch.erf((edges - M) / (S * math.sqrt(2))))
    p = (cdf[1:] - cdf[:-1]).clamp(min=1e-300)
    entropy = float(-(p * p.log()).sum())  # nats per dimension
    gen = torch.Generator().manual_seed(0)
    n, d = 4000, 4
    x0 = levels[torch.multinomial(p, n * d, replacement=True, generator=gen)].view(n, d)
    process = ddpm.GaussianDiffusion(ddpm.cosine_betas(200))
    terms = process.bound_terms(exact_eps(process), x0, generator=gen)
    total = terms["total"] / d  # nats per dimension
    se = float(total.std()) / math.sqrt(n)
    assert float(total.mean()) >= entropy - 4 * se
    # not tight with a fixed reverse variance on discrete data: the first few terms and L_0 hold
    # most of the gap (Ho et al. sec. 4.3; learned variances close it, Nichol & Dhariwal)
    assert float(total.mean()) - entropy < 1.0
    assert torch.allclose(terms["total"], terms["prior"] + terms["diffusion"] + terms["decoder"])
    assert torch.allclose(terms["diffusion"], terms["terms"][:, 1:].sum(1))
    assert torch.allclose(terms["decoder"], terms["terms"][:, 0])
    assert bool((terms["terms"][:, 1:] >= 0).all() and (terms["prior"] >= 0).all())
    strata = process.bound_terms(exact_eps(process), x0, strata=20, generator=gen)["total"] / d
    assert float(strata.mean()) == pytest.approx(float(total.mean()), abs=0.02)  # unbiased


def test_discretized_decoder_sums_to_one_over_the_grid():
    levels = torch.linspace(-1, 1, 256, dtype=torch.float64)
    for mean, log_scale in ((0.0, -3.0), (0.97, -5.0), (-1.3, -1.0)):
        log_p = ddpm.discretized_gaussian_log_likelihood(
            levels, torch.tensor(mean).double(), torch.tensor(log_scale).double()
        )
        assert float(log_p.exp().sum()) == pytest.approx(1.0, abs=1e-9)


def test_model_bits_per_dim_is_the_bound_over_d_ln2():
    model = randomized(tiny_model())
    x = torch.rand(3, 1, 8, 8)
    gen = torch.Generator().manual_seed(0)
    nats = model.vlb(x, generator=gen)["total"]
    bits = model.bits_per_dim(x, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(bits, (nats / (64 * math.log(2))).float())
    assert bool((bits > 0).all())


# ---- the samplers --------------------------------------------------------------------------------


def test_ddim_eta_1_is_ancestral_ddpm_and_both_reach_the_data():
    process = ddpm.GaussianDiffusion(ddpm.cosine_betas(1000))
    fn = exact_eps(process)
    n = 20_000
    x_t = torch.randn(n, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    a = process.ddpm_sample(fn, x_t, 20, torch.Generator().manual_seed(0), clip=False)
    b = process.ddim_sample(fn, x_t, 20, 1.0, torch.Generator().manual_seed(0), clip=False)
    assert torch.allclose(a, b, atol=1e-8)  # one process: the same draws give the same samples
    # in distribution: over the full chain (fewer steps under-disperse, with either sampler)
    full_ddpm = process.ddpm_sample(fn, x_t, None, torch.Generator().manual_seed(2), clip=False)
    full_ddim = process.ddim_sample(
        fn, x_t, 1000, 1.0, torch.Generator().manual_seed(3), clip=False
    )
    for samples in (full_ddpm, full_ddim):
        assert float(samples.mean()) == pytest.approx(M, abs=0.005)
        assert float(samples.std()) == pytest.approx(S, rel=0.02)
    assert float(full_ddpm.std()) == pytest.approx(float(full_ddim.std()), rel=0.01)
    assert not torch.allclose(full_ddpm, full_ddim)


def test_timestep_subsequence_starts_from_pure_noise():
    assert ddpm.timestep_subsequence(1000, 1) == [999]
    assert ddpm.timestep_subsequence(1000, 4) == [249, 499, 749, 999]
    assert ddpm.timestep_subsequence(50, 80) == list(range(50))


def test_ddim_eta_0_is_deterministic_given_the_seed():
    process = ddpm.GaussianDiffusion(ddpm.cosine_betas(1000))
    fn = exact_eps(process)
    x_t = torch.randn(5000, 1, dtype=torch.float64)
    a = process.ddim_sample(fn, x_t, 1000, 0.0, torch.Generator().manual_seed(0), clip=False)
    b = process.ddim_sample(fn, x_t, 1000, 0.0, torch.Generator().manual_seed(9), clip=False)
    assert torch.equal(a, b)  # no randomness after x_T
    assert float(a.std()) == pytest.approx(S, rel=0.02)  # the probability-flow ODE's endpoint
    model = randomized(tiny_model())
    assert torch.equal(model.sample(4, seed=3), model.sample(4, seed=3))
    assert not torch.equal(model.sample(4, seed=3), model.sample(4, seed=4))


def test_flow_samplers_integrate_an_analytic_field_heun_better():
    z = torch.randn(1000, 3, dtype=torch.float64)
    exact = M + S * z  # the ODE maps the noise quantile to the data quantile
    errors = {}
    for sampler in flow.SAMPLERS:
        for steps in (5, 20):
            x = flow.sample(exact_velocity, z, steps, sampler)
            errors[sampler, steps] = float((x - exact).abs().max())
    assert errors["heun", 5] < errors["euler", 5] / 5
    assert errors["heun", 20] < errors["euler", 20] / 5
    # first order: 4x the steps, about 1/4 the error; second order: nearer 1/16
    assert errors["euler", 20] < errors["euler", 5] / 3
    assert errors["heun", 20] < errors["heun", 5] / 6 and errors["heun", 20] < 0.01


def test_flow_interpolation_and_target():
    x0, noise, t = torch.randn(4, 3), torch.randn(4, 3), torch.rand(4)
    xt = flow.interpolate(x0, noise, t)
    assert torch.allclose(xt, (1 - t[:, None]) * x0 + t[:, None] * noise)
    h = 1e-3
    deriv = (flow.interpolate(x0, noise, t + h) - flow.interpolate(x0, noise, t - h)) / (2 * h)
    assert torch.allclose(deriv, flow.velocity_target(x0, noise), atol=1e-3)


# ---- guidance and label dropout --------------------------------------------------------------


def test_guidance_zero_is_the_conditional_model():
    model = randomized(tiny_model(num_classes=3))
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([0, 10, 20, 49])
    labels = torch.tensor([0, 1, 2, 1])
    time = (t.float() + 1) / 50
    cond = model.ema(x, time, labels)
    uncond = model.ema(x, time, torch.full((4,), 3))
    assert torch.equal(model.model_fn(labels, 0.0)(x, t), cond)
    guided = model.model_fn(labels, 2.0)(x, t)
    assert torch.allclose(guided, cond + 2.0 * (cond - uncond), atol=1e-5)
    gen = torch.Generator().manual_seed(0)
    expected = model.process.ddim_sample(
        lambda x, t: model.ema(x, (t.float() + 1) / 50, labels),
        torch.randn(4, 1, 8, 8, generator=gen),
        4,
    )
    got = model.sample(4, labels=labels, guidance=0, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(got, ((expected + 1) / 2).clamp(0, 1))


def test_label_dropout_hits_the_null_class_at_the_set_rate():
    model = tiny_model(num_classes=10, cond_dropout=0.2)
    labels = torch.randint(10, (100_000,))
    dropped = model.drop_labels(labels)
    null = dropped == 10
    assert float(null.float().mean()) == pytest.approx(0.2, abs=4 * math.sqrt(0.16 / 1e5))
    assert torch.equal(dropped[~null], labels[~null])


def test_labels_by_name_and_index():
    model = randomized(tiny_model(num_classes=3, class_names=("a", "b", "c")))
    assert model.as_labels(2, "c").tolist() == [2, 2]
    assert model.as_labels(3, ["a", 1, np.int64(2)]).tolist() == [0, 1, 2]
    by_name = model.sample(2, labels="b", seed=0)
    assert torch.equal(by_name, model.sample(2, labels=1, seed=0))


# ---- impute ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("objective", "sampler"), [("ddpm", "ddim"), ("ddpm", "ddpm"), ("flow", "euler")]
)
def test_impute_never_changes_observed_pixels(objective, sampler):
    model = randomized(tiny_model(objective=objective, sampler=sampler, num_classes=3))
    x = torch.rand(3, 1, 8, 8)
    mask = torch.rand(3, 1, 8, 8) > 0.5
    out = model.impute(x, mask, steps=3, resample=2, seed=0, labels=[0, 1, 2])
    assert out.shape == x.shape and torch.equal(out[mask], x[mask])
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(out[~mask], x[~mask])
    garbage = torch.where(mask, x, torch.full_like(x, 7.0))  # missing pixels may hold anything
    assert torch.equal(
        model.impute(garbage, mask, steps=3, seed=0, labels=[0, 1, 2])[mask], x[mask]
    )


# ---- EMA, save/load, resume ----------------------------------------------------------------------


def test_ema_updates_is_saved_and_restored_on_resume(tmp_path):
    torch.manual_seed(0)
    model = tiny_model(num_classes=3, ema_decay=0.9)
    initial = snapshot(model.ema)
    train_diffusion(model, tiny_data(), tiny_train(tmp_path / "a"))
    # updates: the EMA moved away from the initialization, and lags the trained net
    assert not same(snapshot(model.ema), initial)
    assert not same(snapshot(model.ema), snapshot(model.net))
    assert ema_decay_at(0.9, 0) == pytest.approx(0.1) and ema_decay_at(0.9, 1000) == 0.9
    # saved: model.safetensors holds it, and a save_pretrained/from_pretrained round trip keeps it
    loaded = genai.load(tmp_path / "a" / "run")
    assert same(snapshot(loaded.ema), snapshot(model.ema))
    model.save_pretrained(tmp_path / "saved")
    again = Diffusion.from_pretrained(tmp_path / "saved", device="cpu")
    assert same(snapshot(again), snapshot(model)) and again.config == model.config
    assert torch.equal(again.sample(3, seed=0), model.eval().sample(3, seed=0))
    # restored on resume: split by resume equals uninterrupted, EMA included, bit for bit
    torch.manual_seed(0)
    part = tiny_model(num_classes=3, ema_decay=0.9)
    train_diffusion(part, tiny_data(), tiny_train(tmp_path / "b", max_steps=2))
    resumed = tiny_model(num_classes=3, ema_decay=0.9)  # other weights: resume restores them all
    train_diffusion(resumed, tiny_data(), tiny_train(tmp_path / "b", resume=True))
    assert same(snapshot(resumed), snapshot(model))
    assert not same(snapshot(part.ema), snapshot(model.ema))


@pytest.mark.parametrize("objective", ["ddpm", "flow"])
def test_training_lowers_the_loss_and_writes_grids_and_eval(tmp_path, objective):
    torch.manual_seed(0)
    model = tiny_model(num_classes=3, objective=objective)
    data = tiny_data(64)
    config = tiny_train(tmp_path, max_steps=6, eval_every=6, sample_every=6, lr=3e-3)
    summary = train_diffusion(model, data, config, eval_data=tiny_data(16))
    assert model.config.class_names == ("a", "b", "c")
    assert sorted((tmp_path / "run" / "samples").glob("*.png"))
    assert "loss" in summary["eval"]
    assert ("bits_per_dim" in summary["eval"]) == (objective == "ddpm")
    lines = genai.plots.read_metrics(tmp_path / "run" / "metrics.jsonl")
    train = [r["loss"] for r in lines if r["split"] == "train"]
    assert train[-1] < train[0]


def test_default_precision_is_auto_and_only_the_training_forward_is_autocast(tmp_path, monkeypatch):
    """bf16 where the device has it natively (docs/diffusion.md, 3 seeds); the bound's
    evaluation and the sample grids stay fp32."""
    assert DiffusionTrainConfig().precision == "auto"
    seen = {"net": set(), "evaluate": [], "sample": []}
    model = tiny_model(num_classes=3)
    model.net.register_forward_pre_hook(
        lambda *_: seen["net"].add(torch.is_autocast_enabled("cpu"))
    )
    evaluate, sample = genai.diffusion.train.evaluate_diffusion, model.sample

    def spy(name, fn):
        def wrapped(*args, **kwargs):
            seen[name].append(torch.is_autocast_enabled("cpu"))
            return fn(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(genai.diffusion.train, "evaluate_diffusion", spy("evaluate", evaluate))
    monkeypatch.setattr(model, "sample", spy("sample", sample))
    config = tiny_train(tmp_path, precision="bf16", eval_every=4, sample_every=4)
    summary = train_diffusion(model, tiny_data(), config, eval_data=tiny_data(8))
    assert seen["evaluate"] == [False] and seen["sample"] == [False]
    assert True in seen["net"]  # the training steps ran under autocast
    assert math.isfinite(summary["eval"]["bits_per_dim"])


def test_unet_sizes_and_default_levels():
    from genai.diffusion.unet import UNet, default_channel_mults

    assert default_channel_mults((1, 28, 28)) == (1, 2, 4)
    assert default_channel_mults((3, 32, 32)) == (1, 2, 4, 4)
    assert default_channel_mults((3, 64, 64)) == (1, 2, 4, 4)
    for shape in ((1, 28, 28), (3, 32, 32), (3, 64, 64), (3, 12, 20)):
        net = UNet(shape, 8, default_channel_mults(shape), 1, 8, 5)
        assert net(torch.randn(2, *shape), torch.rand(2), torch.tensor([0, 5])).shape == (2, *shape)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


# ---- bad input: one line, naming the argument ------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda m: m.sample(2, steps=0), "steps"),
        (lambda m: m.sample(0), "n"),
        (lambda m: m.sample(2, labels="eleven"), "labels"),
        (lambda m: m.sample(2, labels=[0, 5]), "labels"),
        (lambda m: m.sample(2, labels=[0, 1, 2]), "labels"),
        (lambda m: m.sample(2, guidance=float("nan")), "guidance"),
        (lambda m: m.sample(2, guidance=-1.0), "guidance"),
        (lambda m: m.sample(2, sampler="euler"), "sampler"),
        (lambda m: m.impute(torch.rand(2, 1, 9, 9), torch.ones(2, 1, 9, 9, dtype=bool)), "images"),
        (lambda m: m.impute(torch.rand(2, 1, 8, 8), torch.ones(3, 1, 8, 8, dtype=bool)), "mask"),
        (lambda m: m.impute(torch.rand(2, 1, 8, 8), torch.ones(2, 1, 8, 8), steps=0), "steps"),
        (lambda m: m.bits_per_dim(torch.rand(2, 8, 8)), "images"),
        (lambda m: m.bits_per_dim(torch.rand(2, 1, 8, 8) * 3), "images"),
        (lambda m: DiffusionConfig(objective="score"), "objective"),
        (lambda m: DiffusionConfig(channel_mults=(1, 2, 2, 2, 2)), "channel_mults"),
        (lambda m: DiffusionConfig(objective="flow", sampler="ddim"), "sampler"),
    ],
)
def test_bad_input_is_one_line_naming_the_argument(call, name):
    model = tiny_model(num_classes=3, class_names=("a", "b", "c"))
    with pytest.raises((ValueError, TypeError)) as info:
        call(model)
    message = str(info.value)
    assert "\n" not in message and name in message, message


def test_unconditional_model_refuses_labels_and_guidance():
    model = tiny_model()
    with pytest.raises(ValueError, match="labels"):
        model.sample(2, labels=1)
    with pytest.raises(ValueError, match="guidance"):
        model.sample(2, guidance=1.0)
    assert model.sample(2, steps=2).shape == (2, 1, 8, 8)


def test_the_cli_trains_samples_and_evaluates_a_diffusion_run(tmp_path, idx_root, capsys):
    """One registry line gives the kind `genai train`, `sample` (its own --steps), `eval`."""
    from genai.cli import main

    run = tmp_path / "run"
    tiny = ["--base-width", "8", "--channel-mults", "1", "2", "--timesteps", "20"]
    argv = ["-q", "train", "diffusion", "--root", str(idx_root), "--num-classes", "10", *tiny]
    argv += ["--max-steps", "4", "--batch-size", "16", "--eval-images", "8", "--n-grid", "2"]
    argv += ["--grid-steps", "2", "--eval-strata", "2", "--device", "cpu", "--out-dir", str(run)]
    assert main(argv) == 0
    assert genai.Run(run).kind.name == "diffusion" and genai.Run(run).step == 4
    out = str(tmp_path / "sevens.png")
    sample = ["-q", "sample", str(run), "--label", "7", "--steps", "3", "--n", "4", "--out", out]
    assert main(sample) == 0 and (tmp_path / "sevens.png").exists()
    capsys.readouterr()
    assert main([*sample[:-1], str(tmp_path / "x.png"), "--steps", "0"]) == 2
    assert "steps must be > 0, got 0" in capsys.readouterr().err
    ev = ["-q", "eval", str(run), "--n", "8", "--samples", "10", "--classifier-steps", "2"]
    assert main([*ev, "--no-inception", "--batch-size", "8"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["kind"] == "diffusion" and result["bits_per_dim"] > 0
    assert {"fid", "conditional_accuracy", "classes_covered"} <= set(result)


def test_sample_flags_of_another_kind_are_refused(tmp_path, idx_root, capsys):
    from genai.cli import main

    run = tmp_path / "gan"
    argv = ["-q", "train", "gan", "--root", str(idx_root), "--arch", "mlp", "--g-width", "8"]
    argv += ["--d-width", "8", "--latent-dim", "4", "--max-steps", "2", "--batch-size", "16"]
    assert main([*argv, "--device", "cpu", "--out-dir", str(run)]) == 0
    capsys.readouterr()
    out = str(tmp_path / "g.png")
    assert main(["-q", "sample", str(run), "--steps", "5", "--out", out]) == 2
    assert "--steps is an option of diffusion runs" in capsys.readouterr().err
