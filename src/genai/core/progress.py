"""One progress bar per training, in a terminal or a notebook, with no warning and no global state.

* In a terminal: tqdm's text bar; log records are written above it, not glued onto it.
* In Jupyter with ipywidgets: tqdm's widget bar.
* In Jupyter without ipywidgets: one text line updated in place through a display handle, so a
  saved notebook holds one output per training instead of one per update.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Iterator

from tqdm import std


def in_notebook() -> bool:
    """Whether the code runs in a Jupyter kernel."""
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    return get is not None and get() is not None and hasattr(get(), "kernel")


class _DisplayBar(std.tqdm):
    """A tqdm bar drawn as one Jupyter output, updated in place (no ipywidgets needed)."""

    _handle = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, file=io.StringIO(), **kwargs)
        if not self.disable:
            from IPython.display import display

            self._handle = display({"text/plain": str(self)}, raw=True, display_id=True)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if self._handle is not None:
            self._handle.update({"text/plain": msg or str(self)}, raw=True)
        return True


def _bar_class() -> type[std.tqdm]:
    if not in_notebook():
        return std.tqdm
    try:
        import ipywidgets  # noqa: F401
        from tqdm.notebook import tqdm as widget_bar
    except ImportError:
        return _DisplayBar
    return widget_bar


@contextlib.contextmanager
def progress_bar(**kwargs) -> Iterator[std.tqdm]:
    """A tqdm bar (arguments as tqdm's) for the environment, closed on exit.

    In a terminal, log records of the root logger's console handlers go through the bar
    while it is open, so they do not break its line.
    """
    cls = _bar_class()
    bar = cls(**kwargs)
    try:
        if cls is std.tqdm and not bar.disable:
            # Imported here: tqdm.contrib imports tqdm.auto, which warns in a notebook kernel
            # without ipywidgets (where this branch is never taken).
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm(tqdm_class=cls):
                yield bar
        else:
            yield bar
    finally:
        bar.close()
