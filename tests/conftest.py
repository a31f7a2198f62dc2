import os

import numpy as np
import pytest

import bpcore


def pytest_report_header(config):
    where = os.path.dirname(bpcore.__file__)
    return f"bpcore {bpcore.__version__} from {where}"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
