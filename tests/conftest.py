"""Shared fixtures: tiny IDX datasets written by the tests themselves (no network)."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from genai.data.idx import write_idx

# Tiny models gain nothing from a second thread and lose a lot when the cores are busy; the CLI
# and example subprocesses inherit the setting.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(1)


def make_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic 28x28 'digits': one bright bar per class, at a class-dependent place."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    images = (rng.random((n, 28, 28)) * 40).astype(np.uint8)
    for i, label in enumerate(labels):
        row = 3 + 2 * int(label)
        images[i, row : row + 3, 4:24] = 255
    return images, labels


@pytest.fixture
def idx_root(tmp_path):
    """A folder with train (200) and test (60) IDX files, gzipped like the originals."""
    root = tmp_path / "mnist"
    root.mkdir()
    for split, n, prefix in (("train", 200, "train"), ("test", 60, "t10k")):
        images, labels = make_digits(n, seed=0 if split == "train" else 1)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Keep every test away from the user's data and caches, deterministic, and on the torch
    threads it started with (one: set above)."""
    monkeypatch.setenv("GENAI_DATA", str(tmp_path / "genai-data"))
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path / "genai-cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # no Inception weights
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)  # a test that sets torch's threads does not leak them


@pytest.fixture(scope="session")
def _random_inception_weights(tmp_path_factory):
    """A file of Inception-v3 FID weights drawn at random (the real file is 92 MB, online).

    He-initialized convolutions keep the activations alive through the 90-odd layers, so the
    features still tell images apart: only the numbers differ from the real network's."""
    fi = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")

    from genai.metrics import INCEPTION_WEIGHTS

    loads = (fi.FeatureExtractorInceptionV3, "load_state_dict")
    with pytest.MonkeyPatch.context() as m:
        m.setattr(fi, "load_state_dict_from_url", lambda *a, **k: {})
        m.setattr(*loads, lambda self, state: None)
        torch.manual_seed(0)
        net = fi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight)
    home = tmp_path_factory.mktemp("torch-home")
    (home / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(net.state_dict(), home / "hub" / "checkpoints" / INCEPTION_WEIGHTS)
    return home


@pytest.fixture
def inception_home(_random_inception_weights, monkeypatch):
    """TORCH_HOME pointing at a hub folder with (random) Inception-v3 FID weights."""
    monkeypatch.setenv("TORCH_HOME", str(_random_inception_weights))
    return _random_inception_weights


@pytest.fixture
def cifar10_root(tmp_path):
    """torchvision's on-disk CIFAR-10 layout under ``tmp_path``: python pickles of ``(N, 3072)``
    uint8 rows and labels, 4 images per batch (20 train, 4 test); the red plane of batch i is
    i; returns the ``cifar-10-batches-py`` folder."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        data[:, :1024] = i
        labels = [(i + j) % 10 for j in range(4)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f, protocol=2)
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship"]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [*names, "truck"]}, f, protocol=2)
    return folder
