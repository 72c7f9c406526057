"""Folders pyrovae owns: a marker that says pyrovae made it, and a lock that one writer holds.

A run directory or a comparison directory is created with a marker file (``.pyrovae``: what kind
of folder it is, and which pyrovae made it). pyrovae writes only in a folder that is new, empty or
marked as its own, of the same kind; any other folder is refused in one line, so a user's files are
never replaced.

While a process writes in such a folder it holds an exclusive lock on its ``.pyrovae-lock`` file
(``flock``: the kernel releases it when the process ends, however it ends, so a kill -9 never leaves
a stale lock). A second writer is refused in one line that names the holder's PID.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError
from ..version import VERSION

try:  # POSIX; elsewhere the lock falls back to an exclusively created file
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

MARKER = ".pyrovae"
LOCK = ".pyrovae-lock"
PROBE_PREFIX = ".pyrovae-write-test-"  # the probe file of OwnedFolder.check_writable
KINDS = ("run", "comparison")
# what a folder of each kind holds when an older pyrovae, which wrote no marker, made it
UNMARKED = {"run": ("config.toml", "checkpoint.pt"), "comparison": ("comparison.toml",)}


def marker(folder: Path) -> dict[str, Any] | None:
    """The folder's marker (its kind and the pyrovae that made it), or None if it has none."""
    path = folder / MARKER
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) and value.get("kind") in KINDS else None


def check_owned(folder: Path, kind: str, what: str) -> None:
    """One line unless ``folder`` is missing, empty (but for a lock file) or marked as pyrovae's
    ``kind`` of folder. ``what`` names the flag that chose it (``--out``)."""
    if not folder.is_dir():
        return
    mark = marker(folder)
    if mark is not None:
        if mark["kind"] != kind:
            raise ConfigError(f"{what} {folder} is a pyrovae {mark['kind']} directory, not a {kind} directory; "
                              "choose a new or empty folder")  # fmt: skip
        return
    if all((folder / name).is_file() for name in UNMARKED[kind]):
        return  # an older pyrovae's, whose files every reader checks before it writes
    try:
        entries = sorted(p.name for p in folder.iterdir() if p.name != LOCK)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {folder}: {e.strerror or e}") from e
    if entries:
        shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
        raise ConfigError(f"{what} {folder} is a folder pyrovae did not create (it holds {shown}); pyrovae writes "
                          f"only in a new or empty folder, or in its own {kind} directory: choose another")  # fmt: skip


def write_marker(folder: Path, kind: str, version: str) -> None:
    if marker(folder) is None:
        (folder / MARKER).write_text(json.dumps({"kind": kind, "pyrovae": version}) + "\n", encoding="utf-8")


class FolderLock:
    """An exclusive lock on ``folder`` for this process (see the module docstring)."""

    def __init__(self, folder: Path, what: str) -> None:
        self.folder, self.what = folder, what
        self._file: IO[str] | None = None

    def acquire(self) -> FolderLock:
        path = self.folder / LOCK
        try:
            f = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        except OSError as e:
            raise ConfigError(f"cannot write in {self.what} {self.folder}: {e.strerror or e}") from e
        try:
            self._take(f)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise ConfigError(f"{self.what} {self.folder} is in use by pyrovae process {holder}; wait for it to "
                              "end or choose another folder") from None  # fmt: skip
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        self._file = f
        return self

    @staticmethod
    def _take(f: IO[str]) -> None:
        if fcntl is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class OwnedFolder:
    """A folder pyrovae writes in, of one ``KIND``: checked to be ours, made, locked and marked.
    ``what`` names it in the one-line refusals ("the run directory" by default)."""

    KIND = "run"

    def __init__(self, path: str | Path, what: str = "") -> None:
        self.path = Path(path)
        self.what = what or f"the {self.KIND} directory"
        self._lock: FolderLock | None = None

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def check_owned(self) -> None:
        """One line unless this folder is new, empty or pyrovae's own of this kind."""
        self.check_not_a_file()
        check_owned(self.path, self.KIND, self.what)

    def lock(self) -> None:
        """Hold this folder's lock (it must exist) until :meth:`unlock`; one line if another
        process holds it. A folder that is not ours is refused before its lock file is made, and
        checked again once the lock is held (another process may have written in between)."""
        self.check_owned()
        if self._lock is None:
            self._lock = FolderLock(self.path, self.what).acquire()
        self.check_owned()

    def unlock(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def create(self) -> None:
        """Make the folder if need be, lock it, check it is ours and mark it as pyrovae's."""
        self.check_owned()
        self.check_writable(create=True)
        self.lock()
        write_marker(self.path, self.KIND, VERSION)

    def check_not_a_file(self) -> None:
        """One line if the folder or one above it is a file (or a link to nothing)."""
        for p in (self.path, *self.path.parents):
            if p.is_dir():
                return
            if p.is_symlink() and not p.exists():
                raise ConfigError(f"cannot use {self.path} as {self.what}: {p} is a link to nothing ({os.readlink(p)})")
            if p.exists():
                raise ConfigError(f"cannot use {self.path} as {self.what}: {p} is a file, not a folder")

    def check_writable(self, *, create: bool = False) -> None:
        """One line unless files can be written here: a file where it or a parent should be, a
        read-only folder or file system. ``create`` makes it first. A probe file is written and
        removed, so what is checked is what the run will do."""
        self.check_not_a_file()
        try:
            if create:
                self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=self.path, prefix=PROBE_PREFIX, suffix=".tmp")
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"cannot write in {self.what} {self.path}: {e.strerror or e}") from e
