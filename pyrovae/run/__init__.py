"""A run: the only code that reads a Config or a run directory.

- :mod:`~pyrovae.run.parts`: a run's parts assembled from a Config (data, model, estimator,
  optimizer, schedule), and the config's checks;
- :mod:`~pyrovae.run.directory`: the run directory, every file name in it, its one atomic write
  (:mod:`~pyrovae.run.atomic`) and the metrics log;
- :mod:`~pyrovae.run.state`, :mod:`~pyrovae.run.checkpoint`, :mod:`~pyrovae.run.signals`: what
  survives a stop (checkpoint, partial epoch, RNG streams, the resume diff);
- :mod:`~pyrovae.run.step`: a training step (fast path or traced, compile policy);
- :mod:`~pyrovae.run.train`: :func:`train`, whose loop is one screen;
- :mod:`~pyrovae.run.evaluate`: evaluating a run directory.
"""

from .directory import RunDir
from .evaluate import evaluate_parts, evaluate_run, evaluate_run_ais, load_run
from .parts import (
    Parts,
    assemble,
    build_vae,
    check_config,
    choices,
    load_images,
    make_estimator,
    plugins_of,
    resolve_device,
)
from .state import RESUMABLE
from .train import BOUND_KEYS, TrainResult, train

__all__ = [
    "BOUND_KEYS",
    "RESUMABLE",
    "Parts",
    "RunDir",
    "TrainResult",
    "assemble",
    "build_vae",
    "check_config",
    "choices",
    "evaluate_parts",
    "evaluate_run",
    "evaluate_run_ais",
    "load_images",
    "load_run",
    "make_estimator",
    "plugins_of",
    "resolve_device",
    "train",
]
