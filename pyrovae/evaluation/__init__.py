"""Evaluation: importance-sampled and annealed log-likelihood, and the metrics of a trained VAE."""

from .ais import AISResult, ais
from .ais_against_is import ais_against_is
from .log_likelihood import log_likelihood
from .metrics import active_units, bits_per_dim, evaluate_model

__all__ = ["AISResult", "active_units", "ais", "ais_against_is", "bits_per_dim", "evaluate_model", "log_likelihood"]
