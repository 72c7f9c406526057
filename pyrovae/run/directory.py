"""A run directory: every file name in it, its one way of writing a file, and the metrics log.

::

    config.toml        the resolved config (written first)
    metrics.jsonl      one line an epoch: train loss, test bound, seconds, ...
    checkpoint.pt      the state after the last epoch (or mid-epoch, after a signal)
    best.pt            under early stopping, the model of the best validation bound
    evaluation.json    the evaluation of the model the run reports
    ais.json           ``pyrovae evaluate --method ais``
    samples.png, reconstructions.png
    identity.json      what defines the run: its config, its data's fingerprint, pyrovae's version
    .pyrovae           the marker: pyrovae made this folder (:mod:`~pyrovae.run.ownership`)
    .pyrovae-lock      the lock the process writing here holds

Nothing else in pyrovae names these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import Config, to_toml
from ..config import load as load_config
from ..textfile import read_text
from .atomic import json_text, remove_partial, write_atomic
from .ownership import PROBE_PREFIX, OwnedFolder


class RunDir(OwnedFolder):
    """The folder of one run (``pyrovae train --out``) and the files in it."""

    CONFIG, CHECKPOINT, BEST, METRICS = "config.toml", "checkpoint.pt", "best.pt", "metrics.jsonl"
    EVALUATION, AIS, SAMPLES, RECONSTRUCTIONS = "evaluation.json", "ais.json", "samples.png", "reconstructions.png"
    IDENTITY = "identity.json"
    KIND = "run"

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
        write_atomic(self.path / name, json_text(obj, indent=2) + "\n")
        return self.path / name

    def read_metrics(self, last_epoch: int | None = None) -> list[dict[str, Any]]:
        """The metrics lines (of epochs up to ``last_epoch``); a line torn by a crash mid-write is skipped."""
        if not self.metrics.exists():
            return []
        out = []
        for line in read_text(self.metrics, f"the metrics log of {self}").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("epoch"), int):
                if last_epoch is None or record["epoch"] <= last_epoch:
                    out.append(record)
        return out

    def write_metrics(self, records: list[dict[str, Any]]) -> None:
        write_atomic(self.metrics, "".join(json_text(r) + "\n" for r in records))

    def append_metrics(self, record: dict[str, Any]) -> None:
        with self.metrics.open("a") as f:
            f.write(json_text(record) + "\n")
