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

import gzip
import logging
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from genai.core.fields import class_name_list, positive_int

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


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


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


def resize_images(images: torch.Tensor, size: int, chunk: int = 512) -> torch.Tensor:
    """Center-crop uint8 ``(N, C, H, W)`` to a square and resize it to ``(N, C, size, size)``.

    The resize is bilinear with antialiasing (so downscaling does not alias); done in chunks,
    so the float copy stays small.
    """
    h, w = images.shape[-2:]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    images = images[..., top : top + side, left : left + side]
    if side == size:
        return images.contiguous()
    out = torch.empty(*images.shape[:2], size, size, dtype=torch.uint8)
    for i in range(0, images.shape[0], chunk):
        x = images[i : i + chunk].float()
        y = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
        out[i : i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """uint8 ``(N, C, H, W)`` with C = 1 or 3 -> ``channels`` (gray is ITU-R 601 luma, as PIL)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor([299, 587, 114], dtype=torch.int32).view(1, 3, 1, 1)
    gray = (images.to(torch.int32) * weights).sum(dim=1, keepdim=True)
    return ((gray + 500) // 1000).to(torch.uint8)


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
    from genai.data import folders, named

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
        text = str(source)
        path = Path(text).expanduser()
        spec = {"source": text, "root": str(Path(root).resolve()) if root else None}
        if text.lower() in named.NAMED:  # a folder of that name is reached as ./name
            data = named.load_named(
                text.lower(),
                split,
                Path(root) if root else None,
                download,
                image_size,
                num_workers,
                progress,
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
        spec.update(image_size=image_size, channels=channels)
        data.spec = spec
    data.images = _fit(data.images, image_size, channels)
    log.info(
        "%s %s: %d images %s from %s", data.name, split, len(data), data.image_shape, data.source
    )
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


def split_dataset(data: ImageDataset, fraction: float, seed: int = 0):
    """Split with a seeded permutation (never by index: MNIST's halves differ by writer).

    Returns ``(first, second)`` where ``first`` holds ``round(fraction * N)`` examples.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    cut = round(fraction * len(data))
    return data.subset(perm[:cut]), data.subset(perm[cut:])


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
            raise ValueError(
                f"batch_size {batch_size} is larger than the dataset ({len(data)} images); "
                "set a smaller batch_size (--batch-size)"
            )
        self.device = torch.device(device)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device) if data.labels is not None else None
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

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The batch of global ``step``: images ``(B, C, H, W)`` float in [0, 1], labels ``(B,)``.

        Labels are ``None`` for unlabeled data.
        """
        epoch, i = divmod(step, len(self))
        if epoch != self._epoch:
            self._perm = torch.randperm(
                self.images.shape[0], generator=self._generator(0, epoch), device=self.device
            )
            self._epoch = epoch
        idx = self._perm[i * self.batch_size : (i + 1) * self.batch_size]
        x = to_float(self.images[idx])  # (B, C, H, W)
        if self.binarize:
            x = torch.bernoulli(x, generator=self._generator(1, step))
        return x, self.labels[idx] if self.labels is not None else None


def to_float(images: torch.Tensor) -> torch.Tensor:
    """0-255 levels (uint8, or another integer dtype) -> float32 in [0, 1], the one conversion
    genai makes: level k becomes k / 255."""
    return images.float().div_(255.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 levels (rounded to the nearest of the 256; values outside
    [0, 1] are clamped): the inverse of :func:`to_float` on its outputs. Half precision is
    widened to fp32 first, so that ``255 * x`` is exact enough to round."""
    x = images.to(torch.promote_types(images.dtype, torch.float32))
    return x.clamp(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)


def check_unit_range(x: torch.Tensor, what: str = "float images", tolerance: float = 0.0) -> None:
    """Raise ``ValueError`` unless float tensor ``x`` lies in [0, 1] (within ``tolerance``; NaN
    never does), naming the range found and, for 0-255 levels or [-1, 1] images, the fix."""
    lo, hi = (float(v) for v in x.aminmax())
    if lo >= -tolerance and hi <= 1.0 + tolerance:
        return
    hint = ""
    if hi > 1.5:
        hint = "; 0-255 levels: divide by 255 (x / 255) or pass uint8"
    elif lo >= -1.0 and hi <= 1.0:
        hint = "; a [-1, 1] image: (x + 1) / 2"
    raise ValueError(f"{what} must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")


def fixed_binarization(images: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """One seeded Bernoulli draw of uint8 images: a fixed binarized evaluation set, float {0, 1}."""
    gen = torch.Generator(images.device).manual_seed(seed)
    return torch.bernoulli(to_float(images), generator=gen)


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
