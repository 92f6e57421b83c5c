"""GAN training speed at 64x64x3: genai's loop against a pytorch/examples-style DCGAN loop.

Both loops train the same nets (``GANConfig(image_shape=(3, 64, 64))``: DCGAN's generator and
discriminator stack) with batch 64 and Adam(2e-4, (0.5, 0.999)) on one folder of PNG images:

* ``reference``: written the way pytorch/examples' ``dcgan/main.py`` is: a torchvision
  ``ImageFolder`` with ``Resize``/``CenterCrop``/``ToTensor``/``Normalize`` behind a
  ``DataLoader(shuffle=True, num_workers=2)``, sigmoid on D's output and ``nn.BCELoss``, D on
  real then on ``fake.detach()``, then G, with ``.item()`` of the losses every step (its log
  line);
* ``genai``: ``genai.load_images(folder, image_size=64)`` once (its time is reported apart),
  then the training step of :func:`genai.train_gan` (``GANTask.train_step``) with the default
  ``GANTrainConfig`` (differentiable augmentation, mode-seeking term, EMA generator);
* ``genai_plain``: the same step with ``augment=False, mode_seeking=0`` (the reference's work);
* ``genai_bf16``: the default step with ``precision="bf16"`` (CPU autocast: bfloat16 convolutions
  and matmuls, fp32 weights and optimizer), the same nets; fast where the CPU has native bf16
  (AVX512-BF16 or AMX), slower where it must emulate it.

Rounds alternate the loops (A/B/C/D, then B/C/D/A, ...); each loop's figure is the median of its
rounds in images per second. Prints one JSON line.

Beside the rates, the line says what bounds them: each step's arithmetic (``torch.utils.
flop_counter``: convolutions and matmuls, forward and backward, per image), the rate it ran at
(GFLOP/s), and this CPU's matmul peak measured in the same run (a 2048x2048 product, fp32 and
bf16). ``fp32_bound_over_reference`` is the most genai's fp32 step could reach over the reference
if every FLOP ran at that fp32 peak: below 2, no fp32 loop over these nets can be 2x faster here.

Usage: ``python benchmarks/gan_speed.py [--rounds 3] [--steps 8] [--images 640]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lm import matmul_gflops  # this folder's lm.py (the script's folder is on sys.path)
from PIL import Image
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import genai
from genai.core.device import native_bf16
from genai.gan.model import GAN, GANConfig
from genai.gan.train import GANTask, GANTrainConfig
from genai.training.engine import Trainer

SHAPE = (3, 64, 64)
PEAK_DTYPES = (("fp32", "float32"), ("bf16", "bfloat16"))
BATCH = 64


def write_folder(root: Path, n: int, seed: int = 0) -> Path:
    """``n`` 64x64 RGB PNGs in 4 class folders: colored discs on noisy backgrounds."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:64, :64]
    for i in range(n):
        img = rng.integers(0, 80, (64, 64, 3), dtype=np.uint8)
        cy, cx, r = rng.integers(16, 48), rng.integers(16, 48), rng.integers(6, 16)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
        img[disc] = rng.integers(120, 256, 3, dtype=np.uint8)
        path = root / f"c{i % 4}" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)
    return root


class Reference:
    """The pytorch/examples DCGAN loop over an ImageFolder DataLoader."""

    def __init__(self, folder: Path, gan: GAN, latent_dim: int):
        import torchvision.datasets as dset
        import torchvision.transforms as transforms

        dataset = dset.ImageFolder(
            root=str(folder),
            transform=transforms.Compose(
                [
                    transforms.Resize(64),
                    transforms.CenterCrop(64),
                    transforms.ToTensor(),
                    transforms.Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
                ]
            ),
        )
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True
        )
        self.netG, self.netD, self.nz = gan.generator, gan.discriminator, latent_dim
        self.criterion = nn.BCELoss()
        self.optD = torch.optim.Adam(self.netD.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.optG = torch.optim.Adam(self.netG.parameters(), lr=2e-4, betas=(0.5, 0.999))
        self.batches = iter(())

    def _next(self):
        try:
            return next(self.batches)
        except StopIteration:  # a new epoch: a new DataLoader iterator, as in the original
            self.batches = iter(self.loader)
            return next(self.batches)

    def step(self) -> None:
        data = self._next()
        self.netD.zero_grad()
        real = data[0]
        b = real.size(0)
        label = torch.full((b,), 1.0, dtype=real.dtype)
        output = torch.sigmoid(self.netD(real))
        err_real = self.criterion(output, label)
        err_real.backward()
        noise = torch.randn(b, self.nz)
        fake = self.netG(noise)
        label.fill_(0.0)
        output = torch.sigmoid(self.netD(fake.detach()))
        err_fake = self.criterion(output, label)
        err_fake.backward()
        self.optD.step()
        self.netG.zero_grad()
        label.fill_(1.0)
        output = torch.sigmoid(self.netD(fake))
        err_g = self.criterion(output, label)
        err_g.backward()
        self.optG.step()
        _ = (err_real + err_fake).item(), err_g.item()  # its per-step log line


class GenaiLoop:
    def __init__(self, data, gan: GAN, out: Path, **train):
        config = GANTrainConfig(
            out_dir=str(out), batch_size=BATCH, device="cpu", progress=False, **train
        )
        self.task = GANTask(gan, data, config)
        self.batches = self.task.setup(torch.device("cpu"))
        self.trainer = Trainer(config, torch.device("cpu"), self.task.configure_optimizers())
        self.t = 0

    def step(self) -> None:
        self.task.train_step(self.batches.get(self.t), self.t, self.trainer)
        self.t += 1


def flop_per_image(loop) -> float:
    """Convolution and matmul FLOPs (forward and backward) of one step of ``loop``, per image."""
    with FlopCounterMode(display=False) as counter:
        loop.step()
    return counter.get_total_flops() / BATCH


def timed(loop, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loop.step()
    return steps * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per loop per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_folder(Path(tmp) / "images", args.images)
        start = time.perf_counter()
        data = genai.load_images(folder, image_size=64, progress=False)
        load_s = time.perf_counter() - start
        start = time.perf_counter()
        genai.load_images(folder, image_size=64, progress=False)
        cached_load_s = time.perf_counter() - start
        config = GANConfig(image_shape=SHAPE)

        def gan() -> GAN:
            torch.manual_seed(0)
            return GAN(config)

        loops = {
            "reference": Reference(folder, gan(), config.latent_dim),
            "genai": GenaiLoop(data, gan(), Path(tmp) / "a"),
            "genai_plain": GenaiLoop(data, gan(), Path(tmp) / "b", augment=False, mode_seeking=0),
            "genai_bf16": GenaiLoop(data, gan(), Path(tmp) / "c", precision="bf16"),
        }
        for loop in loops.values():
            timed(loop, args.warmup)
        flops = {name: flop_per_image(loop) for name, loop in loops.items()}
        peak = {d: matmul_gflops(getattr(torch, t), n=2048) for d, t in PEAK_DTYPES}
        rates: dict[str, list[float]] = {name: [] for name in loops}
        names = list(loops)
        for r in range(args.rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                rates[name].append(timed(loops[name], args.steps))
    med = {name: statistics.median(v) for name, v in rates.items()}
    print(
        json.dumps(
            {
                "benchmark": "gan_speed_64x64x3",
                "images_per_s": {k: round(v, 2) for k, v in med.items()},
                "rounds": {k: [round(x, 2) for x in v] for k, v in rates.items()},
                "genai_over_reference": round(med["genai"] / med["reference"], 3),
                "genai_plain_over_reference": round(med["genai_plain"] / med["reference"], 3),
                "genai_bf16_over_reference": round(med["genai_bf16"] / med["reference"], 3),
                "gflop_per_image": {k: round(v / 1e9, 3) for k, v in flops.items()},
                "gflop_per_s": {k: round(med[k] * flops[k] / 1e9, 1) for k in loops},
                "matmul_peak_gflop_per_s": {k: round(v, 1) for k, v in peak.items()},
                "fp32_bound_over_reference": round(
                    peak["fp32"] * 1e9 / flops["genai"] / med["reference"], 3
                ),
                "cpu_has_native_bf16": native_bf16(torch.device("cpu")),
                "folder_images": args.images,
                "decode_s": round(load_s, 2),
                "cached_load_s": round(cached_load_s, 3),
                "threads": args.threads,
                "steps_per_round": args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
