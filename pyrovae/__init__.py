"""pyrovae: variational-autoencoder research on Pyro and PyTorch.

A Pyro model declares the prior and the decoder likelihood, a Pyro guide the amortized encoder;
estimators are drop-in ``pyro.infer.ELBO`` s; likelihoods swap by name.
"""

from . import diagnostics, estimators, likelihoods
from .config import Config
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelStructureError,
    PyrovaeError,
    TrainingDiverged,
    TrainingInterrupted,
)
from .evaluation import log_likelihood
from .run import TrainResult, evaluate_run, train
from .vae import VAE
from .version import __version__

__all__ = [
    "__version__",
    "VAE",
    "Config",
    "TrainResult",
    "evaluate_run",
    "train",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelStructureError",
    "PyrovaeError",
    "TrainingDiverged",
    "TrainingInterrupted",
    "diagnostics",
    "estimators",
    "likelihoods",
    "log_likelihood",
]
