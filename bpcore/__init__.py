"""bpcore: multilayer perceptrons trained by back-propagation, fast, on the CPU.

The hot path (dense layers, activations, losses, the SGD update) is native code: Cython over
BLAS (through scipy.linalg.cython_blas) with OpenMP loops. This package is the thin Python
layer over it.
"""
import os as _os


def _short_spin_waits():
    """Have bpcore's OpenMP threads spin briefly, then sleep, when idle between loops.

    libgomp's idle threads spin for some 300,000 rounds before sleeping. On a machine where
    another process wants a core, a spinning bpcore thread holds it and a descheduled one
    stalls every barrier: steps ran 4-10x slower than with 2,000 rounds, which cost nothing
    measurable on an idle machine (the gaps between bpcore's loops are microseconds).
    libgomp reads the setting once, when it loads, so it is set only around that moment and
    only if the user has chosen neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT.
    """
    if "OMP_WAIT_POLICY" in _os.environ or "GOMP_SPINCOUNT" in _os.environ:
        return lambda: None
    _os.environ["GOMP_SPINCOUNT"] = "2000"
    return lambda: _os.environ.pop("GOMP_SPINCOUNT", None)


_restore_env = _short_spin_waits()
from bpcore import _threads  # noqa: E402  (loads libgomp, which reads the setting)
_restore_env()

from bpcore._version import __version__  # noqa: E402
from bpcore._config import show_config  # noqa: E402
from bpcore.data import load_mnist, one_hot, read_idx, write_idx  # noqa: E402
from bpcore.io import load  # noqa: E402
from bpcore.layers import Dense, Identity, Module, Parameter, ReLU, Sequential, Sigmoid, Tanh  # noqa: E402
from bpcore.losses import MSELoss, SoftmaxCrossEntropyLoss  # noqa: E402
from bpcore.model import MLP  # noqa: E402
from bpcore.optim import SGD  # noqa: E402
from bpcore.threads import get_num_threads, num_threads, set_num_threads  # noqa: E402

__all__ = [
    "__version__", "show_config", "one_hot", "load", "load_mnist", "read_idx", "write_idx",
    "Module", "Parameter", "Dense", "Identity", "ReLU", "Sigmoid", "Tanh", "Sequential", "MLP",
    "MSELoss", "SoftmaxCrossEntropyLoss", "SGD",
    "set_num_threads", "get_num_threads", "num_threads",
]
