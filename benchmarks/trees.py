"""genai's own training steps from two source trees, alternating: did a change move the speed?

Each round trains the VAE, the conditional GAN and the GPT (nanoGPT's CPU size) a few hundred
steps through ``python -m genai.cli`` with ``PYTHONPATH`` set to one tree's ``src``, then the
other's, alternating the order, and reads the milliseconds per step from ``metrics.jsonl``'s
clock (the median over the logged intervals after the first). One JSON line per model, with
``before / after`` per round (above 1: the second tree is faster), as a median with min-max.

    python benchmarks/trees.py --before ../base/src --after src [--rounds 3] [--kinds vae,gan,gpt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUIET = ["--eval-every", "100000", "--sample-every", "100000", "--checkpoint-every", "0"]
RUNS = {
    "vae": ["train", "vae", "--max-steps", "300", "--log-every", "50", *QUIET],
    "gan": ["train", "gan", "--num-classes", "10", "--max-steps", "60", "--log-every", "10"]
    + ["--batch-size", "64", "--sample-every", "100000", "--checkpoint-every", "0"],
    "gpt": ["train", "gpt", "--n-layer", "4", "--n-head", "4", "--n-embd", "128"]
    + ["--block-size", "64", "--batch-size", "12", "--max-steps", "300", "--log-every", "50"]
    + [*QUIET, "--sample-tokens", "0"],
}


def ms_per_step(src: str, args: list[str]) -> tuple[float, float]:
    """(median ms per step, whole-process seconds) of one run from tree ``src``."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONPATH": str(Path(src).resolve())}
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "genai.cli", "-q", *args, "--out-dir", f"{tmp}/run"]
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        wall = time.perf_counter() - start
        lines = Path(f"{tmp}/run/metrics.jsonl").read_text().splitlines()
        train = [r for r in map(json.loads, lines) if r["split"] == "train"]
        steps = [
            (b["time"] - a["time"]) / (b["step"] - a["step"]) * 1000
            for a, b in zip(train, train[1:], strict=False)
        ]
        return statistics.median(steps), wall


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="the first tree's src folder")
    parser.add_argument("--after", required=True, help="the second tree's src folder")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kinds", default="vae,gan,gpt")
    args = parser.parse_args()
    trees = {"before": args.before, "after": args.after}
    for kind in args.kinds.split(","):
        runs: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
        for r in range(args.rounds):
            for name in ("before", "after") if r % 2 == 0 else ("after", "before"):
                runs[name].append(ms_per_step(trees[name], RUNS[kind]))
        ms = {name: [round(m, 2) for m, _ in v] for name, v in runs.items()}
        ratio = [b / a for b, a in zip(ms["before"], ms["after"], strict=True)]
        print(json.dumps({
            "model": kind, "ms_per_step": ms, "before_over_after": spread(ratio),
            "wall_s": {name: [round(w, 1) for _, w in v] for name, v in runs.items()},
            "load_avg_1min_at_end": round(os.getloadavg()[0], 2),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
