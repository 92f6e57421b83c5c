"""Sample-quality metrics for image generators, in the feature space of a small classifier.

The Inception network behind the usual FID was trained on ImageNet photos and says little
about 28x28 digits or small labeled sets, so for any labeled dataset we train a small CNN
(:class:`ImageClassifier`) on its real training split (cached on disk, keyed by the dataset's
content) and use it three ways. Every number is in *that* classifier's feature space: it
compares models on one dataset, not across datasets, and not with published Inception FIDs.

* **classifier FID**: the Fréchet distance between Gaussians fitted to its penultimate
  features of real and generated images,
  ``||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))`` (computed by torchmetrics);
* **classifier Inception Score**: ``exp(E_x KL(p(y|x) || p(y)))``, in [1, num_classes];
* **mode coverage**: how many classes get at least 5% of the samples, and the entropy of the
  predicted-label histogram (``log num_classes`` nats when uniform); for a conditional model,
  the **conditional accuracy**: how often the classifier agrees with the requested label.

The standard **Inception FID** (:func:`inception_fid`) is there too, for comparison with other
work: torchmetrics' FID on Inception-v3's 2048 pool features with torch-fidelity's port of the
TensorFlow FID weights. Those weights (92 MB) are read from torch hub's checkpoint folder and
downloaded only when asked.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_model, save_model
from torch import nn

from genai.core.files import atomic_write
from genai.data.dataset import ImageDataset, cache_dir
from genai.data.pixels import to_float, to_uint8

log = logging.getLogger(__name__)

NUM_CLASSES = 10
_CLASSIFIER_VERSION = 1  # part of the classifier cache's key: bump when ImageClassifier changes


class ImageClassifier(nn.Module):
    """A small CNN: images ``(B, C, H, W)`` in [0, 1] -> logits ``(B, num_classes)``.

    3x3 convolutions (32, 64, 128, ... channels), each followed by 2x2 max-pooling, until the
    map is at most 8x8 (at 28x28: 32 @ 14x14, 64 @ 7x7), then 128 features and a linear head.
    """

    num_features = 128

    def __init__(self, num_classes: int = NUM_CLASSES, image_shape=(1, 28, 28)):
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        width = 32
        while True:
            layers += [nn.Conv2d(c, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = width, h // 2, w // 2
            width *= 2
            if max(h, w) <= 8 or min(h, w) < 2:
                break
        self.body = nn.Sequential(
            *layers,  # (B, c, h, w)
            nn.Flatten(),
            nn.Linear(c * h * w, self.num_features),
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

    def __init__(self, classifier: ImageClassifier):
        super().__init__()
        self.classifier = classifier
        self.num_features = classifier.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


def _as_float(images: torch.Tensor) -> torch.Tensor:
    if images.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
    return to_float(images) if images.dtype == torch.uint8 else images.float()


def _digest(data: ImageDataset, steps: int, num_classes: int) -> str:
    h = hashlib.sha256(f"{_CLASSIFIER_VERSION} {num_classes} {tuple(data.images.shape)}".encode())
    h.update(data.images.contiguous().numpy().tobytes())
    h.update(data.labels.contiguous().numpy().tobytes())
    h.update(str(steps).encode())
    return h.hexdigest()[:16]


def _check_labeled(data: ImageDataset) -> None:
    if data.labels is None:
        raise ValueError(
            f"{data.name} has no labels: the metric classifier (and with it the classifier "
            "FID, IS, coverage and label accuracy) needs labeled data"
        )


def train_classifier(
    data: ImageDataset, steps: int = 800, batch_size: int = 128, seed: int = 0
) -> ImageClassifier:
    """Train an :class:`ImageClassifier` on ``data`` with Adam and random 2-pixel shifts (CPU).

    The caller's global RNG state is left untouched.
    """
    if steps <= 0:
        raise ValueError(f"steps must be > 0, got {steps}")
    _check_labeled(data)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        num_classes = max(data.num_classes or 0, int(data.labels.max()) + 1 if len(data) else 0)
        model = ImageClassifier(num_classes or NUM_CLASSES, data.image_shape)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x_all, y_all = to_float(data.images), data.labels
        h, w = data.image_shape[1:]
        batch_size = min(batch_size, len(data))
        for _ in range(steps):
            idx = torch.randint(len(data), (batch_size,))
            x = F.pad(x_all[idx], (2, 2, 2, 2))  # (B, C, H + 4, W + 4)
            dx, dy = torch.randint(5, (2,)).tolist()
            x = x[:, :, dy : dy + h, dx : dx + w]  # a random shift of up to 2 pixels
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval().requires_grad_(False)


def metric_classifier(
    data: ImageDataset, steps: int = 800, device: str | torch.device = "cpu"
) -> ImageClassifier:
    """The metric classifier for ``data`` (a labeled training split), trained once and cached.

    The cache file is ``cache_dir()/classifiers/<dataset>-<hash of the data and steps>.safetensors``.

    Raises:
        ValueError: when ``data`` has no labels.
    """
    _check_labeled(data)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", data.name)
    num_classes = max(data.num_classes or 0, int(data.labels.max()) + 1)
    digest = _digest(data, steps, num_classes)
    path = cache_dir() / "classifiers" / f"{stem}-{digest}.safetensors"
    model = None
    if path.is_file():
        model = ImageClassifier(num_classes, data.image_shape)
        try:
            load_model(model, str(path))
            model.eval().requires_grad_(False)
        except (OSError, RuntimeError, SafetensorError) as e:  # damaged: train it again
            log.warning("retraining the metric classifier: cannot read %s (%s)", path, e)
            model = None
    if model is None:
        log.info("training the %s metric classifier (%d steps) -> %s", data.name, steps, path)
        model = train_classifier(data, steps)
        atomic_write(path, lambda tmp: save_model(model, tmp))
    return model.to(device)


@torch.no_grad()
def classifier_probs(
    classifier: ImageClassifier, images: torch.Tensor, batch_size: int = 1000
) -> torch.Tensor:
    """Class probabilities ``(N, num_classes)`` of images ``(N, C, H, W)`` (uint8 or [0, 1])."""
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
    classifier: ImageClassifier,
    real: torch.Tensor,
    fake: torch.Tensor,
    batch_size: int = 1000,
) -> float:
    """Fréchet distance between classifier features of ``real`` and ``fake`` ``(N, C, H, W)``.

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
        "label_entropy": float(-(nonzero * nonzero.log()).sum()) + 0.0,  # no -0.0
    }


@torch.no_grad()
def draw_samples(
    model: nn.Module, n: int, seed: int = 0, batch_size: int = 500, labels=None
) -> torch.Tensor:
    """``n`` seeded samples ``(n, C, H, W)`` in [0, 1] on the CPU, drawn ``batch_size`` at a time.

    ``labels`` ``(n,)``: the classes asked of a conditional model (default: its own draw).
    """
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
    classifier: ImageClassifier,
    n_per_class: int = 100,
    seed: int = 0,
    batch_size: int = 500,
) -> float:
    """Fraction of samples drawn for label k (each k, ``n_per_class`` times) classified as k."""
    k = model.config.num_classes
    labels = torch.arange(k).repeat_interleave(n_per_class)  # (k * n_per_class,)
    images = draw_samples(model, labels.shape[0], seed, batch_size, labels)
    preds = classifier_probs(classifier, images).argmax(dim=1)
    return float((preds == labels).double().mean())


@torch.no_grad()
def evaluate_samples(
    model: nn.Module,
    classifier: ImageClassifier,
    real: torch.Tensor,
    n: int = 5000,
    seed: int = 0,
    batch_size: int = 500,
) -> dict[str, float]:
    """Classifier FID against ``real`` images, IS, coverage and (conditional models) accuracy.

    Args:
        model: anything with ``sample(n, generator=...)`` returning ``(n, C, H, W)`` in [0, 1].
        classifier: from :func:`metric_classifier`.
        real: reference images ``(M, C, H, W)``, uint8 or [0, 1] (e.g. the test split).
        n: number of samples to draw.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    fake = draw_samples(model, n, seed, batch_size)
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


@torch.no_grad()
def real_data_floor(
    classifier: ImageClassifier,
    train: ImageDataset,
    test: ImageDataset,
    n: int = 5000,
    seed: int = 0,
) -> dict[str, float]:
    """What real data scores in the classifier's space: the floor under a model's numbers.

    Returns:
        ``fid_real_floor``: classifier FID between ``n`` seeded training images and the test
        images (a perfect generator of ``n`` images scores about this); ``classifier_accuracy``:
        the classifier's accuracy on the labeled test images (the ceiling of a conditional
        model's label accuracy).
    """
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    real = train.images[perm[: min(n, len(train))]]
    # max: the Fréchet distance is >= 0; rounding can leave -1e-9 for identical sets
    out = {"fid_real_floor": max(0.0, classifier_fid(classifier, test.images, real))}
    if test.labels is not None:
        preds = classifier_probs(classifier, test.images).argmax(dim=1)
        out["classifier_accuracy"] = float((preds == test.labels).double().mean())
    return out


# torch-fidelity's file of the TensorFlow FID Inception-v3 weights (the name its downloader uses).
INCEPTION_WEIGHTS = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_FEATURE_SPACE = (
    "Inception-v3 pool features (2048; torch-fidelity's port of the TensorFlow FID weights): "
    "the space of published FIDs, which use 50,000 samples; fewer samples score higher"
)


def inception_weights_path() -> Path:
    """Where :func:`inception_fid` looks for the weights: torch hub's ``checkpoints`` folder."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS


def inception_fid_unavailable(download: bool = False) -> str | None:
    """Why :func:`inception_fid` cannot run here (one sentence), or None when it can."""
    try:
        import torch_fidelity  # noqa: F401  (the Inception network behind torchmetrics' FID)
        import torchmetrics  # noqa: F401
    except ImportError as e:
        return f"Inception FID needs torchmetrics and torch-fidelity ({e}): pip install 'genai[metrics]'"
    path = inception_weights_path()
    if not path.is_file() and not download:
        return (
            f"no Inception-v3 FID weights at {path}: pass download=True (--download) to fetch "
            f"them (92 MB), or put {INCEPTION_WEIGHTS} there"
        )
    return None


def _as_uint8_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` uint8 or [0, 1] float -> uint8 ``(N, 3, H, W)`` (gray repeated, alpha dropped)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3, 4):
        raise ValueError(f"expected images of shape (N, 1|3|4, H, W), got {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = images.float()
        low, high = float(images.min()), float(images.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"expected float images in [0, 1] (or uint8), got values in [{low:.3g}, {high:.3g}]"
            )
        images = to_uint8(images)
    return images[:, :3] if images.shape[1] == 4 else images.expand(-1, 3, -1, -1)


@torch.no_grad()
def inception_fid(
    real: torch.Tensor,
    fake: torch.Tensor,
    download: bool = False,
    batch_size: int = 100,
    device: str | torch.device = "cpu",
) -> float:
    """The standard FID between ``real`` and ``fake`` images ``(N, C, H, W)``, uint8 or [0, 1].

    Images are resized to 299x299 inside the metric with the TensorFlow-compatible bilinear
    resize of the original FID code (torch-fidelity's), not torchmetrics' antialiased default,
    so that the numbers match torch-fidelity's. Inception-v3 costs about 11 GFLOP per image:
    about 13 minutes for 10,000 images on two CPU cores, seconds on a GPU.

    Args:
        download: fetch the weights (92 MB, from torch-fidelity's release) when they are not in
            :func:`inception_weights_path`.

    Raises:
        FileNotFoundError: the weights are not there and ``download`` is False.
        ImportError: torchmetrics or torch-fidelity is not installed.
        OSError: the download failed, or the weights file cannot be read.
        ValueError: the weights file is not Inception-v3's, or the images are malformed.
    """
    real, fake = _as_uint8_rgb(real), _as_uint8_rgb(fake)
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(
            f"FID needs at least 2 images per set, got {real.shape[0]} real, {fake.shape[0]} fake"
        )
    missing = inception_fid_unavailable(download)
    if missing:
        raise (FileNotFoundError if "weights" in missing else ImportError)(missing)
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = inception_weights_path()
    local = path.is_file()
    try:
        fid = FrechetInceptionDistance(
            feature=2048,
            feature_extractor_weights_path=str(path) if local else None,
            antialias=False,
        )
    except OSError as e:
        if local:
            raise OSError(f"{path}: cannot read the Inception-v3 FID weights ({e})") from e
        raise OSError(f"could not download the Inception-v3 FID weights to {path}: {e}") from e
    except Exception as e:  # a foreign or truncated file: torch.load fails in many ways
        reason = " ".join(str(e).split())[:150]
        raise ValueError(
            f"{path}: not a file of Inception-v3 FID weights ({type(e).__name__}: {reason})"
        ) from e
    if torch.device(device).type == "mps":  # the metric keeps float64 statistics: not on MPS
        device = "cpu"
    fid = fid.to(device)
    for images, is_real in ((real, True), (fake, False)):
        for i in range(0, images.shape[0], batch_size):
            fid.update(images[i : i + batch_size].to(device), real=is_real)
    return float(fid.compute())


# Earlier names (the classifier was for digits only); kept for one release.
DigitClassifier = ImageClassifier
digit_classifier = metric_classifier


# ---- likelihoods: the VAE's ELBO and IWAE NLL, the language model's loss -----------------------


@torch.no_grad()
def active_units(model: nn.Module, x: torch.Tensor, threshold: float = 0.01) -> int:
    """Latent dimensions a VAE uses (Burda et al. 2015): Var_x(E_q[z_j | x]) > ``threshold``.

    A collapsed posterior (q(z|x) = p(z) for every x) has 0 active units.

    Args:
        model: a VAE (anything with ``encode(x) -> (mu, logvar)``).
        x: images ``(N, C, H, W)`` in [0, 1], N >= 2.
    """
    mu = torch.cat([model.encode(batch)[0] for batch in x.split(500)])  # (N, D)
    return int((mu.var(dim=0) > threshold).sum())
