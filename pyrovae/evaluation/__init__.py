"""Evaluation: importance-sampled and annealed log-likelihood, and the metrics of a trained VAE."""

from .ais import AISResult, ais
from .log_likelihood import log_likelihood
from .metrics import active_units, evaluate_model
from .report import evaluate_loaded, evaluate_run

__all__ = ["AISResult", "active_units", "ais", "evaluate_loaded", "evaluate_model", "evaluate_run", "log_likelihood"]
