"""Evaluating a run directory: ``evaluation.json`` and PNG grids of samples and reconstructions."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pyro
import torch

from .. import checkpoint, estimators
from ..config import Config
from ..config import load as load_config
from ..data import InMemoryData
from ..distributed import SINGLE, Group
from ..errors import ConfigError
from ..tracking import Tracker
from ..vae import VAE
from .ais import ais, check_options
from .log_likelihood import log_likelihood
from .metrics import bits_per_dim, evaluate_model
from .plots import grid, interleave, save_image

EVALUATION_FILE = "evaluation.json"
AIS_FILE = "ais.json"
NUM_GRID = 64


def evaluate_loaded(
    run_dir: Path,
    cfg: Config,
    vae: VAE,
    dataset: InMemoryData,
    num_samples: int | None = None,
    progress: bool = False,
    model_epoch: int | None = None,
    tracker: Tracker | None = None,
    step: int = 0,
    group: Group = SINGLE,
) -> dict[str, Any]:
    """Score ``vae`` on the test set and write ``evaluation.json``, ``samples.png`` and
    ``reconstructions.png`` (inputs in odd columns, reconstructions right of them) to ``run_dir``.

    The test points go ``eval_batch_size`` at a time and the particles ``eval_chunk_size`` at a
    time, so memory is bounded by their product whatever the test set's size; ``progress`` shows a
    bar over the points; ``model_epoch`` (the epoch of the model scored) goes into the result;
    ``tracker`` (a :class:`~pyrovae.tracking.Tracker`) gets the numbers and both grids at ``step``.
    Under data parallelism (``group``) each rank scores its shard of the test points, the values are
    gathered, and rank 0 writes the files.
    For 8-bit data (a likelihood of 8-bit levels, as for CIFAR-10) the result also gives
    ``bits_per_dim``: each bound and the log-likelihood in bits per dimension.
    """
    k = cfg.eval_num_samples if num_samples is None else num_samples
    est = estimators.make(cfg.estimator, num_particles=cfg.num_particles, **cfg.estimator_options)
    iwae_k = getattr(est, "num_draws", cfg.num_particles)  # M * K for miwae and piwae
    vae.eval()
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        if dataset.num_test < group.world:  # too few points to give every rank one: each scores all
            group = SINGLE
        mine = dataset.test[group.shard(torch.arange(dataset.num_test, device=dataset.device))]
        result = evaluate_model(
            vae.model, vae.guide, mine.split(cfg.eval_batch_size),
            num_particles=iwae_k, num_samples=k, chunk_size=cfg.eval_chunk_size,
            progress=mine.shape[0] if progress else None, group=group,
        )  # fmt: skip
    result = {"estimator": cfg.estimator, "likelihood": cfg.likelihood, **result}
    if model_epoch is not None:  # the epoch whose model this is (early stopping: the best one)
        result["model_epoch"] = model_epoch
    if dataset.kind == "counts":  # 8-bit levels: the convention is bits per dimension
        dims = dataset.images.x_dim
        result["bits_per_dim"] = {key: bits_per_dim(result[key], dims)
                                  for key in ("log_likelihood", "elbo", "iwae_bound") if key in result}  # fmt: skip
    if not group.is_main:
        return result
    tmp = run_dir / (EVALUATION_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, run_dir / EVALUATION_FILE)

    shape = dataset.images.image_shape
    scale = 255.0 if dataset.kind == "counts" else 1.0
    with torch.no_grad():
        x = dataset.test[torch.linspace(0, dataset.num_test - 1, NUM_GRID // 2).long()]
        grids = {"samples": grid(vae.sample(NUM_GRID) / scale, shape, 8),
                 "reconstructions": grid(interleave(x / scale, vae.reconstruct(x) / scale), shape, 8)}  # fmt: skip
    for name, image in grids.items():
        save_image(run_dir / f"{name}.png", image)
    if tracker is not None:
        tracker.log_scalars({f"eval/{k}": v for k, v in result.items()}, step)
        for name, image in grids.items():
            tracker.log_image(name, image, step)
    return result


def load_run(run_dir: str | Path, device: str | None = None) -> tuple[Config, VAE, InMemoryData]:
    """A run directory's config, its model at the checkpoint (in eval mode) and its data."""
    from ..training import CHECKPOINT_FILE, CONFIG_FILE, build_vae, check_run_dir, load_images, resolve_device

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir} is not a pyrovae run directory (no {CONFIG_FILE})")
    check_run_dir(run_dir)  # evaluation writes its results there
    cfg = load_config(run_dir / CONFIG_FILE).validate()
    dev = resolve_device(device or cfg.device)
    state = checkpoint.load(run_dir / CHECKPOINT_FILE, map_location=dev)
    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    vae = build_vae(cfg, images).to(dev)
    checkpoint.restore(vae, state["model"], run_dir / CHECKPOINT_FILE)
    vae.eval()
    return cfg, vae, InMemoryData(images, vae.likelihood, cfg.binarization, dev, cfg.seed)


def evaluate_run(
    run_dir: str | Path, num_samples: int | None = None, device: str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Load a run directory's config and checkpoint and evaluate it (see :func:`evaluate_loaded`)."""
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    cfg, vae, dataset = load_run(run_dir, device)
    return evaluate_loaded(Path(run_dir), cfg, vae, dataset, num_samples, progress)


def ais_against_is(
    vae: VAE, x: torch.Tensor, *, num_samples: int, chunk_size: int, batch_size: int, progress: bool = False,
    is_points: torch.Tensor | None = None, **ais_options: Any,
) -> dict[str, Any]:  # fmt: skip
    """AIS log p(x) of ``x`` (options of :func:`~pyrovae.evaluation.ais.ais`, ``batch_size`` points at a
    time) beside the IS estimate at K = ``num_samples`` on the same points (given as ``is_points``
    when already computed), in nats per point: ``log_likelihood_ais``, ``log_likelihood_is``,
    ``is_minus_ais`` (how far IS sits below AIS; negative: IS understates log p(x)), the per-point
    values under ``points``, the HMC acceptance and each method's seconds."""
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        result = ais(vae.model, vae.guide, x, points_per_chunk=batch_size, progress=progress, **ais_options)
        start = time.perf_counter()
        if is_points is None:
            is_points = torch.cat([
                log_likelihood(vae.model, vae.guide, chunk, num_samples=num_samples, chunk_size=chunk_size)
                for chunk in x.split(batch_size)
            ])  # fmt: skip
        is_seconds = time.perf_counter() - start
    return {
        "num_points": x.shape[0],
        "log_likelihood_ais": result.log_likelihood.mean().item(),
        "log_likelihood_is": is_points.mean().item(),
        "is_minus_ais": (is_points - result.log_likelihood).mean().item(),
        "acceptance": result.acceptance.mean().item(),
        "ais": {"num_steps": result.num_steps, "num_chains": result.num_chains, "hmc_steps": result.hmc_steps,
                **{k: v for k, v in ais_options.items() if k not in ("num_steps", "num_chains", "hmc_steps")}},
        "is_samples": num_samples,
        "seconds_ais": result.seconds,
        "seconds_is": is_seconds,
        "points": {"ais": result.log_likelihood.cpu().tolist(), "is": is_points.cpu().tolist()},
    }  # fmt: skip


def evaluate_run_ais(
    run_dir: str | Path, points: int | None = None, num_samples: int | None = None, device: str | None = None,
    progress: bool = False, **ais_options: Any,
) -> dict[str, Any]:  # fmt: skip
    """AIS on the first ``points`` test points of a run (all by default) beside IS at K =
    ``num_samples`` (the run's ``eval_num_samples`` by default) on the same points; writes
    ``ais.json`` in the run directory (see :func:`ais_against_is`)."""
    if points is not None and points < 1:
        raise ConfigError(f"--points must be >= 1, got {points}")
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    check_options(**{"num_steps": 1000, "num_chains": 16, "hmc_steps": 10, "step_size": 0.05, "target_accept": 0.65,
                     "init": "guide", "schedule": "sigmoid", **ais_options})  # fmt: skip
    cfg, vae, dataset = load_run(run_dir, device)
    n = dataset.num_test if points is None else min(points, dataset.num_test)
    k = num_samples or cfg.eval_num_samples or 5000
    result = ais_against_is(vae, dataset.test[:n], num_samples=k, chunk_size=cfg.eval_chunk_size,
                            batch_size=cfg.eval_batch_size, progress=progress, **ais_options)  # fmt: skip
    if dataset.kind == "counts":
        dims = dataset.images.x_dim
        result["bits_per_dim"] = {key: bits_per_dim(result[key], dims)
                                  for key in ("log_likelihood_ais", "log_likelihood_is")}  # fmt: skip
    path = Path(run_dir) / AIS_FILE
    tmp = path.with_name(AIS_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, path)
    return result
