"""A run directory: every file name in it, its one way of writing a file, and the metrics log.

::

    config.toml        the resolved config (written first)
    metrics.jsonl      one line an epoch: train loss, test bound, seconds, ...
    checkpoint.pt      the state after the last epoch (or mid-epoch, after a signal)
    best.pt            under early stopping, the model of the best validation bound
    evaluation.json    the evaluation of the model the run reports
    ais.json           ``pyrovae evaluate --method ais``
    samples.png, reconstructions.png

Nothing else in pyrovae names these files.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from ..config import Config, to_toml
from ..config import load as load_config
from ..errors import ConfigError
from .atomic import remove_partial, write_atomic

PROBE_PREFIX = ".pyrovae-write-test-"  # the probe file of check_writable


class RunDir:
    """The folder of one run (``pyrovae train --out``) and the files in it."""

    CONFIG, CHECKPOINT, BEST, METRICS = "config.toml", "checkpoint.pt", "best.pt", "metrics.jsonl"
    EVALUATION, AIS, SAMPLES, RECONSTRUCTIONS = "evaluation.json", "ais.json", "samples.png", "reconstructions.png"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    @property
    def config(self) -> Path:
        return self.path / self.CONFIG

    @property
    def checkpoint(self) -> Path:
        return self.path / self.CHECKPOINT

    @property
    def best(self) -> Path:
        return self.path / self.BEST

    @property
    def metrics(self) -> Path:
        return self.path / self.METRICS

    # -- checks ------------------------------------------------------------------------------------
    def check_not_a_file(self) -> None:
        """One line if the run directory or a folder above it is a file."""
        for p in (self.path, *self.path.parents):
            if p.is_dir():
                return
            if p.exists() or p.is_symlink():
                raise ConfigError(f"cannot use {self.path} as a run directory: {p} is a file, not a folder")

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
            raise ConfigError(f"cannot write in the run directory {self.path}: {e.strerror or e}") from e

    def remove_partial_files(self) -> None:
        """The temporary files a kill mid-write left here (the finished files are whole)."""
        for name in (self.CHECKPOINT, self.BEST, self.CONFIG, self.METRICS, self.EVALUATION, self.AIS):
            remove_partial(self.path / name)
        for probe in self.path.glob(PROBE_PREFIX + "*.tmp"):
            probe.unlink(missing_ok=True)

    # -- files -------------------------------------------------------------------------------------
    def read_config(self) -> Config:
        return load_config(self.config)

    def write_config(self, cfg: Config) -> None:
        write_atomic(self.config, to_toml(cfg))

    def write_json(self, name: str, obj: Any) -> Path:
        write_atomic(self.path / name, json.dumps(obj, indent=2) + "\n")
        return self.path / name

    def read_metrics(self, last_epoch: int | None = None) -> list[dict[str, Any]]:
        """The metrics lines (of epochs up to ``last_epoch``); a line torn by a crash mid-write is skipped."""
        if not self.metrics.exists():
            return []
        out = []
        for line in self.metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                if last_epoch is None or record["epoch"] <= last_epoch:
                    out.append(record)
        return out

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        write_atomic(self.metrics, "".join(json.dumps(r) + "\n" for r in records))

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json.dumps(record) + "\n")
