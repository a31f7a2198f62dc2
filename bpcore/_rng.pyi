"""Type stubs for bpcore._rng (compiled from _rng.pyx): seeded fills and permutations."""
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

class Generator:
    """A seeded stream: ``uniform`` fills arrays in place, ``permutation`` shuffles indices."""

    def __init__(self, seed: int) -> None: ...
    def uniform(self, out: npt.NDArray[_F], low: float, high: float) -> None: ...
    def permutation(self, n: int) -> npt.NDArray[np.intp]: ...
    def shuffle(self, idx: npt.NDArray[np.intp]) -> None:
        """Permute idx in place (the next permutation of an epoch loop)."""
