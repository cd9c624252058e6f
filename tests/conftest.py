"""Shared pytest fixtures and the `gpu` marker.

- ``@pytest.mark.gpu`` marks a test that needs a CUDA device; without one it is skipped with a
  clear reason (this is the only kind of test that may be skipped).
- ``rng`` / ``torch_rng``: seeded random generators, so that tests are reproducible.
- The default torch dtype is never changed globally; a test that changes it and does not restore
  it fails, because it would silently change the precision of every test that follows.
"""
import numpy as np
import pytest
import torch

SEED = 20240917


def cuda_available() -> bool:
    """True when a CUDA device can be used by torch."""
    return torch.cuda.is_available()


requires_cuda = pytest.mark.skipif(not cuda_available(), reason="needs a CUDA device")


def pytest_collection_modifyitems(config, items):
    """Skip tests marked ``gpu`` when no CUDA device is present."""
    if cuda_available():
        return
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device (marked gpu)"))


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded NumPy generator."""
    return np.random.default_rng(SEED)


@pytest.fixture
def torch_rng() -> torch.Generator:
    """A seeded CPU torch generator (pass as ``generator=``)."""
    return torch.Generator().manual_seed(SEED)


@pytest.fixture(autouse=True)
def _default_dtype_unchanged():
    """Fail a test that leaves the torch default dtype changed (and restore it)."""
    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    if after != before:
        torch.set_default_dtype(before)
        pytest.fail(f"test changed torch default dtype from {before} to {after}; "
                    "pass dtype= explicitly instead of torch.set_default_dtype")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module of small-tensor tests (no oversubscription on a shared machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
