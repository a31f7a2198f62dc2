"""Type stubs for bpcore._simd (compiled from _simd.pyx): the vector width, chosen at import."""
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

LEVEL_NAMES: dict[int, str]

def level() -> int:
    """The level in use: 0 portable, 1 AVX2+FMA, 2 AVX-512."""

def best_level() -> int:
    """The widest level this CPU runs."""

def set_level(level: int) -> int:
    """Use `level` (clamped to what the CPU runs); returns the level now in use."""

def small_gemm(op: str, level: int, A: npt.NDArray[_F], B: npt.NDArray[_F], C: npt.NDArray[_F],
               accumulate: bool = False, bias: npt.NDArray[_F] | None = None,
               keep: npt.NDArray[_F] | None = None, act: int = 0, p0: float = 0,
               p1: float = 0) -> int:
    """C = op's product (+ C if accumulate) with bpcore's small-batch kernels of `level`:
    "nn" A @ B, "nt" A @ B.T, "tn" A.T @ B; then C = act(C + bias), C + bias into `keep`
    ((m, n), or None), as the engine's epilogue. In place; returns the level used."""
