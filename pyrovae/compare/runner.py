"""Running a comparison grid: resumable, cells in parallel processes, a report at the end."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..config import from_dict
from ..errors import ConfigError, TrainingInterrupted
from ..network import check_reachable
from ..run import RunDir, plugins_of
from ..run.atomic import write_atomic
from ..run.identity import plugin_changes
from ..run.ownership import OwnedFolder
from .cell import RESULT_FILE, run_cell
from .grid import Cell, GridSpec
from .ray_backend import run_on_ray
from .report import write_report
from .workers import GridInterrupted, Job, interrupted, run_in_processes, stop_on_signals

SPEC_FILE = "comparison.toml"


def _settings(spec: GridSpec, cell: Cell, config: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "eval_num_samples",
        "psis_samples",
        "psis_points",
        "snr_draws",
        "snr_batch",
        "snr_epochs",
        "bias_draws",
        "gap_points",
        "gap_steps",
        "ais_points",
        "ais_steps",
        "ais_chains",
        "ais_hmc_steps",
    )
    found = plugins_of(from_dict(config))
    return {
        **{k: getattr(spec, k) for k in keys},
        "plugins": found,  # what the cell's worker must import: the same code, or it refuses
        "plugin_roots": sorted({p["root"] for p in found.values() if p["root"]}),
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


def _run(cell_dir: str, config: dict[str, Any], settings: dict[str, Any], resume: bool) -> str:
    run_cell(cell_dir, config, settings, resume=resume)
    return str(settings["cell"]["id"])


def _devices(n: int) -> list[str | None]:
    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return [f"cuda:{i % torch.cuda.device_count()}" for i in range(n)]
    return [None] * n


class ComparisonDir(OwnedFolder):
    """A comparison's folder (``pyrovae compare --out``): its specification and its cells."""

    KIND = "comparison"


def compare(
    spec: GridSpec | dict[str, Any],
    out: str | Path,
    *,
    on_cell: Callable[[str], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Run every cell of ``spec`` not yet done in ``out``, then write the report.

    ``out/comparison.toml`` holds the exact specification; ``out/cells/<id>/`` each cell's run
    directory, sample grid and ``result.json``. A cell counts as done only once its
    ``result.json`` is written (atomically, last); a cell a signal or a crash stopped resumes from
    its checkpoint (one that stopped before its first checkpoint starts again), so re-running the
    same command finishes an interrupted comparison. The folder is pyrovae's and locked while a
    comparison runs in it. With ``workers > 1`` cells run in that many processes at once (threads
    split between them; with several GPUs, cells go round-robin over them), which stop when the
    comparison stops (:mod:`pyrovae.compare.workers`); with ``backend = "ray"`` each cell is a Ray
    task (:mod:`pyrovae.compare.ray_backend`). ``on_start(n)`` is called with the number of cells
    once every check has passed and the folder is claimed; ``on_cell(id)`` as each cell finishes.
    """
    spec = spec if isinstance(spec, GridSpec) else GridSpec.from_dict(spec)
    folder = ComparisonDir(out)
    folder.check_owned()
    if spec.backend == "ray" and spec.address and spec.address != "auto":
        check_reachable(spec.address, "Ray cluster")  # before anything is written
    folder.create()
    try:
        _claim(folder.path, spec)
        cells = spec.cells()
        if on_start is not None:
            on_start(len(cells))
        plan = [(cell, _prepare(folder / "cells" / cell.id)) for cell in cells]
        _check_done_plugins(folder.path, spec, [c for c, resume in plan if resume is None])
        _run_cells(spec, _jobs(folder.path, spec, [(c, resume) for c, resume in plan if resume is not None]), on_cell)
        results = [json.loads((folder / "cells" / c.id / RESULT_FILE).read_text()) for c in cells]
        return write_report(folder.path, spec, results)
    finally:
        folder.unlock()


def _run_cells(spec: GridSpec, jobs: list[Job], on_cell: Callable[[str], None] | None) -> None:
    try:
        if spec.backend == "ray":
            run_on_ray(jobs, address=spec.address, cpus=spec.cell_cpus, gpus=spec.cell_gpus, on_done=on_cell)
        elif spec.workers == 1 or len(jobs) <= 1:
            with stop_on_signals():
                for job in jobs:
                    on_done(_run(*job), on_cell)
        else:
            run_in_processes(_run, jobs, spec.workers, on_cell)
    except GridInterrupted:
        raise
    except TrainingInterrupted as e:  # a cell's training answered the signal: the comparison stops with it
        raise interrupted(e.signum) from e


def _claim(out: Path, spec: GridSpec) -> None:
    """The comparison's specification (one line if the folder holds another)."""
    spec_text = spec.to_toml()
    saved = out / SPEC_FILE
    if saved.exists() and saved.read_text() != spec_text and _saved_spec(saved) != spec.identity():
        raise ConfigError(f"{out} holds a different comparison ({saved}); use another --out or the same specification")
    write_atomic(saved, spec_text)


def _check_done_plugins(out: Path, spec: GridSpec, done: list[Cell]) -> None:
    """One line if a finished cell ran plugin code other than what the comparison now imports: its
    result is that code's, and the report would pass it off as this one's."""
    for cell in done:
        recorded = json.loads((out / "cells" / cell.id / RESULT_FILE).read_text()).get("plugins", {})
        changes = plugin_changes(recorded, plugins_of(from_dict(spec.cell_config(cell))))
        if changes:
            raise ConfigError(
                f"cell {cell.id} in {out} finished with other plugin code ({'; '.join(changes)}); restore "
                f"that version, use another --out, or delete {out / 'cells' / cell.id} to run the cell again"
            )


def _prepare(cell_dir: Path) -> bool | None:
    """None: the cell is done. True: a run a signal or a crash stopped, resumed from its checkpoint.
    False: a cell to start, cleared of what a stop before its first checkpoint left."""
    if (cell_dir / RESULT_FILE).exists():
        return None
    if (cell_dir / "run" / RunDir.CHECKPOINT).exists():
        return True
    if cell_dir.exists():
        shutil.rmtree(cell_dir)
    cell_dir.mkdir(parents=True)
    return False


def _jobs(out: Path, spec: GridSpec, todo: list[tuple[Cell, bool]]) -> list[Job]:
    devices = _devices(len(todo)) if spec.backend == "process" else [None] * len(todo)  # Ray places its own
    jobs: list[Job] = []
    for (cell, resume), device in zip(todo, devices, strict=True):
        config = spec.cell_config(cell)
        if device is not None:
            config["device"] = device
        jobs.append((str(out / "cells" / cell.id), config, _settings(spec, cell, config), resume))
    return jobs


def on_done(cell_id: str, on_cell: Callable[[str], None] | None) -> None:
    if on_cell is not None:
        on_cell(cell_id)
