"""Fine-tuning and decoding, genai against Hugging Face's own code on the same weights, in one
run, alternating A and B; one JSON line per part.

    flock /tmp/genai-bench.lock .venv/bin/python benchmarks/finetune.py [--model-dir DIR ...]

The models: a tiny random Llama (``transformers.LlamaConfig``: 4 layers, 256 wide, 8 query and
2 key/value heads, SwiGLU 688, vocabulary 8192, untied head, no tokenizer: the token ids are
random) saved with ``save_pretrained`` into a temporary folder, and every ``--model-dir``
(a Hugging Face folder of GPT-2, Llama or Qwen2, e.g. GPT-2 small or Qwen2.5-0.5B; repeatable),
and every ``--shape`` (``gpt2-small``, ``qwen2.5-0.5b``): a model built at random from that
model's published config (``GPT2Config()``'s defaults; Qwen2.5-0.5B's 24 layers, 896 wide, 14
query and 2 key/value heads, SwiGLU 4864, vocabulary 151936, tied head, q/k/v biases, RoPE base
1e6) and saved the same way, for speed and memory where the weights cannot be downloaded.
Both sides read the same folder: Hugging Face through ``AutoModelForCausalLM.from_pretrained``
(fp32), genai through ``genai.GPT.from_huggingface`` (then ``crop_block_size`` to ``--block``,
what ``genai train gpt --init DIR --block-size N`` does).

Parts (``--parts``, default both):

- ``finetune`` (one line per model and setting, ``full`` and ``lora``): tokens/s and peak memory.
  Each round runs Hugging Face, then genai, each in a fresh process of its own (``--one``), so
  that the peak memory of one never counts in the other's. Both train ``--warmup`` then
  ``--steps`` steps of ``--batch`` windows of ``--block`` token ids drawn from one random stream
  (the same on both sides; the ids are below the size of the folder's tokenizer, 256 bytes
  where it has none, as ``train_gpt`` needs), with AdamW (``--lr``, betas (0.9, 0.95), weight
  decay 0.1 on the matrices only, the fused kernel: transformers' ``Trainer`` default
  ``adamw_torch_fused`` on torch >= 2.8), gradient clipping at 1 (the ``Trainer``'s
  ``max_grad_norm``), a constant learning rate, in fp32 or (``--precision bf16``) under bf16
  autocast with fp32 weights on both sides.

  * Hugging Face: a plain loop: ``loss = model(input_ids=x, labels=x, use_cache=False).loss``
    (without ``use_cache=False`` its config would build a KV cache in every training forward),
    ``loss.backward()``, ``clip_grad_norm_``, ``opt.step()``, ``opt.zero_grad(set_to_none=True)``;
    LoRA through ``peft.get_peft_model`` (rank ``--lora-rank``, alpha ``--lora-alpha``, dropout
    0, targets the attention's projections: ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, or
    GPT-2's ``c_attn`` and ``attn.c_proj``).
  * genai: ``genai.train_gpt`` itself (the engine's ``fit`` with ``GPTTask.train_step``: the
    same forward, backward, clipping and AdamW step, plus its per-step LR scheduler, finiteness
    watch and metric means), LoRA through ``lora_rank``/``lora_alpha`` with the default targets
    ``attn.c_attn`` (q, k, v in one Linear) and ``attn.c_proj``: peft's
    ``inject_adapter_in_model`` on genai's modules. genai's fused q/k/v gets one adapter where
    Hugging Face has three, so the trainable counts differ a little (both are reported); and
    genai crops a learned position table to ``--block``, so GPT-2's full count is smaller by
    ``(n_positions - block) * n_embd``.

  What is timed: the wall clock from the end of step ``--warmup`` to the end of step
  ``--warmup + --steps`` (a device sync at both ends on CUDA): on the Hugging Face side around
  its loop; on genai's the clock of two train records, read by a callback of ``train_gpt`` run
  with ``log_every = gcd(warmup, steps)`` (the engine syncs for its finiteness check at each
  record, then the callback reads the clock). The set-up (building the optimizer, peft's
  wrapping, the run directory) is in neither. genai's last record stops the run before its
  final checkpoint. ``tokens_per_s`` is ``steps * batch * block`` over that time;
  ``speedup`` is, per round, Hugging Face's time / genai's (above 1: genai is faster), then its
  median, min and max.

  Peak memory, on CPU (Linux ``/proc/self/status``, as ``finetune_memory.py`` reads it):
  ``loaded_mib`` is the resident set after importing torch, transformers, peft and genai (both
  sides import all four) and loading the model, after ``gc.collect`` and ``malloc_trim``;
  the peak (``VmHWM``) is reset there and read after the last timed step: ``peak_mib`` is the
  absolute peak and ``peak_minus_loaded_mib`` what training added (peft's wrapping, the
  gradients, AdamW's state, the activations). On CUDA: ``torch.cuda.memory_allocated`` and
  ``max_memory_allocated`` instead, the model moved to the GPU before ``loaded``.
- ``decode`` (one line per model): batch-1 greedy decoding of ``--new-tokens`` tokens after a
  ``--prompt``-token random prompt, one process, alternating Hugging Face's ``generate``
  (``do_sample=False``, no EOS, ``min_new_tokens`` unset) and genai's ``GPT.generate``
  (``temperature=0``), with the dynamic cache (both defaults) and the static cache
  (``cache_implementation="static"``; genai's ``static_cache=True``, which on CUDA captures a
  CUDA graph of the decoding step in each call and replays it, the capture inside the timed
  call; Hugging Face compiles its forward with a static cache on CUDA by itself, once). One
  untimed call of each first (warm-up, compilation). ``tokens_per_s`` is new tokens over the
  wall time of the whole call (prefill included); ``tokens_equal``: both produced the same
  greedy tokens, else ``first_difference`` is the index of the first new token that differs
  (in bf16 the two sides' rounding can flip a near-tie of a random model's logits).

``--smoke`` runs both parts on a toy Llama at toy sizes, one round, to check that it starts.
Absolute numbers do not compare across days or machines; the ratios of one run do (see
``README.md``, "Reading anchors.py"; ``--threads 1`` on a busy machine).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import peft  # noqa: F401 - every side imports the same libraries (the memory baseline)
import torch
import transformers
from anchors import machine, spread  # this folder's anchors.py (the script's folder is on sys.path)
from finetune_memory import memory_mib, reset_peak

import genai
from genai.data.text import BPETokenizer, ByteTokenizer
from genai.gpt.finetune import crop_block_size

TINY_LLAMA = dict(
    vocab_size=8192, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
    num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024,
)  # fmt: skip
SMOKE_LLAMA = dict(
    vocab_size=512, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
)  # fmt: skip
SMOKE = dict(batch=2, block=32, warmup=1, steps=2, rounds=1, prompt=8, new_tokens=16)
SHAPES = {  # published configs, built at random (no tokenizer: random ids below 256)
    "gpt2-small": lambda: transformers.GPT2Config(),
    "qwen2.5-0.5b": lambda: transformers.Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
        rope_theta=1e6, rms_norm_eps=1e-6, tie_word_embeddings=True, use_sliding_window=False,
    ),
}  # fmt: skip
SETTINGS = ("full", "lora")
HF_LORA_TARGETS = {
    "gpt2": ["c_attn", "attn.c_proj"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
}
BETAS, WEIGHT_DECAY, GRAD_CLIP = (0.9, 0.95), 0.1, 1.0


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def save_tiny_llama(folder: Path, smoke: bool) -> Path:
    """A random ``LlamaForCausalLM`` (fp32, no BOS/EOS) saved into ``folder``."""
    torch.manual_seed(0)
    sizes = SMOKE_LLAMA if smoke else TINY_LLAMA
    config = transformers.LlamaConfig(
        **sizes, rms_norm_eps=1e-6, tie_word_embeddings=False, bos_token_id=None,
        eos_token_id=None, pad_token_id=None,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def save_shape(folder: Path, name: str) -> Path:
    """A random model of ``SHAPES[name]``'s config, fp32, saved into ``folder``."""
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(SHAPES[name]()).save_pretrained(folder)
    return folder


def hf_model(model_dir: str, device: torch.device):
    """The folder's model as Hugging Face loads it, in fp32 (its own default keeps the saved
    dtype), on ``device``."""
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, local_files_only=True
    )
    return model.to(device)


def genai_model(model_dir: str, device: torch.device, block: int | None = None) -> genai.GPT:
    """The folder's model as genai loads it, its context cropped to ``block`` (None: kept)."""
    model = genai.GPT.from_huggingface(model_dir)
    return (crop_block_size(model, block) if block else model).to(device)


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ------------------------------------------------------------------------------------- memory


def settle(device: torch.device) -> float:
    """Free what loading left behind and return the memory in use now (MiB), then start the
    peak from here."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: give freed heap back to the system
    reset_peak()
    return memory_mib("VmRSS")


def peak(device: torch.device) -> float:
    """The peak memory (MiB) since :func:`settle`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return memory_mib("VmHWM")


# ------------------------------------------------------------------------------- fine-tuning


def tokenizer_of(model_dir: str):
    """The tokenizer genai trains the folder's model with: its own, else bytes (a tokenizer only
    bounds the ids: they are random)."""
    return BPETokenizer.from_folder(model_dir) or ByteTokenizer()


def token_stream(model_dir: str, args: argparse.Namespace) -> torch.Tensor:
    """The random token ids both sides train on: the same stream, below the tokenizer's size."""
    n = args.block * args.batch * (args.warmup + args.steps + 8)
    vocab = tokenizer_of(model_dir).vocab_size
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(0))


def hf_batches(tokens: torch.Tensor, args: argparse.Namespace, device: torch.device):
    """Batches ``(batch, block)`` of random windows of ``tokens``, on ``device``."""
    tokens, generator = tokens.to(device), torch.Generator().manual_seed(0)
    offsets = torch.arange(args.block)
    while True:
        starts = torch.randint(len(tokens) - args.block, (args.batch, 1), generator=generator)
        yield tokens[(starts + offsets).to(device)]


def hf_lora(model, args: argparse.Namespace):
    config = peft.LoraConfig(
        r=args.lora_rank, lora_alpha=args.lora_alpha, lora_dropout=0.0, bias="none",
        target_modules=HF_LORA_TARGETS[model.config.model_type], task_type="CAUSAL_LM",
    )  # fmt: skip
    return peft.get_peft_model(model, config)


def hf_side(model_dir: str, setting: str, args: argparse.Namespace, device: torch.device) -> dict:
    """A plain ``transformers`` training loop (see the docstring); seconds of the timed steps,
    memory and trainable parameters."""
    model = hf_model(model_dir, device)
    loaded = settle(device)
    if setting == "lora":
        model = hf_lora(model, args)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=BETAS, fused=device.type in ("cpu", "cuda"))
    batches = hf_batches(token_stream(model_dir, args), args, device)
    marks = []
    for step in range(1, args.warmup + args.steps + 1):
        x = next(batches)
        with autocast(device, args.precision):
            loss = model(input_ids=x, labels=x, use_cache=False).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if step in (args.warmup, args.warmup + args.steps):
            sync(device)
            marks.append(time.perf_counter())
    return {
        "seconds": marks[1] - marks[0],
        "trainable_params": sum(p.numel() for p in params),
        "loaded_mib": loaded,
        "peak_mib": peak(device),
    }


class Done(Exception):
    """Raised by genai's last timed record: the run ends before its checkpoint."""


def genai_side(
    model_dir: str, setting: str, args: argparse.Namespace, device: torch.device
) -> dict:
    """``genai.train_gpt`` (see the docstring); seconds of the timed steps, memory and trainable
    parameters."""
    from genai.gpt.lora import trainable_params

    model = genai_model(model_dir, device, args.block)
    loaded = settle(device)
    tokenizer, tokens = tokenizer_of(model_dir), token_stream(model_dir, args)
    total = args.warmup + args.steps
    marks, out = {}, {}

    def after_step(record: dict) -> None:
        if record["split"] != "train" or record["step"] not in (args.warmup, total):
            return
        marks[record["step"]] = time.perf_counter()  # the engine synced for this record
        if record["step"] == total:
            out.update(peak_mib=peak(device), trainable_params=trainable_params(model))
            raise Done

    lora = {"lora_rank": args.lora_rank, "lora_alpha": args.lora_alpha} if setting == "lora" else {}
    with tempfile.TemporaryDirectory() as tmp:
        config = genai.GPTTrainConfig(
            out_dir=str(Path(tmp) / "run"), max_steps=total, batch_size=args.batch, lr=args.lr,
            betas=BETAS, weight_decay=WEIGHT_DECAY, grad_clip=GRAD_CLIP, warmup_steps=0,
            lr_schedule="constant", precision=args.precision, device=str(device),
            val_fraction=0.0, sample_tokens=0, log_every=math.gcd(args.warmup, args.steps),
            checkpoint_every=0, progress=False, **lora,
        )  # fmt: skip
        with contextlib.suppress(Done):
            genai.train_gpt(model, tokens, tokenizer, config, callbacks=[after_step])
    return {"seconds": marks[total] - marks[args.warmup], "loaded_mib": loaded, **out}


SIDES = {"hf": hf_side, "genai": genai_side}


def run_side(side: str, model_dir: str, setting: str, args: argparse.Namespace) -> dict:
    """One side of one round, in a fresh process (its peak memory is its own)."""
    command = [sys.executable, __file__, "--one", side, model_dir, setting, *shared_flags(args)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{side} {setting} of {model_dir} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def shared_flags(args: argparse.Namespace) -> list[str]:
    """The flags a ``--one`` process needs to train as this run does."""
    flags = []
    for name in ("batch", "block", "warmup", "steps", "lr", "lora_rank", "lora_alpha"):
        flags += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    flags += ["--precision", args.precision, "--device", args.device]
    return flags + (["--threads", str(args.threads)] if args.threads else [])


def bench_finetune(model_dir: str, name: str, setting: str, args: argparse.Namespace) -> dict:
    result = {"bench": "finetune", "model": name, "setting": setting, **machine()}
    result.update(precision=args.precision, device=args.device, batch=args.batch)
    result.update(block=args.block, warmup_steps=args.warmup, timed_steps=args.steps)
    rounds = []
    for _ in range(args.rounds):
        rounds.append({side: run_side(side, model_dir, setting, args) for side in SIDES})
    tokens = args.steps * args.batch * args.block
    result["rounds"] = [
        {side: {k: round(v, 4) for k, v in r[side].items()} for side in SIDES} for r in rounds
    ]
    result["trainable_params"] = {side: rounds[-1][side]["trainable_params"] for side in SIDES}
    result["tokens_per_s"] = {
        side: spread([tokens / r[side]["seconds"] for r in rounds], 1) for side in SIDES
    }
    result["speedup"] = spread([r["hf"]["seconds"] / r["genai"]["seconds"] for r in rounds])
    for key in ("loaded_mib", "peak_mib"):
        result[key] = {side: spread([r[side][key] for r in rounds], 1) for side in SIDES}
    result["peak_minus_loaded_mib"] = {
        side: spread([r[side]["peak_mib"] - r[side]["loaded_mib"] for r in rounds], 1)
        for side in SIDES
    }
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# ---------------------------------------------------------------------------------- decoding


def hf_generate(model, prompt: torch.Tensor, args: argparse.Namespace, cache: str):
    config = transformers.GenerationConfig(
        max_new_tokens=args.new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
        cache_implementation="static" if cache == "static" else None,
    )  # fmt: skip
    mask = torch.ones_like(prompt)
    return model.generate(prompt, attention_mask=mask, generation_config=config)


def genai_generate(model, prompt: torch.Tensor, args: argparse.Namespace, cache: str):
    return model.generate(prompt, args.new_tokens, temperature=0, static_cache=cache == "static")


def timed_generate(side: str, model, prompt: torch.Tensor, cache: str, args) -> tuple:
    """(seconds, new tokens) of one ``generate`` call of ``side``, synced on CUDA."""
    device = prompt.device
    generate = hf_generate if side == "hf" else genai_generate
    sync(device)
    start = time.perf_counter()
    with torch.inference_mode(), autocast(device, args.precision):
        out = generate(model, prompt, args, cache)
    sync(device)
    return time.perf_counter() - start, out[0, prompt.shape[1] :].tolist()


def decode_cache(models: dict, prompt: torch.Tensor, cache: str, args) -> dict:
    """Both sides' decoding with one kind of cache, alternating over the rounds."""
    seconds: dict[str, list[float]] = {side: [] for side in models}
    new = {}
    for r in range(args.rounds + 1):  # round 0 warms up (and compiles)
        for side, model in models.items():
            s, new[side] = timed_generate(side, model, prompt, cache, args)
            if r:
                seconds[side].append(s)
    equal = [a == b for a, b in zip(new["hf"], new["genai"], strict=True)]
    ratios = [a / b for a, b in zip(seconds["hf"], seconds["genai"], strict=True)]
    return {
        "seconds": {side: [round(s, 4) for s in v] for side, v in seconds.items()},
        "tokens_per_s": {
            side: spread([args.new_tokens / s for s in v], 1) for side, v in seconds.items()
        },
        "speedup": spread(ratios),
        "tokens_equal": all(equal),
        **({} if all(equal) else {"first_difference": equal.index(False)}),
    }


def bench_decode(model_dir: str, name: str, args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    result = {"bench": "decode", "model": name, **machine(), "precision": args.precision}
    result.update(device=args.device, prompt_tokens=args.prompt, new_tokens=args.new_tokens)
    models = {
        "hf": hf_model(model_dir, device).eval(),
        "genai": genai_model(model_dir, device).eval(),
    }
    vocab = tokenizer_of(model_dir).vocab_size
    prompt = torch.randint(0, vocab, (1, args.prompt), generator=torch.Generator().manual_seed(0))
    for cache in ("dynamic", "static"):
        result[cache] = decode_cache(models, prompt.to(device), cache, args)
    result["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    return result


# -------------------------------------------------------------------------------------- main


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--parts", default="finetune,decode")
    p.add_argument("--model-dir", action="append", default=[], help="a Hugging Face folder")
    p.add_argument("--shape", action="append", default=[], choices=sorted(SHAPES))
    p.add_argument(
        "--tiny", action=argparse.BooleanOptionalAction, default=True, help="the tiny Llama too"
    )
    p.add_argument("--settings", default=",".join(SETTINGS), help="full,lora")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--block", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--lora-alpha", type=float, default=16.0)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--prompt", type=int, default=16, help="prompt tokens of the decoding part")
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument(
        "--threads", type=int, help="torch threads of both sides (default: torch's, all cores)"
    )
    p.add_argument("--smoke", action="store_true", help="toy sizes: check that it starts")
    p.add_argument("--one", nargs=3, metavar=("SIDE", "DIR", "SETTING"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    if min(args.warmup, args.steps, args.rounds) < 1:
        p.error("--warmup, --steps and --rounds must be >= 1")
    return args


def main() -> None:
    args = parse_args()
    transformers.utils.logging.disable_progress_bar()  # loading's bars, on stderr
    if args.threads:  # the --one processes inherit it
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)
    if args.one:
        side, model_dir, setting = args.one
        emit(SIDES[side](model_dir, setting, args, torch.device(args.device)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        if args.tiny:
            models["tiny-llama"] = str(save_tiny_llama(Path(tmp) / "tiny-llama", args.smoke))
        for name in args.shape:
            models[f"{name}-shape"] = str(save_shape(Path(tmp) / name, name))
        models.update({Path(d).name: str(Path(d).resolve()) for d in args.model_dir})
        for name, model_dir in models.items():
            if "finetune" in args.parts:
                for setting in args.settings.split(","):
                    emit(bench_finetune(model_dir, name, setting, args))
            if "decode" in args.parts:
                emit(bench_decode(model_dir, name, args))


if __name__ == "__main__":
    main()
