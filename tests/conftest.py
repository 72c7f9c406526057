import sys
from pathlib import Path

import pyro
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _fresh_state():
    """Each test starts from a clean param store, fixed seeds and default Pyro settings."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    with pyro.settings.context(module_local_params=False):
        yield
    pyro.clear_param_store()
    torch.set_default_dtype(torch.float32)
