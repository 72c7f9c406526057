"""What survives a stop: the checkpoint of a run's state, an epoch a signal cut short, the RNG
streams, and which settings a resumed run may change."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from .. import distributed
from ..config import Config, from_dict
from ..errors import CheckpointError, ConfigError
from . import checkpoint
from .directory import RunDir
from .early_stopping import EarlyStopping
from .identity import RESUMABLE, check_same_run
from .parts import Parts, check_config

Notice = Any  # Callable[[str], None] | None


def check_no_run(run: RunDir) -> None:
    """One line if ``run`` holds a run with a checkpoint (a new run would replace it)."""
    if run.checkpoint.exists():
        raise ConfigError(f"{run} already holds a run; resume it (--resume) or choose another --out")


def resolve_config(config: Config | dict[str, Any] | None, run: RunDir, resume: bool) -> tuple[Config, list[str]]:
    """The run's config, checked, and for a resumed run the settings it changes ("epochs 2 -> 5")."""
    given = from_dict(config) if isinstance(config, dict) else config
    if not resume:
        check_no_run(run)
        return check_config(given or Config()), []
    if not run.config.exists():
        raise ConfigError(f"cannot resume: {run} holds no run (no {run.CONFIG}); start one without --resume")
    if not run.checkpoint.exists():
        raise ConfigError(
            f"cannot resume: the run in {run} stopped before its first checkpoint; "
            "start it afresh (the same command without --resume)"
        )
    saved = run.read_config()
    if given is None:
        return check_config(saved), []
    old, new = saved.to_dict(), given.to_dict()
    changed = [k for k, v in new.items() if k not in RESUMABLE and old[k] != v]
    if changed:
        k = changed[0]
        raise ConfigError(
            f"cannot resume with {k}={getattr(given, k)!r}: the run used "
            f"{getattr(saved, k)!r}; a resumed run may change only {', '.join(sorted(RESUMABLE))}"
        )
    return check_config(given), [f"{k} {old[k]} -> {new[k]}" for k in new if old[k] != new[k]]


@dataclass
class PartialEpoch:
    """An epoch a signal cut short: its shuffle, the batches taken, the points seen, the sums so far."""

    order: torch.Tensor
    batches: int
    seen: int
    total: torch.Tensor
    objective: torch.Tensor
    seconds: float

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "order": self.order.cpu(),
            "batches": self.batches,
            "seen": self.seen,
            "total": self.total.cpu(),
            "objective": self.objective.cpu(),
            "seconds": self.seconds,
        }

    @classmethod
    def from_checkpoint(cls, raw: Any, path: Any, n: int, batch_size: int, device: torch.device) -> PartialEpoch:
        """A checkpoint's record, checked against the data (one :class:`CheckpointError` line)."""
        bad = f"checkpoint {path}: its partial epoch"
        keys = ("order", "batches", "seen", "total", "objective", "seconds")
        if not isinstance(raw, dict) or any(k not in raw for k in keys):
            raise CheckpointError(f"{bad} needs {', '.join(keys)}")
        order, batches = raw["order"], raw["batches"]
        if not (
            isinstance(order, torch.Tensor)
            and order.dtype == torch.int64
            and order.shape == (n,)
            and torch.equal(order.sort().values, torch.arange(n, device=order.device))
        ):
            raise CheckpointError(f"{bad}: its order is not a shuffle of the {n} training points")
        if not isinstance(batches, int) or not 0 <= batches <= -(-n // batch_size):
            raise CheckpointError(
                f"{bad}: {batches!r} batches taken does not fit {n} points in batches of {batch_size}"
            )
        if raw["seen"] != min(batches * batch_size, n):
            raise CheckpointError(f"{bad}: {raw['seen']!r} points seen in {batches} batches of {batch_size}")
        for k in ("total", "objective"):
            if not (isinstance(raw[k], torch.Tensor) and raw[k].dim() == 0 and raw[k].is_floating_point()):
                raise CheckpointError(f"{bad}: {k} is not a number")
        if not isinstance(raw["seconds"], (int, float)):
            raise CheckpointError(f"{bad}: seconds is not a number")
        return cls(
            order.to(device),
            batches,
            raw["seen"],
            raw["total"].to(device),
            raw["objective"].to(device),
            float(raw["seconds"]),
        )


@dataclass
class Progress:
    """How far a run has come: epochs and steps done, training time, the metrics lines, and an
    epoch cut short (resumed from its next batch)."""

    epoch: int = 0
    step: int = 0
    train_seconds: float = 0.0
    metrics: list[dict[str, Any]] = field(default_factory=list)
    partial: PartialEpoch | None = None


def rng_streams(ranks: distributed.Ranks) -> dict[str, Any]:
    """The RNG state for a checkpoint: this process's, and under data parallelism every rank's."""
    state = checkpoint.rng_state()
    return {"rng": state, "rng_ranks": ranks.gather_objects(state)} if ranks.active else {"rng": state}


def state_dict(
    parts: Parts,
    progress: Progress,
    ranks: distributed.Ranks,
    stopper: EarlyStopping | None,
    run_id: str,
    partial: PartialEpoch | None = None,
) -> dict[str, Any]:
    """Everything a checkpoint holds: the run's id, the model, optimizer and schedule, where the run
    is, the RNG streams, early stopping, and (mid-epoch) the epoch cut short."""
    assert parts.optimizer is not None and parts.scheduler is not None
    epoch = progress.epoch - 1 if partial is not None else progress.epoch  # mid-epoch: the last whole one
    state = {
        "run_id": run_id,
        "epoch": epoch,
        "step": progress.step,
        "train_seconds": progress.train_seconds,
        "model": parts.vae.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.scheduler.state_dict(),
        **rng_streams(ranks),
    }
    if stopper is not None:
        state["early_stopping"] = stopper.state_dict()
    if partial is not None:
        state["partial"] = partial.to_checkpoint()
    return state


def restore(
    parts: Parts,
    run: RunDir,
    ranks: distributed.Ranks,
    stopper: EarlyStopping | None,
    notice: Notice,
    identity: dict[str, Any] | None,
) -> Progress:
    """The run's state from its checkpoint, into ``parts`` and ``stopper``: everything is checked
    (the run's config file, data and checkpoint against its ``identity``; None for a run written
    before pyrovae recorded one) before the RNG state, the last thing restored."""
    cfg, path, device = parts.config, run.checkpoint, parts.device
    assert parts.optimizer is not None and parts.scheduler is not None
    state = checkpoint.load(path, map_location=device)
    if identity is not None:
        check_same_run(run, identity, cfg, parts.images, state.get("run_id"))
    checkpoint.restore(parts.vae, state["model"], path)
    checkpoint.restore_optimizer(parts.optimizer, state["optimizer"], path)
    epoch, step = state["epoch"], state["step"]
    if cfg.epochs < epoch:
        raise ConfigError(
            f"cannot resume with epochs={cfg.epochs}: the run has done {epoch}; give --epochs {epoch} or more"
        )
    checkpoint.restore_scheduler(parts.scheduler, state.get("scheduler"), epoch, cfg.lr_schedule, path)
    if stopper is not None and epoch > 0:
        stopper.load_state_dict(state.get("early_stopping"), str(path))
    train_seconds = state.get("train_seconds", 0.0)
    if not isinstance(train_seconds, (int, float)):
        raise CheckpointError(f"checkpoint {path}: train_seconds is not a number")
    raw = state.get("partial")
    n = parts.dataset.num_train
    partial = None if raw is None else PartialEpoch.from_checkpoint(raw, path, n, cfg.batch_size, device)
    _restore_rng(state, path, cfg, ranks, epoch, partial, notice)
    return Progress(epoch, step, float(train_seconds), run.read_metrics(last_epoch=epoch), partial)


def _restore_rng(
    state: dict[str, Any],
    path: Any,
    cfg: Config,
    ranks: distributed.Ranks,
    epoch: int,
    partial: PartialEpoch | None,
    notice: Notice,
) -> None:
    """This rank's RNG stream; a data-parallel run resumed mid-epoch with another number of
    processes draws new noise for the rest of that epoch (and says so)."""
    streams: Any = state.get("rng_ranks")  # a data-parallel run's streams, one a rank (checked below)
    own_stream = ranks.active and isinstance(streams, list) and len(streams) == ranks.world
    checkpoint.set_rng_state(streams[ranks.rank] if own_stream else state["rng"], path)
    if partial is not None and ranks.active and not own_stream:  # another number of processes
        torch.manual_seed(distributed.rank_seed(cfg.seed, epoch + 1, ranks.rank, partial.batches))
        if notice is not None:
            had = len(streams) if isinstance(streams, list) else 1
            notice(
                f"resuming mid-epoch with {ranks.world} processes where the checkpoint had {had}: the rest "
                f"of epoch {epoch + 1} draws new noise"
            )
