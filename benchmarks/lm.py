"""GPT benchmark at nanoGPT's README CPU config on tiny-shakespeare; prints one JSON line.

    flock /tmp/genai-bench.lock .venv/bin/python benchmarks/lm.py

Trains the char-level model (n_layer 4, n_head 4, n_embd 128, block 64, batch 12, 2000 iterations,
lr 1e-3 with warmup and cosine decay, dropout 0, no bias) in fp32 and in bf16 for the validation
loss; times both precisions in short runs that alternate fp32 and bf16 (ms per iteration: the
median of those runs, each the median of its log intervals), with tokens/s and the fraction of
the matmul peak measured in the same run; then times a training step of genai's GPT against
Hugging Face's ``GPT2LMHeadModel`` on the same weights, and generation of 500 tokens at batch 1
with block_size 512, with the KV cache, without it (recomputing the context every step, as
nanoGPT does), and with Hugging Face's ``generate`` on the same weights.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import genai
from genai.data.text import CharTokenizer, load_text, split_tokens
from genai.training.lm import evaluate_lm

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"


def matmul_gflops(dtype: torch.dtype, n: int = 1024, repeats: int = 7) -> float:
    """Median GFLOP/s of an n x n x n matmul."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(5):
            a @ b
        times.append((time.perf_counter() - t) / 5)
    return 2 * n**3 / statistics.median(times) / 1e9


def flops_per_iter(model: genai.GPT, batch: int) -> float:
    """nanoGPT's (PaLM's) estimate: 6N + 12 L H (C/H) T flops per token, forward and backward."""
    c = model.config
    per_token = 6 * model.num_params() + 12 * c.n_layer * c.n_embd * c.block_size
    return per_token * c.block_size * batch


def train(
    text: str, tok: CharTokenizer, precision: str, iters: int, out: Path, seed: int = 1337
) -> dict:
    torch.manual_seed(seed)
    model = genai.GPT(
        genai.GPTConfig(tok.vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
    )
    log_every = max(1, iters // 20)
    config = genai.LMTrainConfig(
        out_dir=str(out),
        max_steps=iters,
        batch_size=12,
        lr=1e-3,
        warmup_steps=100,
        lr_schedule="cosine",
        min_lr_ratio=0.1,
        weight_decay=0.1,
        beta2=0.99,
        grad_clip=1.0,
        precision=precision,
        device="cpu",
        seed=seed,
        log_every=log_every,
        eval_every=iters,
        sample_every=iters,
        sample_tokens=0,
        checkpoint_every=0,
        progress=False,
        overwrite=True,
    )
    genai.train_lm(model, text, tok, config)
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()]
    times = [r["time"] for r in records if r["split"] == "train"]
    # Log intervals hold training steps only (evaluation and checkpoints come at the very end).
    ms = statistics.median((b - a) / log_every * 1e3 for a, b in itertools.pairwise(times))
    val_tokens = split_tokens(torch.tensor(tok.encode(text)), 0.1)[1]
    val = evaluate_lm(model.eval(), val_tokens, batches=200, batch_size=12, seed=0)
    return {"val_loss": round(val["loss"], 4), "ms_per_iter": round(ms, 2), "model": model}


def training_steps(vocab_size: int, steps: int = 50, rounds: int = 5) -> dict:
    """ms per training step of genai's GPT and of ``transformers.GPT2LMHeadModel`` on the same
    weights (biases on: GPT-2's layout), at the benchmark's size, in one bare loop (forward,
    cross-entropy, backward, fused AdamW), the two alternating round by round."""
    import torch.nn.functional as F

    torch.manual_seed(0)
    ours = genai.GPT(
        genai.GPTConfig(vocab_size, block_size=64, n_layer=4, n_head=4, n_embd=128, bias=True)
    )
    hf = ours.to_huggingface()
    models = {
        "genai": (ours, lambda x: ours(x)[0]),
        "hf": (hf, lambda x: hf(input_ids=x, use_cache=False).logits),
    }
    data = torch.randint(vocab_size, (steps, 12, 65), generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(rounds + 1):  # round 0 warms up
        for name, (model, logits_of) in models.items():
            opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
            t = time.perf_counter()
            for batch in data:
                logits = logits_of(batch[:, :-1])
                loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            if round_:
                times[name].append((time.perf_counter() - t) / steps * 1e3)
    ms = {name: statistics.median(t) for name, t in times.items()}
    return {
        "train_step_ms_genai_bare_loop": round(ms["genai"], 2),
        "train_step_ms_hf_gpt2_bare_loop": round(ms["hf"], 2),
        "hf_gpt2_step_time_ratio": round(ms["hf"] / ms["genai"], 2),
    }


def generation(repeats: int = 3, tokens: int = 500) -> dict:
    torch.manual_seed(0)
    model = genai.GPT(
        genai.GPTConfig(65, block_size=512, n_layer=4, n_head=4, n_embd=128, bias=False)
    ).eval()
    prompt = torch.zeros(1, 1, dtype=torch.long)

    def rate(fn) -> float:
        fn()  # warm-up
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return tokens / statistics.median(times)

    def ours(use_cache: bool):
        g = torch.Generator().manual_seed(0)
        return model.generate(prompt, tokens, temperature=1.0, generator=g, use_cache=use_cache)

    hf = model.to_huggingface()

    def hugging_face():
        with torch.no_grad():
            hf.generate(
                prompt, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=True, top_k=0
            )

    return {
        "gen_tokens_per_s_cached": round(rate(lambda: ours(True)), 1),
        "gen_tokens_per_s_uncached": round(rate(lambda: ours(False)), 1),
        "gen_tokens_per_s_hf_generate": round(rate(hugging_face), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=str(DEFAULT_TEXT))
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument(
        "--speed-rounds", type=int, default=3, help="alternating 300-iteration timing runs"
    )
    parser.add_argument(
        "--extra-seeds", type=int, default=0, help="more fp32 runs, for the seed spread of val loss"
    )
    args = parser.parse_args()
    text = load_text(args.text)
    tok = CharTokenizer.from_text(text)
    # A peak is a maximum: measure before each run and keep the best, so a busy moment (the
    # machine is shared) cannot understate it.
    peaks = {"fp32": [], "bf16": []}

    def measure_peaks() -> None:
        peaks["fp32"].append(matmul_gflops(torch.float32))
        peaks["bf16"].append(matmul_gflops(torch.bfloat16))

    measure_peaks()
    result = {
        "benchmark": "lm",
        "config": "nanoGPT CPU: L4 H4 C128 T64 B12, char tiny-shakespeare",
        "iters": args.iters,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for precision in ("fp32", "bf16"):
            runs[precision] = train(text, tok, precision, args.iters, Path(tmp) / precision)
            measure_peaks()
        # Speed from short runs alternating fp32, bf16, fp32, ...: a slow spell of the shared
        # machine then hits both, where it could skew one long run.
        speed = {precision: [] for precision in runs}
        for r in range(args.speed_rounds):
            for precision, times in speed.items():
                out = Path(tmp) / f"speed-{precision}-{r}"
                times.append(train(text, tok, precision, 300, out)["ms_per_iter"])
        for precision, run in runs.items():
            flops = flops_per_iter(run.pop("model"), 12)
            run["ms_per_iter_full_run"] = run.pop("ms_per_iter")
            run["ms_per_iter_runs"] = speed[precision]
            run["ms_per_iter"] = statistics.median(speed[precision])
            seconds = run["ms_per_iter"] / 1e3
            peak = max(peaks[precision])
            result[f"matmul_gflops_{precision}"] = round(peak, 1)
            result.update({f"{precision}_{k}": v for k, v in run.items()})
            result[f"{precision}_tokens_per_s"] = round(12 * 64 / seconds)
            result[f"{precision}_fraction_of_{precision}_peak"] = round(
                flops / seconds / 1e9 / peak, 3
            )
        if args.extra_seeds:
            losses = [
                train(text, tok, "fp32", args.iters, Path(tmp) / f"seed{s}", seed=s)["val_loss"]
                for s in range(args.extra_seeds)
            ]
            result["fp32_val_loss_other_seeds"] = losses
    result["bf16_speedup"] = round(result["fp32_ms_per_iter"] / result["bf16_ms_per_iter"], 2)
    result["bf16_val_loss_delta"] = round(result["bf16_val_loss"] - result["fp32_val_loss"], 4)
    result.update(training_steps(tok.vocab_size))
    result.update(generation())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
