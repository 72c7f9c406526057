"""Data files by SHA-256: fetched once into a folder with pooch, verified at every load.

A :class:`DataFile` names a file, its mirrors and its SHA-256. :func:`fetch` downloads the files
missing from a folder (pooch writes each to a temporary name, checks its hash and only then moves
it into place); :func:`read_verified` reads a file and checks its SHA-256 before anything parses
it, so a file that changed in the cache is caught at the next load, not just after a download.
A gzipped file may instead match the SHA-256 of its uncompressed content: a copy gzipped again
(other bytes, the same data) is the same file.

Every failure is one :class:`DataError` line: no network (each missing file with its SHA-256 and
the folder to put it in), a mirror's refusal (HTTP 404, ...), a file whose hash does not match
(its path, both hashes, and that deleting it fetches it again), and a file with no pinned SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pooch
import requests

from ..errors import DataError

CONNECT_TIMEOUT, READ_TIMEOUT = 10, 60  # seconds: an unreachable mirror fails fast, a slow one may stream
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class DataFile:
    """A file of a data set: ``name`` in its folder, the ``urls`` it is served at (tried in
    order), its ``sha256`` as served, and for a gzipped file optionally ``content_sha256``, the
    SHA-256 of its uncompressed bytes. ``sha256=None`` means no hash is pinned in pyrovae: the
    user pins one in the environment variable :attr:`pin_variable` after checking the file."""

    name: str
    urls: tuple[str, ...]
    sha256: str | None
    content_sha256: str | None = None
    size: int | None = None  # bytes as served, where known (documentation and messages)
    git_blob: str | None = None  # the git blob id its repository publishes (SHA-1 of "blob <size>\0" + bytes)
    content_limit: int = 2**31  # bytes a gzipped copy may unpack to while its hash is checked

    @property
    def pin_variable(self) -> str:
        """``PYROVAE_SHA256_<NAME>``: ``chardata.mat`` -> ``PYROVAE_SHA256_CHARDATA_MAT``."""
        return "PYROVAE_SHA256_" + re.sub(r"[^A-Z0-9]", "_", self.name.upper())

    def expected_sha256(self, folder: Path) -> str | None:
        """The SHA-256 this file must have: pyrovae's, else the user's pin, else None where the
        file's git blob id is pinned (then checked instead), else one error line."""
        if self.sha256 is not None:
            return self.sha256
        pinned = os.environ.get(self.pin_variable, "").strip().lower()
        if re.fullmatch(r"[0-9a-f]{64}", pinned):
            return pinned
        if pinned:
            raise DataError(f"{self.pin_variable}={pinned!r} is not a SHA-256 (64 hexadecimal digits)")
        if self.git_blob is not None:
            return None
        raise DataError(
            f"no SHA-256 is pinned for {self.name} in this version of pyrovae, so it cannot be verified: "
            f"download it from {self.urls[0]} into {folder}, check it yourself, and pin it with "
            f"{self.pin_variable}=<its SHA-256, from sha256sum {self.name}>; it is then verified at every load"
        )


def default_folder(dataset: str) -> Path:
    """``$PYROVAE_DATA/<dataset>``, or ``~/.cache/pyrovae/<dataset>`` when that is unset."""
    return Path(os.environ.get("PYROVAE_DATA", Path.home() / ".cache" / "pyrovae")) / dataset


def fetch(dataset: str, files: Sequence[DataFile], folder: Path, progress: bool = False) -> None:
    """Download the ``files`` missing from ``folder``, each from its first mirror that answers.

    Files already there are left alone (:func:`read_verified` checks them when they are read).
    When the network cannot be reached, one :class:`DataError` names every missing file, its
    SHA-256 and ``folder``; any other failure (HTTP 404, a download with another SHA-256, a
    folder that cannot be written) names that problem. ``progress`` shows pooch's progress bar.
    """
    expected = {f.name: f.expected_sha256(folder) for f in files}  # an unpinned file fails first
    missing = [f for f in files if not (folder / f.name).exists()]
    if not missing:
        return
    created = not folder.exists()
    try:
        _download_missing(dataset, missing, expected, folder, progress)
    except DataError:
        if created and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # a failed fetch leaves no empty folder behind
        raise


def _download_missing(
    dataset: str, missing: Sequence[DataFile], expected: dict[str, str | None], folder: Path, progress: bool
) -> None:
    unreachable: list[DataFile] = []
    no_network = ""
    for spec in missing:
        if no_network:  # one file found no network: the others would wait on it too
            unreachable.append(spec)
            continue
        problems, network = [], []
        for url in spec.urls:
            try:
                _download(url, spec, expected[spec.name], folder, progress)
                break
            except requests.exceptions.SSLError as e:  # a network that answers, wrongly
                problems.append(f"{url}: SSL error: {_first_line(e)}")
            except (requests.ConnectionError, requests.Timeout) as e:
                network.append(f"{_host(url)}: {_network_reason(e)}")
            except requests.HTTPError as e:
                status = e.response.status_code if e.response is not None else "error"
                reason = e.response.reason if e.response is not None else str(e)
                problems.append(f"{url}: HTTP {status} {reason}")
            except requests.RequestException as e:
                problems.append(f"{url}: {type(e).__name__}: {_first_line(e)}")
            except ValueError as e:  # pooch: the download's hash is not the expected one, or a bad URL
                got = re.search(r"got ([0-9a-fA-F]{64})", str(e))
                problems.append(
                    f"{url} served a file with SHA-256 {got.group(1)}, not {expected[spec.name]}"
                    if got
                    else f"{url}: {_first_line(e)}"
                )
            except OSError as e:
                raise DataError(f"cannot write {spec.name} into {folder}: {e.strerror or e}") from e
        else:
            if problems:
                raise DataError(f"could not download {spec.name} into {folder}: " + "; ".join(problems + network))
            unreachable.append(spec)
            no_network = network[0] if network else "no mirror known"
    if unreachable:
        raise DataError(missing_message(dataset, unreachable, folder, no_network))


def missing_message(dataset: str, files: Sequence[DataFile], folder: Path, reason: str) -> str:
    """The offline line: each missing file with its SHA-256, where it is served, where to put it."""
    listed = ", ".join(f"{f.name} ({_hash_named(f, folder)})" for f in files)
    bases = sorted({f.urls[0].rsplit("/", 1)[0] + "/" for f in files if f.urls})
    if len(bases) == 1:
        where = f" from {bases[0]}"
    else:  # no common folder: each file's own address
        where = " from " + ", ".join(f.urls[0] for f in files if f.urls) if bases else ""
    return (
        f"dataset {dataset!r}: {len(files)} file(s) missing in {folder} and no network to download them "
        f"({reason}): {listed}; download them{where} into {folder}, or point data_path at a folder that holds them"
    )


def _hash_named(spec: DataFile, folder: Path) -> str:
    sha256 = spec.expected_sha256(folder)
    return f"SHA-256 {sha256}" if sha256 is not None else f"git blob {spec.git_blob}"


def read_verified(spec: DataFile, folder: Path, gunzip: bool = False) -> bytes:
    """The bytes of ``folder / spec.name`` once its SHA-256 matches, uncompressed if ``gunzip``.

    The hash is taken over the bytes read anyway, at every load. A gzipped file also passes when
    its uncompressed bytes have ``spec.content_sha256``.
    """
    path = folder / spec.name
    expected = spec.expected_sha256(folder)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e
    actual = hashlib.sha256(raw).hexdigest()
    if expected is None:  # a git blob id pinned: checked, and the SHA-256 recorded beside the file
        check_git_blob(spec, raw, folder, actual)
    elif actual != expected:
        if spec.content_sha256 is not None and _content_sha256(raw, spec.content_limit) == spec.content_sha256:
            if not gunzip:
                return raw
            content = _gunzip(raw)
            assert content is not None, "it unpacked while its hash was taken"
            return content
        also = f" (or {spec.content_sha256} once gunzipped)" if spec.content_sha256 else ""
        size = f", {len(raw)} bytes instead of {spec.size}" if spec.size is not None and len(raw) != spec.size else ""
        raise DataError(
            f"{path} has SHA-256 {actual}, not {expected}{also}{size}: it is damaged or another "
            "file; delete it and it will be downloaded again"
        )
    if not gunzip:
        return raw
    content = _gunzip(raw)
    if content is None:
        raise DataError(f"cannot read {path}: not a valid gzip file although its SHA-256 matches")
    return content


def check_git_blob(spec: DataFile, raw: bytes, folder: Path, sha256: str) -> None:
    """One line unless ``raw`` has the file's pinned git blob id and, from the second load on, the
    SHA-256 recorded (in ``<name>.sha256`` beside it) when it was first verified."""
    path = folder / spec.name
    blob = hashlib.sha1(b"blob %d\x00" % len(raw) + raw).hexdigest()
    if blob != spec.git_blob:
        raise DataError(
            f"{path} has git blob id {blob}, not {spec.git_blob} (its repository's): it is damaged or "
            "another file; delete it and it will be downloaded again"
        )
    record = folder / f"{spec.name}.sha256"
    if record.exists():
        recorded = record.read_text(encoding="utf-8", errors="replace").strip()
        if recorded != sha256:
            raise DataError(f"{path} has SHA-256 {sha256}, not {recorded} as when it was first verified ({record})")
        return
    try:
        record.write_text(sha256 + "\n", encoding="utf-8")
    except OSError:
        pass  # a read-only folder: the git blob id alone is checked


def _content_sha256(raw: bytes, limit: int) -> str | None:
    """The SHA-256 of a gzipped file's content, unpacked a piece at a time and never past ``limit``
    bytes (a gzip bomb stops there), or None for a file that is not gzip or unpacks past it."""
    if raw[:2] != GZIP_MAGIC:
        return None
    unpack = zlib.decompressobj(wbits=31)
    digest, size, data = hashlib.sha256(), 0, raw
    try:
        while data:
            piece = unpack.decompress(data, 2**20)
            size += len(piece)
            if size > limit:
                return None
            digest.update(piece)
            data = unpack.unconsumed_tail
    except zlib.error:
        return None
    return digest.hexdigest()


def _gunzip(raw: bytes) -> bytes | None:
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error):
        return None


def _download(url: str, spec: DataFile, sha256: str | None, folder: Path, progress: bool) -> None:
    """``url`` into ``folder``, checked against ``sha256`` by pooch, or (None) against the file's
    git blob id here, deleted again if it does not match."""
    folder.mkdir(parents=True, exist_ok=True)
    downloader = pooch.HTTPDownloader(progressbar=progress, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
    known = f"sha256:{sha256}" if sha256 is not None else None
    with _pooch_quiet(not progress):
        pooch.retrieve(url, known_hash=known, fname=spec.name, path=folder, downloader=downloader)
    if sha256 is None:
        raw = (folder / spec.name).read_bytes()
        try:
            check_git_blob(spec, raw, folder, hashlib.sha256(raw).hexdigest())
        except DataError:
            (folder / spec.name).unlink(missing_ok=True)
            raise


@contextmanager
def _pooch_quiet(quiet: bool) -> Iterator[None]:
    """pooch logs each download on stderr; a library call stays silent unless asked for progress."""
    logger = pooch.get_logger()
    level = logger.level
    if quiet:
        logger.setLevel("WARNING")
    try:
        yield
    finally:
        logger.setLevel(level)


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _network_reason(e: Exception) -> str:
    text = str(e)
    for needle, reason in (
        ("resolve", "name resolution failed"),
        ("refused", "connection refused"),
        ("timed out", "timed out"),
        ("unreachable", "network unreachable"),
    ):
        if needle in text.lower():
            return reason
    return type(e).__name__


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [""])[0]
