"""Sample-quality metrics for digit generators, in the feature space of a small digit classifier.

The Inception network behind the usual FID was trained on ImageNet photos and says little
about 28x28 digits, so we train a small CNN on the real training split (cached on disk, keyed
by the dataset's content) and use it three ways:

* **classifier FID**: the Fréchet distance between Gaussians fitted to its penultimate
  features of real and generated images,
  ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` (computed by torchmetrics);
* **classifier Inception Score**: ``exp(E_x KL(p(y|x) || p(y)))``, in [1, num_classes];
* **mode coverage**: how many classes get at least 5% of the samples, and the entropy of the
  predicted-label histogram (``log num_classes`` nats when uniform); for a conditional model,
  the **conditional accuracy**: how often the classifier agrees with the requested label.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn

from genai.checkpoint import atomic_write
from genai.data.images import ImageDataset, to_float

log = logging.getLogger(__name__)

NUM_CLASSES = 10


def cache_dir() -> Path:
    """``$GENAI_CACHE`` or ``~/.cache/genai``: where trained metric classifiers are kept."""
    return Path(os.environ.get("GENAI_CACHE", Path.home() / ".cache" / "genai"))


class DigitClassifier(nn.Module):
    """A small CNN for 28x28 digits: images ``(B, 1, 28, 28)`` in [0, 1] -> logits ``(B, 10)``."""

    num_features = 128

    def __init__(self, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 32, 14, 14)
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # (B, 64, 7, 7)
            nn.Flatten(),
            nn.Linear(64 * 49, self.num_features),
            nn.ReLU(),
        )
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(B, 128)``: the space of the classifier FID."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))  # (B, num_classes)


class _Features(nn.Module):
    """The classifier as torchmetrics' custom FID feature extractor."""

    def __init__(self, classifier: DigitClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def _as_float(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4 or tuple(images.shape[1:]) != (1, 28, 28):
        raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(images.shape)}")
    return to_float(images) if images.dtype == torch.uint8 else images.float()


def _digest(data: ImageDataset, steps: int) -> str:
    h = hashlib.sha256()
    h.update(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().numpy().tobytes())
    h.update(str(steps).encode())
    return h.hexdigest()[:16]


def train_classifier(
    data: ImageDataset, steps: int = 800, batch_size: int = 128, seed: int = 0
) -> DigitClassifier:
    """Train a :class:`DigitClassifier` on ``data`` with Adam and random 2-pixel shifts (CPU).

    The caller's global RNG state is left untouched.
    """
    if steps <= 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DigitClassifier(int(data.labels.max()) + 1 if len(data) else NUM_CLASSES)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x_all, y_all = to_float(data.images), data.labels
        batch_size = min(batch_size, len(data))
        for _ in range(steps):
            idx = torch.randint(len(data), (batch_size,))
            x = F.pad(x_all[idx], (2, 2, 2, 2))  # (B, 1, 32, 32)
            dx, dy = torch.randint(5, (2,)).tolist()
            x = x[:, :, dy : dy + 28, dx : dx + 28]  # a random shift of up to 2 pixels
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


def digit_classifier(
    data: ImageDataset, steps: int = 800, device: str | torch.device = "cpu"
) -> DigitClassifier:
    """The metric classifier for ``data`` (the real training split), trained once and cached.

    The cache file is ``cache_dir()/classifiers/<dataset>-<hash of the data and steps>.safetensors``.
    """
    path = cache_dir() / "classifiers" / f"{data.name}-{_digest(data, steps)}.safetensors"
    num_classes = int(data.labels.max()) + 1
    if path.is_file():
        model = DigitClassifier(num_classes)
        load_model(model, str(path))
        model.eval().requires_grad_(False)
    else:
        log.info("training the %s metric classifier (%d steps) -> %s", data.name, steps, path)
        model = train_classifier(data, steps)
        atomic_write(path, lambda tmp: save_model(model, tmp))
    return model.to(device)


@torch.no_grad()
def classifier_probs(
    classifier: DigitClassifier, images: torch.Tensor, batch_size: int = 1000
) -> torch.Tensor:
    """Class probabilities ``(N, num_classes)`` of images ``(N, 1, 28, 28)`` (uint8 or [0, 1])."""
    device = next(classifier.parameters()).device
    x = _as_float(images)
    return torch.cat(
        [
            classifier(x[i : i + batch_size].to(device)).softmax(dim=1).cpu()
            for i in range(0, x.shape[0], batch_size)
        ]
    )


@torch.no_grad()
def classifier_fid(
    classifier: DigitClassifier,
    real: torch.Tensor,
    fake: torch.Tensor,
    batch_size: int = 1000,
) -> float:
    """Fréchet distance between classifier features of ``real`` and ``fake`` ``(N, 1, 28, 28)``.

    Images are uint8 or float in [0, 1]; each set needs at least 2 images.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _as_float(real), _as_float(fake)
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(
            f"FID needs at least 2 images per set, got {real.shape[0]} real, {fake.shape[0]} fake"
        )
    device = next(classifier.parameters()).device
    fid = FrechetInceptionDistance(feature=_Features(classifier), normalize=True).to(device)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, images.shape[0], batch_size):
            fid.update(images[i : i + batch_size].to(device), real=is_real)
    return float(fid.compute())


def inception_score(probs: torch.Tensor) -> float:
    """``exp(mean_x KL(p(y|x) || p(y)))`` of class probabilities ``(N, K)``; p(y) is their mean."""
    probs = probs.double().clamp_min(1e-12)
    marginal = probs.mean(dim=0, keepdim=True)  # (1, K)
    kl = (probs * (probs.log() - marginal.log())).sum(dim=1)  # (N,)
    return math.exp(kl.mean().item())


def class_coverage(
    preds: torch.Tensor, num_classes: int = NUM_CLASSES, min_fraction: float = 0.05
) -> dict[str, float]:
    """Mode coverage of predicted labels ``(N,)``.

    Returns:
        ``classes_covered``: classes predicted for at least ``min_fraction`` of the samples;
        ``label_entropy``: entropy of the label histogram in nats (``log num_classes`` at best).
    """
    if preds.numel() == 0:
        raise ValueError("class_coverage needs at least one prediction")
    counts = torch.bincount(preds.flatten().long(), minlength=num_classes).double()
    freq = counts / counts.sum()
    nonzero = freq[freq > 0]
    return {
        "classes_covered": int((freq >= min_fraction).sum()),
        "label_entropy": float(-(nonzero * nonzero.log()).sum()),
    }


def _draw(model: nn.Module, n: int, seed: int, batch_size: int, labels=None) -> torch.Tensor:
    device = next(model.parameters()).device
    gen = torch.Generator(device).manual_seed(seed)
    chunks = []
    for i in range(0, n, batch_size):
        m = min(batch_size, n - i)
        kwargs = {} if labels is None else {"labels": labels[i : i + m].to(device)}
        chunks.append(model.sample(m, generator=gen, **kwargs).cpu())
    return torch.cat(chunks)


@torch.no_grad()
def conditional_accuracy(
    model: nn.Module,
    classifier: DigitClassifier,
    n_per_class: int = 100,
    seed: int = 0,
    batch_size: int = 500,
) -> float:
    """Fraction of samples drawn for label k (each k, ``n_per_class`` times) classified as k."""
    k = model.config.num_classes
    labels = torch.arange(k).repeat_interleave(n_per_class)  # (k * n_per_class,)
    images = _draw(model, labels.shape[0], seed, batch_size, labels)
    preds = classifier_probs(classifier, images).argmax(dim=1)
    return float((preds == labels).double().mean())


@torch.no_grad()
def evaluate_samples(
    model: nn.Module,
    classifier: DigitClassifier,
    real: torch.Tensor,
    n: int = 5000,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float]:
    """Classifier FID against ``real`` images, IS, coverage and (conditional models) accuracy.

    Args:
        model: anything with ``sample(n, generator=...)`` returning ``(n, 1, 28, 28)`` in [0, 1].
        classifier: from :func:`digit_classifier`.
        real: reference images ``(M, 1, 28, 28)``, uint8 or [0, 1] (e.g. the test split).
        n: number of samples to draw.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    fake = _draw(model, n, seed, batch_size)
    probs = classifier_probs(classifier, fake)
    out = {
        "fid": classifier_fid(classifier, real, fake, batch_size),
        "inception_score": inception_score(probs),
        **class_coverage(probs.argmax(dim=1), probs.shape[1]),
    }
    if getattr(model.config, "num_classes", None) is not None:
        out["conditional_accuracy"] = conditional_accuracy(
            model, classifier, max(1, n // model.config.num_classes), seed, batch_size
        )
    return out
