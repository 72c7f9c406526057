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
RESUMABLE = {"epochs", "max_steps", "max_seconds", "device", "log_every", "compile", "eval_num_samples",
             "eval_chunk_size", "eval_batch_size"}  # fmt: skip


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


def mean_test_bound(estimator: pyro.infer.ELBO, vae: VAE, dataset: data.InMemoryData, batch_size: int) -> torch.Tensor:
    """The estimator's bound averaged over the test set, as a device tensor (no sync for
    pyrovae's estimators; Pyro's own report a float per batch)."""
    total = torch.zeros((), device=dataset.device)
    for x in dataset.test_batches(batch_size):
        if isinstance(estimator, estimators.Estimator):
            total += estimator.bound(vae.model, vae.guide, x).sum()
        else:
            total -= estimator.loss(vae.model, vae.guide, x)
    return total / dataset.num_test


def bound_key(estimator: pyro.infer.ELBO) -> str:
    """Renyi with alpha < 0 gives an objective that can exceed log p(x): never call it a bound."""
    return "test_bound" if getattr(estimator, "reports_bound", True) else "test_objective"


def is_scaled(estimator: pyro.infer.ELBO) -> bool:
    """Whether the estimator's gradient follows a kl_weight other than 1 at any time."""
    return isinstance(estimator, estimators.Estimator) and (estimator.kl_weight != 1.0 or estimator.kl_warmup > 0)


def compile_refusal(estimator: pyro.infer.ELBO) -> str | None:
    """Why the loss of ``estimator`` is not compiled (None: it can be)."""
    if not isinstance(estimator, estimators.Estimator) or not estimator.fast_path:
        return "it is traced by Pyro"
    if estimator.needs_grad_scale:
        return "its gradient hooks do not survive torch.compile"
    if getattr(estimator, "sleep_phi", False):
        return "its sleep phase traces the model"
    if estimator.kl_warmup > 0:
        return "its KL warm-up changes beta every step"
    return None


def step_path(estimator: pyro.infer.ELBO, vae: VAE, compile_mode: str = "off") -> str:
    """One line: how a training step computes its loss."""
    if isinstance(estimator, estimators.Estimator) and estimator.fast_path:
        sleep = " (its sleep phase traces the model)" if getattr(estimator, "sleep_phi", False) else ""
        line = f"training step: fast path, the VAE's log weights without tracing{sleep}"
    else:
        why = "fast_path=false" if isinstance(estimator, estimators.Estimator) else "Pyro's own estimator"
        line = f"training step: generic path, the model and guide traced by Pyro every step ({why})"
    if compile_mode != "off":
        refusal = compile_refusal(estimator)
        line += f"; torch.compile {compile_mode}" if refusal is None else f"; not compiled: {refusal}"
    return line


def make_step(
    estimator: pyro.infer.ELBO, vae: VAE, n: int, compile_mode: str = "off"
) -> Callable[[torch.Tensor], torch.Tensor]:
    """x -> forward and backward of one step, returning the batch's negated bound (scaled by N / B).

    With ``compile_mode`` other than "off", pyrovae's fast-path loss goes through torch.compile
    (``"reduce-overhead"`` captures CUDA graphs on a GPU, so the step's Python cost is paid
    once); Inductor draws its random numbers as eager PyTorch does (``fallback_random``), so
    compiled and eager steps see the same noise. Estimators whose gradient relies on tensor hooks
    (``dreg``, ``rws`` with DReG wake-phi) stay eager.
    """
    if compile_mode == "off" or compile_refusal(estimator) is not None:
        return lambda x: _step(estimator, vae, x, n)
    import torch._inductor.config as inductor_config

    kl_weight = estimator.kl_weight  # constant: no warm-up here

    def loss(x: torch.Tensor) -> torch.Tensor:
        return estimator.objective(vae.model, vae.guide, (x,), {"num_data": n}, kl_weight)

    compiled = torch.compile(loss, mode=None if compile_mode == "default" else compile_mode, dynamic=False)

    def step(x: torch.Tensor) -> torch.Tensor:
        estimator.num_steps += 1  # the step counter stays outside the compiled code
        with inductor_config.patch(fallback_random=True):
            value = compiled(x)
        value.backward()
        return value.detach()

    return step


def _step(estimator: pyro.infer.ELBO, vae: VAE, x: torch.Tensor, n: int) -> torch.Tensor:
    """Forward and backward of one step: the batch's negated bound, scaled by N / B."""
    if hasattr(estimator, "differentiable_loss"):
        loss = estimator.differentiable_loss(vae.model, vae.guide, x, num_data=n)
        loss.backward()
        return loss.detach()
    # Pyro's estimators without differentiable_loss (RenyiELBO, ...) run backward themselves,
    # and only when they see param sites: register the VAE's parameters for them.
    with pyro.settings.context(module_local_params=False):
        return torch.tensor(estimator.loss_and_grads(vae.model, vae.guide, x, num_data=n))


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
    after_epoch: Callable[[dict[str, Any], VAE, pyro.infer.ELBO, data.InMemoryData], None] | None = None,
    notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a VAE on ``config``'s data with Adam, writing a run directory ``out``.

    The run directory holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line
    an epoch: train loss, test bound, seconds), ``checkpoint.pt`` (written atomically after every
    epoch) and, after training, ``evaluation.json`` and PNG grids (see
    :func:`pyrovae.evaluation.evaluate_run`). ``resume=True`` continues the run in ``out`` from
    its checkpoint; ``config`` may then only raise ``epochs`` (and change device or evaluation
    settings). Losses are read from the device, and checked for NaN, every ``log_every`` steps
    and at the end of each epoch, never at every step. ``max_steps`` and ``max_seconds`` end
    training early, mid-epoch if need be (that last epoch's line covers the data it saw).
    ``on_epoch(record)`` sees each epoch's metrics line; ``after_epoch(record, vae, estimator,
    dataset)`` may also measure the model (diagnostics), after the checkpoint is written.
    ``notice(line)`` hears once which step the training takes (the fast path or Pyro's tracing).
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
    # one multi-tensor Adam over every parameter: fused kernels on CUDA, foreach on the CPU
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr, fused=fused, foreach=None if fused else True)
    metrics_path = run_dir / METRICS_FILE
    ours = isinstance(estimator, estimators.Estimator)
    epoch, step, metrics, train_seconds = 0, 0, [], 0.0
    if resume:
        state = checkpoint.load(run_dir / CHECKPOINT_FILE, map_location=device)
        checkpoint.restore(vae, state["model"], run_dir / CHECKPOINT_FILE)
        optimizer.load_state_dict(state["optimizer"])
        checkpoint.set_rng_state(state["rng"])
        epoch, step = int(state["epoch"]), int(state["step"])
        train_seconds = float(state.get("train_seconds", 0.0))
        if metrics_path.exists():  # drop lines of an epoch whose checkpoint was never written
            metrics = [m for m in _read_lines(metrics_path) if m["epoch"] <= epoch]
    if notice is not None:
        notice(step_path(estimator, vae, cfg.compile))
    n = dataset.num_train
    step_fn = make_step(estimator, vae, n, cfg.compile)
    _write_text(run_dir / CONFIG_FILE, to_toml(cfg))
    _write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))

    steps_per_epoch = -(-n // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    total_steps = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
    bar = tqdm(total=total_steps, initial=step,
               disable=not progress, unit="step", dynamic_ncols=True)  # fmt: skip
    last_good = epoch
    stopped = False
    with pyro.settings.context(module_local_params=True), pyro.validation_enabled(False):
        if not resume:  # where the curve starts: the untrained model's test bound
            start = time.perf_counter()
            with torch.no_grad():
                bound0 = mean_test_bound(estimator, vae, dataset, cfg.eval_batch_size).item()
            _append(metrics, metrics_path, {"epoch": 0, "step": 0, bound_key(estimator): bound0,
                                            "seconds": time.perf_counter() - start})  # fmt: skip
        while epoch < cfg.epochs and not stopped:
            epoch += 1
            start = time.perf_counter()
            total = torch.zeros((), device=device)
            seen = 0
            objective = torch.zeros((), device=device)
            if ours:  # the KL schedule's clock, set again after a resume
                estimator.num_steps, estimator.epoch = step, epoch - 1
            for x in dataset.train_batches(cfg.batch_size):
                optimizer.zero_grad(set_to_none=True)
                loss = step_fn(x)
                optimizer.step()
                total += loss.to(device) * (x.shape[0] / n)  # the batch's own negated bound sum
                if ours and estimator.last_objective is not None:
                    objective -= estimator.last_objective * (x.shape[0] / n)
                    estimator.last_objective = None
                step += 1
                seen += x.shape[0]
                bar.update()
                if step % cfg.log_every == 0:
                    value = total.item()
                    _check_finite(value, vae, step, epoch, run_dir, last_good)
                    bar.set_postfix(epoch=epoch, loss=f"{value / seen:.2f}")
                if (cfg.max_steps and step >= cfg.max_steps) or (
                    cfg.max_seconds and train_seconds + time.perf_counter() - start >= cfg.max_seconds
                ):
                    stopped = True
                    break
            train_seconds += time.perf_counter() - start
            train_loss = total.item() / seen
            _check_finite(train_loss, vae, step, epoch, run_dir, last_good)
            record: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": train_loss}
            if is_scaled(estimator):  # the kl_weight-scaled objective, beside the bound
                record["train_objective"] = objective.item() / seen
                record["kl_weight"] = estimator.current_kl_weight()
            if epoch % cfg.test_every == 0 or epoch == cfg.epochs or stopped:
                with torch.no_grad():
                    value = mean_test_bound(estimator, vae, dataset, cfg.eval_batch_size).item()
                record[bound_key(estimator)] = value
            record["seconds"] = time.perf_counter() - start
            _append(metrics, metrics_path, record)
            checkpoint.save(
                {"epoch": epoch, "step": step, "train_seconds": train_seconds, "model": vae.state_dict(),
                 "optimizer": optimizer.state_dict(), "rng": checkpoint.rng_state()},
                run_dir / CHECKPOINT_FILE,
            )  # fmt: skip
            last_good = epoch
            if on_epoch is not None:
                on_epoch(record)
            if after_epoch is not None:
                after_epoch(record, vae, estimator, dataset)
    bar.close()

    evaluation = None
    if evaluate and cfg.eval_num_samples > 0:
        from .evaluation.report import evaluate_loaded

        evaluation = evaluate_loaded(run_dir, cfg, vae, dataset)
    return TrainResult(run_dir, cfg, vae, metrics, evaluation)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The metrics lines; a line torn by a crash mid-write (its epoch has no checkpoint) is skipped."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _append(metrics: list[dict[str, Any]], path: Path, record: dict[str, Any]) -> None:
    metrics.append(record)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
