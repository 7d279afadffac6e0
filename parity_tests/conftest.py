import gc

import jax
import pytest

from parity_tests.harness import set_precision


@pytest.fixture(autouse=True, scope="session")
def _precision():
    set_precision()


@pytest.fixture(autouse=True)
def _release_memory():
    """Each parity test compiles a whole model once: drop its executables and arrays after it,
    or a pytest-xdist worker grows by gigabytes over the run (one was OOM-killed at 12.9 GB)."""
    yield
    jax.clear_caches()
    gc.collect()
