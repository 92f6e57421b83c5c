"""Files that are always whole: atomic writes, fsync, the user's umask, short error reasons."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

_replace = os.replace  # every rename of a save goes through here (tests inject faults)


def brief(error: BaseException, limit: int = 200) -> str:
    """An exception as a short one-line reason (torch's messages can run to pages)."""
    text = " ".join(str(error).split(" Exception raised from")[0].split())
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform or file system can fsync a folder
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def fsync(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[str], None]) -> Path:
    """Call ``write(tmp_path)``, fsync, then rename the temporary file onto ``path``.

    The temporary file is created with the user's umask (unlike ``mkstemp``'s 0600), beside
    ``path`` so that the rename is atomic; it is removed if ``write`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        write(str(tmp))
        fsync(tmp)
        _replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
