"""Comparison cells as Ray tasks: a local Ray by default, or a cluster at an address.

Each cell is one task with the resources it asks for (``cell_cpus``, and ``cell_gpus``, which may
be a fraction of a GPU so that small cells share one); Ray schedules them over the cluster's
nodes. The comparison directory must be on storage every node sees (the driver's disk for a local
Ray; a shared file system for a cluster), since each cell writes its run and ``result.json`` there,
and every node needs the same pyrovae installed. Ray is an optional extra: ``pip install
"pyrovae[ray]"``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError
from .cell import run_cell


def _cell_task(cell_dir: str, config: dict[str, Any], settings: dict[str, Any], resume: bool, threads: int) -> str:
    import ray

    torch.set_num_threads(threads)
    if not ray.get_gpu_ids() and config.get("device") != "cpu":  # no GPU asked for: none used
        config = {**config, "device": "cpu"}
    run_cell(cell_dir, config, settings, resume=resume)
    return str(settings["cell"]["id"])


def import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise ConfigError('compare\'s backend "ray" needs Ray, an optional extra: pip install "pyrovae[ray]"') from e
    return ray


def run_on_ray(
    jobs: list[tuple[str, dict[str, Any], dict[str, Any], bool]],
    *,
    address: str = "",
    cpus: float = 1.0,
    gpus: float = 0.0,
    on_done: Callable[[str], None] | None = None,
) -> None:
    """Run ``jobs`` (cell directory, config, settings, resume) as Ray tasks and wait for all of them.

    Without ``address`` a fresh local Ray starts (and stops again at the end); with one (``auto``,
    or ``host:port`` of a cluster's head) the driver joins that cluster; a Ray this process has
    initialized already is used as it is. A cell that asks for no GPU runs on the CPU. A failed
    cell raises its error here, after the cells still pending are cancelled; cells already
    finished keep their results, so the same command resumes.
    """
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        ray.init(
            address=address or "local", include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False
        )
    pending: list[Any] = []
    try:
        task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=0)(_cell_task)
        pending = [task.remote(*job, max(1, int(cpus))) for job in jobs]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            cell_id = ray.get(done[0])
            if on_done is not None:
                on_done(cell_id)
    finally:
        for ref in pending:  # a cell failed (or the driver was interrupted): no writer left behind
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
