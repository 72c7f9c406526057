"""Where runs show up: TensorBoard and MLflow, optional extras chosen by ``tracking`` in the config.

``open_tracker(cfg, run_dir, resume)`` gives the run's :class:`~pyrovae.tracking.base.Tracker`:
``log_scalars`` (losses, bounds, KL, active units, SNR), ``log_image`` (sample and reconstruction
grids) and ``log_config``. ``tracking = ""`` (the default) tracks nothing; a tracker whose extra
is not installed refuses in one line that names the pip command.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ConfigError
from ..network import check_reachable
from .base import NullTracker, Tracker
from .mlflow import MLflowTracker
from .tensorboard import TensorBoardTracker

TRACKERS = ("", "tensorboard", "mlflow")
EXTRAS = {"tensorboard": ("tensorboard", "tensorboard"), "mlflow": ("mlflow", "mlflow")}  # name: (module, extra)


def check(name: str, uri: str = "") -> None:
    """One line unless ``name`` is a tracker whose package is installed and ``uri`` a place it can
    write to: a folder (not a file) for TensorBoard; for MLflow, a server that answers within a few
    seconds (checked before the run writes anything)."""
    if name not in TRACKERS:
        raise ConfigError(f'unknown tracking {name!r}; valid: none (""), {", ".join(t for t in TRACKERS if t)}')
    if not name:
        return
    module, extra = EXTRAS[name]
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f'tracking = "{name}" needs {module}, an optional extra: pip install "pyrovae[{extra}]"')
    if name == "tensorboard" and uri and (Path(uri).is_file() or Path(uri).is_symlink() and not Path(uri).exists()):
        raise ConfigError(f"tracking_uri {uri} is a file, not a folder for TensorBoard's event files")
    if name == "mlflow" and uri.startswith(("http://", "https://")):
        check_reachable(uri, "MLflow tracking server", default_port=443 if uri.startswith("https") else 80)


def open_tracker(
    name: str, run_dir: Path, *, uri: str = "", resume: bool = False, experiment: str = "pyrovae"
) -> Tracker:
    """The tracker ``name`` for the run in ``run_dir`` (see the module docstring)."""
    check(name)
    if name == "tensorboard":
        return TensorBoardTracker(Path(uri) if uri else run_dir / "tensorboard")
    if name == "mlflow":
        return MLflowTracker(run_dir, uri=uri, resume=resume, experiment=experiment)
    return NullTracker()


__all__ = ["TRACKERS", "NullTracker", "Tracker", "check", "open_tracker"]
