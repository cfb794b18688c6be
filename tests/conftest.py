"""Shared pytest configuration for the test suite."""

import pytest
import torch


def pytest_configure(config):
    # torch's forward-mode AD scripts its jvp decompositions on first use, which raises a
    # FutureWarning from inside torch (not from this package) on recent torch versions.
    config.addinivalue_line(
        "filterwarnings", "ignore:`torch.jit.script` is deprecated:FutureWarning"
    )


@pytest.fixture(autouse=True)
def _seed():
    """Every test starts from the same RNG state, so random decoders are reproducible."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny batches (``pytestmark =
    pytest.mark.usefixtures("one_thread")``): extra threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
