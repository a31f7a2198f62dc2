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
    LEAKY_RELU = 4
    ELU = 5
    GELU = 6
    GELU_TANH = 7
    SILU = 8
    SOFTPLUS = 9
    SOFTMAX = 10

def needs_input(act: int, p0: float = ..., p1: float = ...) -> bool:
    """True if the activation's derivative is computed from its input (which the forward pass
    then keeps), False if from its output."""

def py_dense_forward(X: npt.NDArray[_F], W: npt.NDArray[_F], b: npt.NDArray[_F],
                     Z: npt.NDArray[_F], act: int = ..., p0: float = ..., p1: float = ...,
                     keep: npt.NDArray[_F] | None = ...) -> None:
    """Z = act(X @ W + b), written into Z; X @ W + b into keep unless it is None."""

def py_dense_backward(X: npt.NDArray[_F], W: npt.NDArray[_F], dZ: npt.NDArray[_F],
                      dW: npt.NDArray[_F], db: npt.NDArray[_F], dX: npt.NDArray[_F] | None = ...,
                      mask: npt.NDArray[_F] | None = ...) -> None:
    """Accumulate dW and db; write dX unless it is None; apply mask to dW if given."""

def py_activation_forward(act: int, Z: npt.NDArray[_F], A: npt.NDArray[_F], p0: float = ...,
                          p1: float = ...) -> None:
    """A = act(Z) (row-wise for SOFTMAX)."""

def py_activation_backward(act: int, A: npt.NDArray[_F], dA: npt.NDArray[_F],
                           dZ: npt.NDArray[_F], Z: npt.NDArray[_F] | None = ...,
                           p0: float = ..., p1: float = ...) -> None:
    """dZ = dA * act'(.) from the forward output A, or from its input Z for an activation
    that needs it (needs_input)."""

def py_dropout(p: float, state: npt.NDArray[np.uint64], U: npt.NDArray[_F], A: npt.NDArray[_F],
               mask: npt.NDArray[np.uint8]) -> None:
    """A = U * mask / (1 - p) with the next mask of the dropout layer whose (seed, draws) is
    state (advanced by one); the mask into mask."""

def py_undrop(p: float, mask: npt.NDArray[np.uint8], d: npt.NDArray[_F]) -> None:
    """d *= mask / (1 - p), in place."""
