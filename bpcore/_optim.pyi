"""Type stubs for bpcore._optim (compiled from _optim.pyx): the optimizers' update rules.

Array arguments are C-contiguous float32 or float64 arrays, all of one dtype per optimizer.
"""
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

class Rule(IntEnum):
    SGD_RULE = 0
    ADAM_RULE = 1

class OptimizerState:
    """The native state of one optimizer: rule, groups, flat state buffers and step count."""

    @property
    def dtype(self) -> np.dtype[Any]: ...
    def __init__(self, rule: int, dtype: Any,
                 runs: Sequence[tuple[npt.NDArray[Any], npt.NDArray[Any], int]],
                 group_of: Sequence[int], ngroups: int, decoupled: bool = False,
                 amsgrad: bool = False, sklearn_eps: bool = False,
                 sklearn_decay: bool = False) -> None: ...
    def configure(self, group: int, lr: float, momentum: float = 0, weight_decay: float = 0,
                  decay: float = 0, beta1: float = 0.9, beta2: float = 0.999,
                  eps: float = 1e-8, nesterov: bool = False) -> None:
        """Set one group's settings; they apply from the next step."""
    @property
    def steps(self) -> int:
        """Steps taken."""
    @steps.setter
    def steps(self, value: int) -> None: ...
    @property
    def size(self) -> int: ...
    def state(self) -> dict[str, npt.NDArray[Any]]:
        """{name: flat state buffer} (the arrays themselves, not copies)."""
    @property
    def nonfinite(self) -> bool:
        """True if the last step's update wrote a NaN or an infinity."""
    def step(self, batch_weight: float = 1.0) -> str | None:
        """One update of every run from its gradient; None, or "gradient"/"update": what was
        not finite."""

def clip_factor(norm: float, max_norm: float) -> float:
    """What gradients of global norm `norm` are scaled by to a norm of at most max_norm."""

def py_global_norm(x: npt.NDArray[_F]) -> float:
    """The L2 norm of x (overflow-safe)."""
def py_scale(x: npt.NDArray[_F], scale: float) -> None:
    """x *= scale, in place."""
