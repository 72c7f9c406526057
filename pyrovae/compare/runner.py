"""Running a comparison grid: resumable, cells in parallel processes, a report at the end."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..run import RunDir
from ..run.atomic import write_atomic
from .cell import RESULT_FILE, run_cell
from .grid import Cell, GridSpec
from .ray_backend import run_on_ray
from .report import write_report

SPEC_FILE = "comparison.toml"


def _settings(spec: GridSpec, cell: Cell) -> dict[str, Any]:
    keys = (
        "eval_num_samples",
        "psis_samples",
        "psis_points",
        "snr_draws",
        "snr_batch",
        "snr_epochs",
        "gap_points",
        "gap_steps",
        "ais_points",
        "ais_steps",
        "ais_chains",
        "ais_hmc_steps",
    )
    return {
        **{k: getattr(spec, k) for k in keys},
        "cell": {
            "id": cell.id,
            "estimator": cell.estimator.name,
            "label": cell.label,
            "num_particles": cell.estimator.num_particles,
            "options": dict(cell.estimator.options),
            "likelihood": cell.likelihood,
            "seed": cell.seed,
            "variant": cell.variant_dict,
        },
    }


def _saved_spec(path: Path) -> dict[str, Any] | None:
    """The specification in a comparison directory, as :meth:`GridSpec.identity` (a file written before
    a key existed reads with that key's default), or None if it cannot be read."""
    try:
        return GridSpec.load(path, {"backend": "process"}).identity()  # how it ran is not its identity
    except ConfigError:
        return None


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _run(cell_dir: str, config: dict[str, Any], settings: dict[str, Any]) -> str:
    run_cell(cell_dir, config, settings)
    return settings["cell"]["id"]


def _devices(n: int) -> list[str | None]:
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(n)]
    return [None] * n


def compare(
    spec: GridSpec | dict[str, Any], out: str | Path, *, on_cell: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Run every cell of ``spec`` not yet done in ``out``, then write the report.

    ``out/comparison.toml`` holds the exact specification; ``out/cells/<id>/`` each cell's run
    directory, sample grid and ``result.json``. A cell counts as done only once its
    ``result.json`` is written (atomically, last); a cell left half-done by an interruption is
    removed and run again, so re-running the same command finishes an interrupted comparison.
    With ``workers > 1`` cells run in that many processes at once (threads split between them;
    with several GPUs, cells go round-robin over them); with ``backend = "ray"`` each cell is a Ray
    task (:mod:`pyrovae.compare.ray_backend`).
    """
    spec = spec if isinstance(spec, GridSpec) else GridSpec.from_dict(spec)
    out = Path(out)
    _claim(out, spec)
    cells = spec.cells()
    jobs = _jobs(out, spec, [cell for cell in cells if _todo(out / "cells" / cell.id)])
    if spec.backend == "ray":
        run_on_ray(jobs, address=spec.address, cpus=spec.cell_cpus, gpus=spec.cell_gpus, on_done=on_cell)
    elif spec.workers == 1 or len(jobs) <= 1:
        for job in jobs:
            on_done(_run(*job), on_cell)
    else:
        _run_in_processes(jobs, spec.workers, on_cell)
    results = [json.loads((out / "cells" / c.id / RESULT_FILE).read_text()) for c in cells]
    return write_report(out, spec, results)


def _claim(out: Path, spec: GridSpec) -> None:
    """The comparison directory, holding this specification (one line if it holds another)."""
    RunDir(out).check_writable(create=True)
    spec_text = spec.to_toml()
    saved = out / SPEC_FILE
    if saved.exists() and saved.read_text() != spec_text and _saved_spec(saved) != spec.identity():
        raise ConfigError(f"{out} holds a different comparison ({saved}); use another --out or the same specification")
    write_atomic(saved, spec_text)


def _todo(cell_dir: Path) -> bool:
    """Whether a cell still has to run; a cell an interruption left half-done starts again from nothing."""
    if (cell_dir / RESULT_FILE).exists():
        return False
    if cell_dir.exists():
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    return True


def _jobs(out: Path, spec: GridSpec, todo: list[Cell]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    devices = _devices(len(todo)) if spec.backend == "process" else [None] * len(todo)  # Ray places its own
    jobs = []
    for cell, device in zip(todo, devices, strict=True):
        config = spec.cell_config(cell)
        if device is not None:
            config["device"] = device
        jobs.append((str(out / "cells" / cell.id), config, _settings(spec, cell)))
    return jobs


def _run_in_processes(
    jobs: list[tuple[str, dict[str, Any], dict[str, Any]]], workers: int, on_cell: Callable[[str], None] | None
) -> None:
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(_run, *job) for job in jobs]
        for f in as_completed(futures):
            on_done(f.result(), on_cell)


def on_done(cell_id: str, on_cell: Callable[[str], None] | None) -> None:
    if on_cell is not None:
        on_cell(cell_id)
