"""Folders of image files, decoded once into a uint8 tensor by a pool of threads, and cached.

Layouts (as torchvision's ``ImageFolder``)::

    photos/cat/001.png  photos/dog/002.jpg ...   class subfolders: labels 0, 1, ... in sorted
                                                 order of the folder names, which are the classes
    photos/001.png  photos/002.webp ...          flat: unlabeled
    photos/train/<classes or flat>  photos/test/...   split subfolders (train/, test/ or both,
                                                 and no other subfolder with images): ``split``
                                                 picks one; the test split's labels follow
                                                 train's classes

Files ending in .png, .jpg, .jpeg, .webp or .bmp (any case) are images; other files are
ignored. Every image is turned upright by its EXIF orientation (phone photos), center-cropped to a square and resized (antialiased) to ``image_size``,
converted to gray or RGB (transparent pixels composited on white; 16-bit gray scaled to 8 bits),
and written straight into a
preallocated ``(N, C, S, S)`` uint8 tensor, so memory is that tensor plus a small constant.

The decoded tensor is cached in ``cache_dir()/images/`` under a key made of the folder's
absolute path, every file's relative path, size and modification time and the requested size
and channels: the second load of an unchanged folder reads one ``.npy`` file.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genai.core.files import atomic_write
from genai.core.progress import progress_bar
from genai.data.dataset import DatasetError, ImageDataset, MissingSplitError, cache_dir

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
_CACHE_VERSION = 3  # 2: 16-bit gray scaled, not clipped; 3: EXIF orientation applied
_ORIENTATION = 0x0112  # the EXIF tag
_CHUNK = 256  # images per pool task


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _walk(folder: Path):
    """``os.walk`` following symlinks, in sorted order, skipping hidden folders and any folder
    seen before (a symlink loop)."""
    seen = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            log.warning("%s: skipped, a symlink back to a folder already read", dirpath)
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        yield dirpath, filenames


def _image_files(folder: Path) -> list[Path]:
    return [Path(d) / f for d, names in _walk(folder) for f in sorted(names) if _is_image(f)]


def _has_image(folder: Path) -> bool:
    """Whether ``folder`` or a subfolder holds an image (stops at the first)."""
    return any(any(_is_image(f) for f in names) for _, names in _walk(folder))


def _scan(folder: Path) -> tuple[list[Path], list[int] | None, tuple[str, ...] | None]:
    """Files, labels and class names of a folder (class subfolders) or just files (flat)."""
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [(d.name, _image_files(d)) for d in subdirs]
    empty = [name for name, files in classes if not files]
    classes = [(name, files) for name, files in classes if files]
    if classes and empty:
        log.warning("%s: subfolders without images are not classes: %s", folder, ", ".join(empty))
    top = sorted(f for f in folder.iterdir() if f.is_file() and _is_image(f.name))
    if classes:
        if top:
            log.warning("%s: %d images beside the class subfolders are ignored", folder, len(top))
        files = [f for _, fs in classes for f in fs]
        labels = [k for k, (_, fs) in enumerate(classes) for _ in fs]
        return files, labels, tuple(name for name, _ in classes)
    if not top:
        others = [f.name for f in folder.iterdir() if not f.name.startswith(".")][:3]
        found = f"; found only {', '.join(others)}" if others else " (it is empty)"
        raise DatasetError(
            f"{folder}: no images ({', '.join(IMAGE_EXTENSIONS)}) in the folder or its class "
            f"subfolders{found}"
        )
    return top, None, None


def _split_folders(folder: Path) -> list[str]:
    """``train``/``test`` when they are the folder's only subfolders with images (the split
    layout); else [] (class subfolders, one of which may be named train)."""
    named = [d.name for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    with_images = [name for name in named if _has_image(folder / name)]
    splits = [name for name in ("train", "test") if name in named]
    return splits if splits and set(with_images) <= {"train", "test"} else []


def _as_train_classes(
    folder: Path, labels: list[int], class_names: tuple[str, ...]
) -> tuple[list[int], tuple[str, ...]]:
    """Labels of a test split renumbered by the train split's classes, so that a class has
    one index in both (a test split may lack some of the train split's classes)."""
    train = folder.parent / "train"
    train_names = [
        d.name
        for d in sorted(train.iterdir())
        if d.is_dir() and not d.name.startswith(".") and _has_image(d)
    ]
    missing = [name for name in class_names if name not in train_names]
    if missing:
        raise DatasetError(
            f"{folder}: class folders {', '.join(missing)} are not classes of {train} "
            f"(its classes: {', '.join(train_names) or 'none, it is flat'})"
        )
    index = {name: k for k, name in enumerate(train_names)}
    return [index[class_names[k]] for k in labels], tuple(train_names)


def _open_error(path: Path, e: Exception) -> DatasetError:
    return DatasetError(f"{path}: not a readable image ({type(e).__name__}: {e})")


def _orientation(im) -> int:
    """The EXIF orientation of an open image: 1 upright, 5-8 rotated by 90 degrees."""
    try:
        return int(im.getexif().get(_ORIENTATION, 1))
    except Exception:  # a broken EXIF block: the pixels may still be fine
        return 1


def _header(path: Path) -> tuple[str, tuple[int, int]]:
    from PIL import Image

    try:
        with Image.open(path) as im:
            w, h = im.size
            return im.mode, ((h, w) if _orientation(im) in (5, 6, 7, 8) else (w, h))
    except Exception as e:  # PIL raises many types for bad files; each becomes one clear error
        raise _open_error(path, e) from e


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """16-bit (or 32-bit integer) gray levels scaled to 0-255: 65535 -> 255, 257 per level."""
    return np.clip(np.rint(array.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def _decode(path: Path, size: int, channels: int) -> np.ndarray:
    """One file -> ``(channels, size, size)`` uint8: center square, antialiased resize."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.draft("RGB" if channels == 3 else "L", (size, size))  # JPEG: decode at 1/2^k
            if _orientation(im) != 1:  # a phone photo stored sideways: turn it upright
                im = ImageOps.exif_transpose(im)
            if im.mode.startswith("I"):  # 16-bit gray: PIL's convert("L") would clip it
                im = Image.fromarray(_to_uint8(np.asarray(im)), "L")
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
                im = im.convert("RGBA")
                im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
            im = im.convert("RGB" if channels == 3 else "L")
            w, h = im.size
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            box = (left, top, left + side, top + side)
            im = im.resize((size, size), Image.Resampling.BICUBIC, box=box)
            array = np.asarray(im, dtype=np.uint8)
    except Exception as e:  # truncated or corrupt data surfaces only when decoding
        raise _open_error(path, e) from e
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _pool_map(fn, items: list, num_workers: int | None, desc: str, progress: bool) -> None:
    """Run ``fn(chunk_start, chunk)`` over chunks of ``items`` in a thread pool, with a bar."""
    workers = num_workers or os.cpu_count() or 1
    chunks = [(i, items[i : i + _CHUNK]) for i in range(0, len(items), _CHUNK)]
    with (
        ThreadPoolExecutor(workers) as pool,
        progress_bar(total=len(items), desc=desc, unit="img", disable=not progress) as bar,
    ):
        for n in pool.map(lambda c: fn(*c), chunks):
            bar.update(n)


def decode_files(
    files: list[Path],
    size: int,
    channels: int,
    num_workers: int | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Decode ``files`` into a uint8 tensor ``(N, channels, size, size)``.

    Raises:
        DatasetError: naming the first file that cannot be decoded.
    """
    try:
        out = torch.empty(len(files), channels, size, size, dtype=torch.uint8)
    except RuntimeError as e:  # the allocator's own message names no setting
        raise DatasetError(
            f"{len(files)} images of {channels}x{size}x{size} need "
            f"{len(files) * channels * size * size / 2**30:.1f} GiB of memory, more than there "
            "is; choose a smaller image_size (--image-size)"
        ) from e
    target = out.numpy()

    def work(start: int, chunk: list[Path]) -> int:
        for i, path in enumerate(chunk):
            target[start + i] = _decode(path, size, channels)
        return len(chunk)

    _pool_map(work, files, num_workers, "decoding images", progress)
    return out


def _defaults(
    folder: Path,
    files: list[Path],
    image_size: int | None,
    channels: int | None,
    num_workers: int | None,
    progress: bool,
) -> tuple[int, int]:
    """Read the headers when the size or the channels are not given: RGB if any image has
    color; the common square side (the short side when all images share one size)."""
    headers: list[tuple[str, tuple[int, int]]] = [("", (0, 0))] * len(files)

    def work(start: int, chunk: list[Path]) -> int:
        for i, path in enumerate(chunk):
            headers[start + i] = _header(path)
        return len(chunk)

    _pool_map(work, files, num_workers, "reading image headers", progress)
    if channels is None:
        channels = 1 if all(mode in _GRAY_MODES for mode, _ in headers) else 3
    if image_size is None:
        sizes = {size for _, size in headers}
        if len(sizes) > 1:
            shown = ", ".join(f"{w}x{h}" for w, h in sorted(sizes)[:4])
            shown += ", ..." if len(sizes) > 4 else ""
            raise DatasetError(
                f"{folder}: the images have {len(sizes)} different sizes ({shown}); "
                "pass image_size (--image-size) to resize them all to one square size"
            )
        image_size = min(sizes.pop())
    return image_size, channels


def _cache_key(root: Path, files: list[Path], image_size: int | None, channels: int | None) -> str:
    h = hashlib.sha256(f"{_CACHE_VERSION} {image_size} {channels} {root.resolve()}\n".encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def _read_cache(stem: Path) -> tuple[torch.Tensor, dict] | None:
    meta_path = stem.with_suffix(".json")  # written last: its presence means the cache is whole
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        images = torch.from_numpy(np.load(stem.with_suffix(".npy"), allow_pickle=False))
    except (OSError, ValueError) as e:
        log.warning("ignoring the unreadable image cache %s (%s)", stem, e)
        return None
    return images, meta


def _write_cache(stem: Path, images: torch.Tensor, meta: dict) -> None:

    try:
        atomic_write(stem.with_suffix(".npy"), lambda tmp: _save_npy(tmp, images.numpy()))
        atomic_write(stem.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(meta)))
    except OSError as e:  # a read-only cache must not stop training
        log.warning("could not cache decoded images in %s (%s)", stem.parent, e)


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def load_folder(
    folder: Path,
    split: str = "train",
    image_size: int | None = None,
    channels: int | None = None,
    num_workers: int | None = None,
    progress: bool = True,
    use_cache: bool = True,
) -> ImageDataset:
    """Load a folder of images (see the module docstring for the layouts).

    Raises:
        DatasetError: no images, mixed sizes without ``image_size``, a file that is not a
            readable image (named), or a split subfolder that is missing.
    """
    folder = Path(folder)
    splits = _split_folders(folder)
    has_splits = bool(splits)
    if has_splits and split not in splits:
        raise MissingSplitError(f"{folder}: no {split} split (it has {splits[0]}/ but no {split}/)")
    if has_splits:
        folder = folder / split
    elif split != "train":
        raise MissingSplitError(
            f"{folder}: no {split} split (a folder has one only with a {split}/ subfolder)"
        )
    files, labels, class_names = _scan(folder)
    if split != "train" and labels is not None and "train" in splits:
        labels, class_names = _as_train_classes(folder, labels, class_names)
    stem = cache_dir() / "images" / _cache_key(folder, files, image_size, channels)
    cached = _read_cache(stem) if use_cache else None
    if cached is not None:
        images, _ = cached
        log.info("%s: %d decoded images from the cache %s", folder, len(files), stem)
    else:
        size, c = image_size, channels
        if size is None or c is None:
            size, c = _defaults(folder, files, image_size, channels, num_workers, progress)
        images = decode_files(files, size, c, num_workers, progress)
        if use_cache:
            _write_cache(stem, images, {"folder": str(folder), "count": len(files)})
    name = folder.parent.name if has_splits else folder.name
    return ImageDataset(
        images,
        torch.tensor(labels, dtype=torch.long) if labels is not None else None,
        name,
        split,
        str(folder),
        class_names,
    )
