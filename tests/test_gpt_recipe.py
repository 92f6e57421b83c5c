"""The GPT's layout options, Muon, the WSD schedule, the "modern" recipe and the static KV cache."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_gpt import train_config  # one tiny training config for the GPT tests

from genai.cli import main
from genai.data.text import CharTokenizer, TokenBatches
from genai.gpt.decoding import KVCache
from genai.gpt.model import GPT, GPTConfig, Rotary, swiglu_width
from genai.gpt.train import GPTTask, GPTTrainConfig, muon_momentum, train_gpt
from genai.optim import make_muon, muon_params
from genai.training.engine import TrainConfig, lr_factor

TEXT = "ROMEO: the cat sat on the mat. JULIET: a dog ran in the fog.\n" * 20

# Each option alone, and all of them together (the modern recipe's layout).
OPTIONS = [
    {},
    {"pos_emb": "rope"},
    {"norm": "rmsnorm"},
    {"qk_norm": True},
    {"mlp": "relu2"},
    {"mlp": "swiglu"},
    {"tie_weights": False},
    {"zero_init": True, "tie_weights": False},
    {"logit_softcap": 2.0},
    {
        "pos_emb": "rope",
        "norm": "rmsnorm",
        "qk_norm": True,
        "mlp": "relu2",
        "tie_weights": False,
        "logit_softcap": 2.0,
    },
]
IDS = [",".join(f"{k}={v}" for k, v in o.items()) or "gpt2" for o in OPTIONS]


def tiny(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=False)
    model = GPT(GPTConfig(**{**fields, **overrides})).eval()
    with torch.no_grad():  # zero-initialized weights would make every token tie
        for p in model.parameters():
            if p.dim() == 2 and not p.any():
                p.normal_(0.0, 0.3)
    return model


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
@pytest.mark.parametrize("static", [False, True])
def test_cached_greedy_equals_uncached_past_block_size(options, static):
    model = tiny(**options).double()
    idx = torch.randint(0, 13, (2, 5))
    for shift in (1, 3):
        cached = model.generate(idx, 30, temperature=0, window_shift=shift, static_cache=static)
        uncached = model.generate(idx, 30, temperature=0, use_cache=False, window_shift=shift)
        assert torch.equal(cached, uncached)


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
@pytest.mark.parametrize("static", [False, True])
def test_cache_continues_a_sequence_chunk_by_chunk(options, static):
    model = tiny(**options)
    idx = torch.randint(0, 13, (2, 8))
    cache = KVCache(model.config, 2, torch.device("cpu"), torch.float32, static=static)
    chunks = [model._hidden(idx[:, a:b], cache) for a, b in ((0, 3), (3, 4), (4, 8))]
    assert int(cache.length) == 8
    torch.testing.assert_close(torch.cat(chunks, dim=1), model._hidden(idx))


@pytest.mark.parametrize("options", OPTIONS, ids=IDS)
def test_every_option_is_causal(options):
    model = tiny(**options)
    idx = torch.randint(0, 13, (2, 8))
    for t in range(8):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 13
        a, b = model(idx)[0], model(changed)[0]
        torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t:], b[:, t:])


def test_static_cache_decode_step_keeps_its_buffers_and_shapes():
    model = tiny(pos_emb="rope")
    idx = torch.randint(0, 13, (1, 3))
    cache = model.new_cache(idx, static=True)
    buffers = [k.data_ptr() for k in cache.k]
    length = cache.length
    model._next_logits(idx, cache)
    logits = model.decode_step(idx[:, :1], cache)
    assert logits.shape == (1, 13)
    assert cache.length is length and int(length) == 4
    assert [k.data_ptr() for k in cache.k] == buffers
    torch.testing.assert_close(logits, model(torch.cat([idx, idx[:, :1]], 1))[0][:, -1])


def test_gpt2_layout_has_the_same_parameters_as_before():
    names = [n for n, _ in tiny().named_parameters()]
    assert "transformer.wpe.weight" in names and "lm_head.weight" not in names  # tied
    assert tiny().config.non_gpt2_options() == []


def test_rope_scores_depend_only_on_the_distance():
    rotary = Rotary(8, 32)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(i: int, j: int) -> torch.Tensor:
        return (rotary(q, torch.tensor([i])) * rotary(k, torch.tensor([j]))).sum()

    torch.testing.assert_close(score(5, 2), score(20, 17))
    torch.testing.assert_close(score(0, 0), (q * k).sum())
    assert not torch.allclose(score(5, 2), score(5, 3))
    rotated = rotary(q, torch.tensor([7]))
    torch.testing.assert_close(rotated.norm(), q.norm())  # a rotation
    model = tiny(pos_emb="rope")
    assert "wpe" not in model.transformer


def test_mlp_variants_compute_their_formulas():
    x = torch.randn(2, 3, 16)
    relu2 = tiny(mlp="relu2").transformer.h[0].mlp
    torch.testing.assert_close(relu2(x), relu2.c_proj(F.relu(relu2.c_fc(x)) ** 2))
    swiglu = tiny(mlp="swiglu").transformer.h[0].mlp
    hidden = swiglu_width(16)
    assert hidden == 48 and swiglu.c_fc.out_features == 2 * hidden
    w_gate, w_value = swiglu.c_fc.weight[:hidden], swiglu.c_fc.weight[hidden:]
    torch.testing.assert_close(swiglu(x), swiglu.c_proj(F.silu(x @ w_gate.T) * (x @ w_value.T)))


def test_qk_norm_and_rmsnorm_normalize():
    model = tiny(norm="rmsnorm", qk_norm=True)
    ln = model.transformer.h[0].ln_1
    assert isinstance(ln, torch.nn.RMSNorm)
    x = torch.randn(2, 3, 16)
    torch.testing.assert_close(ln(x), x / x.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
    attn = model.transformer.h[0].attn
    q, k, v = attn.c_attn(x).split(16, dim=2)
    q, k, v = (t.view(2, 3, 2, 8).transpose(1, 2) for t in (q, k, v))
    q, k = (
        t / t.pow(2).mean(-1, keepdim=True).add(torch.finfo(t.dtype).eps).sqrt() for t in (q, k)
    )
    y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(attn(x), attn.c_proj(y.transpose(1, 2).reshape(2, 3, 16)))


def test_softcap_bounds_the_logits_and_is_tanh():
    model = tiny(logit_softcap=2.0)
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # raw logits well past the cap
    idx = torch.randint(0, 13, (2, 8))
    logits = model(idx)[0]
    raw = model.lm_head(model._hidden(idx))
    torch.testing.assert_close(logits, 2.0 * torch.tanh(raw / 2.0))
    assert logits.abs().max() <= 2.0 and raw.abs().max() > 3.0


def test_zero_init_starts_at_the_uniform_distribution():
    torch.manual_seed(0)
    model = GPT(
        GPTConfig(
            vocab_size=13,
            block_size=8,
            n_layer=2,
            n_head=2,
            n_embd=16,
            zero_init=True,
            tie_weights=False,
        )
    )
    zeros = [n for n, p in model.named_parameters() if p.dim() == 2 and not p.any()]
    assert sorted(zeros) == sorted(
        ["lm_head.weight"]
        + [f"transformer.h.{i}.{m}.c_proj.weight" for i in range(2) for m in ("attn", "mlp")]
    )
    idx = torch.randint(0, 13, (2, 8))
    assert model(idx, idx)[1].item() == pytest.approx(math.log(13))


def test_untied_head_has_its_own_weights():
    model = tiny(tie_weights=False)
    assert model.lm_head.weight is not model.transformer.wte.weight
    assert not torch.equal(model.lm_head.weight, model.transformer.wte.weight)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"pos_emb": "rope"}, "pos_emb='rope'"),
        ({"mlp": "swiglu", "qk_norm": True}, "qk_norm=True, mlp='swiglu'"),
        ({"logit_softcap": 30.0}, "logit_softcap=30.0"),
        ({"norm": "rmsnorm"}, "norm='rmsnorm'"),
    ],
)
def test_huggingface_export_names_the_option_that_prevents_it(options, named):
    with pytest.raises(ValueError, match=f"GPT-2's layout [(]this model has {named}[)]"):
        tiny(**options).to_huggingface()


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("pos_emb", "alibi", "pos_emb must be one of"),
        ("norm", "batchnorm", "norm must be one of"),
        ("mlp", "gelu2", "mlp must be one of"),
        ("logit_softcap", -1.0, "logit_softcap must be >= 0"),
    ],
)
def test_config_rejects_unknown_options(field, value, match):
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{field: value})


def test_rope_needs_an_even_head_size():
    with pytest.raises(ValueError, match="even head size"):
        GPTConfig(n_embd=12, n_head=4, pos_emb="rope")


def test_recipes_set_their_fields_and_take_overrides():
    model = GPTConfig.recipe("modern", n_layer=3, logit_softcap=0.0)
    assert (model.pos_emb, model.mlp, model.n_layer, model.logit_softcap) == ("rope", "relu2", 3, 0)
    assert GPTConfig.recipe("gpt2") == GPTConfig()
    train = GPTTrainConfig.recipe("modern", max_steps=7)
    assert (train.optimizer, train.lr_schedule, train.max_steps) == ("muon", "wsd", 7)
    assert GPTTrainConfig.recipe("gpt2") == GPTTrainConfig()
    for cls in (GPTConfig, GPTTrainConfig):
        with pytest.raises(ValueError, match="unknown recipe 'fast': expected one of gpt2, modern"):
            cls.recipe("fast")


def test_wsd_schedule_is_flat_then_linear_to_the_floor():
    config = TrainConfig(
        max_steps=100, warmup_steps=10, lr_schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0
    )
    factors = [lr_factor(s, 100, config) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    assert factors[10:80] == [1.0] * 70
    assert factors[80:] == pytest.approx([1 - (s + 1) / 20 for s in range(20)])
    with pytest.raises(ValueError, match="decay_fraction must be in"):
        TrainConfig(decay_fraction=0.0)


def test_muon_momentum_warms_up_linearly():
    config = GPTTrainConfig(muon_momentum=0.95, muon_momentum_warmup=100)
    assert muon_momentum(0, config) == pytest.approx(0.85)
    assert muon_momentum(50, config) == pytest.approx(0.90)
    assert muon_momentum(100, config) == muon_momentum(500, config) == pytest.approx(0.95)
    assert muon_momentum(0, GPTTrainConfig(muon_momentum_warmup=0)) == pytest.approx(0.95)


def _muon_task(tmp_path: Path, **overrides) -> tuple[GPT, GPTTask]:
    tok = CharTokenizer.from_text(TEXT)
    model = tiny(vocab_size=tok.vocab_size, tie_weights=False, bias=True)
    config = train_config(tmp_path, "muon", optimizer="muon", **overrides)
    task = GPTTask(model, torch.tensor(tok.encode(TEXT)), tok, config, "t")
    task.setup(torch.device("cpu"))
    return model, task


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(tmp_path):
    model, task = _muon_task(tmp_path, weight_decay=0.1)
    optimizers = task.configure_optimizers()
    assert isinstance(optimizers["muon"], torch.optim.Muon)
    assert isinstance(optimizers["adamw"], torch.optim.AdamW)
    muon = {id(p) for g in optimizers["muon"].param_groups for p in g["params"]}
    adamw = {
        id(p): g["weight_decay"] for g in optimizers["adamw"].param_groups for p in g["params"]
    }
    for name, p in model.named_parameters():
        hidden = name.startswith("transformer.h.") and p.dim() == 2
        assert (id(p) in muon) == hidden and (id(p) in adamw) != hidden, name
        if not hidden:
            assert adamw[id(p)] == (0.1 if p.dim() == 2 else 0.0), name
    assert {id(p) for p in muon_params(model)} == muon


def test_one_muon_step_updates_every_parameter_by_its_optimizer(tmp_path):
    model, task = _muon_task(
        tmp_path, grad_clip=0.0, muon_lr=0.05, muon_momentum_warmup=0, precision="fp32"
    )  # the step compared with fp32 gradients
    optimizers = task.configure_optimizers()
    from genai.training.engine import Trainer

    trainer = Trainer(task.config, torch.device("cpu"), optimizers)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = TokenBatches(task.train_tokens, 8, 4, seed=0).get(0)
    x, y = batch
    loss = model(x[0], y[0])[1]
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    model.train()
    task.train_step(batch, 0, trainer)
    for name, p in model.named_parameters():
        assert p.grad is None, name
        delta = p.detach() - before[name]
        if name.startswith("transformer.h.") and p.dim() == 2:
            # Muon's first step: the Nesterov momentum (1 + mu) g, orthogonalized (close to
            # U V^T of g's SVD, singular values within about [0.5, 1.2]), times lr and the
            # shape scale sqrt(max(1, rows / cols)).
            scale = 0.05 * math.sqrt(max(1.0, p.shape[0] / p.shape[1]))
            update = -delta / scale
            u, _, vh = torch.linalg.svd(grads[name], full_matrices=False)
            assert F.cosine_similarity(update.flatten(), (u @ vh).flatten(), dim=0) > 0.9, name
            assert torch.linalg.svdvals(update).max() < 1.3, name
        else:
            # AdamW's first step: -lr * g / (|g| + eps) (bias-corrected moments), plus the
            # decoupled decay of the matrices; no scheduler here, so lr is the config's.
            lr, g = task.config.lr, grads[name]
            decay = task.config.weight_decay if p.dim() == 2 else 0.0
            expected = -lr * g / (g.abs() + 1e-8) - lr * decay * before[name]
            torch.testing.assert_close(delta, expected, rtol=1e-4, atol=1e-8)


def test_batched_muon_steps_are_torch_muons():
    """Same-shaped matrices go through Newton-Schulz together; tall, wide and square ones, with
    Nesterov momentum and weight decay, over several steps, must land where torch's Muon puts
    them: the momentum buffers exactly, the weights up to bf16 rounding inside Newton-Schulz (a
    norm reduced in another order: 2e-5 here, against steps of 0.02)."""
    shapes = [(48, 16), (16, 16), (16, 48), (48, 16), (16, 48), (16, 16), (32, 16)]
    gen = torch.Generator().manual_seed(0)
    ours = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]
    ref = [torch.nn.Parameter(p.detach().clone()) for p in ours]
    kwargs = dict(lr=0.02, momentum=0.9, weight_decay=0.1)
    batched = make_muon(ours, **kwargs)
    torch_muon = torch.optim.Muon(ref, **kwargs, adjust_lr_fn="original")
    start = [p.detach().clone() for p in ours]
    for _ in range(3):
        grads = [torch.randn(s, generator=gen) for s in shapes]
        for params, opt in ((ours, batched), (ref, torch_muon)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
    for p, q, p0 in zip(ours, ref, start, strict=True):
        assert (p - p0).abs().max() > 0.01  # it moved
        torch.testing.assert_close(p, q, rtol=0, atol=1e-4)
        torch.testing.assert_close(
            batched.state[p]["momentum_buffer"],
            torch_muon.state[q]["momentum_buffer"],
            rtol=0,
            atol=0,
        )
    torch_muon.load_state_dict(batched.state_dict())  # one state format: checkpoints carry over


def test_muon_without_torch_support_is_a_one_line_error(tmp_path, monkeypatch):
    _, task = _muon_task(tmp_path)
    monkeypatch.delattr(torch.optim, "Muon")
    with pytest.raises(RuntimeError, match=r"needs torch >= 2\.9 \(torch\.optim\.Muon\)"):
        task.configure_optimizers()


def test_modern_recipe_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    tok = CharTokenizer.from_text(TEXT)

    def model() -> GPT:
        torch.manual_seed(0)
        fields = dict(vocab_size=tok.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16)
        return GPT(GPTConfig.recipe("modern", dropout=0.1, **fields))

    def config(name: str, **overrides) -> GPTTrainConfig:
        return GPTTrainConfig.recipe(
            "modern",
            out_dir=str(tmp_path / name),
            max_steps=6,
            batch_size=4,
            warmup_steps=2,
            muon_momentum_warmup=4,
            decay_fraction=0.5,
            eval_every=3,
            eval_batches=2,
            sample_tokens=0,
            checkpoint_every=3,
            log_every=1,
            device="cpu",
            progress=False,
            **overrides,
        )

    full = model()
    train_gpt(full, TEXT, tok, config("full"))
    original_get = TokenBatches.get

    def crash_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return original_get(self, step)

    monkeypatch.setattr(TokenBatches, "get", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_gpt(model(), TEXT, tok, config("cut"))
    monkeypatch.setattr(TokenBatches, "get", original_get)
    resumed = model()
    train_gpt(resumed, TEXT, tok, config("cut", resume=True))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    state = torch.load(tmp_path / "cut" / "state.pt", weights_only=True)
    assert set(state["optimizers"]) == {"muon", "adamw"}
    metrics = [(tmp_path / n / "metrics.jsonl").read_text().splitlines() for n in ("full", "cut")]
    strip = [
        [{k: v for k, v in json.loads(ln).items() if k != "time"} for ln in m] for m in metrics
    ]
    assert strip[0] == strip[1]


def test_cli_recipe_modern(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    out = tmp_path / "run"
    flags = ["--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "8"]
    flags += ["--max-steps", "3", "--batch-size", "4", "--eval-batches", "1"]
    flags += ["--sample-tokens", "0", "--device", "cpu", "--no-progress", "--muon-lr", "0.01"]
    code = main(
        [
            "-q",
            "train",
            "gpt",
            "--recipe",
            "modern",
            "--text",
            str(text),
            "--out-dir",
            str(out),
            *flags,
        ]
    )
    assert code == 0, capsys.readouterr().err
    saved = json.loads((out / "config.json").read_text())
    assert saved["model_config"]["pos_emb"] == "rope" and saved["model_config"]["n_layer"] == 1
    assert saved["train_config"]["optimizer"] == "muon"
    assert saved["train_config"]["muon_lr"] == 0.01  # a flag overrides the recipe
    assert main(["-q", "train", "gpt", "--recipe", "fast", "--text", str(text), *flags]) == 2
    assert "invalid choice: 'fast'" in capsys.readouterr().err
    code = main(["-q", "train", "gpt", "--recipe", "modern", "--resume", str(out)])
    assert code == 2
    assert "--recipe cannot be given with --resume" in capsys.readouterr().err


def test_cuda_graph_step_refuses_a_dynamic_cache():
    from genai.gpt.decoding import GraphedDecodeStep

    model = tiny()
    cache = model.new_cache(torch.zeros(1, 1, dtype=torch.long))  # dynamic: shapes change
    with pytest.raises(ValueError, match="static cache"):
        GraphedDecodeStep(model, cache)
