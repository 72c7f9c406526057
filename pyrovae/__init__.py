"""pyrovae: variational-autoencoder research on Pyro and PyTorch.

A Pyro model declares the prior and the decoder likelihood, a Pyro guide the amortized encoder;
estimators are drop-in ``pyro.infer.ELBO`` s; likelihoods swap by name.
"""

from . import estimators, likelihoods
from .errors import (
    CheckpointError,
    ConfigError,
    DataError,
    ModelStructureError,
    PyrovaeError,
    TrainingDiverged,
)
from .evaluation import log_likelihood
from .vae import VAE

__version__ = "0.1.0"

__all__ = [
    "VAE",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelStructureError",
    "PyrovaeError",
    "TrainingDiverged",
    "estimators",
    "likelihoods",
    "log_likelihood",
]
