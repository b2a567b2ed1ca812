import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# CI runs on 2 cores: keep randomized tests to a modest number of examples, deterministic.
settings.register_profile("ci", max_examples=int(os.environ.get("CNNKIT_HYPOTHESIS_EXAMPLES", "25")), deadline=None,
                          derandomize=True, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")

SHARED_MNIST = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mnist")


@pytest.fixture(autouse=True)
def _seed():
    import cnnkit

    cnnkit.manual_seed(0)
    np.random.seed(0)
    yield


@pytest.fixture
def mnist_dir():
    path = os.path.abspath(SHARED_MNIST)
    if not os.path.exists(os.path.join(path, "t10k-images-idx3-ubyte.gz")):
        pytest.skip(f"real MNIST test set not found at {path} (../shared/data/mnist beside the checkout)")
    return path


@pytest.fixture
def torch():
    """torch, the test oracle; a test that asks for it is skipped where torch is not installed."""
    return pytest.importorskip("torch")
