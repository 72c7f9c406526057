"""MLflow: the same numbers, images and config in an MLflow run (``tracking = "mlflow"``)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .base import Tracker, numbers

RUN_ID_FILE = "mlflow_run_id"


class MLflowTracker(Tracker):
    """Logs to the MLflow tracking URI ``uri`` in ``experiment``; by default a local one inside the run
    directory: the database ``<run>/mlflow/mlflow.db`` (MLflow's SQLite store; its plain-folder store
    is retired) with artifacts under ``<run>/mlflow/artifacts``, where they also go for a database
    URI the user gives (a tracking server keeps them where it says). The MLflow run's id is kept in
    ``<run>/mlflow_run_id``, so a resumed pyrovae run (and a comparison cell's diagnostics after
    training) log to the same MLflow run."""

    def __init__(self, run_dir: Path, *, uri: str = "", resume: bool = False, experiment: str = "pyrovae") -> None:
        from mlflow.tracking import MlflowClient

        local = (run_dir / "mlflow").resolve()
        server = uri.startswith(("http://", "https://"))  # a server keeps the artifacts where it says
        if not server:
            local.mkdir(exist_ok=True)
        self.uri = uri or f"sqlite:///{local / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=self.uri)
        id_file = run_dir / RUN_ID_FILE
        if resume and id_file.exists():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            found = self.client.get_experiment_by_name(experiment)
            artifacts = None if server else (local / "artifacts").as_uri()  # never ./mlruns in the working folder
            exp_id = found.experiment_id if found else self.client.create_experiment(experiment, artifacts)
            self.run_id = self.client.create_run(exp_id, run_name=run_dir.name).info.run_id
            id_file.write_text(self.run_id + "\n")

    def log_scalars(self, values: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        now = _now()
        metrics = [Metric(name, value, now, step) for name, value in numbers(values).items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def log_image(self, name: str, image: np.ndarray, step: int) -> None:
        self.client.log_image(self.run_id, np.clip(image, 0.0, 1.0), key=name, step=step)

    def log_config(self, config: dict[str, Any], text: str) -> None:
        from mlflow.entities import Param

        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in config.items()]
        existing = self.client.get_run(self.run_id).data.params
        new = [p for p in params if p.key not in existing]  # MLflow params are write-once
        if new:
            self.client.log_batch(self.run_id, params=new)
        self.client.log_text(self.run_id, text, "config.toml")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def _now() -> int:
    return int(time.time() * 1000)
