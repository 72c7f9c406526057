"""Diagnostics for any model/guide pair and any ``pyro.infer.ELBO``: gradient SNR, PSIS k-hat and
importance ESS, and the amortization and approximation gaps."""

from .gaps import LocalGuide, amortization_gaps
from .importance import importance_diagnostics, importance_ess, pareto_khat
from .snr import SNR, gradient_snr, loglog_slope, snr_from_draws

__all__ = [
    "SNR",
    "LocalGuide",
    "amortization_gaps",
    "gradient_snr",
    "importance_diagnostics",
    "importance_ess",
    "loglog_slope",
    "pareto_khat",
    "snr_from_draws",
]
