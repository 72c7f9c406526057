"""Training a VAE from a Config: the function under ``pyrovae train``."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from . import checkpoint, data, estimators
from .config import Config, from_dict, to_toml
from .config import load as load_config
from .errors import ConfigError, TrainingDiverged
from .vae import VAE

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE = "config.toml", "checkpoint.pt", "metrics.jsonl"
# Settings a resumed run may change; everything else must match the run's own config.
RESUMABLE = {"epochs", "device", "log_every", "eval_num_samples", "eval_chunk_size",
             "eval_batch_size"}  # fmt: skip


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    vae: VAE
    metrics: list[dict[str, Any]]
    evaluation: dict[str, Any] | None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here")
    return device


def build_vae(cfg: Config, images: data.Images) -> VAE:
    return VAE(
        x_dim=images.x_dim, z_dim=cfg.z_dim, likelihood=cfg.likelihood,
        likelihood_options=cfg.likelihood_options, hidden=cfg.hidden,
        activation=cfg.activation, architecture=cfg.architecture, image_shape=images.image_shape,
    )  # fmt: skip


def load_images(cfg: Config) -> data.Images:
    if cfg.dataset == "digits":
        return data.load("digits")
    return data.load(cfg.dataset, path=cfg.data_path or None)


def test_bound(
    estimator: estimators.Estimator, vae: VAE, dataset: data.InMemoryData, batch_size: int
) -> torch.Tensor:
    """The estimator's bound averaged over the test set, as a device tensor (no sync)."""
    total = torch.zeros((), device=dataset.device)
    for x in dataset.test_batches(batch_size):
        total += estimator.bound(vae.model, vae.guide, x).sum()
    return total / dataset.num_test


def _resolve(config: Config | dict[str, Any] | None, run_dir: Path, resume: bool) -> Config:
    given = from_dict(config) if isinstance(config, dict) else config
    if not resume:
        if (run_dir / CHECKPOINT_FILE).exists():
            raise ConfigError(f"{run_dir} already holds a run; resume it (--resume) or choose another --out")
        return (given or Config()).validate()
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"cannot resume: {run_dir / CONFIG_FILE} does not exist")
    saved = load_config(run_dir / CONFIG_FILE)
    if given is None:
        return saved.validate()
    changed = [k for k, v in given.to_dict().items() if k not in RESUMABLE and saved.to_dict()[k] != v]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"cannot resume with {k}={getattr(given, k)!r}: the run used "
            f"{getattr(saved, k)!r}; a resumed run may change only {', '.join(sorted(RESUMABLE))}"
        )
    return given.validate()


def _check_finite(value: float, vae: VAE, step: int, epoch: int, run_dir: Path, last: int) -> None:
    bad = not math.isfinite(value)
    if not bad:
        bad = not torch.stack([torch.isfinite(p).all() for p in vae.parameters()]).all().item()
    if bad:
        kept = (f"the last good checkpoint (epoch {last}) is intact at {run_dir / CHECKPOINT_FILE}"
                if last > 0 else "no checkpoint had been written yet")  # fmt: skip
        raise TrainingDiverged(
            f"the loss or a parameter became NaN or infinite by step {step} (epoch {epoch}); "
            f"training stopped and {kept}"
        )


def train(
    config: Config | dict[str, Any] | None = None,
    out: str | Path = "runs/default",
    *,
    resume: bool = False,
    progress: bool = False,
    evaluate: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Train a VAE on ``config``'s data with Adam, writing a run directory ``out``.

    The run directory holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line
    an epoch: train loss, test bound, seconds), ``checkpoint.pt`` (written atomically after every
    epoch) and, after training, ``evaluation.json`` and PNG grids (see
    :func:`pyrovae.evaluation.evaluate_run`). ``resume=True`` continues the run in ``out`` from
    its checkpoint; ``config`` may then only raise ``epochs`` (and change device or evaluation
    settings). Losses are read from the device, and checked for NaN, every ``log_every`` steps
    and at the end of each epoch, never at every step.
    """
    run_dir = Path(out)
    cfg = _resolve(config, run_dir, resume)
    device = resolve_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    vae = build_vae(cfg, images).to(device)
    dataset = data.InMemoryData(images, vae.likelihood, cfg.binarization, device, cfg.seed)
    estimator = estimators.make(cfg.estimator, num_particles=cfg.num_particles,
                                **cfg.estimator_options)  # fmt: skip
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr, foreach=True)
    metrics_path = run_dir / METRICS_FILE
    epoch, step, metrics = 0, 0, []
    if resume:
        state = checkpoint.load(run_dir / CHECKPOINT_FILE, map_location=device)
        vae.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        epoch, step = int(state["epoch"]), int(state["step"])
        if metrics_path.exists():  # drop lines of an epoch whose checkpoint was never written
            lines = metrics_path.read_text().splitlines()
            metrics = [m for m in map(json.loads, filter(None, lines)) if m["epoch"] <= epoch]
    _write_text(run_dir / CONFIG_FILE, to_toml(cfg))
    _write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))

    n = dataset.num_train
    steps_per_epoch = -(-n // cfg.batch_size)
    bar = tqdm(total=cfg.epochs * steps_per_epoch, initial=epoch * steps_per_epoch,
               disable=not progress, unit="step", dynamic_ncols=True)  # fmt: skip
    last_good = epoch
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        if not resume:  # where the curve starts: the untrained model's test bound
            start = time.perf_counter()
            with torch.no_grad():
                bound0 = test_bound(estimator, vae, dataset, cfg.eval_batch_size).item()
            _append(metrics, metrics_path, {"epoch": 0, "step": 0, "test_bound": bound0,
                                            "seconds": time.perf_counter() - start})  # fmt: skip
        while epoch < cfg.epochs:
            epoch += 1
            start = time.perf_counter()
            total = torch.zeros((), device=device)
            for x in dataset.train_batches(cfg.batch_size):
                loss = estimator.differentiable_loss(vae.model, vae.guide, x, num_data=n)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * (x.shape[0] / n)  # the batch's own negated bound sum
                step += 1
                bar.update()
                if step % cfg.log_every == 0:
                    value = total.item()
                    _check_finite(value, vae, step, epoch, run_dir, last_good)
                    bar.set_postfix(epoch=epoch, loss=f"{value / n:.2f}")
            train_loss = total.item() / n
            _check_finite(train_loss, vae, step, epoch, run_dir, last_good)
            record: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": train_loss}
            if epoch % cfg.test_every == 0 or epoch == cfg.epochs:
                with torch.no_grad():
                    record["test_bound"] = test_bound(estimator, vae, dataset, cfg.eval_batch_size).item()
            record["seconds"] = time.perf_counter() - start
            _append(metrics, metrics_path, record)
            checkpoint.save(
                {"epoch": epoch, "step": step, "model": vae.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": checkpoint.rng_state()},
                run_dir / CHECKPOINT_FILE,
            )  # fmt: skip
            last_good = epoch
            if on_epoch is not None:
                on_epoch(record)
    bar.close()

    evaluation = None
    if evaluate and cfg.eval_num_samples > 0:
        from .evaluation.report import evaluate_loaded

        evaluation = evaluate_loaded(run_dir, cfg, vae, dataset)
    return TrainResult(run_dir, cfg, vae, metrics, evaluation)


def _append(metrics: list[dict[str, Any]], path: Path, record: dict[str, Any]) -> None:
    metrics.append(record)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
