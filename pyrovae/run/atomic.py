"""Writing a file so that a crash mid-write leaves the old one whole: one function for every file
pyrovae writes in a run or comparison directory (configs, metrics, results, checkpoints)."""

from __future__ import annotations

import glob
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def write_atomic(path: str | Path, data: str | bytes | Callable[[IO[bytes]], None]) -> None:
    """Write ``data`` (text as UTF-8, bytes, or a function that writes to a binary file) to a
    temporary file beside ``path``, flush it to disk and rename it over ``path``: the old file
    stays whole until the rename, and the rename itself is made durable."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None and not e.filename:  # say which file (a full disk names none)
            e.filename = str(path)
        raise
    _sync_folder(path.parent)


def json_text(obj: Any, indent: int | None = None) -> str:
    """``obj`` as strict JSON: a number that is not finite (a NaN bound, an infinite k-hat) is
    written as null, never as the ``NaN`` that JSON readers refuse."""
    return json.dumps(_finite(obj), indent=indent, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_partial(path: str | Path) -> list[Path]:
    """Delete the temporary files a kill during :func:`write_atomic` of ``path`` left beside it."""
    path = Path(path)
    stale = sorted(path.parent.glob(f"{glob.escape(path.name)}.*tmp"))  # name.<random>.tmp, and an older name.tmp
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
