import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    """The generated models are tiny: one thread avoids the thread pool's overhead, which dominates
    a step of a few-element tensor (ten times slower with two busy threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
