"""Hand computations for the linear-Gaussian model, independent of Pyro's traces."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import logsumexp


def log_weights(model, guide, x, z) -> np.ndarray:
    """lw[k, i] = log N(x_i; W z_ki + b, s^2) + log N(z_ki; 0, I) - log q(z_ki | x_i)."""
    W, b, s = model.W.detach().numpy(), model.b.detach().numpy(), model.s
    A, c, sd = guide.A.detach().numpy(), guide.c.detach().numpy(), np.exp(guide.log_sd.detach().numpy())
    x, z = x.numpy(), z.detach().numpy()  # [B, D], [K, B, d]
    log_lik = stats.norm.logpdf(x, z @ W.T + b, s).sum(-1)
    log_prior = stats.norm.logpdf(z).sum(-1)
    log_q = stats.norm.logpdf(z, (x - c) @ A.T, sd).sum(-1)
    return log_lik + log_prior - log_q


def kl_to_prior(guide, x) -> np.ndarray:
    """The seed's closed form: 1/2 sum(exp(log s2) - 1 - log s2 + mu^2), per point."""
    A, c = guide.A.detach().numpy(), guide.c.detach().numpy()
    log_s2 = 2 * guide.log_sd.detach().numpy()
    mu = (x.numpy() - c) @ A.T
    return 0.5 * (np.exp(log_s2) - 1 - log_s2 + mu**2).sum(-1)


def log_lik(model, x, z) -> np.ndarray:
    W, b = model.W.detach().numpy(), model.b.detach().numpy()
    return stats.norm.logpdf(x.numpy(), z.detach().numpy() @ W.T + b, model.s).sum(-1)


def iwae(lw: np.ndarray) -> np.ndarray:
    return logsumexp(lw, axis=0) - math.log(lw.shape[0])


def elbo(lw: np.ndarray) -> np.ndarray:
    return lw.mean(0)
