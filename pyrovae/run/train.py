"""Training a VAE from a Config: the function under ``pyrovae train``.

:func:`train` checks everything, assembles the run's parts and hands them to :class:`Training`,
whose :meth:`~Training.loop` is the whole training loop on one screen; each name it calls does
one thing of a step or an epoch (data-parallel reduction, signals, checkpoints, the epoch's line).
"""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from tqdm.auto import tqdm

from .. import distributed, estimators, tracking
from ..config import Config
from ..data import InMemoryData
from ..errors import ConfigError, TrainingDiverged
from ..vae import VAE
from . import checkpoint
from .directory import RunDir
from .early_stopping import EarlyStopping
from .evaluate import Scored, evaluate_parts
from .identity import new_identity, read_identity, write_identity
from .parts import Parts, assemble, check_data_parallel, resolve_device
from .signals import StopSignals, interrupted
from .state import PartialEpoch, Progress, check_no_run, resolve_config, restore, state_dict
from .step import make_step, step_path

AfterEpoch = Callable[[dict[str, Any], VAE, pyro.infer.ELBO, InMemoryData], None]


@dataclass
class TrainResult:
    run_dir: Path
    config: Config
    vae: VAE
    metrics: list[dict[str, Any]]
    evaluation: dict[str, Any] | None
    parts: Parts


@dataclass
class Hooks:
    """What a caller hears: ``on_epoch(record)`` each epoch's metrics line; ``after_epoch(record,
    vae, estimator, dataset)`` may measure the model after the checkpoint is written; ``notice(line)``
    which step training takes and, on resume, where it resumes."""

    progress: bool = False
    on_epoch: Callable[[dict[str, Any]], None] | None = None
    after_epoch: AfterEpoch | None = None
    notice: Callable[[str], None] | None = None


def train(
    config: Config | dict[str, Any] | None = None,
    out: str | Path = "runs/default",
    *,
    resume: bool = False,
    progress: bool = False,
    evaluate: bool = True,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    after_epoch: AfterEpoch | None = None,
    notice: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train a VAE on ``config``'s data with Adam, writing a run directory ``out``.

    The run directory holds ``config.toml`` (the resolved config), ``metrics.jsonl`` (one line
    an epoch: train loss, test bound, seconds), ``checkpoint.pt`` (written atomically after every
    epoch) and, after training, ``evaluation.json`` and PNG grids (see
    :func:`pyrovae.run.evaluate_run`). ``resume=True`` continues the run in ``out`` from its
    checkpoint; ``config`` may then only raise ``epochs`` (and change device or evaluation
    settings). Losses are read from the device, and checked for NaN, every ``log_every`` steps
    and at the end of each epoch, never at every step. ``max_steps`` and ``max_seconds`` end
    training early, mid-epoch if need be (that last epoch's line covers the data it saw).
    ``on_epoch``, ``after_epoch`` and ``notice``: see :class:`Hooks`.

    Nothing is written before the config, the data, the model and (on resume) the checkpoint have
    all been checked, so a bad input leaves the run directory as it was. SIGINT and SIGTERM during
    training write a checkpoint of the state after the current step (mid-epoch: the epoch's
    shuffle and sums so far come with it) and raise :class:`~pyrovae.TrainingInterrupted`;
    resuming from it gives the same numbers as a run never stopped.
    """
    run = RunDir(out)
    run.check_owned()  # a folder pyrovae did not make: one line, before anything is read
    ranks = distributed.ONE_PROCESS
    try:
        if distributed.is_main_process() and run.path.is_dir():
            run.lock()  # no other writer, from before anything of the run is read
        cfg, changes = resolve_config(config, run, resume)
        device = resolve_device(cfg.device)
        tracking.check(cfg.tracking, cfg.tracking_uri)  # a missing extra, a server out of reach: before any write
        ranks = distributed.from_env(device)  # launched by torchrun: this process's rank
        if ranks.active and device.type == "cuda":
            device = torch.device("cuda", ranks.local_rank)
        hooks = Hooks(progress, on_epoch, after_epoch, notice) if ranks.is_main else Hooks(after_epoch=after_epoch)
        training = Training.start(cfg, run, device, ranks, resume, changes, hooks)
        try:
            with training:
                training.loop()
            return training.finish(evaluate)
        finally:
            training.tracker.close()
    finally:
        run.unlock()
        distributed.shutdown(ranks)


@dataclass
class Epoch:
    """One epoch under way: its shuffle, batches taken, points seen, the summed negated bound and
    kl-weighted objective (device tensors), and seconds before a resume."""

    number: int
    order: torch.Tensor
    batches_done: int
    seen: int
    total: torch.Tensor
    objective: torch.Tensor
    before: float
    start: float

    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start


class Training:
    """One run's training: its parts, where it is, and what each step and epoch does."""

    def __init__(
        self,
        parts: Parts,
        run: RunDir,
        ranks: distributed.Ranks,
        progress: Progress,
        stopper: EarlyStopping | None,
        hooks: Hooks,
        run_id: str,
    ) -> None:
        self.parts, self.cfg, self.run, self.ranks = parts, parts.config, run, ranks
        self.progress, self.stopper, self.hooks, self.run_id = progress, stopper, hooks, run_id
        self.resumed = bool(progress.step or progress.epoch or progress.metrics or progress.partial)
        self.n = parts.dataset.num_train
        self.steps_per_epoch = -(-self.n // self.cfg.batch_size)
        self.step = make_step(parts.estimator, parts.vae, self.n, self.cfg.compile)
        self.tracker: tracking.Tracker = tracking.NullTracker()
        self.signals = StopSignals()
        self.last_good = progress.epoch
        # a resumed run may have no budget left
        self.stopped = bool(self.cfg.max_steps and progress.step >= self.cfg.max_steps) or bool(
            self.cfg.max_seconds and progress.train_seconds >= self.cfg.max_seconds
        )
        total = self.cfg.epochs * self.steps_per_epoch
        total = min(total, self.cfg.max_steps) if self.cfg.max_steps else total
        self.bar = tqdm(total=total, initial=progress.step, disable=not hooks.progress, unit="step", dynamic_ncols=True)

    @classmethod
    def start(
        cls,
        cfg: Config,
        run: RunDir,
        device: torch.device,
        ranks: distributed.Ranks,
        resume: bool,
        changes: list[str],
        hooks: Hooks,
    ) -> Training:
        """Assemble and check everything, restore a resumed run, then write the run directory's
        first files: nothing is written before every input is seen to be good."""
        parts = assemble(cfg, device)
        if ranks.active:
            check_data_parallel(parts.estimator)
        if cfg.patience and parts.dataset.num_valid == 0:
            raise ConfigError(
                f"patience={cfg.patience} stops on a validation bound, and {parts.images.source} has no "
                "validation set: hold some training points out with validation = N"
            )
        stopper = EarlyStopping(cfg.patience) if cfg.patience else None
        identity = read_identity(run) if resume else None
        progress = restore(parts, run, ranks, stopper, hooks.notice, identity) if resume else Progress()
        if identity is None:  # a new run, or one written before pyrovae recorded what defines a run
            identity = new_identity(cfg, parts.images)
            if resume and hooks.notice is not None:
                hooks.notice(f"{run} has no {run.IDENTITY} (an older pyrovae wrote it): recording it now")
        training = cls(parts, run, ranks, progress, stopper, hooks, identity["run_id"])
        training.resumed = resume
        if ranks.is_main:  # the first write: the run directory, made, locked, marked as pyrovae's
            run.create()
            if not resume:  # checked again under the lock: another process may have run here since
                check_no_run(run)
            run.remove_partial_files()
        training.announce(resume, changes)
        if ranks.is_main:
            run.write_config(cfg)
            write_identity(run, identity)
            run.write_metrics(progress.metrics)
            training.tracker = tracking.open_tracker(cfg.tracking, run.path, uri=cfg.tracking_uri, resume=resume)
            training.tracker.log_config(cfg.to_dict(), run.config.read_text())
        return training

    def loop(self) -> None:
        """The training loop."""
        p, optimizer = self.progress, self.parts.optimizer
        assert optimizer is not None
        if not self.resumed:
            self.record(self.starting_line())  # where the curve starts: the untrained model's test bound
        while p.epoch < self.cfg.epochs and not self.stopped:
            epoch = self.begin_epoch()
            for x in self.batches(epoch):
                optimizer.zero_grad(set_to_none=True)
                loss = self.step(x) if x.shape[0] else epoch.total.new_zeros(())  # a rank may get no point
                flags = self.reduce_gradients(x, epoch)  # data parallel: the global batch's gradient
                optimizer.step()
                self.count(epoch, x, loss)
                signum, out_of_time = self.stop_requests(flags, epoch)
                if p.step % self.cfg.log_every == 0:
                    self.log_step(epoch)  # the one host sync: the loss read, the NaN check
                if (self.cfg.max_steps and p.step >= self.cfg.max_steps) or out_of_time:
                    self.stopped = True
                    break
                if signum:
                    self.save_mid_epoch(epoch, signum)  # and raise TrainingInterrupted
            self.end_epoch(epoch)
            self.raise_if_signalled(f"the end of epoch {p.epoch}")
        self.raise_if_signalled("before the evaluation")

    # -- an epoch ----------------------------------------------------------------------------------
    def begin_epoch(self) -> Epoch:
        """The next epoch: its shuffle (or the rest of one a signal cut short) and empty sums."""
        p, device = self.progress, self.parts.device
        p.epoch += 1
        start = time.perf_counter()
        if p.partial is not None:
            cut, p.partial = p.partial, None
            total, objective = cut.total, cut.objective
            if not self.ranks.is_main:  # the saved sums are every rank's: rank 0 carries them on
                total, objective = torch.zeros_like(total), torch.zeros_like(objective)
            epoch = Epoch(p.epoch, cut.order, cut.batches, cut.seen, total, objective, cut.seconds, start)
        else:
            if self.ranks.active:  # one shuffle for every rank; each rank's own noise this epoch
                order = distributed.epoch_order(self.n, self.cfg.seed, p.epoch, device)
                torch.manual_seed(distributed.rank_seed(self.cfg.seed, p.epoch, self.ranks.rank))
            else:
                order = self.parts.dataset.epoch_order()
            zero = torch.zeros((), device=device)
            epoch = Epoch(p.epoch, order, 0, 0, zero, zero.clone(), 0.0, start)
        if isinstance(self.parts.estimator, estimators.Estimator):  # the KL schedule's clock, set again on resume
            self.parts.estimator.num_steps, self.parts.estimator.epoch = p.step, p.epoch - 1
        return epoch

    def batches(self, epoch: Epoch) -> Iterator[torch.Tensor]:
        return self.parts.dataset.train_batches(
            self.cfg.batch_size, order=epoch.order, start=epoch.batches_done, shard=self.ranks.shard
        )

    def global_batch(self, epoch: Epoch) -> int:
        """The points of the step under way, every rank's together."""
        return min(self.cfg.batch_size, self.n - epoch.batches_done * self.cfg.batch_size)

    def count(self, epoch: Epoch, x: torch.Tensor, loss: torch.Tensor) -> None:
        """Add a step to the epoch's sums (on the device: no host sync)."""
        share = x.shape[0] / self.n
        epoch.total += loss.to(epoch.total.device) * share  # the batch's own negated bound sum
        estimator = self.parts.estimator
        if isinstance(estimator, estimators.Estimator) and estimator.last_objective is not None:
            epoch.objective -= estimator.last_objective * share
            estimator.last_objective = None
        epoch.seen += self.global_batch(epoch)
        epoch.batches_done += 1
        self.progress.step += 1
        self.bar.update()

    def end_epoch(self, epoch: Epoch) -> None:
        """The epoch's line (train loss, test bound, early stopping), the checkpoint, the callbacks."""
        p = self.progress
        p.train_seconds += time.perf_counter() - epoch.start
        total, objective = self.ranks.sum(epoch.total), self.ranks.sum(epoch.objective)
        record: dict[str, Any] = {"epoch": p.epoch, "step": p.step, "train_loss": total.item() / epoch.seen}
        self.check_finite(record["train_loss"], "")
        assert self.parts.optimizer is not None and self.parts.scheduler is not None
        record["lr"] = self.parts.optimizer.param_groups[0]["lr"]
        self.parts.scheduler.step()  # the rate of the next epoch
        record.update(self.scaled_objective(objective, epoch.seen))
        best = (
            self.measure(record)
            if p.epoch % self.cfg.test_every == 0 or p.epoch == self.cfg.epochs or self.stopped
            else False
        )
        record["seconds"] = epoch.elapsed()
        self.record(record)
        self.save_checkpoint(best)
        if self.hooks.on_epoch is not None:
            self.hooks.on_epoch(record)
        if self.hooks.after_epoch is not None:
            self.hooks.after_epoch(record, self.parts.vae, self.parts.estimator, self.parts.dataset)

    def measure(self, record: dict[str, Any]) -> bool:
        """The test (and validation) bound into ``record``; early stopping's verdict. True when this
        epoch's model is the best so far."""
        with torch.no_grad():
            record[bound_key(self.parts.estimator)] = self.test_bound("test").item()
            if self.parts.dataset.num_valid:
                valid = self.test_bound("valid").item()
                record["valid_" + bound_key(self.parts.estimator)[len("test_") :]] = valid
        if self.stopper is None:
            return False
        best = self.stopper.update(valid, self.progress.epoch)
        if self.stopper.stop:
            record["early_stopped"] = f"no better validation bound since epoch {self.stopper.best_epoch}"
            self.stopped = True
        return best

    def scaled_objective(self, objective: torch.Tensor, seen: int) -> dict[str, Any]:
        """The kl_weight-scaled objective beside the bound, for an estimator whose gradient follows one."""
        est = self.parts.estimator
        if not isinstance(est, estimators.Estimator) or (est.kl_weight == 1.0 and est.kl_warmup == 0):
            return {}
        return {"train_objective": objective.item() / seen, "kl_weight": est.current_kl_weight()}

    def starting_line(self) -> dict[str, Any]:
        start = time.perf_counter()
        with torch.no_grad():
            bound = self.test_bound("test").item()
        return {"epoch": 0, "step": 0, bound_key(self.parts.estimator): bound, "seconds": time.perf_counter() - start}

    def test_bound(self, part: str) -> torch.Tensor:
        return mean_bound(
            self.parts.estimator, self.parts.vae, self.parts.dataset, self.cfg.eval_batch_size, part, self.ranks
        )

    def record(self, record: dict[str, Any]) -> None:
        """A metrics line: kept, appended to metrics.jsonl (rank 0) and tracked."""
        self.progress.metrics.append(record)
        if self.ranks.is_main:
            self.run.append_metrics(record)
        self.tracker.log_scalars(record, step=record["epoch"])

    # -- data parallelism, signals, checkpoints ----------------------------------------------------
    def reduce_gradients(self, x: torch.Tensor, epoch: Epoch) -> torch.Tensor | None:
        """Data parallel: the global batch's gradient on every rank, in one all-reduce that also
        carries each rank's stop flags (a signal, time out); None in one process."""
        if not self.ranks.active:
            return None
        flags = [float(self.signals.signum != 0), float(self.out_of_time(epoch))]
        return self.ranks.reduce_gradients(self.parts.vae.parameters(), x.shape[0] / self.global_batch(epoch), flags)

    def out_of_time(self, epoch: Epoch) -> bool:
        seconds = self.progress.train_seconds + time.perf_counter() - epoch.start
        return bool(self.cfg.max_seconds and seconds >= self.cfg.max_seconds)

    def stop_requests(self, flags: torch.Tensor | None, epoch: Epoch) -> tuple[int, bool]:
        """(the signal to stop for, 0 if none; whether the time budget is spent). Data-parallel
        ranks act together on the all-reduced flags, read where it costs nothing (a CPU tensor)
        or at a logging step."""
        if flags is None:
            return self.signals.signum, self.out_of_time(epoch)
        free_to_read = (
            flags.device.type == "cpu"
            or self.progress.step % self.cfg.log_every == 0
            or epoch.batches_done == self.steps_per_epoch
        )
        signal_flag, time_flag = flags.tolist() if free_to_read else (0.0, 0.0)
        return (self.signals.signum or signal.SIGTERM) if signal_flag else 0, time_flag > 0

    def log_step(self, epoch: Epoch) -> None:
        value = self.ranks.sum(epoch.total).item()
        self.check_finite(value, f"{value / epoch.seen:.2f}")

    def check_finite(self, value: float, shown: str) -> None:
        """Stop with :class:`TrainingDiverged` once the loss or a parameter is NaN or infinite."""
        bad = not math.isfinite(value) or not all(torch.isfinite(p).all() for p in self.parts.vae.parameters())
        if bad:
            kept = (
                f"the last good checkpoint (epoch {self.last_good}) is intact at {self.run.checkpoint}"
                if self.last_good > 0
                else "no checkpoint had been written yet"
            )
            raise TrainingDiverged(
                f"the loss or a parameter became NaN or infinite by step {self.progress.step} "
                f"(epoch {self.progress.epoch}); training stopped and {kept}"
            )
        if shown:
            self.bar.set_postfix(epoch=self.progress.epoch, loss=shown)

    def save_checkpoint(self, best: bool) -> None:
        if self.ranks.is_main:
            state = state_dict(self.parts, self.progress, self.ranks, self.stopper, self.run_id)
            if best:  # the model early stopping will evaluate
                checkpoint.save(state, self.run.best)
            checkpoint.save(state, self.run.checkpoint)
        else:
            state_dict(self.parts, self.progress, self.ranks, self.stopper, self.run_id)  # every rank: the RNG gather
        self.last_good = self.progress.epoch

    def save_mid_epoch(self, epoch: Epoch, signum: int) -> None:
        """The state after this step, mid-epoch (its shuffle and sums come with it); then stop."""
        total, objective = self.ranks.sum(epoch.total), self.ranks.sum(epoch.objective)
        self.check_finite(total.item(), "")
        self.progress.train_seconds += time.perf_counter() - epoch.start
        cut = PartialEpoch(epoch.order, epoch.batches_done, epoch.seen, total, objective, epoch.elapsed())
        state = state_dict(self.parts, self.progress, self.ranks, None, self.run_id, cut)
        if self.ranks.is_main:
            checkpoint.save(state, self.run.checkpoint)
        self.ranks.barrier()
        where = f"batch {epoch.batches_done} of {self.steps_per_epoch} in epoch {epoch.number}"
        raise interrupted(signum, self.progress.step, where, self.run.checkpoint)

    def raise_if_signalled(self, where: str) -> None:
        if self.ranks.any(self.signals.signum != 0, self.parts.device):
            raise interrupted(self.signals.signum or signal.SIGTERM, self.progress.step, where, self.run.checkpoint)

    # -- around the loop ---------------------------------------------------------------------------
    def announce(self, resume: bool, changes: list[str]) -> None:
        notice, p = self.hooks.notice, self.progress
        if notice is None:
            return
        if resume:
            where = f"in epoch {p.epoch + 1} at batch {p.partial.batches}" if p.partial else f"after epoch {p.epoch}"
            notice(f"resuming {self.run} {where} (step {p.step})" + (f"; {', '.join(changes)}" if changes else ""))
        notice(step_path(self.parts.estimator, self.parts.vae, self.cfg.compile))
        if self.ranks.active:
            notice(f"data parallel: {self.ranks.world} processes, {self.cfg.batch_size} points a step in all")

    def __enter__(self) -> Training:
        self._contexts = [
            pyro.settings.context(module_local_params=True),
            pyro.validation_enabled(False),
            self.signals,
            self.bar,
        ]
        for c in self._contexts:
            c.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for c in reversed(self._contexts):
            c.__exit__(*exc)

    def finish(self, evaluate: bool) -> TrainResult:
        """Evaluate the model the run reports (under early stopping, the best one)."""
        self.ranks.barrier()  # rank 0's checkpoints are written
        scored = Scored(self.run.CHECKPOINT, self.progress.epoch)
        if self.stopper is not None and self.stopper.best_epoch:
            best = checkpoint.load(self.run.best, map_location=self.parts.device)["model"]
            checkpoint.restore(self.parts.vae, best, self.run.best)
            scored = Scored(self.run.BEST, self.stopper.best_epoch)
        evaluation = None
        if evaluate and self.cfg.eval_num_samples > 0:
            evaluation = evaluate_parts(
                self.run,
                self.parts,
                progress=self.hooks.progress,
                scored=scored,
                tracker=self.tracker,
                step=self.progress.epoch,
                ranks=self.ranks,
            )
        return TrainResult(self.run.path, self.cfg, self.parts.vae, self.progress.metrics, evaluation, self.parts)


BOUND_KEYS = ("test_bound", "test_estimate", "test_objective")  # what bound_key may call the test value


def bound_key(estimator: pyro.infer.ELBO) -> str:
    """Never call a value a bound that is not one: an estimate of log p(x) (JVI, SUMO: they say
    what they are in ``what``) is "test_estimate", Renyi with alpha < 0 "test_objective"."""
    if getattr(estimator, "reports_bound", True):
        return "test_bound"
    return "test_estimate" if hasattr(estimator, "what") else "test_objective"


def mean_bound(
    estimator: pyro.infer.ELBO,
    vae: VAE,
    dataset: InMemoryData,
    batch_size: int,
    part: str = "test",
    ranks: distributed.Ranks = distributed.ONE_PROCESS,
) -> torch.Tensor:
    """The estimator's bound averaged over the test (or ``part="valid"``, validation) set, as a
    device tensor (no sync for pyrovae's estimators; Pyro's own report a float per batch). Under
    data parallelism each rank scores its shard of the points and the sums are added."""
    points = dataset.test if part == "test" else dataset.valid
    assert points is not None
    total = torch.zeros((), device=dataset.device)
    if ranks.active:
        batches = points[ranks.shard(torch.arange(points.shape[0], device=points.device))].split(batch_size)
    else:
        batches = dataset.test_batches(batch_size) if part == "test" else dataset.valid_batches(batch_size)
    for x in batches:
        if x.shape[0] == 0:  # a rank without a point of a small set
            continue
        if isinstance(estimator, estimators.Estimator):
            total += estimator.bound(vae.model, vae.guide, x).sum()
        else:
            # pyro's ELBO base class declares no loss; every Pyro estimator defines it
            total -= estimator.loss(vae.model, vae.guide, x)  # type: ignore[attr-defined]
    return ranks.sum(total) / points.shape[0]
