import functools
import os
import sys
from pathlib import Path

# The suite shares the cores between pytest-xdist's workers and the processes some tests start
# (torchrun, a local Ray, compare's workers). An OpenMP thread that spins while it waits takes a
# core from another process: a Ray cell on two threads beside one busy worker ran 3x slower. Set
# before torch is imported (OpenMP reads it once); the processes the tests start inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from models import linear_gaussian, linear_gaussian_vae  # noqa: E402

# Property-based tests (tests/conformance): a small, reproducible profile by default (CI) and a
# long randomized one by flag: `python -m pytest tests/conformance --hypothesis-profile=long`.
_common = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                                       HealthCheck.data_too_large]}  # fmt: skip
settings.register_profile("ci", max_examples=30, derandomize=True, database=None, print_blob=True, **_common)
settings.register_profile("long", max_examples=400, print_blob=True, **_common)
settings.load_profile(os.environ.get("PYROVAE_HYPOTHESIS_PROFILE", "ci"))

# Under pytest-xdist (`-n auto`: one worker a core) each worker computes on one thread, so that the
# workers do not oversubscribe the cores they share.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


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
def lg(request):
    """The linear-Gaussian model and guide, three ways: plain Pyro modules (the traced path),
    pyrovae's VAE on the fast path, and subclasses of that VAE with their own ``forward``, which
    everything traces (estimators, log-likelihood, diagnostics). The tests run over all three, so
    both paths meet the same exact answers."""
    if request.param == "pyro":
        return linear_gaussian
    if request.param == "vae-traced":
        return functools.partial(linear_gaussian_vae, traced=True)
    return linear_gaussian_vae
