"""Shared fixtures: tiny IDX datasets written by the tests themselves (no network)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from genai.data.images import write_idx

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
    """Keep every test away from the user's data and caches, and deterministic."""
    monkeypatch.setenv("GENAI_DATA", str(tmp_path / "genai-data"))
    monkeypatch.setenv("GENAI_CACHE", str(tmp_path / "genai-cache"))
    torch.manual_seed(0)
