"""Type stubs for bpcore._blas (compiled from _blas.pyx): row-major BLAS wrappers, and the
engine's products (bpcore's own kernels below the crossover, BLAS above).

Array arguments are C-contiguous float32 or float64 arrays, all of one dtype per call.
"""
from enum import IntEnum
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

class BLAS_Trans(IntEnum):
    NoTrans = 110
    Trans = 116

def py_gemm(ta: str, tb: str, alpha: float, A: npt.NDArray[_F], B: npt.NDArray[_F],
            beta: float, C: npt.NDArray[_F]) -> None:
    """C = alpha * op(A) @ op(B) + beta * C, in place, row-major."""

def py_matmul(ta: str, tb: str, alpha: float, A: npt.NDArray[_F], B: npt.NDArray[_F],
              beta: float, C: npt.NDArray[_F]) -> None:
    """The engine's product: C = alpha * op(A) @ op(B) + beta * C, in place, row-major, by
    bpcore's kernels below the crossover and BLAS above (as py_gemm)."""
