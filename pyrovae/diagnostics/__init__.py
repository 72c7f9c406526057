"""Diagnostics for any model/guide pair and any ``pyro.infer.ELBO``: gradient SNR and bias, PSIS
k-hat and importance ESS, the amortization and approximation gaps, and bidirectional Monte Carlo."""

from .bdmc import BDMCResult, bdmc
from .bias import Bias, gradient_bias
from .gaps import LocalGuide, amortization_gaps
from .importance import importance_diagnostics, importance_ess, pareto_khat
from .snr import SNR, gradient_snr, loglog_slope, snr_from_draws

__all__ = [
    "BDMCResult",
    "Bias",
    "SNR",
    "LocalGuide",
    "amortization_gaps",
    "bdmc",
    "gradient_bias",
    "gradient_snr",
    "importance_diagnostics",
    "importance_ess",
    "loglog_slope",
    "pareto_khat",
    "snr_from_draws",
]
