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


@pytest.fixture
def simd_levels():
    """Each SIMD level this CPU has, set in turn by iterating simd_levels(); the best one is
    set again after the test, whatever it raised."""
    from bpcore import _simd
    best = _simd.best_level()

    def levels():
        for level in range(best + 1):
            _simd.set_level(level)
            yield level
    yield levels
    _simd.set_level(best)


# ---------------------------------------------------------------------------------------------
# Hypothesis profiles for the property-based fuzz tests (tests/test_fuzz.py).
# "ci" (the default): a bounded number of examples per property, derandomized so every run
# tries the same cases; "long" (pytest --long): many more, from a fresh random seed each run.
# An explicit --hypothesis-profile=NAME still wins.

try:
    from hypothesis import HealthCheck, settings as _hyp_settings
except ImportError:  # hypothesis is a test extra; without it the fuzz tests are skipped
    _hyp_settings = None
else:
    _QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
              HealthCheck.large_base_example]
    _hyp_settings.register_profile("ci", max_examples=30, deadline=None, derandomize=True,
                                   database=None, print_blob=True,
                                   suppress_health_check=_QUIET)
    _hyp_settings.register_profile("long", max_examples=1500, deadline=None, print_blob=True,
                                   suppress_health_check=_QUIET)


def pytest_addoption(parser):
    parser.addoption("--long", action="store_true", default=False,
                     help="run the property-based fuzz tests (tests/test_fuzz.py) with the "
                          "'long' hypothesis profile: many more examples, random seed")


def pytest_configure(config):
    if _hyp_settings is None or config.getoption("hypothesis_profile", None):
        return
    _hyp_settings.load_profile("long" if config.getoption("--long") else "ci")
