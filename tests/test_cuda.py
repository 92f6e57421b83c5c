"""The CUDA paths: mixed precision, grad scalers, torch.compile, devices in checkpoints.

Skipped where no GPU is present (CI); on a GPU machine run ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

import genai
from genai.data.dataset import ImageDataset
from genai.data.text import CharTokenizer
from genai.gpt.decoding import GraphedDecodeStep

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TEXT = "To be, or not to be, that is the question. " * 40


def digits(n: int = 256) -> ImageDataset:
    """Bars at a class-dependent row: learnable in a few steps."""
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 40, (n, 1, 28, 28), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % 10
    for i, label in enumerate(labels.tolist()):
        images[i, 0, 3 + 2 * label : 6 + 2 * label, 4:24] = 255
    return ImageDataset(images, labels, "mnist", "train", "test")


def losses(run_dir, key: str = "loss") -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r[key] for r in map(json.loads, lines) if r["split"] == "train" and key in r]


def common(tmp_path, name: str, **kw) -> dict:
    return dict(out_dir=str(tmp_path / name), epochs=None, device="cuda", progress=False,
                log_every=1, batch_size=32, **kw)  # fmt: skip


@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_vae_trains_on_cuda_and_loads_on_cpu(tmp_path, precision):
    torch.manual_seed(0)
    model = genai.VAE(genai.VAEConfig(latent_dim=8))
    config = genai.VAETrainConfig(
        **common(tmp_path, precision, max_steps=40, precision=precision, lr=2e-3)
    )
    genai.train_vae(model, digits(), config)
    curve = losses(tmp_path / precision)
    assert all(math.isfinite(v) for v in curve)
    assert sum(curve[-5:]) / 5 < 0.8 * sum(curve[:5]) / 5, curve  # it learned
    assert next(model.parameters()).dtype == torch.float32  # fp32 master weights
    if precision == "fp16":
        state = torch.load(tmp_path / precision / "state.pt", weights_only=True)
        assert state["scalers"]["vae"]["_growth_tracker"] > 0  # a live scaler, checkpointed
    x = digits(8).images.float().div(255)
    on_cpu = genai.load(tmp_path / precision, device="cpu")
    torch.testing.assert_close(
        on_cpu.reconstruct(x), model.eval().reconstruct(x.cuda()).cpu(), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_conditional_gan_trains_on_cuda(tmp_path, precision):
    torch.manual_seed(0)
    model = genai.GAN(genai.GANConfig(num_classes=10, latent_dim=16, g_width=16, d_width=16))
    config = genai.GANTrainConfig(
        **common(tmp_path, "gan", max_steps=30, precision=precision, sample_every=1000)
    )
    genai.train_gan(model, digits(), config)
    for key in ("d_loss", "g_loss"):
        assert all(math.isfinite(v) for v in losses(tmp_path / "gan", key))
    sevens = genai.load(tmp_path / "gan", device="cuda").sample(
        4, labels=torch.full((4,), 7), generator=torch.Generator("cuda").manual_seed(0)
    )
    assert sevens.device.type == "cuda" and sevens.shape == (4, 1, 28, 28)
    assert sevens.min() >= 0 and sevens.max() <= 1


def test_compiled_bf16_gpt_on_cuda(tmp_path):
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = genai.GPT(genai.GPTConfig(tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                                      n_embd=32, bias=False))  # fmt: skip
    config = genai.GPTTrainConfig(**{
        **common(tmp_path, "gpt", max_steps=100, precision="bf16", compile=True, lr=3e-3,
               warmup_steps=5),
        "eval_every": 100, "eval_batches": 4, "sample_every": 100, "sample_tokens": 20,
    })  # fmt: skip
    genai.train_gpt(model, TEXT, tok, config)
    curve = losses(tmp_path / "gpt")
    assert curve[0] == pytest.approx(math.log(tok.vocab_size), abs=0.3)
    assert curve[-1] < 0.5 * curve[0], curve
    assert next(model.parameters()).device.type == "cuda"

    loaded = genai.load(tmp_path / "gpt", device="cuda")
    prompt = torch.tensor([tok.encode("To be")], device="cuda")
    greedy = [loaded.generate(prompt, 40, temperature=0, use_cache=c) for c in (True, False)]
    assert torch.equal(*greedy)
    sampled = [
        loaded.generate(
            prompt,
            40,
            temperature=0.8,
            top_p=0.9,
            use_cache=c,
            generator=torch.Generator("cuda").manual_seed(1),
        )  # fmt: skip
        for c in (True, False)
    ]
    assert torch.equal(*sampled)
    on_cpu = genai.load(tmp_path / "gpt", device="cpu")
    torch.testing.assert_close(
        on_cpu(prompt.cpu())[0], loaded(prompt)[0].cpu(), rtol=1e-4, atol=1e-4
    )
    continuation = tok.decode(greedy[0][0, prompt.shape[1] : prompt.shape[1] + 10].tolist())
    assert genai.generate_text(loaded, "To be", 10, temperature=0) == "To be" + continuation


@pytest.mark.parametrize(
    "options", [{}, {"pos_emb": "rope", "qk_norm": True}], ids=["gpt2", "rope"]
)
def test_cuda_graph_decoding_equals_uncached_greedy(options):
    torch.manual_seed(0)
    config = genai.GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16,
                             **options)  # fmt: skip
    model = genai.GPT(config).cuda().double().eval()
    idx = torch.randint(0, 13, (2, 5), device="cuda")
    # 40 tokens past block_size 16: the window slides, the cache is refilled, the graph replays.
    graphed = model.generate(idx, 40, temperature=0, window_shift=3, static_cache=True)
    uncached = model.generate(idx, 40, temperature=0, window_shift=3, use_cache=False)
    assert torch.equal(graphed, uncached)


def test_cuda_graph_decoding_under_bf16_autocast_matches_eager_static():
    torch.manual_seed(0)
    model = genai.GPT(genai.GPTConfig(vocab_size=13, block_size=32, n_layer=2, n_head=2,
                                      n_embd=32)).cuda().eval()  # fmt: skip
    idx = torch.randint(0, 13, (1, 4), device="cuda")
    with torch.autocast("cuda", torch.bfloat16):
        step = model.new_cache(idx, static=True)  # bf16 keys and values
        graphed = GraphedDecodeStep(model, step)
        model._next_logits(idx, step)
        eager = model.new_cache(idx, static=True)
        model._next_logits(idx, eager)
        token = idx[:, -1:]
        for _ in range(10):
            a = graphed(token, step).clone()
            b = model.decode_step(token, eager)
            torch.testing.assert_close(a, b)
            token = a.argmax(-1, keepdim=True)
