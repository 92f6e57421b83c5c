"""GPU benchmarks: the three models on CUDA in fp32, bf16 and with torch.compile; JSON lines.

    python benchmarks/gpu.py [--parts peak,vae,gan,gpt,generate,gpt-full] [--text input.txt]
                              [--fmnist-root DIR] [--gpt-iters 5000]

- ``peak``: the measured matmul ceiling (TF32 and bf16, 8192^3), for the fractions below.
- ``vae``: pytorch/examples' VAE architecture on Fashion-MNIST (batch 128, Adam 1e-3, 10
  epochs): seconds per 60,000-image epoch and the test loss, fp32 and bf16.
- ``gan``: the default conditional DCGAN (batch 64) at 1x28x28 and at CIFAR-10's 3x32x32
  (50,000 random images): images/s and seconds per 60,000 images, fp32 and bf16.
- ``gpt``: nanoGPT's shakespeare-char GPU config (6 layers, 6 heads, 384 wide, block 256,
  batch 64, dropout 0.2, lr 1e-3, beta2 0.99): ms per iteration, tokens/s and the fraction of the
  bf16 peak for fp32, bf16 and bf16 + torch.compile (300 iterations each).
- ``generate``: tokens/s of 500 new tokens at batch 1 with the KV cache, with a static cache
  whose decoding step replays a CUDA graph, and without a cache, at that size (block 256) and at
  GPT-2 small's (124M parameters, block 1024); ``greedy_equal``: the three give the same greedy
  tokens.
- ``gpt-full``: the whole shakespeare-char run (5000 iterations, bf16 + compile), where
  nanoGPT's README reports a best validation loss of 1.4697 after about 3 minutes on an A100,
  once per recipe (``--recipes gpt2,modern``): wall time, the train and validation losses (200
  batches of 64) every 250 iterations, and the step and seconds to validation loss 1.47.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import genai
from genai.data.dataset import ImageDataset
from genai.data.images import load_images
from genai.data.text import CharTokenizer, load_text
from genai.plots import read_metrics

SHARED = Path(__file__).resolve().parents[2] / "shared/data"


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def step_seconds(run_dir: Path, log_every: int) -> float:
    """Median seconds per optimizer step between training log lines (the first one left out)."""
    times = [r["time"] for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "train"]
    return statistics.median(b - a for a, b in zip(times[1:-1], times[2:], strict=True)) / log_every


def matmul_tflops(dtype: torch.dtype, n: int = 8192, repeats: int = 10) -> float:
    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        a @ b
    end.record()
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (start.elapsed_time(end) / 1e3) / 1e12


def peaks() -> dict:
    torch.backends.cuda.matmul.allow_tf32 = True
    tf32 = matmul_tflops(torch.float32)
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"tf32_tflops": round(tf32, 1), "bf16_tflops": round(matmul_tflops(torch.bfloat16), 1)}


def vae(root: str | None, tmp: Path) -> dict:
    train = load_images("fashion-mnist", "train", root=root)
    test = load_images("fashion-mnist", "test", root=root)
    steps = len(train) // 128
    out = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = genai.VAE(genai.VAEConfig(arch="mlp", hidden_dims=(400,), latent_dim=20))
        config = genai.VAETrainConfig(
            out_dir=str(tmp / f"vae-{precision}"), epochs=10, batch_size=128, lr=1e-3,
            device="cuda", precision=precision, progress=False, log_every=steps // 4,
            eval_every=10 * steps, sample_every=10 * steps,
        )  # fmt: skip
        summary = genai.train_vae(model, train, config, eval_data=test)
        seconds = step_seconds(tmp / f"vae-{precision}", steps // 4) * 60_000 / 128
        out[precision] = {
            "s_per_epoch": round(seconds, 3),
            "test_loss": round(summary["eval"]["loss"], 2),
        }
    return out


def gan(tmp: Path) -> dict:
    """The default conditional DCGAN at MNIST's size and at CIFAR-10's (3x32x32, 50,000 images)."""
    out = {}
    for name, shape, n in (
        ("mnist_1x28x28", (1, 28, 28), 6400),
        ("cifar_3x32x32", (3, 32, 32), 50_000),
    ):
        gen = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (n, *shape), dtype=torch.uint8, generator=gen)
        data = ImageDataset(images, torch.arange(n) % 10, "random", "train", "test")
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = genai.GAN(genai.GANConfig(num_classes=10, image_shape=shape))
            config = genai.GANTrainConfig(
                out_dir=str(tmp / f"gan-{name}-{precision}"), epochs=None, max_steps=600,
                device="cuda", precision=precision, progress=False, log_every=50,
                sample_every=10_000,
            )  # fmt: skip
            genai.train_gan(model, data, config)
            seconds = step_seconds(tmp / f"gan-{name}-{precision}", 50) / config.batch_size
            out[f"{name}_{precision}"] = {
                "images_per_s": round(1 / seconds),
                "s_per_60k_images": round(seconds * 60_000, 2),
            }
    return out


def gpt_config(
    vocab_size: int, block_size: int = 256, dropout: float = 0.2, recipe: str = "gpt2"
) -> genai.GPTConfig:
    return genai.GPTConfig.recipe(recipe, vocab_size=vocab_size, block_size=block_size, n_layer=6,
                                  n_head=6, n_embd=384, dropout=dropout, bias=False)  # fmt: skip


def train_gpt(text: str, name: str, steps: int, precision: str, compile: bool, log_every: int,
              tmp: Path, eval_every: int | None = None,
              recipe: str = "gpt2") -> tuple[genai.GPT, float]:  # fmt: skip
    """nanoGPT's shakespeare-char run on CUDA; returns the model and seconds per iteration.

    The "gpt2" recipe is nanoGPT's own settings; "modern" takes the recipe's layout and
    optimizer (Muon, WSD) at the same size, batch, dropout and length.
    """
    tok = CharTokenizer.from_text(text)
    torch.manual_seed(1337)
    model = genai.GPT(gpt_config(tok.vocab_size, recipe=recipe))
    nanogpt = dict(lr=1e-3, warmup_steps=100, min_lr_ratio=0.1, betas=(0.9, 0.99))
    config = genai.GPTTrainConfig.recipe(recipe,
        **({} if recipe != "gpt2" else nanogpt),
        out_dir=str(tmp / name), max_steps=steps, batch_size=64, device="cuda",
        precision=precision, compile=compile, progress=False, log_every=log_every,
        eval_every=eval_every or steps, sample_every=steps, eval_batches=200, sample_tokens=0,
        checkpoint_every=0,
    )  # fmt: skip
    genai.train_gpt(model, text, tok, config)
    return model, step_seconds(tmp / name, log_every)


def gpt_speed(text: str, bf16_peak: float, tmp: Path) -> dict:
    out = {}
    for precision, compile in (("fp32", False), ("bf16", False), ("bf16", True)):
        name = f"{precision}{'-compile' if compile else ''}"
        model, seconds = train_gpt(text, name, 300, precision, compile, 25, tmp)
        c = model.config
        tokens = 64 * c.block_size
        flops = (6 * model.num_params() + 12 * c.n_layer * c.n_embd * c.block_size) * tokens
        out[name] = {
            "ms_per_iter": round(seconds * 1e3, 2),
            "tokens_per_s": round(tokens / seconds),
            "fraction_of_bf16_peak": round(flops / seconds / 1e12 / bf16_peak, 3),
        }
    return out


def gpt_full(text: str, iters: int, recipe: str, tmp: Path, target: float = 1.47) -> dict:
    """The whole run, with the validation loss (200 batches of 64) every 250 iterations."""
    t = time.perf_counter()
    _, seconds = train_gpt(text, f"full-{recipe}", iters, "bf16", True, 50, tmp, eval_every=250,
                           recipe=recipe)  # fmt: skip
    wall = time.perf_counter() - t
    records = read_metrics(tmp / f"full-{recipe}" / "metrics.jsonl")
    train = {r["step"]: r for r in records if r["split"] == "train"}
    val = [r for r in records if r["split"] == "val"]
    curve = [(r["step"], round(train[r["step"]]["loss"], 4), round(r["loss"], 4)) for r in val]
    reached = [r["step"] for r in val if r["loss"] <= target]
    return {"recipe": recipe, "iters": iters, "wall_s": round(wall, 1),
            "ms_per_iter": round(seconds * 1e3, 2), "step_train_val": curve,
            "best_val_loss": min(v for _, _, v in curve),
            f"step_to_val_{target}": reached[0] if reached else None,
            f"s_to_val_{target}": round(train[reached[0]]["time"], 1) if reached else None,
            }  # fmt: skip


def generate(tokens: int = 500) -> dict:
    """Batch-1 decoding: tokens/s with the KV cache, with a static cache replayed as a CUDA graph,
    and without a cache; and whether the three give the same greedy tokens."""

    def decode(m: genai.GPT, **kw) -> tuple[float, torch.Tensor]:
        prompt = torch.zeros(1, 1, dtype=torch.long, device="cuda")

        def run() -> torch.Tensor:
            out = m.generate(prompt, tokens, generator=torch.Generator("cuda").manual_seed(0),
                             **kw)  # fmt: skip
            torch.cuda.synchronize()
            return out

        run()
        times = []
        for _ in range(3):
            t = time.perf_counter()
            run()
            times.append(time.perf_counter() - t)
        greedy = m.generate(prompt, tokens, temperature=0, **kw)
        return round(tokens / statistics.median(times), 1), greedy

    torch.manual_seed(0)
    configs = {
        "shakespeare_block256": gpt_config(65, dropout=0.0),
        "gpt2_small_block1024": genai.GPTConfig(
            50257, block_size=1024, n_layer=12, n_head=12, n_embd=768
        ),
    }
    out = {}
    for name, config in configs.items():
        model = genai.GPT(config).cuda().eval()
        runs = {
            "cached": decode(model),
            "cuda_graph": decode(model, static_cache=True),
            "uncached": decode(model, use_cache=False),
        }
        out[name] = {key: rate for key, (rate, _) in runs.items()}
        out[name]["greedy_equal"] = all(
            torch.equal(greedy, runs["uncached"][1]) for _, greedy in runs.values()
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="peak,vae,gan,gpt,generate,gpt-full")
    p.add_argument("--text", default=str(SHARED / "tinyshakespeare/input.txt"))
    p.add_argument("--fmnist-root", default=None)
    p.add_argument("--gpt-iters", type=int, default=5000)
    p.add_argument("--recipes", default="gpt2,modern", help="recipes of the gpt-full part")
    args = p.parse_args()
    parts = args.parts.split(",")
    if not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU")
    emit({"device": torch.cuda.get_device_name(), "torch": torch.__version__})
    ceiling = peaks()
    if "peak" in parts:
        emit({"part": "peak", **ceiling})
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "vae" in parts:
            emit({"part": "vae", **vae(args.fmnist_root, tmp)})
        if "gan" in parts:
            emit({"part": "gan", **gan(tmp)})
        if "gpt" in parts:
            emit({"part": "gpt", **gpt_speed(load_text(args.text), ceiling["bf16_tflops"], tmp)})
        if "generate" in parts:
            emit({"part": "generate", **generate()})
        if "gpt-full" in parts:
            for recipe in args.recipes.split(","):
                text = load_text(args.text)
                emit({"part": "gpt-full", **gpt_full(text, args.gpt_iters, recipe, tmp)})


if __name__ == "__main__":
    main()
