"""An estimator on pyrovae's own VAE, in each model family: finite gradients for every parameter."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pyro
import torch

from ..errors import PyrovaeError
from ..families import Family
from ..vae import VAE
from .report import CheckFailed

# name: the family's keys (small: the check trains nothing, it takes one gradient)
FAMILIES: dict[str, dict[str, Any]] = {
    "gaussian": {},
    "hierarchical": {"latents": (3, 2)},
    "bernoulli latents": {"latent": "bernoulli"},
    "iaf guide": {"guide": "iaf", "flow_hidden": (8,)},
    "vamp prior": {"prior": "vamp", "prior_components": 3},
    "mog prior": {"prior": "mog", "prior_components": 3},
}
X_DIM = 8


def finite_gradients_on_families(make: Callable[[], Any]) -> str:
    """One gradient step's gradients on each family's VAE: every parameter gets one, and it is
    finite; a family the estimator refuses in one line (a :class:`PyrovaeError`, or Pyro's
    ``NotImplementedError``) is reported."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((5, X_DIM), 0.4))
    ran, refused = [], []
    for name, keys in FAMILIES.items():
        vae = VAE(x_dim=X_DIM, z_dim=2, hidden=(8,), family=Family(**keys))
        pyro.set_rng_seed(1)
        try:
            with pyro.settings.context(module_local_params=True), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Pyro's notes on site order and the like: not findings
                loss = make().differentiable_loss(vae.model, vae.guide, x)
        except (PyrovaeError, NotImplementedError) as e:  # a refusal in one line (Pyro's are NotImplementedError)
            refused.append(f"{name} ({str(e).splitlines()[0][:60]}...)")
            continue
        loss.backward()
        bad = [n for n, p in vae.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
        if bad or not torch.isfinite(loss):
            raise CheckFailed(f"on the VAE with {name}: loss {loss.item():.4g}, no or non-finite gradient for "
                              f"{', '.join(bad[:5]) or '(none)'}")  # fmt: skip
        ran.append(name)
    if not ran:
        raise CheckFailed(f"refused every VAE family: {'; '.join(refused)}")
    return f"finite gradients on {', '.join(ran)}" + (f"; refused in one line: {', '.join(refused)}" if refused else "")
