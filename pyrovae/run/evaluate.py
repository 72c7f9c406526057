"""Evaluating a run: ``evaluation.json`` and PNG grids of samples and reconstructions, or AIS
beside IS in ``ais.json`` (``pyrovae evaluate``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch

from ..config import Config
from ..distributed import ONE_PROCESS, Ranks
from ..errors import ConfigError
from ..evaluation import ais_against_is, bits_per_dim, evaluate_model
from ..evaluation.ais import check_options
from ..evaluation.plots import grid, interleave, save_image
from ..tracking import Tracker
from . import checkpoint
from .directory import RunDir
from .identity import check_same_run, read_identity
from .parts import Parts, assemble, check_config, resolve_device

NUM_GRID = 64


def evaluate_parts(
    run: RunDir,
    parts: Parts,
    num_samples: int | None = None,
    progress: bool = False,
    scored: Scored | None = None,
    tracker: Tracker | None = None,
    step: int = 0,
    ranks: Ranks = ONE_PROCESS,
) -> dict[str, Any]:
    """Score the run's model on the test set and write ``evaluation.json``, ``samples.png`` and
    ``reconstructions.png`` (inputs in odd columns, reconstructions right of them).

    The test points go ``eval_batch_size`` at a time and the particles ``eval_chunk_size`` at a
    time, so memory is bounded by their product whatever the test set's size; ``progress`` shows a
    bar over the points; ``scored`` (which checkpoint the model came from, and its epoch) goes into
    the result;
    ``tracker`` gets the numbers and both grids at ``step``. Under data parallelism (``ranks``)
    each rank scores its shard of the test points, the values are gathered, and rank 0 writes the
    files. For 8-bit data the result also gives ``bits_per_dim``: each bound and the
    log-likelihood in bits per dimension.
    """
    cfg, vae, dataset = parts.config, parts.vae, parts.dataset
    iwae_k = getattr(parts.estimator, "num_draws", cfg.num_particles)  # M * K for miwae and piwae
    vae.eval()
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        if dataset.num_test < ranks.world:  # too few points to give every rank one: each scores all
            ranks = ONE_PROCESS
        mine = dataset.test[ranks.shard(torch.arange(dataset.num_test, device=dataset.device))]
        result = evaluate_model(
            vae.model,
            vae.guide,
            mine.split(cfg.eval_batch_size),
            num_particles=iwae_k,
            num_samples=cfg.eval_num_samples if num_samples is None else num_samples,
            chunk_size=cfg.eval_chunk_size,
            progress=mine.shape[0] if progress else None,
            ranks=ranks,
        )
    result = {"estimator": cfg.estimator, "likelihood": cfg.likelihood, **result}
    if scored is not None:  # the model scored: its checkpoint and epoch (early stopping: the best)
        result["checkpoint"], result["model_epoch"] = scored.checkpoint, scored.epoch
    if dataset.kind == "counts":  # 8-bit levels: the convention is bits per dimension
        result["bits_per_dim"] = in_bits(result, dataset.images.x_dim, ("log_likelihood", "elbo", "iwae_bound"))
    if not ranks.is_main:
        return result
    run.write_json(run.EVALUATION, result)
    grids = image_grids(parts)
    for name, image in grids.items():
        save_image(run / name, image)
    if tracker is not None:
        tracker.log_scalars({f"eval/{k}": v for k, v in result.items()}, step)
        for name, image in grids.items():
            tracker.log_image(name.removesuffix(".png"), image, step)
    return result


def in_bits(result: dict[str, Any], dims: int, keys: tuple[str, ...]) -> dict[str, float]:
    return {key: bits_per_dim(result[key], dims) for key in keys if key in result}


@torch.no_grad()
def image_grids(parts: Parts) -> dict[str, np.ndarray]:
    """Samples from the prior, and test points beside their reconstructions, as image grids."""
    vae, dataset = parts.vae, parts.dataset
    shape = dataset.images.image_shape
    scale = 255.0 if dataset.kind == "counts" else 1.0
    x = dataset.test[torch.linspace(0, dataset.num_test - 1, NUM_GRID // 2).long()]
    return {
        RunDir.SAMPLES: grid(vae.sample(NUM_GRID) / scale, shape, 8),
        RunDir.RECONSTRUCTIONS: grid(interleave(x / scale, vae.reconstruct(x) / scale), shape, 8),
    }


@dataclass(frozen=True)
class Scored:
    """Which model of a run is scored: its checkpoint's file name and the model's epoch."""

    checkpoint: str
    epoch: int


def reported_checkpoint(run: RunDir, cfg: Config) -> str:
    """The checkpoint whose model the run reports: under early stopping ``best.pt`` (the best
    validation bound's, the one training evaluated), else ``checkpoint.pt``."""
    return run.BEST if cfg.patience and run.best.exists() else run.CHECKPOINT


def load_run(run_dir: str | Path, device: str | None = None) -> tuple[RunDir, Parts, Scored]:
    """A run directory (locked: release it with ``run.unlock()``), its parts with the model the
    run reports (in eval mode), and which model that is. The run's config, data and checkpoint are
    checked against its identity first."""
    run = RunDir(run_dir)
    if not run.config.exists():
        raise ConfigError(f"{run} is not a pyrovae run directory (no {run.CONFIG})")
    run.check_writable()  # evaluation writes its results there
    run.lock()
    try:
        cfg = check_config(run.read_config())
        dev = resolve_device(device or cfg.device)
        scored = reported_checkpoint(run, cfg)
        state = checkpoint.load(run / scored, map_location=dev)
        parts = assemble(cfg, dev, training=False)
        identity = read_identity(run)
        if identity is not None:
            check_same_run(run, identity, cfg, parts.images, state.get("run_id"), action="evaluate")
        checkpoint.restore(parts.vae, state["model"], run / scored)
    except BaseException:
        run.unlock()
        raise
    parts.vae.eval()
    return run, parts, Scored(scored, state["epoch"])


def evaluate_run(
    run_dir: str | Path, num_samples: int | None = None, device: str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Load a run directory's config and the checkpoint it reports and evaluate it (see
    :func:`evaluate_parts`); the result names the checkpoint and the model's epoch."""
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    run, parts, scored = load_run(run_dir, device)
    try:
        return evaluate_parts(run, parts, num_samples, progress, scored=scored)
    finally:
        run.unlock()


def evaluate_run_ais(
    run_dir: str | Path,
    points: int | None = None,
    num_samples: int | None = None,
    device: str | None = None,
    progress: bool = False,
    **ais_options: Any,
) -> dict[str, Any]:
    """AIS on the first ``points`` test points of a run (all by default) beside IS at K =
    ``num_samples`` (the run's ``eval_num_samples`` by default) on the same points; writes
    ``ais.json`` in the run directory (see :func:`~pyrovae.evaluation.ais_against_is`)."""
    if points is not None and points < 1:
        raise ConfigError(f"--points must be >= 1, got {points}")
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    check_options(
        **{
            "num_steps": 1000,
            "num_chains": 16,
            "hmc_steps": 10,
            "step_size": 0.05,
            "target_accept": 0.65,
            "init": "guide",
            "schedule": "sigmoid",
            **ais_options,
        }
    )
    run, parts, scored = load_run(run_dir, device)
    try:
        return _ais_of_run(run, parts, scored, points, num_samples, progress, ais_options)
    finally:
        run.unlock()


def _ais_of_run(
    run: RunDir,
    parts: Parts,
    scored: Scored,
    points: int | None,
    num_samples: int | None,
    progress: bool,
    ais_options: dict[str, Any],
) -> dict[str, Any]:
    cfg, dataset = parts.config, parts.dataset
    n = dataset.num_test if points is None else min(points, dataset.num_test)
    k = num_samples or cfg.eval_num_samples or 5000
    result = ais_against_is(
        parts.vae,
        dataset.test[:n],
        num_samples=k,
        chunk_size=cfg.eval_chunk_size,
        batch_size=cfg.eval_batch_size,
        progress=progress,
        **ais_options,
    )
    result["checkpoint"], result["model_epoch"] = scored.checkpoint, scored.epoch
    if dataset.kind == "counts":
        result["bits_per_dim"] = in_bits(result, dataset.images.x_dim, ("log_likelihood_ais", "log_likelihood_is"))
    run.write_json(run.AIS, result)
    return result
