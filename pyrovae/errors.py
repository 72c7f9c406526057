"""The errors pyrovae raises for bad input: each names the problem and the valid choices."""

from __future__ import annotations


class PyrovaeError(Exception):
    """Base class of every error the CLI reports as one line."""


class ConfigError(PyrovaeError, ValueError):
    """An unknown name, option or config key, or a value out of range."""


class DataError(PyrovaeError, ValueError):
    """Data outside a likelihood's support, or a data file that cannot be read."""


class ModelStructureError(PyrovaeError, ValueError):
    """A model/guide pair an estimator cannot handle (a site outside the data plate, ...)."""


class CheckpointError(PyrovaeError, RuntimeError):
    """A checkpoint that is missing, truncated or not written by pyrovae."""


class TrainingDiverged(PyrovaeError, RuntimeError):
    """The loss or a parameter became NaN or infinite; the last good checkpoint is kept."""


class TrainingInterrupted(PyrovaeError):
    """SIGINT or SIGTERM stopped training; a checkpoint of the state at that step was written
    first, and ``resume=True`` continues from it exactly. ``signum`` is the signal's number."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum

    def __reduce__(self) -> tuple:  # across processes (compare's workers), signum included
        return type(self), (str(self), self.signum)
