"""Images from any source as one in-memory uint8 ``(N, C, H, W)`` tensor, and a fast batch iterator.

:func:`load_images` takes

* a named dataset (``mnist``, ``fashion-mnist``, ``kmnist``, ``cifar10``, ``cifar100``, ``svhn``,
  ``stl10``, ``celeba``), read from ``root`` and downloaded only with ``download=True``
  (see :mod:`genai.data.named`);
* a folder of PNG/JPEG/WebP/BMP images, with class subfolders (labels) or flat (unlabeled),
  decoded once by a pool of workers and cached (see :mod:`genai.data.folders`);
* a tensor or NumPy array ``(N, H, W)`` or ``(N, C, H, W)``, uint8 or float in [0, 1], or an
  ``.npz`` file holding ``images`` (and optionally ``labels`` and ``class_names``).

Every source can be resized (center crop to a square, then an antialiased resize) to
``image_size`` and converted to ``channels`` (1 = gray, 3 = RGB) once, at load.
"""

from __future__ import annotations

import logging
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from genai.core.fields import class_name_list
from genai.data import folders, named
from genai.data.dataset import (
    SPLITS,
    DatasetError,
    ImageDataset,
    MissingSplitError,
    _check_size_and_channels,
    _fit,
    images_from_array,
)

log = logging.getLogger(__name__)


def _from_npz(path: Path, split: str) -> ImageDataset:
    """``images`` (and ``labels``) are the train split; ``test_images`` (and ``test_labels``)
    the test split; ``class_names`` serve both."""
    prefix = "" if split == "train" else f"{split}_"
    try:
        with np.load(path, allow_pickle=False) as f:
            if f"{prefix}images" not in f:
                if prefix and "images" in f:
                    raise MissingSplitError(
                        f"{path}: no {split} split (an .npz file has one in a "
                        f"'{prefix}images' array)"
                    )
                raise DatasetError(f"{path}: no 'images' array (keys: {', '.join(f.files)})")
            images = f[f"{prefix}images"]
            labels = f.get(f"{prefix}labels")
            names = f["class_names"] if "class_names" in f and labels is not None else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        if isinstance(e, DatasetError):
            raise
        raise DatasetError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    try:
        names = class_name_list(names)  # None: an unlabeled split
    except (TypeError, ValueError) as e:
        raise DatasetError(f"{path}: {e}") from e
    return images_from_array(images, labels, names, path.stem, str(path), split)


def load_images(
    source: str | Path | torch.Tensor | np.ndarray = "mnist",
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    root: str | Path | None = None,
    download: bool = False,
    *,
    labels: torch.Tensor | np.ndarray | list | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    num_workers: int | None = None,
    progress: bool = True,
) -> ImageDataset:
    """Load images from a named dataset, a folder, an ``.npz`` file, or an array.

    Args:
        source: a dataset name (see :data:`genai.data.named.NAMED`), a folder of images (class
            subfolders give labels), a ``.npz`` file, or a tensor / array.
        split: ``"train"`` or ``"test"`` (a folder with ``train/`` and ``test/`` subfolders
            picks one; a folder without them is the train split).
        image_size: resize (center crop + antialiased resize) to ``image_size`` square.
        channels: 1 (gray) or 3 (RGB); ``None`` keeps the source's (a folder with any color
            image is RGB).
        root: where a named dataset lives (default :func:`default_root`).
        download: allow a named dataset to be downloaded into ``root``.
        labels: class indices of array images.
        class_names: names of array classes.
        num_workers: decoding threads for folders (default: all cores).
        progress: show a progress bar while decoding a folder.

    Returns:
        An :class:`ImageDataset` with ``images`` uint8 ``(N, C, H, W)``.

    Raises:
        DatasetError: unknown name or split, missing files, corrupt or undecodable files.
        TypeError, ValueError: bad arrays, labels, ``image_size`` or ``channels``.
    """

    image_size, channels = _check_size_and_channels(image_size, channels)
    if split not in SPLITS:
        raise DatasetError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if torch.is_tensor(source) or isinstance(source, np.ndarray):
        data = images_from_array(source, labels, class_names, split=split)
    elif not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "source: expected a dataset name, a folder, an .npz file, a tensor or a NumPy "
            f"array, got {type(source).__name__}"
        )
    else:
        if labels is not None or class_names is not None:
            raise ValueError("labels and class_names are only for array sources")
        data = _from_path(
            str(source), split, root, download, image_size, channels, num_workers, progress
        )
    data.images = _fit(data.images, image_size, channels)
    log.info(
        "%s %s: %d images %s from %s", data.name, split, len(data), data.image_shape, data.source
    )
    return data


def _from_path(
    text: str,
    split: str,
    root: str | Path | None,
    download: bool,
    image_size: int | None,
    channels: int | None,
    num_workers: int | None,
    progress: bool,
) -> ImageDataset:
    """A named dataset, a folder or an ``.npz`` file, with the spec a run records of it."""
    path = Path(text).expanduser()
    spec = {"source": text, "root": str(Path(root).resolve()) if root else None}
    if text.lower() in named.NAMED:  # a folder of that name is reached as ./name
        root = Path(root) if root else None
        data = named.load_named(
            text.lower(), split, root, download, image_size, num_workers, progress
        )
    elif path.is_dir():
        spec["source"] = str(path.resolve())
        data = folders.load_folder(path, split, image_size, channels, num_workers, progress)
    elif path.is_file() and path.suffix == ".npz":
        spec["source"] = str(path.resolve())
        data = _from_npz(path, split)
    elif path.exists():
        raise DatasetError(f"{path}: not a folder of images or an .npz file")
    elif "/" in text or os.sep in text or text.startswith(".") or path.suffix:
        raise DatasetError(f"{path}: no such folder or file")
    else:
        raise DatasetError(
            f"unknown dataset {text!r}: expected one of {', '.join(named.NAMED)}, a folder "
            "of images, or an .npz file"
        )
    data.spec = {**spec, "image_size": image_size, "channels": channels}
    return data


def load_recorded(record: dict, split: str, **overrides) -> ImageDataset:
    """Load the data a run recorded in its ``config.json`` (``record`` = its ``"data"`` entry).

    ``overrides`` (``source``, ``root``, ``image_size``, ``channels``, ``download``,
    ``progress``) replace the recorded values where not ``None``.
    """
    if not record or "source" not in record:
        raise DatasetError("the run does not record its image data; pass --data")
    source = record["source"]
    if source == "array" and overrides.get("source") is None:
        raise DatasetError("the run was trained on an in-memory array; pass --data")
    args = {
        "source": source,
        "root": record.get("root"),
        "image_size": record.get("image_size"),
        "channels": record.get("channels"),
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    args.update(given)
    try:
        return load_images(split=split, **args)
    except DatasetError as e:
        if "source" in given or "no such folder" not in str(e):
            raise
        raise DatasetError(f"{e} (the run's recorded data); pass --data to use other data") from e
