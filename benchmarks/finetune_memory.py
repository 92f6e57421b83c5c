"""Peak memory of fine-tuning on CPU: full against LoRA, bf16 frozen weights, activation
checkpointing; prints one JSON line per measurement, then a Markdown table.

    flock /tmp/genai-bench.lock .venv/bin/python benchmarks/finetune_memory.py

Two models built at random from their configs (the weights do not change the memory): GPT-2
small (124M: 12 layers, 768 wide, vocabulary 50257, tied head) and a 0.5B Llama-family model of
Qwen2.5-0.5B's shape (24 layers, 896 wide, 14 query and 2 key/value heads, SwiGLU 4864,
vocabulary 151936, tied head, q/k/v biases). Each setting trains ``--steps`` steps (default 1:
the first step already holds the weights, the gradients, AdamW's state and the activations at
once) of batch 1 x 256 tokens through ``train_gpt`` (AdamW, fp32 compute, no evaluation or
samples) in a process of its own (Linux: ``/proc/self/status``).

- ``baseline_mib``: the resident set after importing genai, torch and peft (in every setting),
  before the model is built; ``model_mib``: what building the model added.
- ``training_peak_mib``: the peak resident set from the call of ``train_gpt`` (the peak is reset
  there) to the end of the last step, read by a callback after each step; the last step's
  callback stops the run before its checkpoint, so saving never counts.
  ``training_peak_minus_baseline_mib``: that peak less the baseline: the model, its gradients,
  the optimizer state and the activations.

The bf16 settings build the model in bf16 (``torch.set_default_dtype``), as a model whose
weights were read in bf16 would be: ``train_gpt`` casts an fp32 model's frozen weights itself,
but the fp32 copy it starts from (``from_huggingface`` and ``genai.load`` give fp32) is then
already in memory.

LoRA: rank 8 on the attention projections (``attn.c_attn``, ``attn.c_proj``), the default
targets. ``s_per_step`` is the median step time (with one step: the first, with its start-up),
for orientation only: the machine is shared.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

MODELS = {
    "gpt2-small": dict(vocab_size=50257, n_layer=12, n_head=12, n_embd=768),
    "qwen2.5-0.5b-shape": dict(
        vocab_size=151936,
        n_layer=24,
        n_head=14,
        n_kv_head=2,
        n_embd=896,
        mlp_hidden=4864,
        pos_emb="rope",
        norm="rmsnorm",
        mlp="swiglu",
        bias=False,
        qkv_bias=True,
        rope_theta=1e6,
        norm_eps=1e-6,
    ),  # fmt: skip
}
SETTINGS = {
    "full": {},
    "full + grad_checkpoint": {"grad_checkpoint": True},
    "lora r8": {"lora_rank": 8},
    "lora r8 + bf16 weights": {"lora_rank": 8, "weights_dtype": "bf16"},
    "lora r8 + bf16 + grad_checkpoint": {
        "lora_rank": 8,
        "weights_dtype": "bf16",
        "grad_checkpoint": True,
    },
}
TOKENS = 256
# What a plain run measures (about 5 minutes on 2 busy cores): every setting of GPT-2 small, the
# extremes of the 0.5B model. --models / --settings measure their product instead.
PLAN = {
    "gpt2-small": list(SETTINGS),
    "qwen2.5-0.5b-shape": ["full", "lora r8", "lora r8 + bf16 + grad_checkpoint"],
}


def memory_mib(field: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> None:
    """Start ``VmHWM`` again from the resident set now (Linux: clear_refs 5)."""
    Path("/proc/self/clear_refs").write_text("5")


class Done(Exception):
    """Raised by the last step's callback: the run ends before its checkpoint."""


def measure(model_name: str, setting: str, steps: int, threads: int) -> dict:
    """One setting in this process (a fresh one: ru_maxrss only grows)."""
    import peft  # noqa: F401 - LoRA's library, in every setting's baseline alike

    import genai
    from genai.data.text import ByteTokenizer
    from genai.gpt.lora import trainable_params

    torch.set_num_threads(threads)
    baseline = memory_mib("VmRSS")
    torch.manual_seed(0)
    bf16 = SETTINGS[setting].get("weights_dtype") == "bf16"
    torch.set_default_dtype(torch.bfloat16 if bf16 else torch.float32)  # see the docstring
    model = genai.GPT(genai.GPTConfig(block_size=TOKENS, **MODELS[model_name]))
    torch.set_default_dtype(torch.float32)
    built = memory_mib("VmRSS")
    params = sum(p.numel() for p in model.parameters())
    tokens = torch.randint(0, 256, (TOKENS * 64,))
    times, peaks, trainable = [], [], []

    def after_step(record: dict) -> None:
        if record["split"] != "train":
            return
        times.append(time.perf_counter())
        peaks.append(memory_mib("VmHWM"))
        trainable.append(trainable_params(model))
        if record["step"] == steps:
            raise Done

    with tempfile.TemporaryDirectory() as tmp:
        config = genai.GPTTrainConfig(
            out_dir=str(Path(tmp) / "run"), max_steps=steps, batch_size=1, lr=1e-4,
            warmup_steps=0, val_fraction=0.0, sample_tokens=0, log_every=1, checkpoint_every=0,
            device="cpu", progress=False, **SETTINGS[setting],
        )  # fmt: skip
        reset_peak()
        start = time.perf_counter()
        with contextlib.suppress(Done):
            genai.train_gpt(model, tokens, ByteTokenizer(), config, callbacks=[after_step])
    steps_s = [b - a for a, b in zip([start, *times[:-1]], times, strict=True)]
    return {
        "model": model_name,
        "setting": setting,
        "params": params,
        "trainable_params": trainable[-1],
        "batch": f"1 x {TOKENS}",
        "steps": steps,
        "baseline_mib": round(baseline),
        "model_mib": round(built - baseline),
        "training_peak_mib": round(max(peaks)),
        "training_peak_minus_baseline_mib": round(max(peaks) - baseline),
        "s_per_step": round(statistics.median(steps_s[1:] or steps_s), 2),  # 1 step: the first
    }


def machine() -> dict:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| model | setting | trainable params | model (MiB) | training peak (MiB) | peak - baseline (MiB) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} ({r['params'] / 1e6:.0f}M) | {r['setting']} | "
            f"{r['trainable_params']:,} | {r['model_mib']:,} | {r['training_peak_mib']:,} | "
            f"{r['training_peak_minus_baseline_mib']:,} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated (default: PLAN)")
    parser.add_argument("--settings", help="comma-separated (default: PLAN)")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--one", nargs=2, metavar=("MODEL", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.steps, args.threads)))
        return
    print(json.dumps(machine()), flush=True)
    rows, plan = [], dict(PLAN)
    if args.models or args.settings:
        settings = args.settings.split(",") if args.settings else list(SETTINGS)
        plan = {m: settings for m in (args.models.split(",") if args.models else MODELS)}
    for model_name, settings in plan.items():
        for setting in settings:
            command = [sys.executable, __file__, "--one", model_name, setting]
            command += ["--steps", str(args.steps), "--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"load_avg_1min_at_end": round(os.getloadavg()[0], 2)}))
    print(table(rows))


if __name__ == "__main__":
    main()
