"""The tracker interface: what a run reports, whichever tool receives it."""

from __future__ import annotations

from typing import Any

import numpy as np


class Tracker:
    """Receives a run's numbers, images and config. Every method is a no-op here; a subclass sends
    them to its tool. Only the process that writes the run directory tracks (rank 0)."""

    def log_scalars(self, values: dict[str, Any], step: int) -> None:
        """Numbers at ``step`` (the epoch): the finite int and float entries of ``values``."""

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        """An ``[H, W]`` or ``[H, W, 3]`` image of values in [0, 1]."""

    def log_config(self, config: dict[str, Any], text: str) -> None:
        """The run's resolved config, as values and as its TOML ``text``."""

    def close(self) -> None:
        """Flush and release."""

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NullTracker(Tracker):
    """No tracking (``tracking = ""``)."""


def numbers(values: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """The int and float entries of ``values`` (nested dicts flattened with ``/``), finite ones only."""
    out: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(numbers(value, name + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
            out[name] = float(value)
    return out
