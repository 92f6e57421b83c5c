"""The Llama family in the GPT: grouped-query attention in every cache, and Llama / Qwen2 interop
with ``transformers`` both ways (tiny random models saved as folders; CPU, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import genai
from genai.data.text import BPETokenizer
from genai.gpt.decoding import GraphedDecodeStep, KVCache
from genai.gpt.model import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

TEXT = "China is a country in East Asia. 中国是东亚的一个国家。北京是中国的首都。 " * 20
CHINESE = "中国是东亚的一个国家"
VOCAB = 300  # the models' vocabulary: every tokenizer below has fewer tokens

# (transformers config class, model class) of each family, and the class the export gives.
FAMILIES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
}


def llama_tokenizer() -> tokenizers.Tokenizer:
    """A SentencePiece-style BPE (Llama's, TinyLlama's): Metaspace, <s> before every text."""
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="never", split=False)
    tok.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=200, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    tok.train_from_iterator([TEXT], trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def qwen_tokenizer() -> tokenizers.Tokenizer:
    """A byte-level BPE (Qwen2's scheme) with an end-of-text special token."""
    tok = BPETokenizer.train(TEXT, vocab_size=280).tokenizer
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


def hf_config(family: str, tie: bool = False, **overrides):
    config_class, _ = FAMILIES[family]
    fields = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  rope_theta=50000.0, rms_norm_eps=1e-5, tie_word_embeddings=tie,
                  initializer_range=0.1, bos_token_id=None, eos_token_id=None)  # fmt: skip
    return config_class(**{**fields, **overrides})


def hf_model(family: str, tie: bool = False, seed: int = 0, **overrides):
    """A random ``transformers`` model of ``family`` with non-trivial norm gains and biases."""
    torch.manual_seed(seed)
    model = FAMILIES[family][1](hf_config(family, tie, **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.2 * torch.randn_like(p))
    return model


def hf_folder(tmp_path: Path, family: str, tie: bool = False) -> tuple[Path, object]:
    """A saved model folder: config.json, model.safetensors and tokenizer.json."""
    hf = hf_model(family, tie)
    folder = tmp_path / f"{family}-{'tied' if tie else 'untied'}"
    hf.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    tok = llama_tokenizer() if family == "llama" else qwen_tokenizer()
    tok.save(str(folder / "tokenizer.json"))
    return folder, hf


def llama_config(**overrides) -> GPTConfig:
    fields = dict(vocab_size=VOCAB, block_size=32, n_layer=2, n_head=4, n_kv_head=2, n_embd=32,
                  pos_emb="rope", norm="rmsnorm", mlp="swiglu", bias=False, tie_weights=False,
                  rope_theta=50000.0, norm_eps=1e-5, mlp_hidden=40)  # fmt: skip
    return GPTConfig(**{**fields, **overrides})


def random_gpt(config: GPTConfig, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():  # larger weights than GPT-2's init, so that the logits differ
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.dim() == 2 else 1.0) + (p.dim() == 1))
    return model


def assert_parity(ours: GPT, hf, idx: torch.Tensor, new_tokens: int = 12) -> float:
    """Logits within 1e-4 and greedy generation token-equal; returns the max |logit diff|."""
    with torch.no_grad():
        diff = (ours(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff <= 1e-4
    theirs = hf.generate(
        idx, attention_mask=torch.ones_like(idx), max_new_tokens=new_tokens, do_sample=False
    )
    assert torch.equal(ours.generate(idx, new_tokens, temperature=0), theirs)
    assert torch.equal(ours.generate(idx, new_tokens, temperature=0, static_cache=True), theirs)
    return diff


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_from_huggingface_folder_matches_transformers(tmp_path, family, tie):
    folder, hf = hf_folder(tmp_path, family, tie)
    model = GPT.from_huggingface(folder)
    c = model.config
    assert (c.n_head, c.n_kv_head, c.mlp_hidden, c.rope_theta, c.norm_eps) == (4, 2, 48, 5e4, 1e-5)
    assert c.tie_weights == tie and c.qkv_bias == (family == "qwen2") and not c.bias
    assert (model.lm_head.weight is model.transformer.wte.weight) == tie
    assert assert_parity(model, hf, torch.randint(0, VOCAB, (2, 10))) <= 1e-4
    prompt = torch.tensor([model.tokenizer.encode(CHINESE)])
    assert assert_parity(model, hf, prompt) <= 1e-4


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
@pytest.mark.parametrize("qkv_bias", [False, True], ids=["llama", "qwen2"])
def test_to_huggingface_matches_transformers_and_comes_back(tmp_path, qkv_bias, tie):
    model = random_gpt(llama_config(qkv_bias=qkv_bias, tie_weights=tie))
    hf = model.to_huggingface()
    assert type(hf).__name__ == ("Qwen2ForCausalLM" if qkv_bias else "LlamaForCausalLM")
    assert hf.config.num_key_value_heads == 2 and hf.config.intermediate_size == 40
    idx = torch.randint(0, VOCAB, (2, 10))
    assert_parity(model, hf, idx)
    hf.save_pretrained(tmp_path / "hf")
    back = GPT.from_huggingface(tmp_path / "hf")
    assert back.config == model.config
    assert all(
        torch.equal(a, b) for a, b in zip(back.parameters(), model.parameters(), strict=True)
    )


def test_imported_llama_saves_and_loads_with_its_fields_and_tokenizer(tmp_path):
    folder, hf = hf_folder(tmp_path, "llama")
    model = GPT.from_huggingface(folder)
    model.save_pretrained(tmp_path / "mine")
    saved = json.loads((tmp_path / "mine" / "config.json").read_text())["model_config"]
    assert {k: saved[k] for k in ("n_kv_head", "rope_theta", "norm_eps", "mlp_hidden")} == {
        "n_kv_head": 2, "rope_theta": 5e4, "norm_eps": 1e-5, "mlp_hidden": 48,
    }  # fmt: skip
    back = genai.load(tmp_path / "mine", device="cpu")
    assert back.config == model.config
    idx = torch.randint(0, VOCAB, (1, 8))
    torch.testing.assert_close(back(idx)[0], model(idx)[0], rtol=0, atol=0)
    assert back.tokenizer.encode(CHINESE) == model.tokenizer.encode(CHINESE)
    text = genai.generate_text(back, CHINESE, max_new_tokens=6, temperature=0)
    assert text.startswith(CHINESE)
    assert text == genai.generate_text(model, CHINESE, max_new_tokens=6, temperature=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_chinese_prompt_round_trips_through_the_tokenizer(tmp_path, family):
    folder, _ = hf_folder(tmp_path, family)
    tok = GPT.from_huggingface(folder).tokenizer
    assert isinstance(tok, BPETokenizer)
    ids = tok.encode(CHINESE)
    assert (ids[0] == 1) == (family == "llama")  # Llama's tokenizer puts <s> first
    assert tok.decode(ids) == CHINESE
    assert tok.decode(tok.encode(TEXT)) == TEXT


# Grouped-query attention: the caches, the CUDA-graph buffers, the math.

GQA = [
    {"n_kv_head": 2},
    {"n_kv_head": 1},
    {"n_kv_head": 2, "pos_emb": "learned", "norm": "layernorm", "mlp": "gelu"},
    {"n_kv_head": 1, "qk_norm": True, "qkv_bias": True},
]
GQA_IDS = ["kv2", "kv1", "kv2-learned", "kv1-qknorm-qkvbias"]


def gqa_model(**options) -> GPT:
    config = llama_config(vocab_size=13, block_size=8, n_embd=16, mlp_hidden=24, **options)
    return random_gpt(config).double()


@pytest.mark.parametrize("options", GQA, ids=GQA_IDS)
@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_gqa_cached_generation_equals_uncached_past_block_size(options, static):
    model = gqa_model(**options)
    idx = torch.randint(0, 13, (2, 5))
    for shift in (1, 3):
        cached = model.generate(idx, 20, temperature=0, window_shift=shift, static_cache=static)
        uncached = model.generate(idx, 20, temperature=0, use_cache=False, window_shift=shift)
        assert torch.equal(cached, uncached)
    sampled = model.generate(idx, 20, seed=1, static_cache=static)
    assert torch.equal(sampled, model.generate(idx, 20, seed=1, use_cache=False))


@pytest.mark.parametrize("options", GQA, ids=GQA_IDS)
@pytest.mark.parametrize("static", [False, True], ids=["dynamic", "static"])
def test_gqa_cache_holds_the_kv_heads_and_continues_chunk_by_chunk(options, static):
    model = gqa_model(**options)
    idx = torch.randint(0, 13, (2, 8))
    cache = KVCache(model.config, 2, torch.device("cpu"), torch.float64, static=static)
    heads = options["n_kv_head"]
    assert [tuple(k.shape) for k in cache.k + cache.v] == [(2, heads, 8, 4)] * 4
    chunks = [model._hidden(idx[:, a:b], cache) for a, b in ((0, 3), (3, 4), (4, 8))]
    torch.testing.assert_close(torch.cat(chunks, dim=1), model._hidden(idx))


def test_cuda_graph_step_buffers_hold_the_kv_heads():
    model = gqa_model(n_kv_head=1)
    idx = torch.randint(0, 13, (3, 2))
    step = GraphedDecodeStep(model, model.new_cache(idx, static=True))
    assert [tuple(k.shape) for k in step.cache.k + step.cache.v] == [(3, 1, 8, 4)] * 4
    assert step.cache.k[0].dtype == torch.float64 and step.graph is None  # captured on CUDA


def test_decoding_allocates_only_the_positions_it_uses(monkeypatch):
    model = gqa_model(n_kv_head=2)
    sizes = []
    new_cache = model.new_cache

    def recording(idx, static=False, capacity=None):
        cache = new_cache(idx, static, capacity)
        sizes.append(cache.k[0].shape[2])
        return cache

    monkeypatch.setattr(model, "new_cache", recording)
    idx = torch.randint(0, 13, (1, 3))
    for static in (False, True):
        model.generate(idx, 2, temperature=0, static_cache=static)  # 3 + 2 positions
        model.generate(idx, 20, temperature=0, static_cache=static)  # the window slides
    assert sizes == [5, 8, 5, 8]
    cache = model.new_cache(idx, capacity=4)
    model._hidden(idx, cache)
    with pytest.raises(ValueError, match="the cache holds 4 positions, not 5"):
        model._hidden(idx[:, :2], cache)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gqa_cuda_graph_generation_equals_uncached():
    model = gqa_model(n_kv_head=1).cuda()
    idx = torch.randint(0, 13, (2, 5), device="cuda")
    graphed = model.generate(idx, 20, temperature=0, window_shift=3, static_cache=True)
    uncached = model.generate(idx, 20, temperature=0, window_shift=3, use_cache=False)
    assert torch.equal(graphed, uncached)


def test_gqa_equals_attention_with_each_kv_head_repeated():
    """Query head h reads key/value head h // (n_head / n_kv_head), as Llama's ``repeat_kv``."""
    gqa = gqa_model(n_kv_head=2)
    config = llama_config(vocab_size=13, block_size=8, n_embd=16, mlp_hidden=24, n_kv_head=4)
    full = GPT(config).double().eval()
    state = gqa.state_dict()
    for i in range(2):
        name = f"transformer.h.{i}.attn.c_attn.weight"
        q, k, v = state[name].split([16, 8, 8])
        rep = [t.view(2, 4, 16).repeat_interleave(2, dim=0).reshape(16, 16) for t in (k, v)]
        state[name] = torch.cat([q, *rep])
    full.load_state_dict(state)
    idx = torch.randint(0, 13, (2, 8))
    torch.testing.assert_close(full(idx)[0], gqa(idx)[0])


# What the layout cannot hold is refused, naming the field.


@pytest.mark.parametrize(
    ("family", "fields", "match"),
    [
        (
            "llama",
            {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
            "rope_scaling must be None",
        ),
        (
            "llama",
            {
                "rope_scaling": {
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 32,
                }
            },
            "rope_scaling must be None",
        ),  # fmt: skip
        ("llama", {"attention_bias": True}, "attention_bias must be False"),
        ("llama", {"mlp_bias": True}, "mlp_bias must be False"),
        ("llama", {"head_dim": 16}, "head_dim must be hidden_size / num_attention_heads = 8"),
        ("llama", {"hidden_act": "gelu"}, "hidden_act must be 'silu'"),
        ("llama", {"num_local_experts": 4}, "num_local_experts must be unset"),
        (
            "qwen2",
            {"use_sliding_window": True, "sliding_window": 16},
            "use_sliding_window must be False",
        ),
        ("qwen2", {"num_experts": 8}, "num_experts must be unset"),
    ],
)
def test_refused_configs_name_the_field(tmp_path, family, fields, match):
    config = hf_config(family, **fields)
    config.save_pretrained(tmp_path / "hf")  # the config is refused before any weight is read
    with pytest.raises(ValueError, match=match) as error:
        GPT.from_huggingface(tmp_path / "hf")
    assert "\n" not in str(error.value)


def test_other_model_types_are_refused_by_name(tmp_path):
    transformers.MistralConfig(hidden_size=32, num_attention_heads=4).save_pretrained(tmp_path)
    with pytest.raises(
        ValueError, match="model_type must be one of 'gpt2', 'llama', 'qwen2', got 'mistral'"
    ):
        GPT.from_huggingface(tmp_path)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"n_kv_head": 3}, r"n_kv_head \(3\) must divide n_head \(4\)"),
        ({"n_kv_head": 0}, "n_kv_head must be a positive integer or None"),
        ({"rope_theta": 0.0}, "rope_theta must be > 0"),
        ({"norm_eps": -1e-5}, "norm_eps must be > 0 or None"),
        ({"mlp_hidden": 0}, "mlp_hidden must be a positive integer or None"),
        ({"qkv_bias": True, "bias": True}, "qkv_bias=True needs bias=False"),
        ({"n_kv_head": 2.0}, "n_kv_head must be an integer"),
    ],
)
def test_config_rules_of_the_new_fields(fields, match):
    with pytest.raises((ValueError, TypeError), match=match):
        llama_config(**fields)


def test_new_fields_default_to_todays_layout():
    c = GPTConfig()
    assert (c.n_kv_head, c.rope_theta, c.norm_eps, c.mlp_hidden, c.qkv_bias) == (
        None, 10000.0, None, None, False,
    )  # fmt: skip
    model = GPT(GPTConfig(n_embd=32, n_head=4, n_layer=1, mlp="swiglu", norm="rmsnorm"))
    block = model.transformer.h[0]
    assert block.attn.c_attn.weight.shape == (96, 32) and block.mlp.c_fc.weight.shape == (176, 32)
    assert block.ln_1.eps == 1e-6 and GPT(GPTConfig()).transformer.ln_f.eps == 1e-5


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"qk_norm": True}, "qk_norm=True"),
        ({"mlp": "relu2", "logit_softcap": 5.0}, "mlp='relu2', logit_softcap=5.0"),
    ],
)
def test_export_names_the_options_no_family_holds(fields, named):
    with pytest.raises(ValueError, match=f"the Llama family's [(]this model has {named}[)]$"):
        random_gpt(llama_config(**fields)).to_huggingface()


def test_gpt2_export_refuses_grouped_query_attention():
    config = GPTConfig(vocab_size=13, block_size=8, n_layer=1, n_head=4, n_kv_head=2, n_embd=16)
    with pytest.raises(ValueError, match=r"GPT-2's layout \(this model has n_kv_head=2\)"):
        GPT(config).to_huggingface()
