import pytest

from parity_tests.harness import set_precision


@pytest.fixture(autouse=True, scope="session")
def _precision():
    set_precision()
