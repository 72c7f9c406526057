"""Checkpoints: written atomically, holding only tensors and plain containers.

A checkpoint loads with ``torch.load(path, weights_only=True)``: model and optimizer state
dicts, RNG states as uint8 tensors, and numbers. It is written to a temporary file in the same
folder, flushed to disk and renamed over the old one, so a crash mid-save leaves the previous
checkpoint whole (and at worst a ``<name>.<random>.tmp`` file, which :func:`~pyrovae.run.atomic.remove_partial`
clears). Everything read back is checked before it is used: a file that is not a whole pyrovae
checkpoint is one :class:`CheckpointError` line, never a traceback, and never code run.
"""

from __future__ import annotations

import math
import pickle
import re
import shutil
import zipfile
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, ConfigError
from .atomic import write_atomic

FORMAT = 1
# what every checkpoint pyrovae writes holds; "train_seconds" and "partial" (an epoch cut short
# by a signal) may be there too
REQUIRED: dict[str, type] = {"epoch": int, "step": int, "model": dict, "optimizer": dict, "rng": dict}
# optimizer settings that follow the device, not the run: a resumed run may change device
IMPLEMENTATION = {"params", "foreach", "fused", "capturable", "differentiable"}


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], path: str | Path = "the checkpoint") -> None:
    """Restore :func:`rng_state`'s RNG states; a state that is not one raises :class:`CheckpointError`."""
    cpu = state.get("torch")
    own = torch.get_rng_state()
    if not isinstance(cpu, torch.Tensor) or cpu.dtype != torch.uint8 or cpu.shape != own.shape:
        raise CheckpointError(f"checkpoint {path}: its RNG state is not torch's ({own.numel()} bytes as uint8)")
    cuda = state.get("cuda", [])
    if not isinstance(cuda, (list, tuple)) or not all(
        isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in cuda
    ):
        raise CheckpointError(f"checkpoint {path}: its CUDA RNG state is not a list of uint8 tensors")
    try:
        torch.set_rng_state(cpu.cpu())
        if cuda and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
    except (RuntimeError, ValueError, TypeError, IndexError) as e:
        raise CheckpointError(f"checkpoint {path}: its RNG state cannot be restored: {_first_line(e)}") from e


def save(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` to ``path`` atomically: the old file stays whole until the rename. A write
    that fails (a full disk) is one line that names the file; the previous checkpoint is kept."""
    try:
        write_atomic(path, lambda f: torch.save({"format": FORMAT, **obj}, f))
    except RuntimeError as e:  # torch's writer reports a failed write this way ("unexpected pos ...")
        full = shutil.disk_usage(Path(path).parent).free < 2**20
        why = "the disk is full" if full else _first_line(e)
        raise CheckpointError(f"cannot write the checkpoint {path}: {why}; the previous one is intact") from e


def load(path: str | Path, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True``; a missing, truncated, foreign or incomplete
    file raises :class:`CheckpointError` with one line saying which."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message goes on to suggest weights_only=False: never for a file that may be hostile
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise CheckpointError(
                f"checkpoint {path} holds a Python object ({found.group(1)}) besides tensors and plain containers: "
                "pyrovae did not write it, and does not load such files"
            ) from e
        raise CheckpointError(
            f"checkpoint {path} is unreadable (truncated, corrupt or not pyrovae's): {_unpickling_detail(e)}"
        ) from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt): {_first_line(e)}") from e
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a pyrovae checkpoint (format {FORMAT})")
    missing = [k for k in REQUIRED if k not in obj]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}: it is not a whole pyrovae checkpoint")
    for key, kind in REQUIRED.items():
        value = obj[key]
        if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, int) and value < 0):
            raise CheckpointError(f"checkpoint {path}: {key} is {_short(value)}, not {_WORDS[kind]}")
    return obj


_WORDS = {int: "an integer >= 0", dict: "a table"}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"


def _unpickling_detail(e: BaseException) -> str:
    """What the safe unpickler stopped at, without torch's advice around it (which names
    ``weights_only=False``: not for a file that may be hostile)."""
    advice = (
        "weights_only",
        "Weights only load failed",
        "Check the documentation",
        "Please file an issue",
        "safe_globals",
        "trusted source",
    )
    lines = [line.strip() for line in str(e).splitlines()]
    kept = [line for line in lines if line and not any(a in line for a in advice)]
    return kept[0] if kept else "the safe loader refused it"


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def restore(module: torch.nn.Module, state_dict: dict[str, Any], path: str | Path) -> None:
    """``module.load_state_dict(state_dict)``; a checkpoint written for another architecture (a
    changed config, or an older pyrovae) raises :class:`CheckpointError` with one line."""
    own = module.state_dict()
    unexpected, shapes = [], []
    for key, value in state_dict.items():
        if key not in own:
            unexpected.append(str(key))
        elif not isinstance(value, torch.Tensor):
            shapes.append(f"{key} is {_short(value)}")
        elif own[key].shape != value.shape:
            shapes.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
    missing = [key for key in own if key not in state_dict]
    if missing or unexpected or shapes:
        found = (("missing", missing), ("unexpected", unexpected), ("shape", shapes))
        parts = [f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for label, keys in found if keys]
        raise CheckpointError(
            f"checkpoint {path} does not fit this run's model (written by another config or "
            f"pyrovae version): {'; '.join(parts)}"
        )
    module.load_state_dict(state_dict)


def restore_optimizer(optimizer: torch.optim.Optimizer, state: dict[str, Any], path: str | Path) -> None:
    """``optimizer.load_state_dict(state)`` once ``state`` is seen to fit: the same parameter
    groups and sizes, the same settings (lr, betas, ...), and per-parameter moments shaped like
    their parameters (Adam's). Anything else raises :class:`CheckpointError` with one line."""
    own = optimizer.state_dict()
    groups, per_param = state.get("param_groups"), state.get("state")
    misfit = f"checkpoint {path}: its optimizer state does not fit this run's model"
    if not isinstance(groups, list) or not isinstance(per_param, dict) or len(groups) != len(own["param_groups"]):
        raise CheckpointError(f"{misfit} (no param_groups and state, or another number of groups)")
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for saved, mine in zip(groups, own["param_groups"], strict=True):
        if not isinstance(saved, dict) or not isinstance(saved.get("params"), list):
            raise CheckpointError(f"{misfit} (a parameter group without params)")
        if len(saved["params"]) != len(mine["params"]):
            raise CheckpointError(f"{misfit} ({len(saved['params'])} parameters, this run has {len(mine['params'])})")
        if sorted(map(str, saved["params"])) != sorted(map(str, mine["params"])):
            raise CheckpointError(f"{misfit} (its parameters are numbered otherwise)")
        scheduled = {"lr"} if "initial_lr" in saved and "initial_lr" in mine else set()  # the schedule's now
        if scheduled and not (type(saved["lr"]) is float and math.isfinite(saved["lr"]) and saved["lr"] >= 0):
            raise CheckpointError(f"checkpoint {path}: its optimizer has lr={_short(saved['lr'])}, not a learning rate")
        for key in sorted(set(saved) & set(mine) - IMPLEMENTATION - scheduled):
            if type(saved[key]) is not type(mine[key]) or saved[key] != mine[key]:
                raise CheckpointError(
                    f"checkpoint {path}: its optimizer has {key}={_short(saved[key])}, "
                    f"this run's config gives {mine[key]!r}"
                )
    for index, moments in per_param.items():
        if not isinstance(index, int) or not 0 <= index < len(params) or not isinstance(moments, dict):
            raise CheckpointError(f"{misfit} (state for a parameter {_short(index)} it does not have)")
        for key, value in moments.items():
            if key == "step":  # a count: a number or a 0-dim tensor
                number = isinstance(value, (int, float)) and not isinstance(value, bool)
                ok = number or (isinstance(value, torch.Tensor) and value.dim() == 0)
            else:  # a moment: shaped like its parameter
                ok = isinstance(value, torch.Tensor) and value.shape == params[index].shape
            if not ok:
                shown = tuple(value.shape) if isinstance(value, torch.Tensor) else _short(value)
                raise CheckpointError(
                    f"{misfit} ({key} of parameter {index} is {shown}, the parameter {tuple(params[index].shape)})"
                )
    try:
        optimizer.load_state_dict(state)
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
        raise CheckpointError(f"{misfit}: {_first_line(e)}") from e


def restore_scheduler(
    scheduler: torch.optim.lr_scheduler.LambdaLR, state: Any, epoch: int, name: str, path: str | Path
) -> None:
    """Put the learning-rate schedule back where the checkpoint left it: after ``epoch`` completed
    epochs. A checkpoint written before schedules existed holds none and fits a constant rate only;
    a state that does not fit raises :class:`CheckpointError` with one line."""
    if state is None:
        if name != "constant":
            raise CheckpointError(f"checkpoint {path} holds no learning-rate schedule; this run's is {name!r}")
        for _ in range(epoch):
            scheduler.step()
        return
    own = scheduler.state_dict()
    if not isinstance(state, dict) or state.get("last_epoch") != epoch:
        raise CheckpointError(f"checkpoint {path}: its learning-rate schedule is not at epoch {epoch}")
    for key, value in own.items():  # each entry of the type the schedule keeps there (the step reads them)
        saved = state.get(key)
        same = type(saved) is type(value)
        if same and isinstance(saved, list) and isinstance(value, list):
            same = all(type(a) is type(b) for a, b in zip(saved, value, strict=False))
        if key in state and not same:
            raise CheckpointError(
                f"checkpoint {path}: its learning-rate schedule's {key} is {_short(saved)}, "
                f"not {type(value).__name__} as a schedule keeps it"
            )
    if state.get("base_lrs") != own["base_lrs"]:
        raise CheckpointError(
            f"checkpoint {path}: its schedule starts at lr {_short(state.get('base_lrs'))}, "
            f"this run's config gives {own['base_lrs']}"
        )
    try:
        scheduler.load_state_dict(state)
    except (KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"checkpoint {path}: its learning-rate schedule: {_first_line(e)}") from e
    # the optimizer's rates (restored before) must be the schedule's at that epoch
    due = [base * fn(epoch) for base, fn in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)]
    now = [group["lr"] for group in scheduler.optimizer.param_groups]
    if any(not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-15) for a, b in zip(now, due, strict=True)):
        if name == "cosine":  # its length is the run's epochs: another --epochs is another schedule
            raise ConfigError(
                f"lr_schedule 'cosine' decays to 0 over the run's epochs, so resuming with another number of "
                f"epochs would change the rate of every epoch after {epoch}; resume with the run's own --epochs"
            )
        raise CheckpointError(
            f"checkpoint {path}: its optimizer's learning rate {now[0]!r} is not its schedule's "
            f"{due[0]!r} after epoch {epoch}"
        )
