"""Reading a text file pyrovae was handed (a config, a run's file): UTF-8, of a sane size, and one
line naming the file when it is neither."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

LIMIT = 16 * 2**20  # 16 MiB: far above any config or metrics log pyrovae writes


def read_text(path: str | Path, what: str, limit: int = LIMIT) -> str:
    """The UTF-8 text of ``path`` (``what`` names it in the one line a missing, unreadable,
    oversized or non-UTF-8 file gets)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError as e:
        raise ConfigError(f"{what} {path} does not exist") from e
    except IsADirectoryError as e:
        raise ConfigError(f"{what} {path} is a folder, not a file") from e
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from e
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit // 2**20} MiB: not a file pyrovae reads as text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {e.start}: {data[e.start : e.start + 1]!r})") from e
