"""Type stubs for bpcore._losses (compiled from _losses.pyx): MSE, softmax cross-entropy,
sigmoid binary cross-entropy on logits, Poisson negative log-likelihood of log-rates.

Array arguments are C-contiguous float32 or float64 arrays, all of one dtype per call.
"""
from enum import IntEnum
from typing import TypeVar

import numpy as np
import numpy.typing as npt

_F = TypeVar("_F", np.float32, np.float64)

class Reduction(IntEnum):
    MEAN = 0
    SUM = 1
    HALF_SUM = 2

class LossKind(IntEnum):
    MSE = 0
    XENT_LABELS = 1
    XENT_PROBS = 2
    BCE_LOGITS = 3
    POISSON = 4

def check_labels(labels: npt.NDArray[np.integer | np.floating], n_classes: int,
                 name: str = "target") -> None:
    """Raise ValueError unless every label of the 1-D array is in [0, n_classes)."""

def check_targets(T: npt.NDArray[np.floating], kind: int, name: str = "target") -> None:
    """Raise ValueError unless every value of T is a target of loss `kind` (BCE_LOGITS: in
    [0, 1]; POISSON: finite and >= 0)."""

def valid_reduction(kind: int, reduction: int) -> bool:
    """True if `reduction` applies to loss `kind` (half_sum is MSE's alone)."""

def py_mse(Y: npt.NDArray[_F], T: npt.NDArray[_F], dY: npt.NDArray[_F], red: int,
           sample_weight: npt.NDArray[_F] | None = ...) -> float:
    """Return the MSE loss of Y against T and write dloss/dY into dY."""

def py_softmax_xent_labels(Z: npt.NDArray[_F], labels: npt.NDArray[np.intp],
                           dZ: npt.NDArray[_F], red: int,
                           sample_weight: npt.NDArray[_F] | None = ...) -> float:
    """Return the softmax cross-entropy of logits Z against integer labels; write dZ."""

def py_softmax_xent_probs(Z: npt.NDArray[_F], T: npt.NDArray[_F], dZ: npt.NDArray[_F],
                          red: int, sample_weight: npt.NDArray[_F] | None = ...) -> float:
    """Return the softmax cross-entropy of logits Z against target rows T; write dZ."""

def py_bce_logits(Z: npt.NDArray[_F], T: npt.NDArray[_F], pos_weight: npt.NDArray[_F] | None,
                  dZ: npt.NDArray[_F], red: int, sample_weight: npt.NDArray[_F] | None = ...) -> float:
    """Return the sigmoid binary cross-entropy of logits Z against targets T; write dZ."""

def py_poisson_nll(Z: npt.NDArray[_F], T: npt.NDArray[_F], dZ: npt.NDArray[_F],
                   red: int, sample_weight: npt.NDArray[_F] | None = ...) -> float:
    """Return the Poisson negative log-likelihood exp(z) - t z of log-rates Z; write dZ."""
