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

``--recipe modern`` trains the "modern" recipe (``GPTConfig.recipe`` / ``GPTTrainConfig.recipe``)
instead of GPT-2's and adds the steps and seconds to validation loss 1.90 (nanoGPT's mean after
2000 iterations), from an evaluation on 200 batches every ``--eval-every`` steps; seconds are
steps times the run's median training ms per step (evaluation time left out).

``--compare SEEDS`` runs only the recipe comparison (a JSON line per run, then the summary):
GPT-2's and the modern recipe alternating, seed by seed, at ``--iters``. With
``--stop-at-target`` the modern run stops at its first evaluation at or under 1.90 (its
schedule still set for ``--iters``), so that a fine ``--eval-every`` costs little, and GPT-2's
runs evaluate once, at the end. ``--timing-rounds N`` then times both recipes' steps in N
pairs of alternating 200-step runs and gives the ratio again with those medians (alone, without
``--compare``, it runs only that timing). ``--ablation STEPS`` runs only the ablation: each option of the
modern recipe alone on GPT-2's recipe and each one removed from the modern recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

import genai
from genai.data.text import CharTokenizer, load_text, split_tokens
from genai.gpt.evaluate import evaluate_lm

DEFAULT_TEXT = Path(__file__).resolve().parents[2] / "shared/data/tinyshakespeare/input.txt"
TARGET = 1.90  # nanoGPT's mean validation loss after 2000 iterations at this config
SIZE = dict(block_size=64, n_layer=4, n_head=4, n_embd=128, bias=False)
# nanoGPT's README CPU settings: the GPT-2 recipe of this benchmark.
GPT2_TRAIN = dict(
    lr=1e-3,
    warmup_steps=100,
    lr_schedule="cosine",
    min_lr_ratio=0.1,
    weight_decay=0.1,
    betas=(0.9, 0.99),
)
# The ablation's options: (model fields, train fields) that the modern recipe sets.
OPTIONS = {
    "rope": ({"pos_emb": "rope"}, {}),
    "rmsnorm": ({"norm": "rmsnorm"}, {}),
    "qk_norm": ({"qk_norm": True}, {}),
    "relu2": ({"mlp": "relu2"}, {}),
    "untied_head": ({"tie_weights": False}, {}),
    "zero_init": ({"zero_init": True, "tie_weights": False}, {}),
    "softcap": ({"logit_softcap": 15.0}, {}),
    "muon": ({}, {"optimizer": "muon"}),
    "wsd": ({}, {"lr_schedule": "wsd", "decay_fraction": 0.4, "min_lr_ratio": 0.0}),
}


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


def configs(
    recipe: str, vocab_size: int, model_fields: dict | None = None, train_fields: dict | None = None
) -> tuple[genai.GPTConfig, dict]:
    """The model config and the train fields of ``recipe`` at the benchmark's size."""
    model = genai.GPTConfig.recipe(recipe, vocab_size=vocab_size, **SIZE, **(model_fields or {}))
    train = {**(GPT2_TRAIN if recipe == "gpt2" else {}), **(train_fields or {})}
    return model, train


def train(
    text: str,
    tok: CharTokenizer,
    precision: str,
    iters: int,
    out: Path,
    seed: int = 1337,
    recipe: str = "gpt2",
    eval_every: int = 0,
    model_fields: dict | None = None,
    train_fields: dict | None = None,
    stop_at_target: bool = False,
) -> dict:
    """One run; with ``eval_every``, also the validation curve (200 batches) and time to TARGET.

    ``stop_at_target``: end the run at its first evaluation at or under TARGET.
    """
    model_config, train_config = configs(recipe, tok.vocab_size, model_fields, train_fields)
    torch.manual_seed(seed)
    model = genai.GPT(model_config)
    log_every = eval_every // 2 if eval_every else max(1, iters // 20)
    config = genai.GPTTrainConfig.recipe(
        recipe,
        **{
            "out_dir": str(out),
            "max_steps": iters,
            "batch_size": 12,
            "grad_clip": 1.0,
            "precision": precision,
            "device": "cpu",
            "seed": seed,
            "log_every": log_every,
            "eval_every": eval_every or iters,
            "eval_batches": 200 if eval_every else 20,
            "sample_every": iters,
            "sample_tokens": 0,
            "checkpoint_every": 0,
            "progress": False,
            "overwrite": True,
            **train_config,
        },
    )

    stopped: list[dict] = []  # the evaluation that stopped the run (not written to the log)

    def stop(record: dict) -> None:
        if stop_at_target and record["split"] == "val" and record["loss"] <= TARGET:
            stopped.append(record)
            raise TargetReached

    with contextlib.suppress(TargetReached):
        genai.train_gpt(model, text, tok, config, callbacks=[stop])
    records = [json.loads(line) for line in (out / "metrics.jsonl").open()] + stopped
    train_records = [r for r in records if r["split"] == "train"]
    # An evaluation runs right after the log line of its step, so only the log intervals that
    # end at an evaluation step hold training alone.
    intervals = [
        (b["time"] - a["time"]) / log_every * 1e3
        for a, b in itertools.pairwise(train_records)
        if not eval_every or b["step"] % eval_every == 0
    ]
    ms = statistics.median(intervals)
    val_tokens = split_tokens(torch.tensor(tok.encode(text)), 0.1)[1]
    val = evaluate_lm(model.eval(), val_tokens, batches=200, batch_size=12, seed=0)
    result = {"val_loss": round(val["loss"], 4), "ms_per_iter": round(ms, 2), "model": model}
    if stopped:  # val_loss is then the model's at the stop, not at ``iters``
        result["stopped_at_step"] = stopped[0]["step"]
    if eval_every:
        curve = {r["step"]: round(r["loss"], 4) for r in records if r["split"] == "val"}
        reached = [step for step, loss in curve.items() if loss <= TARGET]
        result["val_curve"] = curve
        result["steps_to_target"] = min(reached) if reached else None
        result["seconds_to_target"] = round(min(reached) * ms / 1e3, 1) if reached else None
        result["seconds_total"] = round(iters * ms / 1e3, 1)
    return result


class TargetReached(Exception):
    """Raised by the callback of a ``stop_at_target`` run."""


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


def generation(repeats: int = 3, tokens: int = 500, recipe: str = "gpt2") -> dict:
    """Tokens/s of the recipe's layout (Hugging Face's ``generate`` on GPT-2's layout)."""
    torch.manual_seed(0)
    size = {**SIZE, "block_size": 512}
    model = genai.GPT(genai.GPTConfig.recipe(recipe, vocab_size=65, **size)).eval()
    gpt2 = genai.GPT(genai.GPTConfig(65, **size)).eval()
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

    hf = gpt2.to_huggingface()

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


def at_wall_time(run: dict, seconds: float) -> float | None:
    """Validation loss of ``run`` at the last evaluation within ``seconds`` of training."""
    steps = [s for s in run["val_curve"] if s * run["ms_per_iter"] / 1e3 <= seconds]
    return run["val_curve"][max(steps)] if steps else None


def alternating_ms(text: str, tok: CharTokenizer, rounds: int) -> dict[str, list[float]]:
    """ms per step of both recipes in ``rounds`` pairs of 200-step runs, alternating (A B, B A,
    ...): the machine's speed drifts between whole runs, so compare steps timed side by side."""
    ms: dict[str, list[float]] = {"gpt2": [], "modern": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(rounds):
            for recipe in list(ms)[:: 1 if r % 2 == 0 else -1]:
                out = Path(tmp) / f"{recipe}-{r}"
                ms[recipe].append(train(text, tok, "fp32", 200, out, r, recipe)["ms_per_iter"])
    return ms


def compare(
    text: str,
    tok: CharTokenizer,
    seeds: int,
    iters: int,
    eval_every: int,
    stop: bool = False,
    timing_rounds: int = 0,
) -> dict:
    """GPT-2's recipe and the modern one, alternating seed by seed, in one run; then, with
    ``timing_rounds``, that many pairs of alternating 200-step timing runs."""
    runs: dict[str, list[dict]] = {"gpt2": [], "modern": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(seeds):
            for recipe, done in runs.items():
                every = iters if stop and recipe == "gpt2" else eval_every
                out = Path(tmp) / f"{recipe}-{seed}"  # a stopped run must not roll back another
                stops = stop and recipe == "modern"
                run = train(
                    text, tok, "fp32", iters, out, seed, recipe, every, stop_at_target=stops
                )
                run.pop("model")
                done.append(run)
                print(json.dumps({"recipe": recipe, "seed": seed, **run}), flush=True)
    result: dict = {"benchmark": "lm_recipes", "iters": iters, "seeds": seeds, "target": TARGET}
    result.update(eval_every=eval_every, stop_at_target=stop)
    for recipe, done in runs.items():
        for key in ("val_loss", "ms_per_iter", "steps_to_target", "seconds_to_target"):
            result[f"{recipe}_{key}"] = [r[key] for r in done]
        result[f"{recipe}_seconds_total"] = [r["seconds_total"] for r in done]
        result[f"{recipe}_val_curves"] = [r["val_curve"] for r in done]
    # Per seed: the modern recipe's time to the target over GPT-2's whole 2000-iteration time.
    ratios = [
        m["seconds_to_target"] / g["seconds_total"] if m["seconds_to_target"] else None
        for g, m in zip(runs["gpt2"], runs["modern"], strict=True)
    ]
    result["modern_time_to_target_over_gpt2_total"] = [r and round(r, 3) for r in ratios]
    if timing_rounds:
        ms = alternating_ms(text, tok, timing_rounds)
        med = {recipe: statistics.median(v) for recipe, v in ms.items()}
        result["alternating_ms_per_iter"] = ms
        result["modern_time_to_target_over_gpt2_total_alternating_ms"] = [
            m["steps_to_target"]
            and round(m["steps_to_target"] * med["modern"] / (iters * med["gpt2"]), 3)
            for m in runs["modern"]
        ]
    return result


def ablation(text: str, tok: CharTokenizer, steps: int, eval_every: int, seed: int) -> dict:
    """Each option alone on GPT-2's recipe, each removed from the modern recipe (one seed)."""
    # What removing an option from the modern recipe sets back (GPT-2's value).
    removed = {
        "untied_head": ({"tie_weights": True, "zero_init": False}, {}),  # a tied head is not zeroed
        "zero_init": ({"zero_init": False}, {}),
        "muon": ({}, {"optimizer": "adamw"}),
        "wsd": ({}, {"lr_schedule": "cosine", "min_lr_ratio": 0.1}),
    }
    variants = {"gpt2": ("gpt2", {}, {}), "modern": ("modern", {}, {})}
    for name, (model_fields, train_fields) in OPTIONS.items():
        variants[f"+{name}"] = ("gpt2", model_fields, train_fields)
        gpt2_values = {k: genai.GPTConfig.__dataclass_fields__[k].default for k in model_fields}
        variants[f"-{name}"] = ("modern", *removed.get(name, (gpt2_values, {})))
    modern = genai.GPTTrainConfig.recipe("modern")
    for field in ("lr", "muon_lr"):  # the recipe's learning rates, halved and doubled
        for factor in (0.5, 2.0):
            value = getattr(modern, field) * factor
            variants[f"modern {field}={value:g}"] = ("modern", {}, {field: value})
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (recipe, model_fields, train_fields) in variants.items():
            run = train(
                text,
                tok,
                "fp32",
                steps,
                Path(tmp) / "run",
                seed,
                recipe,
                eval_every,
                model_fields,
                train_fields,
            )
            run.pop("model")
            runs[name] = run
            print(json.dumps({"variant": name, **run}), flush=True)
    rows = {}
    for name, run in runs.items():
        base = runs["modern" if name.startswith("-") or name.startswith("modern ") else "gpt2"]
        budget = base["ms_per_iter"] * steps / 1e3
        rows[name] = {
            "val_loss": run["val_loss"],
            "ms_per_iter": run["ms_per_iter"],
            "val_at_base_wall_time": at_wall_time(run, budget),
            "val_curve": run["val_curve"],
        }
    return {"benchmark": "lm_ablation", "steps": steps, "seed": seed, "rows": rows}


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
    parser.add_argument("--recipe", choices=("gpt2", "modern"), default="gpt2")
    parser.add_argument(
        "--eval-every", type=int, default=100, help="validation cadence for the time to target"
    )
    parser.add_argument("--compare", type=int, default=0, metavar="SEEDS", help="recipes only")
    parser.add_argument("--ablation", type=int, default=0, metavar="STEPS", help="ablation only")
    parser.add_argument(
        "--stop-at-target", action="store_true", help="--compare: stop modern runs at 1.90"
    )
    parser.add_argument(
        "--timing-rounds", type=int, default=0, help="alternating 200-step timing runs of both"
    )
    args = parser.parse_args()
    text = load_text(args.text)
    tok = CharTokenizer.from_text(text)
    if args.compare:
        result = compare(
            text,
            tok,
            args.compare,
            args.iters,
            args.eval_every,
            args.stop_at_target,
            args.timing_rounds,
        )
        print(json.dumps(result))
        return
    if args.stop_at_target:
        parser.error("--stop-at-target goes with --compare")
    if args.timing_rounds:
        ms = alternating_ms(text, tok, args.timing_rounds)
        print(json.dumps({"benchmark": "lm_recipes_ms", "alternating_ms_per_iter": ms}))
        return
    if args.ablation:
        print(json.dumps(ablation(text, tok, args.ablation, args.eval_every, seed=0)))
        return
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
        "recipe": args.recipe,
        "iters": args.iters,
        "threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for precision in ("fp32", "bf16"):
            out = Path(tmp) / precision
            every = args.eval_every if precision == "fp32" and args.recipe != "gpt2" else 0
            runs[precision] = train(
                text, tok, precision, args.iters, out, recipe=args.recipe, eval_every=every
            )
            measure_peaks()
        # Speed from short runs alternating fp32, bf16, fp32, ...: a slow spell of the shared
        # machine then hits both, where it could skew one long run.
        speed = {precision: [] for precision in runs}
        for r in range(args.speed_rounds):
            for precision, times in speed.items():
                out = Path(tmp) / f"speed-{precision}-{r}"
                run = train(text, tok, precision, 300, out, recipe=args.recipe)
                times.append(run["ms_per_iter"])
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
                train(text, tok, "fp32", args.iters, Path(tmp) / f"s{s}", s, args.recipe)[
                    "val_loss"
                ]
                for s in range(args.extra_seeds)
            ]
            result["fp32_val_loss_other_seeds"] = losses
    result["bf16_speedup"] = round(result["fp32_ms_per_iter"] / result["bf16_ms_per_iter"], 2)
    result["bf16_val_loss_delta"] = round(result["bf16_val_loss"] - result["fp32_val_loss"], 4)
    result.update(training_steps(tok.vocab_size))
    result.update(generation(recipe=args.recipe))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
