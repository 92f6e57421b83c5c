"""Ctrl-C and SIGTERM as a request to stop at the next step boundary."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

log = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training at a step boundary, after a checkpoint was saved."""


class StopRequest:
    """Turns the first SIGINT / SIGTERM into a request that the loop honours between steps.

    Installed only in the main thread of a single process (under torchrun every rank would have
    to agree on the step). A second signal interrupts at once, as without this. Used as a
    context manager, it puts the previous handlers back on exit.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, enabled: bool):
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}
        if enabled and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                current = signal.getsignal(sig)
                if current in (signal.SIG_IGN, None):  # ignored, or a handler set outside Python
                    continue
                self.previous[sig] = signal.signal(sig, self._handle)

    @property
    def requested(self) -> bool:
        """Whether a signal asked training to stop."""
        return self.signal is not None

    @property
    def name(self) -> str:
        """The signal's name (``"SIGINT"``, ``"SIGTERM"``); only once one came."""
        assert self.signal is not None
        return signal.Signals(self.signal).name

    def _handle(self, sig: int, frame: Any) -> None:
        if self.signal is not None:
            self.restore()
            raise KeyboardInterrupt
        self.signal = sig
        log.warning(
            "%s: stopping after this step and saving a checkpoint (again to stop at once)",
            signal.Signals(sig).name,
        )

    def restore(self) -> None:
        """Put the previous handlers back (a later signal acts as it did before training)."""
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}

    def __enter__(self) -> StopRequest:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()
