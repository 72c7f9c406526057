"""Checkpoints: written atomically, holding only tensors and plain containers.

A checkpoint loads with ``torch.load(path, weights_only=True)``: model and optimizer state
dicts, RNG states as uint8 tensors, and numbers. It is written to a temporary file in the same
folder, flushed to disk and renamed over the old one, so a crash mid-save leaves the previous
checkpoint whole.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

FORMAT = 1


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` atomically: the old file stays whole until the rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, **obj}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def load(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing, truncated or foreign file raises
    :class:`CheckpointError` with one line saying which."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt): {first}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyrovae checkpoint (format {FORMAT})")
    return obj


def restore(module: torch.nn.Module, state_dict: dict[str, Any], path: str | Path) -> None:
    """``module.load_state_dict(state_dict)``; a checkpoint written for another architecture (a
    changed config, or an older pyrovae) raises :class:`CheckpointError` with one line."""
    own = module.state_dict()
    unexpected, shapes = [], []
    for key, value in state_dict.items():
        if key not in own:
            unexpected.append(key)
        elif own[key].shape != value.shape:
            shapes.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
    missing = [key for key in own if key not in state_dict]
    if missing or unexpected or shapes:
        found = (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        parts = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for label, keys in found if keys]
        raise CheckpointError(f"checkpoint {path} does not fit this run's model (written by another config or "
                              f"pyrovae version): {'; '.join(parts)}")  # fmt: skip
    module.load_state_dict(state_dict)
