"""Type stubs for bpcore._layers (compiled from _layers.pyx): dense and activation kernels.

Array arguments are C-contiguous float32 or float64 arrays, all of one dtype per call.
"""
from enum import IntEnum
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

class Activation(IntEnum):
    IDENTITY = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3

def py_dense_forward(X: npt.NDArray[_F], W: npt.NDArray[_F], b: npt.NDArray[_F],
                     Z: npt.NDArray[_F], act: int = ...) -> None:
    """Z = act(X @ W + b), written into Z."""

def py_dense_backward(X: npt.NDArray[_F], W: npt.NDArray[_F], dZ: npt.NDArray[_F],
                      dW: npt.NDArray[_F], db: npt.NDArray[_F], dX: npt.NDArray[_F] | None = ...,
                      mask: npt.NDArray[_F] | None = ...) -> None:
    """Accumulate dW and db; write dX unless it is None; apply mask to dW if given."""

def py_activation_forward(act: int, Z: npt.NDArray[_F], A: npt.NDArray[_F]) -> None:
    """A = act(Z) over flat arrays."""

def py_activation_backward(act: int, A: npt.NDArray[_F], dA: npt.NDArray[_F],
                           dZ: npt.NDArray[_F]) -> None:
    """dZ = dA * act'(.) from the forward output A, over flat arrays."""
