"""The life of a run directory during training: checks, lock, overwrite, recovery.

* Every check that can fail is made before anything in the folder changes
  (:func:`check_run_dir`, then the engine builds data, device and optimizers).
* One training process at a time holds the folder (:func:`genai.core.checkpoint.run_lock`).
* ``overwrite`` moves the old run's files aside into ``.previous-run/`` and deletes them only when
  the new run's first checkpoint is committed; if the new run fails (or is killed) before that,
  the old run is put back (at once, or by the next process that opens the folder).
* Only files genai writes are ever moved or removed: the checkpoint files, ``metrics.jsonl``,
  ``loss.png`` and ``samples/step_NNNNNNN.{png,txt}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from genai.core import checkpoint
from genai.core.files import atomic_write, fsync_dir

log = logging.getLogger(__name__)

METRICS, PLOT, SAMPLES = "metrics.jsonl", "loss.png", "samples"
PREVIOUS = checkpoint.ASIDE
_SAMPLE = re.compile(r"^step_\d{7}\.(png|txt)$")


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds files of a genai run: a checkpoint, or a metrics log."""
    if checkpoint.is_run_dir(run_dir):
        return True
    try:
        with open(run_dir / METRICS) as f:
            record = json.loads(f.readline())
        return isinstance(record, dict) and "step" in record and "split" in record
    except (OSError, ValueError):
        return False


def genai_files(run_dir: Path) -> list[Path]:
    """The files in ``run_dir`` that training wrote (never a user's own files)."""
    if not holds_run(run_dir):
        return []
    names = [*checkpoint.FILES, METRICS, PLOT]
    found = [run_dir / n for n in names if (run_dir / n).exists()]
    samples = run_dir / SAMPLES
    if samples.is_dir():
        found += sorted(p for p in samples.iterdir() if _SAMPLE.match(p.name) and p.is_file())
    return found


def check_run_dir(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Read-only checks of ``run_dir`` before training; nothing is written.

    Raises:
        FileExistsError: it holds a run and neither ``resume`` nor ``overwrite`` is set.
        NotADirectoryError: it (or a parent) is a file.
        CheckpointError: ``resume`` is set and it is not a run.
    """
    for parent in (run_dir, *run_dir.parents):
        if parent.exists() and not parent.is_dir():
            raise NotADirectoryError(f"out_dir {str(run_dir)!r}: {str(parent)!r} is a file")
    for parent in run_dir.resolve().parents:
        if checkpoint.is_run_dir(parent):
            raise ValueError(
                f"out_dir {str(run_dir)!r} is inside the run directory {str(parent)!r}; "
                "choose a folder outside it"
            )
    if resume:
        checkpoint.load_config(run_dir)
        return
    if not run_dir.is_dir():
        return
    existing = [p.relative_to(run_dir).as_posix() for p in genai_files(run_dir)]
    foreign = [n for n in (*checkpoint.FILES, METRICS) if (run_dir / n).exists()]
    if foreign and not existing:
        raise FileExistsError(
            f"out_dir {str(run_dir)!r} holds {', '.join(foreign)} that genai did not write; "
            "choose another out_dir (genai never replaces files it did not write)"
        )
    if existing and not overwrite:
        shown = ", ".join(existing[:4]) + (", ..." if len(existing) > 4 else "")
        raise FileExistsError(
            f"run directory {str(run_dir)!r} already holds a run ({shown}); pass overwrite=True "
            "(--overwrite) to replace it or resume=True (--resume) to continue"
        )


def _move_aside(run_dir: Path) -> None:
    aside = run_dir / PREVIOUS
    for path in genai_files(run_dir):
        target = aside / path.relative_to(run_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    fsync_dir(run_dir)


def _put_back(run_dir: Path) -> None:
    """Restore an old run moved aside by an overwrite whose new run never checkpointed."""
    aside = run_dir / PREVIOUS
    for path in genai_files(run_dir):  # the failed new run's files
        path.unlink()
    for path in sorted(p for p in aside.rglob("*") if p.is_file()):
        target = run_dir / path.relative_to(aside)
        target.parent.mkdir(parents=True, exist_ok=True)
        path.rename(target)
    shutil.rmtree(aside)
    fsync_dir(run_dir)
    log.warning(
        "%s: the new run stopped before its first checkpoint; the previous run is back", run_dir
    )


def _settle_aside(run_dir: Path) -> None:
    """After a kill: drop the old run if the new one has a checkpoint, else put it back."""
    if (run_dir / PREVIOUS).is_dir():
        if (run_dir / checkpoint.CONFIG).is_file():
            shutil.rmtree(run_dir / PREVIOUS)
        else:
            _put_back(run_dir)


class RunDirectory:
    """A run directory held by one training process (see :func:`open_run`)."""

    def __init__(self, path: Path):
        self.path = path
        self.checkpointed = False

    @property
    def holds_previous(self) -> bool:
        """An overwritten run is set aside, to come back if this one stops before a checkpoint."""
        return not self.checkpointed and (self.path / PREVIOUS).is_dir()

    def committed(self) -> None:
        """Called after each checkpoint: the first one makes an overwritten run go for good."""
        if not self.checkpointed and (self.path / PREVIOUS).is_dir():
            shutil.rmtree(self.path / PREVIOUS)
        self.checkpointed = True


@contextlib.contextmanager
def open_run(run_dir: Path, resume: bool, overwrite: bool) -> Iterator[RunDirectory]:
    """Lock ``run_dir``, repair what a kill left, and prepare it for a new or resumed run."""
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    with checkpoint.run_lock(run_dir):
        checkpoint.recover(run_dir)
        _settle_aside(run_dir)
        check_run_dir(run_dir, resume, overwrite)  # again, now that the folder is ours
        if not resume and genai_files(run_dir):
            _move_aside(run_dir)
        run = RunDirectory(run_dir)
        try:
            yield run
        except BaseException:
            if (run_dir / PREVIOUS).is_dir() and not run.checkpointed:
                _put_back(run_dir)
            raise
        finally:
            if created and not any(p.name != checkpoint.LOCK for p in run_dir.iterdir()):
                (run_dir / checkpoint.LOCK).unlink(missing_ok=True)
                run_dir.rmdir()


def keep_metrics_until(path: Path, step: int) -> None:
    """After a resume, drop log lines written past the checkpoint we resume from.

    A kill can tear the last line; it is dropped. A bad line elsewhere is an error naming the
    file and the line.
    """
    if not path.exists():
        return
    lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    kept = []
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            if number == len(lines):
                log.warning("%s: dropping a torn last line", path)
                continue
            raise checkpoint.CheckpointError(
                f"{path}: line {number} is not a metrics record ({e})"
            ) from e
        if record.get("step", 0) <= step:
            kept.append(line)
    if kept != lines:
        atomic_write(path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))
