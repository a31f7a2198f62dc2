"""bpcore: multilayer perceptrons trained by back-propagation, fast, on the CPU.

The hot path (dense layers, activations, losses, the optimizers' updates) is native code: Cython over
BLAS (through scipy.linalg.cython_blas) with OpenMP loops. This package is the thin Python
layer over it.
"""
import sys as _sys

from bpcore import _source_tree

if not _source_tree.is_built(__path__[0]):
    # a source checkout found first on sys.path (python -m from a clone's root): the installed
    # build takes over, or the import fails saying what to do
    _sys.modules[__name__] = _source_tree.installed_package(__name__, __file__)
else:
    from bpcore import _spin
    with _spin.sized_wait():  # how long idle OpenMP threads spin is read when it loads
        from bpcore import _threads  # noqa: F401  (the first module that loads OpenMP)
    from bpcore._version import __version__
    from bpcore._config import show_config
    from bpcore.data import load_mnist, one_hot, read_idx, write_idx
    from bpcore.errors import (CheckpointError, DistributedError, FileFormatError,
                               NonFiniteError)
    from bpcore.layers import (ELU, GELU, Dense, Dropout, Identity, LeakyReLU, Module, ReLU,
                               Sigmoid, SiLU, Softmax, Softplus, Tanh)
    from bpcore.losses import BCEWithLogitsLoss, MSELoss, PoissonLoss, SoftmaxCrossEntropyLoss
    from bpcore.model import MLP, Sequential, load, load_extra, load_optimizer
    from bpcore.optim import LBFGS, SGD, Adam, AdamW, Optimizer, clip_grad_norm
    from bpcore.params import Parameter
    from bpcore.threads import get_num_threads, num_threads, set_num_threads
    from bpcore import callbacks, distributed, schedules

__all__ = [
    "__version__", "show_config", "one_hot", "load", "load_optimizer", "load_extra",
    "CheckpointError", "FileFormatError", "NonFiniteError", "DistributedError",
    "load_mnist", "read_idx", "write_idx",
    "Module", "Parameter", "Dense", "Identity", "ReLU", "Sigmoid", "Tanh", "LeakyReLU", "ELU",
    "GELU", "SiLU", "Softplus", "Softmax", "Dropout", "Sequential", "MLP",
    "MSELoss", "SoftmaxCrossEntropyLoss", "BCEWithLogitsLoss", "PoissonLoss",
    "Optimizer", "SGD", "Adam", "AdamW", "LBFGS",
    "clip_grad_norm", "schedules", "callbacks", "distributed", "set_num_threads", "get_num_threads",
    "num_threads",
]
