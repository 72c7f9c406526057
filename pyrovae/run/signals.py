"""SIGINT and SIGTERM during training: noted between steps, answered with a checkpoint."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

from ..errors import TrainingInterrupted


class StopSignals:
    """While active, SIGINT and SIGTERM set ``signum`` instead of stopping the process: the
    training loop reads it between steps (a Python attribute, no device sync), writes a checkpoint
    and stops. A second signal raises ``KeyboardInterrupt`` at once. The previous handlers come
    back on exit; outside the main thread (where Python cannot take signals) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        self._previous.clear()


def interrupted(signum: int, step: int, where: str, path: Path) -> TrainingInterrupted:
    """The error that ends a run a signal stopped, after its state was saved in ``path``."""
    name = signal.Signals(signum).name
    return TrainingInterrupted(
        f"interrupted by {name} at step {step} ({where}); its state is saved in {path}: "
        "resume the run (--resume) to continue",
        signum,
    )
