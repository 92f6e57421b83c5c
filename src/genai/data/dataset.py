"""The image dataset container: uint8 ``(N, C, H, W)`` images with labels and class names,
built from arrays, checked, split and subset; the errors every image source raises."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genai.core.fields import class_name_list, positive_int
from genai.data.pixels import check_unit_range, convert_channels, resize_images, to_uint8

log = logging.getLogger(__name__)


SPLITS = ("train", "test")

MAX_CLASSES = 2**16  # label values are class indices; a larger one is a mistake


class DatasetError(ValueError):
    """A dataset could not be found or its files are not valid."""


class MissingSplitError(DatasetError):
    """The data has no such split (a folder without test/, an .npz without test_images), or
    a named dataset's split is not on disk."""


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` uint8, labels ``(N,)`` int64 (or ``None``), and their source.

    Attributes:
        images: the pixels, uint8.
        labels: class indices in ``[0, len(class_names))``, or ``None`` for unlabeled data.
        name: a short name (the dataset's, the folder's, or ``"array"``).
        split: ``"train"`` or ``"test"``.
        source: where the pixels were read from (a folder or file), for the log.
        class_names: one name per class, or ``None``.
        spec: how to load the same data again (``load_images(**spec, split=...)``); recorded
            in a run's ``config.json``. Empty for in-memory arrays.
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    source: str
    class_names: tuple[str, ...] | None = None
    spec: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int | None:
        """Number of classes, or ``None`` when unlabeled."""
        if self.labels is None:
            return None
        if self.class_names is not None:
            return len(self.class_names)
        return int(self.labels.max()) + 1 if len(self) else 0

    def subset(self, index: torch.Tensor) -> ImageDataset:
        labels = None if self.labels is None else self.labels[index]
        return ImageDataset(
            self.images[index],
            labels,
            self.name,
            self.split,
            self.source,
            self.class_names,
            self.spec,
        )

    def describe(self) -> dict:
        """The JSON record of this data for a run's ``config.json``."""
        return {
            "dataset": self.name,
            "source": self.source,
            **self.spec,
            "image_shape": list(self.image_shape),
            "class_names": list(self.class_names) if self.class_names else None,
            "num_images": len(self),
        }


def default_root() -> Path:
    """``$GENAI_DATA`` or ``~/.cache/genai/data``: where downloads go."""
    return Path(os.environ.get("GENAI_DATA", Path.home() / ".cache" / "genai" / "data"))


def cache_dir() -> Path:
    """``$GENAI_CACHE`` or ``~/.cache/genai``: decoded image folders and metric classifiers."""
    return Path(os.environ.get("GENAI_CACHE", Path.home() / ".cache" / "genai"))


def _check_size_and_channels(
    image_size: int | None, channels: int | None
) -> tuple[int | None, int | None]:
    """``image_size`` and ``channels`` as Python ints (NumPy integers too), or errors."""
    if image_size is not None:
        image_size = positive_int("image_size", image_size)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(
            f"channels must be 1 (gray), 3 (RGB) or None (as stored), got {channels!r}"
        )
    return image_size, None if channels is None else int(channels)


def _fit(images: torch.Tensor, image_size: int | None, channels: int | None) -> torch.Tensor:
    if channels is not None:
        images = convert_channels(images, channels)
    if image_size is not None and images.shape[-2:] != (image_size, image_size):
        images = resize_images(images, image_size)
    return images


def images_from_array(
    images: torch.Tensor | np.ndarray,
    labels: torch.Tensor | np.ndarray | list | None = None,
    class_names: list[str] | tuple[str, ...] | None = None,
    name: str = "array",
    source: str = "array",
    split: str = "train",
) -> ImageDataset:
    """Wrap in-memory images as an :class:`ImageDataset` (uint8 ``(N, C, H, W)``).

    Args:
        images: ``(N, H, W)`` or ``(N, C, H, W)`` with C = 1 or 3, uint8 or float in [0, 1].
        labels: ``(N,)`` integer class indices, or ``None``.
        class_names: one name per class; needs ``labels``.

    Raises:
        TypeError: not a tensor or array, or an unsupported dtype.
        ValueError: wrong rank or channel count, floats outside [0, 1], bad labels.
    """
    if isinstance(images, np.ndarray):
        if images.dtype == object:
            raise TypeError("images: expected a numeric array, got dtype object")
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not torch.is_tensor(images):
        raise TypeError(f"images: expected a tensor or NumPy array, got {type(images).__name__}")
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4:
        raise ValueError(
            f"images: expected shape (N, H, W) or (N, C, H, W), got {tuple(images.shape)}"
        )
    if images.shape[1] not in (1, 3):
        hint = (
            " (channels last? use images.permute(0, 3, 1, 2))" if images.shape[-1] in (1, 3) else ""
        )
        raise ValueError(
            f"images: expected 1 or 3 channels in dim 1 of (N, C, H, W), got shape "
            f"{tuple(images.shape)}{hint}"
        )
    if images.shape[0] == 0:
        raise ValueError("images: no images (N = 0)")
    if images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"images: empty images, shape {tuple(images.shape)}")
    if images.is_floating_point():
        check_unit_range(images, "images: float images")
        images = to_uint8(images)
    elif images.dtype != torch.uint8:
        raise TypeError(f"images: expected uint8 or float in [0, 1], got {images.dtype}")
    images = images.cpu().contiguous()
    names = class_name_list(class_names)
    labels_t = _labels(labels, images.shape[0], names)
    return ImageDataset(images, labels_t, name, split, source, names)


def _labels(labels, n: int, class_names) -> torch.Tensor | None:
    if labels is None:
        if class_names is not None:
            raise ValueError("class_names given without labels")
        return None
    if isinstance(labels, (list, tuple)):
        try:
            labels = torch.tensor(labels)
        except (TypeError, ValueError, RuntimeError):
            kinds = sorted({type(v).__name__ for v in labels})
            raise TypeError(
                f"labels: expected integer class indices, got a list of {', '.join(kinds)}"
            ) from None
    elif isinstance(labels, np.ndarray):
        if labels.dtype.kind not in "iub":  # strings, objects: no tensor to make
            raise TypeError(f"labels: expected integer class indices, got {labels.dtype}")
        labels = torch.from_numpy(np.ascontiguousarray(labels))
    if not torch.is_tensor(labels) or labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(
            "labels: expected integer class indices, got "
            f"{labels.dtype if torch.is_tensor(labels) else type(labels).__name__}"
        )
    if labels.shape != (n,):
        raise ValueError(f"labels: expected shape ({n},) for {n} images, got {tuple(labels.shape)}")
    labels = labels.long().cpu()
    k = len(class_names) if class_names is not None else None
    if k is None and labels.max() >= MAX_CLASSES:
        raise ValueError(
            f"labels: the largest, {int(labels.max())}, would make {int(labels.max()) + 1} "
            f"classes; at most {MAX_CLASSES:,} (number the classes 0..K-1)"
        )
    if labels.min() < 0 or (k is not None and labels.max() >= k):
        span = f"[0, {k - 1}]" if k is not None else ">= 0"
        raise ValueError(
            f"labels: values must be {span}, got [{int(labels.min())}, {int(labels.max())}]"
        )
    return labels


def split_dataset(data: ImageDataset, fraction: float, seed: int = 0):
    """Split with a seeded permutation (never by index: MNIST's halves differ by writer).

    Returns ``(first, second)`` where ``first`` holds ``round(fraction * N)`` examples.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = round(fraction * len(data))
    return data.subset(perm[:cut]), data.subset(perm[cut:])


def check_shape(image_shape: tuple[int, int, int], data: ImageDataset) -> None:
    """Raise ``ValueError`` unless ``data``'s images are ``image_shape`` (a model's)."""
    if tuple(data.image_shape) != tuple(image_shape):
        raise ValueError(
            f"the model takes {tuple(image_shape)} images but the data ({data.name} "
            f"{data.split}) are "
            f"{tuple(data.image_shape)}; load the data with image_size=/channels= "
            "(--image-size/--image-channels) to match, or build the model with "
            "image_shape=data.image_shape"
        )


def as_dataset(data: ImageDataset | torch.Tensor | np.ndarray) -> ImageDataset:
    """Accept an :class:`ImageDataset`, or images as a tensor / array (uint8 or float in [0, 1]).

    Array images are unlabeled; use :func:`load_images` with ``labels=`` to label them.
    """
    if isinstance(data, ImageDataset):
        return data
    if not (torch.is_tensor(data) or isinstance(data, np.ndarray)):
        raise TypeError(
            f"data: expected an ImageDataset, a tensor or a NumPy array, got {type(data).__name__}"
        )
    return images_from_array(data)


def take_classes(config: Any, data: ImageDataset, what: str) -> None:
    """Check the data of a class-conditional model (``config.num_classes`` set; ``what`` names
    the model in messages) and give the model the data's class names, saved with its run."""
    k = config.num_classes
    if k is None:
        return
    if data.labels is None or data.num_classes < 2:
        found = "no labels" if data.labels is None else "one class only"
        raise ValueError(
            f"{what} (num_classes={k}) needs labeled data with at least 2 "
            f"classes; {data.name} has {found}"
        )
    if data.labels.min() < 0 or data.labels.max() >= k:
        raise ValueError(
            f"the data's labels span [{int(data.labels.min())}, {int(data.labels.max())}] "
            f"but the model has num_classes={k}"
        )
    names = data.class_names
    if names and len(names) != k:
        raise ValueError(
            f"the model has num_classes={k} but the data ({data.name}) has {len(names)} "
            f"classes ({', '.join(names)})"
        )
    if names and config.class_names not in (None, tuple(names)):
        raise ValueError(
            f"the model's class names ({', '.join(config.class_names)}) differ from "
            f"the data's ({', '.join(names)}); leave class_names unset to take the data's, "
            "or name the data's classes: load_images(data.images, labels=data.labels, "
            "class_names=[...])"
        )
    if names:
        config.class_names = tuple(names)  # saved with the run


def class_index(class_names: tuple[str, ...] | None, label: Any) -> int:
    """The class index of ``label``: an index, or a class name (a string is a name first, else a
    digit string is an index: with classes named "1", "2", "3", ``"1"`` is class 0)."""
    if isinstance(label, str):
        if class_names is not None and label in class_names:
            return class_names.index(label)
        if label.strip().lstrip("-").isdigit():
            return int(label)
        known = ", ".join(class_names) if class_names else "none recorded"
        raise ValueError(f"labels: unknown class {label!r}; class names: {known}")
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise TypeError(f"labels: a label is an int or a class name, got {type(label).__name__}")
    return int(label)
