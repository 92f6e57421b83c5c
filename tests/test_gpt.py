"""The GPT: math of the model and the sampler, HF interop, its training loop, CLI and example."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import genai
from genai.cli import main
from genai.data.text import BPETokenizer, CharTokenizer, TokenBatches
from genai.gpt.decoding import KVCache
from genai.gpt.model import GPT, GPTConfig
from genai.gpt.sampling import top_k_filter, top_p_filter
from genai.gpt.train import GPTTrainConfig, train_gpt

ROOT = Path(__file__).resolve().parents[1]
TEXT = "ROMEO: the cat sat on the mat. JULIET: a dog ran in the fog.\n" * 20


def tiny(seed: int = 0, **overrides) -> GPT:
    torch.manual_seed(seed)
    fields = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16, bias=False)
    return GPT(GPTConfig(**{**fields, **overrides})).eval()


def train_config(tmp_path: Path, name: str, **overrides) -> GPTTrainConfig:
    fields = dict(
        out_dir=str(tmp_path / name),
        max_steps=6,
        batch_size=4,
        warmup_steps=2,
        eval_every=3,
        eval_batches=2,
        sample_every=6,
        sample_tokens=10,
        checkpoint_every=3,
        log_every=1,
        device="cpu",
        progress=False,
    )
    return GPTTrainConfig(**{**fields, **overrides})


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("n_embd", 15, "divisible by n_head"),
        ("n_layer", 0, "n_layer must be a positive integer"),
        ("block_size", -1, "block_size must be a positive integer"),
        ("dropout", 1.0, r"dropout must be in \[0, 1\)"),
    ],
)
def test_config_rejects_out_of_range(field, value, match):
    fields = dict(vocab_size=13, block_size=8, n_layer=2, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**fields, field: value})


def test_loss_is_mean_cross_entropy_and_tied_head():
    model = tiny()
    idx = torch.randint(0, 13, (3, 8))
    targets = torch.randint(0, 13, (3, 8))
    logits, loss = model(idx, targets)
    assert logits.shape == (3, 8, 13)
    expected = -logits.log_softmax(-1).gather(-1, targets[..., None]).mean()
    torch.testing.assert_close(loss, expected)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model(idx)[1] is None


def test_gpt2_init_scales_residual_projections():
    model = tiny(n_layer=8, n_embd=64, n_head=4, vocab_size=500, block_size=64)
    proj = model.transformer.h[0].mlp.c_proj.weight
    fc = model.transformer.h[0].mlp.c_fc.weight
    assert proj.std().item() == pytest.approx(0.02 / math.sqrt(16), rel=0.1)
    assert fc.std().item() == pytest.approx(0.02, rel=0.1)


def test_initial_loss_is_close_to_ln_vocab():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=200, block_size=32, n_layer=2, n_head=2, n_embd=32)).eval()
    idx = torch.randint(0, 200, (8, 32))
    _, loss = model(idx, torch.randint(0, 200, (8, 32)))
    assert loss.item() == pytest.approx(math.log(200), abs=0.05)


def test_changing_a_later_token_never_changes_earlier_logits():
    model = tiny()
    idx = torch.randint(0, 13, (2, 8))
    for t in range(8):
        changed = idx.clone()
        changed[:, t] = (changed[:, t] + 1) % 13
        a, b = model(idx)[0], model(changed)[0]
        torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-6)
        assert not torch.allclose(a[:, t:], b[:, t:])


@pytest.mark.parametrize("window_shift", [None, 1, 3, 8])
def test_cached_greedy_equals_uncached_past_block_size(window_shift):
    model = tiny().double()
    idx = torch.randint(0, 13, (2, 5))
    cached = model.generate(idx, 30, temperature=0, window_shift=window_shift)
    uncached = model.generate(idx, 30, temperature=0, use_cache=False, window_shift=window_shift)
    assert cached.shape == (2, 35)
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, :5], idx)


def test_uncached_generation_uses_the_documented_window():
    """The uncached loop feeds exactly the window the policy names (shift 1 = last block)."""
    model = tiny().double()
    idx = torch.randint(0, 13, (1, 3))
    out = model.generate(idx, 20, temperature=0, use_cache=False, window_shift=1)
    for n in range(3, 23):
        context = out[:, max(0, n - 8) : n]
        assert model(context)[0][0, -1].argmax() == out[0, n]


def test_cached_seeded_sampling_equals_uncached():
    model = tiny().double()
    idx = torch.randint(0, 13, (3, 4))
    kwargs = dict(temperature=1.3, top_k=8, top_p=0.9)
    a = model.generate(idx, 25, generator=torch.Generator().manual_seed(7), **kwargs)
    b = model.generate(
        idx, 25, generator=torch.Generator().manual_seed(7), use_cache=False, **kwargs
    )
    assert torch.equal(a, b)
    c = model.generate(idx, 25, generator=torch.Generator().manual_seed(8), **kwargs)
    assert not torch.equal(a, c)


def test_long_prompt_is_cropped_to_block_size():
    model = tiny()
    prompt = torch.randint(0, 13, (1, 20))
    full = model.generate(prompt, 5, temperature=0)
    cropped = model.generate(prompt[:, -8:], 5, temperature=0)
    assert torch.equal(full[:, :20], prompt)
    assert torch.equal(full[:, 20:], cropped[:, 8:])


def test_stream_yields_the_tokens_of_generate():
    model = tiny()
    idx = torch.randint(0, 13, (2, 3))
    streamed = list(model.stream(idx, 6, generator=torch.Generator().manual_seed(1)))
    generated = model.generate(idx, 6, generator=torch.Generator().manual_seed(1))
    assert all(t.shape == (2,) for t in streamed)
    assert torch.equal(torch.stack(streamed, dim=1), generated[:, 3:])


def test_stop_token_ends_every_row_and_pads_finished_rows():
    model = tiny()
    idx = torch.zeros(4, 1, dtype=torch.long)
    free = model.generate(idx, 40, temperature=1.0, generator=torch.Generator().manual_seed(0))
    stop = int(free[0, 1])  # row 0 emits it first
    out = model.generate(
        idx, 40, temperature=1.0, stop=stop, generator=torch.Generator().manual_seed(0)
    )
    new = out[:, 1:]
    assert new[0, 0] == stop
    first_stops = []
    for row in new:
        hits = (row == stop).nonzero()
        assert len(hits) > 0
        first_stops.append(int(hits[0, 0]))
        assert (row[first_stops[-1] :] == stop).all()  # after its stop, a row only repeats it
    assert new.shape[1] == max(first_stops) + 1  # ends as soon as the last row stops


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.tensor([[1.0, 5.0, 3.0, 4.0, 2.0], [0.0, -1.0, 2.0, 2.0, 1.0]])
    kept = top_k_filter(logits, 2).isfinite()
    assert kept.tolist() == [[False, True, False, True, False], [False, False, True, True, False]]
    assert top_k_filter(logits, 10).isfinite().all()


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.2, 0.15, 0.1, 0.05]])
    logits = probs.log()[:, [3, 0, 4, 1, 2]]  # shuffled: [0.1, 0.5, 0.05, 0.2, 0.15]
    # 0.5 < 0.6 so 0.2 is needed; 0.5 + 0.2 = 0.7 >= 0.6 so the rest go.
    assert top_p_filter(logits, 0.6).isfinite().tolist() == [[False, True, False, True, False]]
    # 0.5 alone reaches 0.5: only the top token stays.
    assert top_p_filter(logits, 0.5).isfinite().tolist() == [[False, True, False, False, False]]
    assert top_p_filter(logits, 0.01).isfinite().sum() == 1
    assert top_p_filter(logits, 1.0).isfinite().all()


def test_temperature_zero_is_greedy():
    model = tiny()
    idx = torch.randint(0, 13, (2, 4))
    out = model.generate(idx, 1, temperature=0)
    assert torch.equal(out[:, -1], model(idx)[0][:, -1].argmax(-1))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(max_new_tokens=-1), "max_new_tokens must be >= 0"),
        (dict(temperature=-0.1), "temperature must be a finite number >= 0"),
        (dict(temperature=float("inf")), "temperature must be a finite number >= 0"),
        (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (dict(top_k=0), "top_k must be >= 1"),
        (dict(window_shift=9), "window_shift must be in"),
    ],
)
def test_bad_sampling_arguments(kwargs, match):
    model = tiny()
    args = {"idx": torch.zeros(1, 1, dtype=torch.long), "max_new_tokens": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        model.generate(**args)


@pytest.mark.parametrize("bad", [13, -1])
def test_forward_and_generate_name_an_id_outside_the_vocabulary(bad):
    model = tiny()  # vocab_size 13
    idx = torch.tensor([[1, bad, 2]])
    match = r"token ids in \[0, vocab_size=13\), got torch.int64 values in \[-?\d+, \d+\]"
    with pytest.raises(ValueError, match=match):
        model(idx)
    with pytest.raises(ValueError, match=match):
        model.generate(idx, 2)


@pytest.mark.parametrize("bias", [True, False])
def test_huggingface_logits_parity(bias):
    pytest.importorskip("transformers")
    model = tiny(bias=bias, vocab_size=50, block_size=16, n_embd=32, n_head=4)
    with torch.no_grad():  # make biases and LayerNorm gains non-trivial
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.1 * torch.randn_like(p))
    idx = torch.randint(0, 50, (2, 16))
    hf = model.to_huggingface()
    torch.testing.assert_close(hf(idx).logits, model(idx)[0], rtol=0, atol=1e-4)
    back = GPT.from_huggingface(hf)
    torch.testing.assert_close(back(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)


def test_huggingface_variants_load_exactly_or_are_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    small = dict(vocab_size=30, n_positions=8, n_embd=16, n_layer=1, n_head=2)
    torch.manual_seed(0)
    untied = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(**small, tie_word_embeddings=False)
    ).eval()
    model = GPT.from_huggingface(untied)
    assert not model.config.tie_weights
    idx = torch.randint(0, 30, (2, 8))
    torch.testing.assert_close(model(idx)[0], untied(idx).logits, rtol=0, atol=1e-4)
    torch.testing.assert_close(model.to_huggingface()(idx).logits, untied(idx).logits)
    for field, match in ((dict(layer_norm_epsilon=1e-2), "layer_norm_epsilon 1e-5, got 0.01"),
                         (dict(n_inner=32), "MLP width 4 [*] n_embd = 64, got 32")):  # fmt: skip
        other = transformers.GPT2LMHeadModel(transformers.GPT2Config(**small, **field))
        with pytest.raises(ValueError, match=match):
            GPT.from_huggingface(other)
    model.save_pretrained(tmp_path / "ours")
    with pytest.raises(ValueError, match="holds a genai model, not a Hugging Face one"):
        GPT.from_huggingface(tmp_path / "ours")


def test_from_huggingface_local_dir_never_downloads(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.GPT2Config(
        vocab_size=40,
        n_positions=12,
        n_embd=24,
        n_layer=2,
        n_head=3,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(config).eval()
    hf.save_pretrained(tmp_path / "gpt2")
    model = GPT.from_huggingface(tmp_path / "gpt2")
    assert model.config.block_size == 12 and model.config.bias
    idx = torch.randint(0, 40, (1, 12))
    torch.testing.assert_close(model(idx)[0], hf(idx).logits, rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="not a folder"):
        GPT.from_huggingface(tmp_path / "missing")


@pytest.mark.parametrize("files", ["tokenizer.json", "vocab.json+merges.txt"])
def test_from_huggingface_folder_brings_its_tokenizer(tmp_path, files):
    transformers = pytest.importorskip("transformers")
    text = "China is a country in East Asia. 中国是东亚的一个国家。 " * 20
    bpe = BPETokenizer.train(text, vocab_size=300)
    bpe.tokenizer.add_special_tokens(["<|endoftext|>"])  # id 300, GPT-2's end of text
    folder = tmp_path / "gpt2"
    config = transformers.GPT2Config(vocab_size=301, n_positions=16, n_embd=24, n_layer=1,
                                     n_head=2, bos_token_id=300, eos_token_id=300)  # fmt: skip
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    if files == "tokenizer.json":
        bpe.tokenizer.save(str(folder / "tokenizer.json"))
    else:  # GPT-2's original files: the end-of-text token is the last entry of vocab.json
        bpe.tokenizer.model.save(str(folder))
        vocab = json.loads((folder / "vocab.json").read_text())
        (folder / "vocab.json").write_text(json.dumps({**vocab, "<|endoftext|>": 300}))
    model = GPT.from_huggingface(folder)
    assert model.tokenizer.encode(text) == bpe.encode(text)
    assert model.tokenizer.decode(bpe.encode(text)) == text
    eot = model.tokenizer.encode("China<|endoftext|>")
    assert eot == bpe.encode("China") + [300]  # one token, not its characters
    assert model.tokenizer.decode(eot) == "China"  # special tokens are not printed
    ids = bpe.encode("China")
    new = model.generate(torch.tensor([ids]), 12 - len(ids), temperature=0)[0, len(ids) :]
    out = genai.generate_text(model, "China", max_length=12, temperature=0)
    assert out == "China" + bpe.decode(new.tolist())
    assert genai.generate_text(model, "China", max_length=12, temperature=0.9, top_p=0.9)


def test_validation_loss_is_the_mean_over_its_batches_in_any_chunking():
    """evaluate_lm's few large forwards give the mean of the per-batch losses the same seed's
    windows give one batch at a time (the old loop), whatever the chunk size."""
    from genai.data.text import random_windows
    from genai.gpt.evaluate import evaluate_lm

    model, tokens = tiny(), torch.randint(0, 13, (500,), generator=torch.Generator().manual_seed(1))
    x, y = random_windows(tokens, (7, 3), 8, torch.Generator().manual_seed(4))
    per_batch = torch.stack([model(x[i], y[i])[1] for i in range(7)]).mean().item()
    for max_tokens in (8, 24, 40, 4096):  # chunks of 1, 3 and 5 windows (a short last one), all
        loss = evaluate_lm(model, tokens, batches=7, batch_size=3, seed=4, max_tokens=max_tokens)
        assert loss["loss"] == pytest.approx(per_batch, rel=1e-6)
        assert loss["ppl"] == pytest.approx(math.exp(per_batch), rel=1e-6)


def test_tiny_model_overfits_a_short_text(tmp_path):
    text = "hello world! " * 40
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2, n_embd=32))
    config = train_config(
        tmp_path, "overfit", max_steps=150, lr=3e-3, warmup_steps=10, eval_every=150, log_every=50
    )
    summary = train_gpt(model, text, tok, config)
    assert summary["train"]["loss"] < 0.15
    assert genai.generate_text(model, "hello", 20, temperature=0) == "hello world! hello world!"
    # Hugging Face's max_length counts the prompt's tokens too
    assert genai.generate_text(model, "hello", max_length=25, temperature=0) == (
        "hello world! hello world!"
    )
    with pytest.raises(ValueError, match="not both"):
        genai.generate_text(model, "hello", 5, max_length=25)
    with pytest.raises(ValueError, match=r"max_length=3 is shorter than the prompt \(5 tokens\)"):
        genai.generate_text(model, "hello", max_length=3)


def test_gradient_accumulation_equals_one_large_batch(tmp_path):
    tokens = torch.tensor(CharTokenizer.from_text(TEXT).encode(TEXT))
    tok = CharTokenizer.from_text(TEXT)
    models = []
    for name, batch, accum in (("big", 8, 1), ("accum", 4, 2)):
        model = tiny(vocab_size=tok.vocab_size)
        config = train_config(
            tmp_path, name, max_steps=1, batch_size=batch, grad_accum=accum, sample_tokens=0,
            precision="fp32",  # the equality is fp32's; bf16 rounds the two orders differently
        )  # fmt: skip
        train_gpt(model, tokens, tok, config)
        models.append(model)
    x_big = TokenBatches(tokens, 8, 8, seed=0).get(0)[0]
    x_acc = TokenBatches(tokens, 8, 4, seed=0, accum=2).get(0)[0]
    assert torch.equal(x_big.reshape(-1, 8), x_acc.reshape(-1, 8))  # the same windows
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_weight_decay_only_on_matrices(tmp_path):
    from genai.gpt.train import GPTTask

    tok = CharTokenizer.from_text(TEXT)
    model = tiny(vocab_size=tok.vocab_size, bias=True)
    task = GPTTask(model, torch.tensor(tok.encode(TEXT)), tok, train_config(tmp_path, "wd"), "t")
    task.setup(torch.device("cpu"))
    groups = task.configure_optimizers()["gpt"].param_groups
    decayed = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() >= 2), name


def test_run_dir_restores_model_and_tokenizer(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    model = tiny(vocab_size=tok.vocab_size)
    config = train_config(tmp_path, "run")
    train_gpt(model, TEXT, tok, config)
    loaded = genai.load(config.out_dir)
    assert loaded.tokenizer.to_dict() == tok.to_dict()
    a = genai.generate_text(model, "ROMEO:", 30, seed=3)
    b = genai.generate_text(config.out_dir, "ROMEO:", 30, seed=3, device="cpu")
    assert a == b and a.startswith("ROMEO:") and len(a) == 36
    sample = (Path(config.out_dir) / "samples" / "step_0000006.txt").read_text()
    assert len(sample) == 10
    records = [json.loads(line) for line in (Path(config.out_dir) / "metrics.jsonl").open()]
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [3, 6]
    assert all(r["ppl"] == pytest.approx(math.exp(r["loss"])) for r in val)


def test_resume_equals_an_uninterrupted_run(tmp_path, monkeypatch):
    tok = CharTokenizer.from_text(TEXT)
    full = tiny(vocab_size=tok.vocab_size, dropout=0.1)
    train_gpt(full, TEXT, tok, train_config(tmp_path, "full"))

    original_get = TokenBatches.get

    def crash_at_step_4(self, step):
        if step == 4:
            raise KeyboardInterrupt
        return original_get(self, step)

    monkeypatch.setattr(TokenBatches, "get", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_gpt(
            tiny(vocab_size=tok.vocab_size, dropout=0.1), TEXT, tok, train_config(tmp_path, "cut")
        )
    monkeypatch.setattr(TokenBatches, "get", original_get)
    resumed = tiny(seed=99, vocab_size=tok.vocab_size, dropout=0.1)
    train_gpt(resumed, TEXT, tok, train_config(tmp_path, "cut", resume=True))
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    metrics = [(tmp_path / n / "metrics.jsonl").read_text().splitlines() for n in ("full", "cut")]
    strip = [
        [{k: v for k, v in json.loads(ln).items() if k != "time"} for ln in m] for m in metrics
    ]
    assert strip[0] == strip[1]


def test_train_lm_rejects_a_tokenizer_larger_than_the_vocab(tmp_path):
    with pytest.raises(ValueError, match="vocab_size"):
        train_gpt(
            tiny(vocab_size=5), TEXT, CharTokenizer.from_text(TEXT), train_config(tmp_path, "v")
        )


def test_prompt_with_unknown_character_is_a_clear_error():
    model = tiny(vocab_size=30)
    with pytest.raises(ValueError, match="character 'Z' at position 2"):
        genai.generate_text(model, "abZ", 5, tokenizer=CharTokenizer("abcdef"))


def test_cli_trains_generates_and_reports_bad_input(tmp_path, capsys):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT)
    run = tmp_path / "cli_run"
    args = ["-q", "train", "gpt", "--text", str(text), "--n-layer", "1", "--n-head", "2"]
    args += ["--n-embd", "16", "--block-size", "8", "--max-steps", "4", "--eval-every", "2"]
    args += ["--sample-tokens", "5", "--out-dir", str(run), "--device", "cpu", "--no-progress"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["step"] == 4 and "ppl" in summary["eval"]
    assert genai.load(run).config.vocab_size == len(set(TEXT))

    # Resuming needs no data flags: the run remembers its text and its tokenizer.
    assert main(["-q", "train", "gpt", "--resume", str(run), "--max-steps", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    assert genai.load(run).tokenizer.to_dict() == CharTokenizer.from_text(TEXT).to_dict()

    gen = ["generate", str(run), "--prompt", "ROMEO:", "--max-new-tokens", "12"]
    gen += [
        "--temperature",
        "0.8",
        "--top-k",
        "5",
        "--top-p",
        "0.95",
        "--seed",
        "1",
        "--device",
        "cpu",
    ]
    assert main(gen) == 0
    out = capsys.readouterr().out
    expected = genai.generate_text(
        run, "ROMEO:", 12, temperature=0.8, top_k=5, top_p=0.95, seed=1, device="cpu"
    )
    assert out == expected + "\n"

    assert main(["generate", str(run), "--prompt", "ROMEO: Zz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "character 'Z' at position 7" in err
    assert main(["generate", str(run), "--max-new-tokens", "-1"]) == 2
    assert "max_new_tokens must be >= 0" in capsys.readouterr().err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert main(["train", "gpt", "--text", str(empty), "--out-dir", str(tmp_path / "e")]) == 2
    assert "is empty" in capsys.readouterr().err
    assert main(["train", "gpt", "--text", str(text), "--n-embd", "15", "--n-head", "2"]) == 2
    assert "divisible by n_head" in capsys.readouterr().err


def test_example_trains_and_samples(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text(TEXT * 5)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "shakespeare_gpt.py"), "--text", str(text)]
        + ["--max-steps", "3", "--out-dir", str(tmp_path / "ex"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "validation loss" in result.stdout
    assert "ROMEO:" in result.stdout
    assert (tmp_path / "ex" / "model.safetensors").is_file()
    other = subprocess.run(  # a prompt the text cannot spell: an error before any training
        [sys.executable, str(ROOT / "examples" / "shakespeare_gpt.py"), "--text", str(text)]
        + ["--prompt", "Zebra", "--out-dir", str(tmp_path / "z"), "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode == 1 and "Traceback" not in other.stderr
    assert "--prompt 'Zebra': character 'Z' at position 0" in other.stderr
    assert not (tmp_path / "z").exists()


def test_f_sdpa_matches_explicit_causal_attention():
    model = tiny()
    attn = model.transformer.h[0].attn
    x = torch.randn(2, 8, 16)
    q, k, v = attn.c_attn(x).split(16, dim=2)
    q, k, v = (t.view(2, 8, 2, 8).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-1, -2) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(8, 8, dtype=torch.bool).triu(1), float("-inf"))
    y = (F.softmax(scores, -1) @ v).transpose(1, 2).reshape(2, 8, 16)
    torch.testing.assert_close(attn(x), attn.c_proj(y))


def test_kv_cache_continues_a_sequence_chunk_by_chunk():
    model = tiny()
    idx = torch.randint(0, 13, (2, 8))
    cache = KVCache(model.config, 2, torch.device("cpu"), torch.float32)
    chunks = [model._hidden(idx[:, a:b], cache) for a, b in ((0, 3), (3, 4), (4, 8))]
    assert cache.length == 8
    torch.testing.assert_close(torch.cat(chunks, dim=1), model._hidden(idx))


def test_a_vocabulary_larger_than_the_tokenizers_never_samples_undecodable_ids():
    tok = CharTokenizer("abc")
    model = tiny(vocab_size=200)  # e.g. padded to a multiple of 64, as nanoGPT does for GPT-2
    text = genai.generate_text(model, "ab", 60, temperature=2.0, tokenizer=tok, seed=0)
    assert len(text) == 62 and set(text) <= set("abc")
    ids = model.generate(torch.zeros(4, 1, dtype=torch.long), 30, temperature=2.0, vocab_limit=3)
    assert ids.max() < 3
    # a row that stops repeats the stop id it drew, not another one (here one past the limit)
    stopped = tiny(vocab_size=60).generate(
        torch.zeros(8, 1, dtype=torch.long), 40, temperature=3.0, stop=[50, 2], vocab_limit=20
    )
    assert stopped.max() < 20 and (stopped[:, 1:] == 2).any()
    with pytest.raises(ValueError, match="vocab_limit must be in"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 2, vocab_limit=0)


def test_a_tiny_temperature_is_greedy_not_nan():
    model = tiny()
    idx = torch.zeros(2, 1, dtype=torch.long)
    greedy = model.generate(idx, 10, temperature=0)
    torch.testing.assert_close(model.generate(idx, 10, temperature=1e-45), greedy)


def test_train_gpt_checks_its_inputs_before_writing(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    out = tmp_path / "run"
    config = dict(out_dir=str(out), max_steps=2, device="cpu", progress=False, batch_size=2)
    with pytest.raises(ValueError, match="sample_prompt 'Zebra': character 'Z' at position 0"):
        train_gpt(tiny(vocab_size=40), TEXT, tok, {**config, "sample_prompt": "Zebra"})
    with pytest.raises(ValueError, match=r"token ids must be in \[0, 27\)"):
        train_gpt(tiny(vocab_size=40), torch.arange(30).repeat(20), tok, config)
    with pytest.raises(TypeError, match="1-d integer tensor, got torch.float32"):
        train_gpt(tiny(vocab_size=40), torch.rand(400) * 9, tok, config)
    assert not out.exists()
    seen = []
    train_gpt(tiny(vocab_size=40), TEXT, tok, {**config, "log_every": 1, "eval_every": 2},
              callbacks=lambda r: seen.append(r["step"]) or {"twice": torch.tensor(2.0)})  # fmt: skip
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert seen and all(r["twice"] == 2.0 for r in records)  # the tensor logged as a number


def test_cli_resume_keeps_its_directory_and_its_text(tmp_path, capsys, monkeypatch):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.txt").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    args = ["-q", "train", "gpt", "--text", "parts/*.txt", "--n-layer", "1", "--n-head", "2"]
    args += ["--n-embd", "16", "--block-size", "8", "--max-steps", "2", "--sample-tokens", "0"]
    assert main([*args, "--out-dir", str(run), "--device", "cpu"]) == 0
    source = json.loads((run / "config.json").read_text())["data"]["source"]
    assert source == str(tmp_path / "parts" / "*.txt")  # the glob, from anywhere
    monkeypatch.chdir(tmp_path / "parts")
    capsys.readouterr()
    assert main(["-q", "train", "gpt", "--resume", str(run), "--max-steps", "3"]) == 0
    assert "gpt:" not in capsys.readouterr().err  # -q: no progress bar
    fork = ["-q", "train", "gpt", "--resume", str(run), "--out-dir", str(tmp_path / "fork")]
    assert main([*fork, "--max-steps", "4"]) == 2
    assert "out_dir" in capsys.readouterr().err and not (tmp_path / "fork").exists()
    api = tmp_path / "api"  # trained from Python on in-memory text: resume asks for the text
    train_gpt(tiny(vocab_size=40), TEXT, CharTokenizer.from_text(TEXT),
              dict(out_dir=str(api), max_steps=2, device="cpu", progress=False, batch_size=2))  # fmt: skip
    assert main(["-q", "train", "gpt", "--resume", str(api), "--max-steps", "3"]) == 2
    assert "trained on text given in memory" in capsys.readouterr().err


def test_a_damaged_tokenizer_entry_is_a_checkpoint_error(tmp_path):
    out = tmp_path / "run"
    train_gpt(tiny(vocab_size=40), TEXT, CharTokenizer.from_text(TEXT),
              dict(out_dir=str(out), max_steps=1, device="cpu", progress=False, batch_size=2))  # fmt: skip
    config = json.loads((out / "config.json").read_text())
    for entry in ("char", {"type": "bpe", "json": "{not json"}):
        (out / "config.json").write_text(json.dumps({**config, "tokenizer": entry}))
        with pytest.raises(genai.CheckpointError, match="invalid tokenizer"):
            genai.load(out)
