"""Evaluating a run directory: ``evaluation.json`` and PNG grids of samples and reconstructions."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyro
import torch

from .. import checkpoint, estimators
from ..config import Config
from ..config import load as load_config
from ..data import InMemoryData
from ..errors import ConfigError
from ..vae import VAE
from .metrics import bits_per_dim, evaluate_model
from .plots import interleave, save_grid

EVALUATION_FILE = "evaluation.json"
NUM_GRID = 64


def evaluate_loaded(
    run_dir: Path,
    cfg: Config,
    vae: VAE,
    dataset: InMemoryData,
    num_samples: int | None = None,
    progress: bool = False,
    model_epoch: int | None = None,
) -> dict[str, Any]:
    """Score ``vae`` on the test set and write ``evaluation.json``, ``samples.png`` and
    ``reconstructions.png`` (inputs in odd columns, reconstructions right of them) to ``run_dir``.

    The test points go ``eval_batch_size`` at a time and the particles ``eval_chunk_size`` at a
    time, so memory is bounded by their product whatever the test set's size; ``progress`` shows a
    bar over the points; ``model_epoch`` (the epoch of the model scored) goes into the result.
    For 8-bit data (a likelihood of 8-bit levels, as for CIFAR-10) the result also gives
    ``bits_per_dim``: each bound and the log-likelihood in bits per dimension.
    """
    k = cfg.eval_num_samples if num_samples is None else num_samples
    est = estimators.make(cfg.estimator, num_particles=cfg.num_particles, **cfg.estimator_options)
    iwae_k = getattr(est, "num_draws", cfg.num_particles)  # M * K for miwae and piwae
    vae.eval()
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        result = evaluate_model(
            vae.model, vae.guide, dataset.test_batches(cfg.eval_batch_size),
            num_particles=iwae_k, num_samples=k, chunk_size=cfg.eval_chunk_size,
            progress=dataset.num_test if progress else None,
        )  # fmt: skip
    result = {"estimator": cfg.estimator, "likelihood": cfg.likelihood, **result}
    if model_epoch is not None:  # the epoch whose model this is (early stopping: the best one)
        result["model_epoch"] = model_epoch
    if dataset.kind == "counts":  # 8-bit levels: the convention is bits per dimension
        dims = dataset.images.x_dim
        result["bits_per_dim"] = {key: bits_per_dim(result[key], dims)
                                  for key in ("log_likelihood", "elbo", "iwae_bound") if key in result}  # fmt: skip
    tmp = run_dir / (EVALUATION_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, run_dir / EVALUATION_FILE)

    shape = dataset.images.image_shape
    scale = 255.0 if dataset.kind == "counts" else 1.0
    with torch.no_grad():
        save_grid(run_dir / "samples.png", vae.sample(NUM_GRID) / scale, shape)
        x = dataset.test[torch.linspace(0, dataset.num_test - 1, NUM_GRID // 2).long()]
        pairs = interleave(x / scale, vae.reconstruct(x) / scale)
        save_grid(run_dir / "reconstructions.png", pairs, shape)
    return result


def evaluate_run(
    run_dir: str | Path, num_samples: int | None = None, device: str | None = None, progress: bool = False
) -> dict[str, Any]:
    """Load a run directory's config and checkpoint and evaluate it (see :func:`evaluate_loaded`)."""
    from ..training import CHECKPOINT_FILE, CONFIG_FILE, build_vae, check_run_dir, load_images, resolve_device

    run_dir = Path(run_dir)
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"{run_dir} is not a pyrovae run directory (no {CONFIG_FILE})")
    check_run_dir(run_dir)  # it writes evaluation.json and the grids there
    cfg = load_config(run_dir / CONFIG_FILE).validate()
    if num_samples is not None and num_samples < 1:
        raise ConfigError(f"--num-samples must be >= 1, got {num_samples}")
    dev = resolve_device(device or cfg.device)
    state = checkpoint.load(run_dir / CHECKPOINT_FILE, map_location=dev)
    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    vae = build_vae(cfg, images).to(dev)
    checkpoint.restore(vae, state["model"], run_dir / CHECKPOINT_FILE)
    dataset = InMemoryData(images, vae.likelihood, cfg.binarization, dev, cfg.seed)
    return evaluate_loaded(run_dir, cfg, vae, dataset, num_samples, progress)
