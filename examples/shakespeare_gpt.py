"""Train a character-level GPT on tiny-shakespeare, then sample from it.

    python examples/shakespeare_gpt.py --download            # fetch tiny-shakespeare once
    python examples/shakespeare_gpt.py --text my_book.txt    # or any text of your own

The default size is nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, context 64).
"""

from __future__ import annotations

import argparse
import sys

import torch

import genai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", default=None, help="train on this file instead of Shakespeare")
    parser.add_argument("--root", default=None, help="local path of tiny-shakespeare")
    parser.add_argument("--download", action="store_true")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--out-dir", default="runs/shakespeare_gpt")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompt", default="ROMEO:")
    args = parser.parse_args()

    text = genai.load_text(args.text or "shakespeare", root=args.root, download=args.download)
    tokenizer = genai.CharTokenizer.from_text(text)
    try:  # before training, not after it: the prompt must be made of the text's characters
        tokenizer.encode(args.prompt)
    except ValueError as e:
        raise ValueError(f"--prompt {args.prompt!r}: {e}") from None
    torch.manual_seed(0)
    model = genai.GPT(
        genai.GPTConfig(
            vocab_size=tokenizer.vocab_size,
            block_size=64,
            n_layer=4,
            n_head=4,
            n_embd=128,
            dropout=0.0,
            bias=False,
        )
    )
    config = genai.GPTTrainConfig(
        out_dir=args.out_dir,
        max_steps=args.max_steps,
        batch_size=12,
        betas=(0.9, 0.99),
        eval_every=500,
        sample_every=500,
        sample_prompt=args.prompt,
        device=args.device,
        overwrite=True,
    )
    summary = genai.train_gpt(model, text, tokenizer, config)
    print(f"validation loss {summary['eval']['loss']:.3f} after {summary['step']} steps")
    print(genai.generate_text(model, args.prompt, 300, temperature=0.8, top_k=50, seed=1))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, OSError) as e:  # bad data, flags or paths: one line, no traceback
        sys.exit(f"error: {e}")
