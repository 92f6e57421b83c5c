"""LoRA fine-tuning of the GPT (peft's adapters), activation checkpointing and bf16 frozen weights:
only the adapters train, merging keeps the logits, tied embeddings stay tied end to end, resume
is exact, bad settings are one line (CPU, tiny models, no network)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch

import genai
from genai.cli import main
from genai.data.text import CharTokenizer, TokenBatches
from genai.gpt import lora
from genai.gpt.model import GPT, GPTConfig
from genai.gpt.train import GPTTrainConfig, train_gpt

pytest.importorskip("peft")

TEXT = "ROMEO: the cat sat on the mat. JULIET: a dog ran in the fog.\n" * 20
TOK = CharTokenizer.from_text(TEXT)


def tiny(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = dict(vocab_size=TOK.vocab_size, block_size=8, n_layer=2, n_head=2, n_embd=16)
    return GPT(GPTConfig(**{**fields, **overrides}))


def config(tmp_path: Path, name: str, **overrides) -> GPTTrainConfig:
    fields = dict(out_dir=str(tmp_path / name), max_steps=6, batch_size=4, lr=1e-2,
                  warmup_steps=0, eval_every=3, eval_batches=1, sample_every=6, sample_tokens=5,
                  checkpoint_every=3, log_every=1, device="cpu", progress=False, lora_rank=2)  # fmt: skip
    return GPTTrainConfig(**{**fields, **overrides})


def adapter_count(model: GPT, rank: int, targets=lora.ATTENTION) -> int:
    """Parameters of rank-``rank`` adapters on ``targets``: ``rank * (in + out)`` per layer."""
    c = model.config
    shapes = {"attn.c_attn": (c.n_embd, c.n_embd + 2 * c.kv_heads * c.head_dim),
              "attn.c_proj": (c.n_embd, c.n_embd), "mlp.c_fc": (c.n_embd, 4 * c.n_embd),
              "mlp.c_proj": (4 * c.n_embd, c.n_embd)}  # fmt: skip
    return c.n_layer * sum(rank * sum(shapes[t]) for t in targets)


def test_only_the_adapters_train_and_the_run_counts_them(tmp_path):
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    targets = ("attn.c_attn", "mlp.c_proj")
    summary = train_gpt(
        model, TEXT, TOK, config(tmp_path, "r", lora_targets=targets, lora_merge=False)
    )
    expected = adapter_count(model, 2, targets)
    record = json.loads((tmp_path / "r" / "config.json").read_text())
    assert summary["trainable_params"] == record["trainable_params"] == expected
    assert record["lora"] == {"rank": 2, "alpha": 16.0, "dropout": 0.0,
                              "targets": list(targets), "merge": False}  # fmt: skip
    after = model.state_dict()
    base = {k.replace(".base_layer", ""): v for k, v in after.items() if "lora_" not in k}
    assert base.keys() == before.keys()
    assert all(torch.equal(base[k], before[k]) for k in before)  # every base weight bit-identical
    adapters = {k: v for k, v in after.items() if "lora_" in k}
    assert len(adapters) == 2 * 2 * len(targets)
    assert all(v.abs().sum() > 0 for k, v in adapters.items() if "lora_B" in k)  # B left zero
    assert {n for n, p in model.named_parameters() if p.requires_grad} == set(adapters)
    state = torch.load(tmp_path / "r" / "state.pt", weights_only=True)["optimizers"]["gpt"]
    in_optimizer = sum(len(g["params"]) for g in state["param_groups"])
    assert in_optimizer == len(adapters)  # the frozen weights are not in the optimizer
    full = train_gpt(tiny(), TEXT, TOK, config(tmp_path, "full", lora_rank=0))
    assert full["trainable_params"] == sum(p.numel() for p in tiny().parameters())


def test_merging_gives_the_logits_of_the_adapted_model(tmp_path):
    kept = tiny()
    train_gpt(
        kept, TEXT, TOK, config(tmp_path, "kept", lora_merge=False, lora_targets=lora.TARGETS)
    )
    merged = tiny()
    train_gpt(merged, TEXT, TOK, config(tmp_path, "merged", lora_targets=lora.TARGETS))
    assert lora.has_adapters(kept) and not lora.has_adapters(merged)
    assert all(p.requires_grad for p in merged.parameters())  # a plain GPT again
    assert type(merged.transformer.h[0].attn.c_attn) is torch.nn.Linear
    x = torch.randint(0, TOK.vocab_size, (3, 8))
    with torch.no_grad():
        adapted = kept.eval()(x)[0]
        by_hand = lora.merge(copy.deepcopy(kept)).eval()(x)[0]
        loaded = genai.load(tmp_path / "merged", device="cpu")
        assert not lora.has_adapters(loaded) and getattr(loaded, "lora", None) is None
        torch.testing.assert_close(by_hand, adapted, rtol=0, atol=1e-5)
        torch.testing.assert_close(loaded(x)[0], adapted, rtol=0, atol=1e-5)
        torch.testing.assert_close(loaded(x)[0], merged.eval()(x)[0], rtol=0, atol=0)
        separate = genai.load(tmp_path / "kept", device="cpu")
        assert lora.has_adapters(separate) and separate.lora["merge"] is False
        torch.testing.assert_close(separate(x)[0], adapted, rtol=0, atol=0)


def test_a_model_with_adapters_saves_and_loads_them(tmp_path):
    model = tiny()
    train_gpt(model, TEXT, TOK, config(tmp_path, "r", lora_merge=False, max_steps=2))
    model.save_pretrained(tmp_path / "saved")
    assert json.loads((tmp_path / "saved" / "config.json").read_text())["lora"] == model.lora
    back = genai.load(tmp_path / "saved", device="cpu")
    x = torch.randint(0, TOK.vocab_size, (2, 8))
    with torch.no_grad():
        torch.testing.assert_close(back(x)[0], model.eval()(x)[0], rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"LoRA adapters: merge them first"):
        back.to_huggingface()
    with pytest.raises(ValueError, match=r"LoRA adapters: merge them first"):
        train_gpt(back, TEXT, TOK, config(tmp_path, "again"))
    assert not lora.has_adapters(lora.merge(back))
    assert back.to_huggingface() is not None


def tied_qwen2(tmp_path: Path) -> Path:
    """A tiny random Qwen2 with tied embeddings (Qwen2.5-0.5B ties them), saved as a folder."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf_config = transformers.Qwen2Config(
        vocab_size=TOK.vocab_size, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
        tie_word_embeddings=True, use_sliding_window=False, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    hf = transformers.Qwen2ForCausalLM(hf_config)
    hf.save_pretrained(tmp_path / "qwen2")
    return tmp_path / "qwen2"


def tied(model: GPT) -> bool:
    head, wte = model.lm_head.weight, model.transformer.wte.weight
    return head is wte and head.data_ptr() == wte.data_ptr()


@pytest.mark.parametrize("weights_dtype", ["fp32", "bf16"])
def test_tied_embeddings_stay_tied_through_lora_merge_save_load_and_export(tmp_path, weights_dtype):
    model = GPT.from_huggingface(tied_qwen2(tmp_path))
    assert model.config.tie_weights and model.config.qkv_bias and tied(model)
    steps = []

    def check(record: dict) -> None:  # every step (log_every=1), while the adapters train
        assert tied(model) and model.lm_head.weight.dtype == lora._DTYPES[weights_dtype]
        assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.float32}
        if record["split"] == "train":
            steps.append(record["step"])

    wte = model.transformer.wte.weight.detach().clone()
    cfg = config(tmp_path, "run", weights_dtype=weights_dtype, lora_targets=lora.TARGETS)
    train_gpt(model, TEXT, TOK, cfg, callbacks=[check])
    assert steps == list(range(1, cfg.max_steps + 1))
    assert tied(model) and not lora.has_adapters(model)  # merged
    frozen = wte.to(lora._DTYPES[weights_dtype]).float()  # not trained (stored in bf16 or not)
    assert torch.equal(model.transformer.wte.weight, frozen)
    model.save_pretrained(tmp_path / "saved")
    for folder in ("run", "saved"):
        back = genai.load(tmp_path / folder, device="cpu")
        assert tied(back) and torch.equal(back.lm_head.weight, model.lm_head.weight)
    hf = back.to_huggingface()
    assert hf.config.tie_word_embeddings
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()
    x = torch.randint(0, TOK.vocab_size, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, back(x)[0], rtol=0, atol=1e-4)


def test_resume_with_lora_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    options = dict(lora_merge=False, lora_dropout=0.1, weights_dtype="bf16", grad_checkpoint=True)
    full = tiny(dropout=0.1)
    train_gpt(full, TEXT, TOK, config(tmp_path, "full", **options))
    original_get = TokenBatches.get

    def crash_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return original_get(self, step)

    monkeypatch.setattr(TokenBatches, "get", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_gpt(tiny(dropout=0.1), TEXT, TOK, config(tmp_path, "cut", **options))
    monkeypatch.setattr(TokenBatches, "get", original_get)
    with pytest.raises(ValueError, match=r"^lora_rank cannot change when resuming .*4"):
        train_gpt(tiny(dropout=0.1), TEXT, TOK, config(tmp_path, "cut", resume=True, lora_rank=4))
    resumed = tiny(seed=99, dropout=0.1)
    train_gpt(resumed, TEXT, TOK, config(tmp_path, "cut", resume=True, **options))
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = [(tmp_path / n / "metrics.jsonl").read_text().splitlines() for n in ("full", "cut")]
    strip = [
        [{k: v for k, v in json.loads(ln).items() if k != "time"} for ln in m] for m in metrics
    ]
    assert strip[0] == strip[1]


@pytest.mark.parametrize("use_lora", [False, True], ids=["full", "lora"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(use_lora):
    x = torch.randint(0, TOK.vocab_size, (2, 8))
    results = []
    for grad_checkpoint in (False, True):
        model = tiny(dropout=0.1).train()
        if use_lora:  # the embeddings are frozen: the blocks' input needs no gradient
            lora.add(model, {"rank": 2, "alpha": 4.0, "dropout": 0.1, "targets": lora.TARGETS,
                             "merge": True})  # fmt: skip
            with torch.no_grad():
                for name, p in model.named_parameters():
                    if "lora_B" in name:
                        p.normal_()
        model.grad_checkpoint = grad_checkpoint
        torch.manual_seed(1)
        _, loss = model(x, x)
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (loss0, grads0), (loss1, grads1) = results
    torch.testing.assert_close(loss1, loss0, rtol=0, atol=1e-6)
    assert grads0.keys() == grads1.keys() and len(grads0) > 0
    for name in grads0:
        torch.testing.assert_close(grads1[name], grads0[name], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lora_rank": -1}, "lora_rank must be >= 0 (0 = full fine-tuning), got -1"),
        ({"lora_alpha": 0}, "lora_alpha must be > 0, got 0.0"),
        ({"lora_dropout": 1.0}, "lora_dropout must be in [0, 1), got 1.0"),
        ({"lora_targets": ("lm_head",)}, "lora_targets must be one of ('attn.c_attn', "),
        ({"lora_targets": ()}, "lora_targets must not be empty"),
        ({"lora_targets": ("mlp.c_fc", "mlp.c_fc")}, "lora_targets must name each module once"),
        ({"weights_dtype": "fp16"}, "weights_dtype must be one of ('fp32', 'bf16'), got 'fp16'"),
        ({"weights_dtype": "bf16", "lora_rank": 0}, "weights_dtype='bf16' needs lora_rank > 0"),
        ({"optimizer": "muon"}, "lora_rank > 0 trains the adapters with optimizer='adamw'"),
    ],
)
def test_bad_lora_fields_are_one_line_naming_the_field(fields, message):
    with pytest.raises(ValueError) as e:
        GPTTrainConfig(**{"lora_rank": 2, **fields})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_cli_flags_come_from_the_fields(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    run = tmp_path / "cli"
    args = ["-q", "train", "gpt", "--text", str(text), "--n-layer", "1", "--n-head", "2"]
    args += ["--n-embd", "16", "--block-size", "8", "--max-steps", "2", "--sample-tokens", "0"]
    args += ["--out-dir", str(run), "--device", "cpu", "--lora-rank", "3", "--lora-alpha", "6"]
    args += ["--lora-targets", "attn.c_attn", "mlp.c_fc", "--no-lora-merge", "--grad-checkpoint"]
    args += ["--weights-dtype", "bf16", "--lora-dropout", "0.05"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    record = json.loads((run / "config.json").read_text())
    assert summary["trainable_params"] == record["trainable_params"] == 3 * (16 + 48 + 16 + 64)
    assert record["lora"] == {"rank": 3, "alpha": 6.0, "dropout": 0.05,
                              "targets": ["attn.c_attn", "mlp.c_fc"], "merge": False}  # fmt: skip
    train = record["train_config"]
    assert (train["grad_checkpoint"], train["weights_dtype"]) == (True, "bf16")
    assert main(["train", "gpt", "--text", str(text), "--lora-targets", "wte"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "lora_targets must be one of" in err
