"""Training a VAE from a Config: the function under ``pyrovae train``."""

from __future__ import annotations

import json
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from . import checkpoint, data, distributed, estimators, schedules, tracking
from .config import Config, from_dict, to_toml
from .config import load as load_config
from .early_stopping import EarlyStopping
from .errors import CheckpointError, ConfigError, TrainingDiverged, TrainingInterrupted
from .estimators.direct import offers_direct
from .vae import VAE

CONFIG_FILE, CHECKPOINT_FILE, METRICS_FILE = "config.toml", "checkpoint.pt", "metrics.jsonl"
BEST_FILE = "best.pt"  # the checkpoint of the best validation bound, under early stopping
# Settings a resumed run may change; everything else must match the run's own config.
RESUMABLE = {"epochs", "max_steps", "max_seconds", "device", "log_every", "compile", "eval_num_samples",
             "eval_chunk_size", "eval_batch_size", "tracking", "tracking_uri"}  # fmt: skip
PROBE_PREFIX = ".pyrovae-write-test-"  # check_run_dir's probe file


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
        latents=cfg.latents, latent=cfg.latent, guide=cfg.guide, flow_layers=cfg.flow_layers,
        flow_hidden=cfg.flow_hidden, prior=cfg.prior, prior_components=cfg.prior_components,
    )  # fmt: skip


def load_images(cfg: Config) -> data.Images:
    """The config's data set, with ``validation`` training points held out when it asks for them."""
    images = data.load("digits") if cfg.dataset == "digits" else data.load(cfg.dataset, path=cfg.data_path or None)
    return data.split_validation(images, cfg.validation) if cfg.validation else images


def mean_test_bound(
    estimator: pyro.infer.ELBO, vae: VAE, dataset: data.InMemoryData, batch_size: int, part: str = "test",
    group: distributed.Group = distributed.SINGLE,
) -> torch.Tensor:  # fmt: skip
    """The estimator's bound averaged over the test (or ``part="valid"``, validation) set, as a
    device tensor (no sync for pyrovae's estimators; Pyro's own report a float per batch). Under
    data parallelism each rank scores its shard of the points and the sums are added."""
    total = torch.zeros((), device=dataset.device)
    if group.active:
        points = dataset.test if part == "test" else dataset.valid
        batches = points[group.shard(torch.arange(points.shape[0], device=points.device))].split(batch_size)
    else:
        batches = dataset.test_batches(batch_size) if part == "test" else dataset.valid_batches(batch_size)
    for x in batches:
        if x.shape[0] == 0:  # a rank without a point of a small set
            continue
        if isinstance(estimator, estimators.Estimator):
            total += estimator.bound(vae.model, vae.guide, x).sum()
        else:
            total -= estimator.loss(vae.model, vae.guide, x)
    return group.sum(total) / (dataset.num_test if part == "test" else dataset.num_valid)


def bound_key(estimator: pyro.infer.ELBO) -> str:
    """Renyi with alpha < 0 gives an objective that can exceed log p(x): never call it a bound."""
    return "test_bound" if getattr(estimator, "reports_bound", True) else "test_objective"


def is_scaled(estimator: pyro.infer.ELBO) -> bool:
    """Whether the estimator's gradient follows a kl_weight other than 1 at any time."""
    return isinstance(estimator, estimators.Estimator) and (estimator.kl_weight != 1.0 or estimator.kl_warmup > 0)


def fast_path(estimator: pyro.infer.ELBO, vae: VAE) -> bool:
    """Whether training steps compute the VAE's log weights directly, without tracing."""
    return isinstance(estimator, estimators.Estimator) and estimator.fast_path and offers_direct(vae.model, vae.guide)


def compile_refusal(estimator: pyro.infer.ELBO, vae: VAE) -> str | None:
    """Why the loss of ``estimator`` is not compiled (None: it can be)."""
    if not fast_path(estimator, vae):
        return "it is traced by Pyro"
    if not getattr(vae, "family", None) or not vae.family.is_default:
        return "compiling is tested for pyrovae's one-Gaussian-latent VAE only; other families run eager"
    if estimator.needs_grad_scale:
        return "its gradient hooks do not survive torch.compile"
    if getattr(estimator, "sleep_phi", False):
        return "its sleep phase traces the model"
    if estimator.kl_warmup > 0:
        return "its KL warm-up changes beta every step"
    return None


def step_path(estimator: pyro.infer.ELBO, vae: VAE, compile_mode: str = "off") -> str:
    """One line: how a training step computes its loss."""
    if fast_path(estimator, vae):
        sleep = " (its sleep phase traces the model)" if getattr(estimator, "sleep_phi", False) else ""
        line = f"training step: fast path, the VAE's log weights without tracing{sleep}"
    else:
        if not isinstance(estimator, estimators.Estimator):
            why = "Pyro's own estimator"
        elif not estimator.fast_path:
            why = "fast_path=false"
        else:
            why = "the model or guide does not compute its log weights directly"
        line = f"training step: generic path, the model and guide traced by Pyro every step ({why})"
    if compile_mode != "off":
        refusal = compile_refusal(estimator, vae)
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
    if compile_mode == "off" or compile_refusal(estimator, vae) is not None:
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


def _resolve(config: Config | dict[str, Any] | None, run_dir: Path, resume: bool) -> tuple[Config, list[str]]:
    """The run's config, and for a resumed run the settings it changes ("epochs 2 -> 5")."""
    given = from_dict(config) if isinstance(config, dict) else config
    if not resume:
        if (run_dir / CHECKPOINT_FILE).exists():
            raise ConfigError(f"{run_dir} already holds a run; resume it (--resume) or choose another --out")
        return (given or Config()).validate(), []
    if not (run_dir / CONFIG_FILE).exists():
        raise ConfigError(f"cannot resume: {run_dir} holds no run (no {CONFIG_FILE}); start one without --resume")
    if not (run_dir / CHECKPOINT_FILE).exists():
        raise ConfigError(f"cannot resume: the run in {run_dir} stopped before its first checkpoint; "
                          "start it afresh (the same command without --resume)")  # fmt: skip
    saved = load_config(run_dir / CONFIG_FILE)
    if given is None:
        return saved.validate(), []
    old, new = saved.to_dict(), given.to_dict()
    changed = [k for k, v in new.items() if k not in RESUMABLE and old[k] != v]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"cannot resume with {k}={getattr(given, k)!r}: the run used "
            f"{getattr(saved, k)!r}; a resumed run may change only {', '.join(sorted(RESUMABLE))}"
        )
    return given.validate(), [f"{k} {old[k]} -> {new[k]}" for k in new if old[k] != new[k]]


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


def _check_not_a_file(run_dir: Path) -> None:
    for p in (run_dir, *run_dir.parents):
        if p.is_dir():
            return
        if p.exists() or p.is_symlink():
            raise ConfigError(f"cannot use {run_dir} as a run directory: {p} is a file, not a folder")


def check_run_dir(run_dir: str | Path, *, create: bool = False) -> None:
    """Raise :class:`ConfigError` with one line unless files can be written in ``run_dir``: a file
    where it or a parent should be, a read-only folder or file system. ``create`` makes it first.
    A probe file is written and removed, so what is checked is what the run will do."""
    run_dir = Path(run_dir)
    _check_not_a_file(run_dir)
    try:
        if create:
            run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=run_dir, prefix=PROBE_PREFIX, suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"cannot write in the run directory {run_dir}: {e.strerror or e}") from e


def remove_partial_files(run_dir: Path) -> None:
    """The temporary files a kill mid-write left in ``run_dir`` (the finished files are whole)."""
    from .evaluation.report import EVALUATION_FILE

    checkpoint.remove_partial(run_dir / CHECKPOINT_FILE)
    checkpoint.remove_partial(run_dir / BEST_FILE)
    for name in (CONFIG_FILE, METRICS_FILE, EVALUATION_FILE):
        (run_dir / (name + ".tmp")).unlink(missing_ok=True)
    for probe in run_dir.glob(PROBE_PREFIX + "*.tmp"):
        probe.unlink(missing_ok=True)


class StopSignals:
    """While active, SIGINT and SIGTERM set ``signum`` instead of stopping the process: the
    training loop reads it between steps (a Python attribute, no device sync), writes a checkpoint
    and stops. A second signal raises ``KeyboardInterrupt`` at once. The previous handlers come
    back on exit; outside the main thread (where Python cannot take signals) it does nothing."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, signal.SIG_DFL if previous is None else previous)  # None: set outside Python
        self._previous.clear()


def _partial_epoch(raw: Any, path: Path, n: int, batch_size: int, device: torch.device) -> dict[str, Any] | None:
    """A checkpoint's record of an epoch cut short by a signal, checked against the data: the
    epoch's shuffle, the batches taken, and the sums so far (on ``device``)."""
    if raw is None:
        return None
    bad = f"checkpoint {path}: its partial epoch"
    keys = ("order", "batches", "seen", "total", "objective", "seconds")
    if not isinstance(raw, dict) or any(k not in raw for k in keys):
        raise CheckpointError(f"{bad} needs {', '.join(keys)}")
    order, batches = raw["order"], raw["batches"]
    if not (isinstance(order, torch.Tensor) and order.dtype == torch.int64 and order.shape == (n,)
            and torch.equal(order.sort().values, torch.arange(n, device=order.device))):  # fmt: skip
        raise CheckpointError(f"{bad}: its order is not a shuffle of the {n} training points")
    if not isinstance(batches, int) or not 0 <= batches <= -(-n // batch_size):
        raise CheckpointError(f"{bad}: {batches!r} batches taken does not fit {n} points in batches of {batch_size}")
    if raw["seen"] != min(batches * batch_size, n):
        raise CheckpointError(f"{bad}: {raw['seen']!r} points seen in {batches} batches of {batch_size}")
    for k in ("total", "objective"):
        if not (isinstance(raw[k], torch.Tensor) and raw[k].dim() == 0 and raw[k].is_floating_point()):
            raise CheckpointError(f"{bad}: {k} is not a number")
    if not isinstance(raw["seconds"], (int, float)):
        raise CheckpointError(f"{bad}: seconds is not a number")
    return {"order": order.to(device), "batches": batches, "seen": raw["seen"], "total": raw["total"].to(device),
            "objective": raw["objective"].to(device), "seconds": float(raw["seconds"])}  # fmt: skip


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
    ``notice(line)`` hears which step the training takes (the fast path or Pyro's tracing) and,
    on resume, where it resumes and which settings changed.

    Nothing is written before the config, the data, the model and (on resume) the checkpoint have
    all been checked, so a bad input leaves the run directory as it was. SIGINT and SIGTERM during
    training write a checkpoint of the state after the current step (mid-epoch: the epoch's
    shuffle and sums so far come with it) and raise :class:`TrainingInterrupted`; resuming from it
    gives the same numbers as a run never stopped. The previous signal handlers are restored.
    """
    run_dir = Path(out)
    _check_not_a_file(run_dir)
    cfg, changes = _resolve(config, run_dir, resume)
    device = resolve_device(cfg.device)
    tracking.check(cfg.tracking)  # a missing extra: one line, before anything is written
    group = distributed.from_env(device)  # launched by torchrun: this process's rank
    if group.active and device.type == "cuda":
        device = torch.device("cuda", group.local_rank)
    try:
        return _train(cfg, changes, run_dir, device, group, resume, progress, evaluate, on_epoch, after_epoch,
                      notice)  # fmt: skip
    finally:
        distributed.shutdown(group)


def _train(
    cfg: Config, changes: list[str], run_dir: Path, device: torch.device, group: distributed.Group, resume: bool,
    progress: bool, evaluate: bool, on_epoch: Callable[[dict[str, Any]], None] | None,
    after_epoch: Callable[[dict[str, Any], VAE, pyro.infer.ELBO, data.InMemoryData], None] | None,
    notice: Callable[[str], None] | None,
) -> TrainResult:  # fmt: skip
    main = group.is_main  # the process that writes the run directory
    if not main:
        progress, on_epoch, notice = False, None, None
    torch.manual_seed(cfg.seed)
    images = load_images(cfg)
    vae = build_vae(cfg, images).to(device)
    dataset = data.InMemoryData(images, vae.likelihood, cfg.binarization, device, cfg.seed)
    estimator = estimators.make(cfg.estimator, num_particles=cfg.num_particles,
                                **cfg.estimator_options)  # fmt: skip
    if group.active:
        distributed.check_estimator(estimator)
    # one multi-tensor Adam over every parameter: fused kernels on CUDA, foreach on the CPU
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam(vae.parameters(), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2),
                                 eps=cfg.adam_eps, fused=fused, foreach=None if fused else True)  # fmt: skip
    scheduler = schedules.make(cfg.lr_schedule, optimizer, cfg.epochs)  # steps once an epoch
    if cfg.patience and dataset.num_valid == 0:
        raise ConfigError(f"patience={cfg.patience} stops on a validation bound, and {images.source} has no "
                          "validation set: hold some training points out with validation = N")  # fmt: skip
    stopper = EarlyStopping(cfg.patience) if cfg.patience else None
    metrics_path, ckpt_path = run_dir / METRICS_FILE, run_dir / CHECKPOINT_FILE
    ours = isinstance(estimator, estimators.Estimator)
    n = dataset.num_train
    epoch, step, metrics, train_seconds, partial = 0, 0, [], 0.0, None
    if resume:  # everything is checked before the RNG state, the last thing restored
        state = checkpoint.load(ckpt_path, map_location=device)
        checkpoint.restore(vae, state["model"], ckpt_path)
        checkpoint.restore_optimizer(optimizer, state["optimizer"], ckpt_path)
        epoch, step = state["epoch"], state["step"]
        if cfg.epochs < epoch:
            raise ConfigError(f"cannot resume with epochs={cfg.epochs}: the run has done {epoch}; "
                              f"give --epochs {epoch} or more")  # fmt: skip
        checkpoint.restore_scheduler(scheduler, state.get("scheduler"), epoch, cfg.lr_schedule, ckpt_path)
        if stopper is not None and epoch > 0:
            stopper.load_state_dict(state.get("early_stopping"), str(ckpt_path))
        train_seconds = state.get("train_seconds", 0.0)
        if not isinstance(train_seconds, (int, float)):
            raise CheckpointError(f"checkpoint {ckpt_path}: train_seconds is not a number")
        partial = _partial_epoch(state.get("partial"), ckpt_path, n, cfg.batch_size, device)
        ranks = state.get("rng_ranks")  # a data-parallel run's streams, one a rank
        own_stream = group.active and isinstance(ranks, list) and len(ranks) == group.world
        checkpoint.set_rng_state(ranks[group.rank] if own_stream else state["rng"], ckpt_path)
        if partial is not None and group.active and not own_stream:  # another number of processes
            torch.manual_seed(distributed.rank_seed(cfg.seed, epoch + 1, group.rank, partial["batches"]))
            if notice is not None:
                had = len(ranks) if isinstance(ranks, list) else 1
                notice(f"resuming mid-epoch with {group.world} processes where the checkpoint had {had}: the rest "
                       f"of epoch {epoch + 1} draws new noise")  # fmt: skip
        if metrics_path.exists():  # drop lines of an epoch whose checkpoint was never written
            metrics = [m for m in _read_lines(metrics_path) if m["epoch"] <= epoch]
    # the first write: the run directory, cleared of what a kill mid-write left
    if main:
        check_run_dir(run_dir, create=True)
        remove_partial_files(run_dir)
    if notice is not None:
        if resume:
            where = f"in epoch {epoch + 1} at batch {partial['batches']}" if partial else f"after epoch {epoch}"
            notice(f"resuming {run_dir} {where} (step {step})" + (f"; {', '.join(changes)}" if changes else ""))
        notice(step_path(estimator, vae, cfg.compile))
        if group.active:
            notice(f"data parallel: {group.world} processes, {cfg.batch_size} points a step in all")
    step_fn = make_step(estimator, vae, n, cfg.compile)
    tracker: tracking.Tracker = tracking.NullTracker()
    if main:
        _write_text(run_dir / CONFIG_FILE, to_toml(cfg))
        _write_text(metrics_path, "".join(json.dumps(m) + "\n" for m in metrics))
        tracker = tracking.open_tracker(cfg.tracking, run_dir, uri=cfg.tracking_uri, resume=resume)
        tracker.log_config(cfg.to_dict(), to_toml(cfg))
    save = checkpoint.save if main else _no_save
    append = _append if main else _keep

    steps_per_epoch = -(-n // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    total_steps = min(total_steps, cfg.max_steps) if cfg.max_steps else total_steps
    bar = tqdm(total=total_steps, initial=step,
               disable=not progress, unit="step", dynamic_ncols=True)  # fmt: skip
    last_good = epoch
    stopped = bool(cfg.max_steps and step >= cfg.max_steps)  # a resumed run may have no steps left
    try:
        with (
            pyro.settings.context(module_local_params=True),
            pyro.validation_enabled(False),
            StopSignals() as signals,
            bar,
        ):
            if not resume:  # where the curve starts: the untrained model's test bound
                start = time.perf_counter()
                with torch.no_grad():
                    bound0 = mean_test_bound(estimator, vae, dataset, cfg.eval_batch_size, group=group).item()
                append(metrics, metrics_path, {"epoch": 0, "step": 0, bound_key(estimator): bound0,
                                               "seconds": time.perf_counter() - start})  # fmt: skip
                tracker.log_scalars(metrics[-1], step=0)
            while epoch < cfg.epochs and not stopped:
                epoch += 1
                start = time.perf_counter()
                if partial is not None:  # the rest of an epoch a signal cut short
                    order, taken, seen = partial["order"], partial["batches"], partial["seen"]
                    total, objective, before = partial["total"], partial["objective"], partial["seconds"]
                    if not main:  # the saved sums are every rank's: rank 0 carries them on
                        total, objective = torch.zeros_like(total), torch.zeros_like(objective)
                    partial = None
                else:
                    if group.active:  # one shuffle for every rank; each rank's own noise this epoch
                        order = distributed_order(n, cfg.seed, epoch, device)
                        torch.manual_seed(distributed.rank_seed(cfg.seed, epoch, group.rank))
                    else:
                        order = dataset.epoch_order()
                    taken, seen, before = 0, 0, 0.0
                    total = torch.zeros((), device=device)
                    objective = torch.zeros((), device=device)
                if ours:  # the KL schedule's clock, set again after a resume
                    estimator.num_steps, estimator.epoch = step, epoch - 1
                for x in dataset.train_batches(cfg.batch_size, order=order, start=taken, shard=group.shard):
                    global_b = min(cfg.batch_size, n - taken * cfg.batch_size)  # the step's points, all ranks
                    optimizer.zero_grad(set_to_none=True)
                    loss = step_fn(x) if x.shape[0] else total.new_zeros(())  # a rank may get no point
                    if group.active:  # the global batch's gradient, and whether any rank must stop
                        timed_out = bool(cfg.max_seconds and train_seconds + time.perf_counter() - start
                                         >= cfg.max_seconds)  # fmt: skip
                        flags = group.reduce_gradients(vae.parameters(), x.shape[0] / global_b,
                                                       [float(signals.signum != 0), float(timed_out)])  # fmt: skip
                    optimizer.step()
                    total += loss.to(device) * (x.shape[0] / n)  # the batch's own negated bound sum
                    if ours and estimator.last_objective is not None:
                        objective -= estimator.last_objective * (x.shape[0] / n)
                        estimator.last_objective = None
                    step += 1
                    taken += 1
                    seen += global_b
                    bar.update()
                    if group.active:  # the ranks act together, on the flags of a logging step
                        # a CPU tensor is read for free; from a GPU, only at a logging step
                        look = flags.device.type == "cpu" or step % cfg.log_every == 0 or taken == steps_per_epoch
                        stop_flags = flags.tolist() if look else [0.0, 0.0]
                        signum = (signals.signum or signal.SIGTERM) if stop_flags[0] else 0
                        out_of_time = stop_flags[1] > 0
                    else:
                        signum = signals.signum
                        out_of_time = bool(cfg.max_seconds and train_seconds + time.perf_counter() - start
                                           >= cfg.max_seconds)  # fmt: skip
                    if step % cfg.log_every == 0:
                        value = group.sum(total).item()
                        _check_finite(value, vae, step, epoch, run_dir, last_good)
                        bar.set_postfix(epoch=epoch, loss=f"{value / seen:.2f}")
                    if (cfg.max_steps and step >= cfg.max_steps) or out_of_time:
                        stopped = True
                        break
                    if signum:  # the state after this step, mid-epoch
                        total, objective = group.sum(total), group.sum(objective)
                        _check_finite(total.item(), vae, step, epoch, run_dir, last_good)
                        train_seconds += time.perf_counter() - start
                        rest = {"order": order.cpu(), "batches": taken, "seen": seen, "total": total.cpu(),
                                "objective": objective.cpu(),
                                "seconds": before + time.perf_counter() - start}  # fmt: skip
                        save(
                            {"epoch": epoch - 1, "step": step, "train_seconds": train_seconds,
                             "model": vae.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), **_rng(group), "partial": rest},
                            ckpt_path,
                        )  # fmt: skip
                        group.barrier()
                        raise _interrupted(signum, step, f"batch {taken} of {steps_per_epoch} in epoch {epoch}",
                                           ckpt_path)  # fmt: skip
                train_seconds += time.perf_counter() - start
                total, objective = group.sum(total), group.sum(objective)
                train_loss = total.item() / seen
                _check_finite(train_loss, vae, step, epoch, run_dir, last_good)
                record: dict[str, Any] = {"epoch": epoch, "step": step, "train_loss": train_loss,
                                          "lr": optimizer.param_groups[0]["lr"]}  # fmt: skip
                scheduler.step()  # the rate of the next epoch
                if is_scaled(estimator):  # the kl_weight-scaled objective, beside the bound
                    record["train_objective"] = objective.item() / seen
                    record["kl_weight"] = estimator.current_kl_weight()
                best = False
                if epoch % cfg.test_every == 0 or epoch == cfg.epochs or stopped:
                    with torch.no_grad():
                        record[bound_key(estimator)] = mean_test_bound(
                            estimator, vae, dataset, cfg.eval_batch_size, group=group
                        ).item()
                        if dataset.num_valid:
                            valid = mean_test_bound(estimator, vae, dataset, cfg.eval_batch_size, "valid",
                                                    group).item()  # fmt: skip
                            record["valid_" + bound_key(estimator)[len("test_") :]] = valid
                    if stopper is not None:
                        best = stopper.update(valid, epoch)
                        if stopper.stop:
                            record["early_stopped"] = f"no better validation bound since epoch {stopper.best_epoch}"
                            stopped = True
                record["seconds"] = before + time.perf_counter() - start
                append(metrics, metrics_path, record)
                tracker.log_scalars(record, step=epoch)
                state = {"epoch": epoch, "step": step, "train_seconds": train_seconds, "model": vae.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         **_rng(group)}  # fmt: skip
                if stopper is not None:
                    state["early_stopping"] = stopper.state_dict()
                    if best:  # the model early stopping will evaluate
                        save(state, run_dir / BEST_FILE)
                save(state, ckpt_path)
                last_good = epoch
                if on_epoch is not None:
                    on_epoch(record)
                if after_epoch is not None:
                    after_epoch(record, vae, estimator, dataset)
                if group.any(signals.signum != 0, device):  # it came after the epoch's last step
                    raise _interrupted(signals.signum or signal.SIGTERM, step, f"the end of epoch {epoch}", ckpt_path)
            if group.any(signals.signum != 0, device):  # after the last epoch, or before the first step of a run
                raise _interrupted(signals.signum or signal.SIGTERM, step, "before the evaluation", ckpt_path)

        evaluation = None
        group.barrier()  # rank 0's checkpoints are written
        if stopper is not None and stopper.best_epoch:  # early stopping evaluates the best model
            checkpoint.restore(
                vae, checkpoint.load(run_dir / BEST_FILE, map_location=device)["model"], run_dir / BEST_FILE
            )
        if evaluate and cfg.eval_num_samples > 0:
            from .evaluation.report import evaluate_loaded

            model_epoch = stopper.best_epoch if stopper is not None and stopper.best_epoch else epoch
            evaluation = evaluate_loaded(run_dir, cfg, vae, dataset, progress=progress, model_epoch=model_epoch,
                                         tracker=tracker, step=epoch, group=group)  # fmt: skip
        return TrainResult(run_dir, cfg, vae, metrics, evaluation)
    finally:
        tracker.close()


def distributed_order(n: int, seed: int, epoch: int, device: torch.device) -> torch.Tensor:
    """Epoch ``epoch``'s shuffle under data parallelism, the same on every rank, ``[n]``."""
    g = torch.Generator().manual_seed(distributed.epoch_seed(seed, epoch))
    return torch.randperm(n, generator=g).to(device)


def _rng(group: distributed.Group) -> dict[str, Any]:
    """The RNG state for a checkpoint: this process's, and under data parallelism every rank's."""
    state = checkpoint.rng_state()
    return {"rng": state, "rng_ranks": group.gather_objects(state)} if group.active else {"rng": state}


def _no_save(state: dict[str, Any], path: Path) -> None:
    """A rank other than 0 writes no checkpoint."""


def _keep(metrics: list[dict[str, Any]], path: Path, record: dict[str, Any]) -> None:
    """A rank other than 0 keeps its metrics lines and writes none."""
    metrics.append(record)


def _interrupted(signum: int, step: int, where: str, path: Path) -> TrainingInterrupted:
    name = signal.Signals(signum).name
    return TrainingInterrupted(f"interrupted by {name} at step {step} ({where}); its state is saved in {path}: "
                               "resume the run (--resume) to continue", signum)  # fmt: skip


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The metrics lines; a line torn by a crash mid-write (its epoch has no checkpoint) is skipped."""
    out = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and isinstance(record.get("epoch"), int):
            out.append(record)
    return out


def _append(metrics: list[dict[str, Any]], path: Path, record: dict[str, Any]) -> None:
    metrics.append(record)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
