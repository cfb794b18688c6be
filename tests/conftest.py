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
