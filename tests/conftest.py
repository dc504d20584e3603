"""Fixtures shared by the test modules."""

import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a module's tests, set when the module's tests start.

    A module-level ``torch.set_num_threads(1)`` does not hold: numba's OpenMP threading layer shares
    libgomp with torch, and the first parallel numba call of an earlier test (projection, SPH) sets
    the OpenMP thread count back to numba's, torch's included. The kill-and-resume test compares
    a run in this process with one in a fresh single-thread process, bit for bit.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
