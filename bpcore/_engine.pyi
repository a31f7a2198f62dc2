"""Type stubs for bpcore._engine (compiled from _engine.pyx): the fused training engine.

Arrays are C-contiguous numpy arrays of the engine's dtype (float32 or float64); labels and
row orders are intp arrays.
"""
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

_A = TypeVar("_A", bound=np.ndarray[Any, Any])

MSE_KIND: int
XENT_LABELS_KIND: int
XENT_PROBS_KIND: int

class Engine:
    """The native training state of one network: its layout, and workspaces for a batch.

    sizes: layer widths; acts: the Activation after each Dense; params/grads: the network's
    flat buffers (W_l then b_l for each layer, in order); masks: per layer, a (fan_in, fan_out)
    array or None. Not safe to use from two threads at once (it says so if tried).
    """

    @property
    def dtype(self) -> np.dtype[Any]: ...
    fused_max_batch: int
    def __init__(self, sizes: Sequence[int], acts: Sequence[int], params: npt.NDArray[Any],
                 grads: npt.NDArray[Any], masks: Sequence[npt.NDArray[Any] | None],
                 fused_max_batch: int = 1, rowsplit_max_batch: int = 128) -> None: ...
    @property
    def rowsplit_max_batch(self) -> int:
        """Batches up to this size take the row-split step (weights split by rows among the
        threads for the whole step); larger ones split the batch rows instead."""
    @rowsplit_max_batch.setter
    def rowsplit_max_batch(self, value: int) -> None: ...
    @property
    def capacity(self) -> int:
        """Rows the workspaces hold now (the largest batch seen)."""
    def train_step(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int,
                   reduction: int, velocity: npt.NDArray[Any], lr: float, momentum: float,
                   nesterov: bool, weight_decay: float, decay: float) -> float:
        """One fused step on the batch X; returns the loss (of the weights before the step)."""
    def check_data(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int) -> None:
        """Raise unless X and target fit this network and the loss, with finite values and
        labels in range."""
    def run_epoch(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int,
                  reduction: int, order: npt.NDArray[np.intp] | None, batch_size: int,
                  velocity: npt.NDArray[Any], lr: float, momentum: float, nesterov: bool,
                  weight_decay: float, decay: float, check: bool = True) -> float:
        """Train one epoch over the rows of X in the given order (None: the stored order);
        returns the summed batch losses, each weighted by its rows for mean reductions."""
    def gemm_floor(self, X: npt.NDArray[Any], parts: bool = False) -> None:
        """Run only the GEMMs of a train_step on X (for benchmarks); changes no weights."""
    def predict(self, X: npt.NDArray[Any], out: _A) -> _A:
        """out (n, outputs) = the network's output for X, computed in chunks of rows."""
    def evaluate(self, X: npt.NDArray[Any], target: npt.NDArray[Any],
                 loss_kind: int) -> tuple[float, int]:
        """(summed loss, correct argmax count) over all rows of X, in chunks."""
