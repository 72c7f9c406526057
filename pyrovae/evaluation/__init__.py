"""Evaluation: importance-sampled log-likelihood and the metrics of a trained VAE."""

from .log_likelihood import log_likelihood
from .metrics import active_units, evaluate_model
from .report import evaluate_loaded, evaluate_run

__all__ = ["active_units", "evaluate_loaded", "evaluate_model", "evaluate_run", "log_likelihood"]
