import sys
from pathlib import Path

import pyro
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from models import linear_gaussian, linear_gaussian_vae  # noqa: E402

from pyrovae.estimators import Estimator  # noqa: E402


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts from a clean param store, fixed seeds and default Pyro settings."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.settings.context(module_local_params=False):
        yield
    pyro.clear_param_store()
    torch.set_default_dtype(torch.float32)


@pytest.fixture(params=["pyro", "vae-fast", "vae-traced"])
def lg(request, monkeypatch):
    """The linear-Gaussian model and guide, three ways: plain Pyro modules (the traced path),
    pyrovae's VAE on the fast path, and the same VAE with every estimator forced to trace.
    The estimator tests run over all three, so both paths meet the same exact answers."""
    if request.param == "pyro":
        return linear_gaussian
    if request.param == "vae-traced":
        monkeypatch.setattr(Estimator, "fast_path_default", False)
    return linear_gaussian_vae
