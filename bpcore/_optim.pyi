"""Type stubs for bpcore._optim (compiled from _optim.pyx): the SGD update.

Array arguments are C-contiguous float32 or float64 arrays, all of one dtype per call.
"""
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

def py_sgd_update(w: npt.NDArray[_F], g: npt.NDArray[_F], v: npt.NDArray[_F], lr: float,
                  momentum: float, nesterov: bool, weight_decay: float, decay: float) -> None:
    """One SGD step over flat w, g and velocity v, all of one length, in place."""
