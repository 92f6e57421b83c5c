"""Sample-quality metrics: classifier FID, Inception Score, coverage, conditional accuracy."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from genai import metrics
from genai.data.dataset import ImageDataset
from genai.metrics import (
    DigitClassifier,
    class_coverage,
    classifier_fid,
    conditional_accuracy,
    digit_classifier,
    evaluate_samples,
    inception_score,
)
from genai.vae import evaluate_vae


def blobs(n: int = 200, seed: int = 0) -> torch.Tensor:
    """Digit-like images in [0, 1]: one bright random rectangle each, ``(n, 1, 28, 28)``."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    corners = torch.randint(2, 14, (n, 2), generator=gen)
    for i, (r, c) in enumerate(corners.tolist()):
        x[i, 0, r : r + 12, c : c + 8] = 1.0
    return x


@pytest.fixture
def classifier() -> DigitClassifier:
    torch.manual_seed(0)
    return DigitClassifier().eval()


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_noise(classifier):
    x = blobs()
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(x.shape, generator=gen)
    assert classifier_fid(classifier, x, x) == pytest.approx(0.0, abs=1e-4)
    fids = [classifier_fid(classifier, x, (x + s * noise).clamp(0, 1)) for s in (0.05, 0.2, 0.5)]
    assert 0 < fids[0] < fids[1] < fids[2]
    # uint8 input is read as intensities / 255
    u8 = (x * 255).to(torch.uint8)
    assert classifier_fid(classifier, u8, x) == pytest.approx(0.0, abs=1e-4)


def test_fid_is_the_frechet_distance_of_the_feature_gaussians(classifier):
    real, fake = blobs(200, 0), blobs(200, 1).flip(-1)
    with torch.no_grad():
        a, b = classifier.features(real).double(), classifier.features(fake).double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    # Tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of S_a S_b
    eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0)
    expected = ((mu_a - mu_b) ** 2).sum() + cov_a.trace() + cov_b.trace() - 2 * eig.sqrt().sum()
    assert classifier_fid(classifier, real, fake) == pytest.approx(expected.item(), rel=1e-3)


def test_inception_score_on_hand_made_probabilities():
    one_hot = torch.eye(4).repeat(5, 1)  # confident and uniform over 4 classes
    assert inception_score(one_hot) == pytest.approx(4.0)
    same = torch.tensor([[0.7, 0.2, 0.1]]).repeat(10, 1)  # every sample looks alike
    assert inception_score(same) == pytest.approx(1.0)
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    marginal = probs.mean(0)
    kl = (probs * (probs / marginal).log()).sum(1).mean()
    assert inception_score(probs) == pytest.approx(math.exp(kl.item()))


def test_class_coverage_on_hand_made_predictions():
    preds = torch.cat([torch.full((n,), k) for k, n in enumerate([50, 30, 15, 4, 1])])  # of 100
    out = class_coverage(preds, num_classes=10)
    assert out["classes_covered"] == 3  # 4% and 1% are below the 5% threshold
    p = torch.tensor([0.5, 0.3, 0.15, 0.04, 0.01])
    assert out["label_entropy"] == pytest.approx(-(p * p.log()).sum().item())
    uniform = class_coverage(torch.arange(1000) % 10)
    assert uniform == {"classes_covered": 10, "label_entropy": pytest.approx(math.log(10))}
    assert class_coverage(torch.zeros(7, dtype=torch.long))["label_entropy"] == 0.0
    with pytest.raises(ValueError, match="at least one prediction"):
        class_coverage(torch.tensor([], dtype=torch.long))


class MarkClassifier(nn.Module):
    """Predicts class k when pixel (0, k) is the brightest of the first row."""

    num_features = 10

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(10.0))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x[:, 0, 0, :10]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class MarkModel(nn.Module):
    """A conditional 'generator' that draws label k's mark, except digit 3 comes out as 4."""

    def __init__(self):
        super().__init__()
        self.config = SimpleNamespace(num_classes=10)
        self.w = nn.Parameter(torch.zeros(()))

    def sample(self, n, labels=None, generator=None):
        if labels is None:
            labels = torch.randint(10, (n,), generator=generator)
        drawn = torch.where(labels == 3, 4, labels)
        x = torch.zeros(n, 1, 28, 28)
        x[torch.arange(n), 0, 0, drawn] = 1.0
        return x


def test_conditional_accuracy_counts_samples_classified_as_requested():
    acc = conditional_accuracy(MarkModel(), MarkClassifier(), n_per_class=20)
    assert acc == pytest.approx(0.9)  # one class in ten is always wrong


def test_evaluate_samples_reports_coverage_and_accuracy():
    real = MarkModel().sample(200, labels=torch.arange(200) % 10)
    out = evaluate_samples(MarkModel(), MarkClassifier(), real, n=400)
    assert out["classes_covered"] == 9  # nothing is ever drawn as a 3
    assert out["conditional_accuracy"] == pytest.approx(0.9)
    assert out["fid"] > 0 and 1 < out["inception_score"] <= 9.0 + 1e-6


def test_classifier_is_trained_once_and_cached_per_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path))
    x = (blobs(40) * 255).to(torch.uint8)
    data = ImageDataset(x, torch.arange(40) % 10, "mnist", "train", "test")
    first = digit_classifier(data, steps=3)
    files = list((tmp_path / "classifiers").glob("mnist-*.safetensors"))
    assert len(files) == 1

    def no_training(*args, **kwargs):
        raise AssertionError("the cached classifier should have been loaded")

    monkeypatch.setattr(metrics, "train_classifier", no_training)
    second = digit_classifier(data, steps=3)
    for (k, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    other = ImageDataset(x.flip(-1), data.labels, "fashion-mnist", "train", "test")
    with pytest.raises(AssertionError, match="cached classifier"):
        digit_classifier(other, steps=3)  # another dataset is another cache entry


def test_train_classifier_learns_and_keeps_the_global_rng():
    x = blobs(200)
    labels = (x[:, 0, :, :14].sum((1, 2)) > x[:, 0, :, 14:].sum((1, 2))).long()  # left or right
    data = ImageDataset((x * 255).to(torch.uint8), labels, "toy", "train", "test")
    state = torch.get_rng_state()
    model = metrics.train_classifier(data, steps=60, batch_size=64)
    assert torch.equal(state, torch.get_rng_state())
    acc = (model(x).argmax(1) == labels).float().mean().item()
    assert acc > 0.9
    assert not any(p.requires_grad for p in model.parameters())


def test_bad_input(classifier):
    with pytest.raises(ValueError, match="at least 2 images per set"):
        classifier_fid(classifier, blobs(1), blobs(5))
    with pytest.raises(ValueError, match=r"expected images of shape \(N, C, H, W\)"):
        classifier_fid(classifier, torch.zeros(4, 28, 28), blobs(5))
    with pytest.raises(ValueError, match="steps must be > 0"):
        metrics.train_classifier(ImageDataset(blobs(4), torch.zeros(4), "x", "train", "t"), 0)
    with pytest.raises(ValueError, match="n must be >= 2"):
        evaluate_samples(MarkModel(), MarkClassifier(), blobs(4), n=1)


def test_inception_fid_without_weights_names_the_folder_and_the_flag():
    pytest.importorskip("torch_fidelity")
    with pytest.raises(FileNotFoundError, match=r"torch-home.*download=True \(--download\)"):
        metrics.inception_fid(torch.rand(2, 1, 28, 28), torch.rand(2, 1, 28, 28))


def test_inception_fid_is_zero_for_one_set_and_grows_when_the_sets_differ(inception_home):
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    rgb_dark = torch.rand(2, 3, 32, 32) * 0.3  # float in [0, 1], another size and channel count
    assert metrics.inception_weights_path().is_relative_to(inception_home)
    assert abs(metrics.inception_fid(gray, gray)) < 1e-3
    assert metrics.inception_fid(gray, rgb_dark) > 1.0
    with pytest.raises(ValueError, match=r"\(N, 1\|3\|4, H, W\)"):
        metrics.inception_fid(torch.rand(2, 2, 8, 8), gray)
    with pytest.raises(ValueError, match=r"float images in \[0, 1\].*got values in \[-0\.99"):
        metrics.inception_fid(torch.rand(2, 3, 8, 8) * 2 - 1, gray)  # a GAN's [-1, 1] range
    rgba = torch.cat([gray.expand(-1, 3, -1, -1), torch.zeros_like(gray)], dim=1)
    assert abs(metrics.inception_fid(gray, rgba)) < 1e-3  # alpha dropped, gray repeated


def test_inception_fid_refuses_a_corrupt_weights_file_naming_it(tmp_path):
    pytest.importorskip("torch_fidelity")
    path = metrics.inception_weights_path()  # under the test's own TORCH_HOME
    path.parent.mkdir(parents=True)
    for junk in (b"not a checkpoint", b"junk\n", b"", b"PK\x03\x04 truncated zip"):
        path.write_bytes(junk)
        assert metrics.inception_fid_unavailable() is None  # a file is there: it will be tried
        with pytest.raises(ValueError, match=r"weights-inception.*not a file of Inception-v3"):
            metrics.inception_fid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    torch.save({"fc.weight": torch.zeros(3, 3)}, path)  # a checkpoint, not Inception's
    with pytest.raises(ValueError, match=r"not a file of Inception-v3 FID weights \(RuntimeError"):
        metrics.inception_fid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))


def test_inception_fid_download_without_a_network_is_an_oserror_naming_the_weights(monkeypatch):
    import urllib.error

    fi = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(fi, "load_state_dict_from_url", offline)
    with pytest.raises(OSError, match=r"could not download the Inception-v3 FID weights to .*"):
        metrics.inception_fid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), download=True)


def test_a_damaged_or_other_class_count_cache_entry_is_trained_again(tmp_path, monkeypatch):
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path))
    x = (blobs(12) * 255).to(torch.uint8)
    two = ImageDataset(x, torch.arange(12) % 2, "blobs", "train", "test")
    metrics.metric_classifier(two, steps=2)
    (entry,) = (tmp_path / "classifiers").glob("blobs-*.safetensors")
    entry.write_bytes(b"")  # a damaged cache file: trained again, with a warning
    assert metrics.metric_classifier(two, steps=2).head.out_features == 2
    assert entry.stat().st_size > 0
    # the same images and labels with a third class name: a classifier of 3 classes
    three = ImageDataset(x, two.labels, "blobs", "train", "test", ("a", "b", "c"))
    assert metrics.metric_classifier(three, steps=2).head.out_features == 3


def test_evaluate_vae_refuses_no_images():
    from genai import VAE, VAEConfig

    model = VAE(VAEConfig(arch="mlp", hidden_dims=(8,), latent_dim=2))
    with pytest.raises(ValueError, match="at least one image"):
        evaluate_vae(model, torch.zeros(0, 1, 28, 28))
