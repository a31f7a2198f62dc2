"""Type stubs for bpcore._engine (compiled from _engine.pyx): the fused training engine.

Arrays are C-contiguous numpy arrays of the engine's dtype (float32 or float64); labels and
row orders are intp arrays.
"""
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bpcore._optim import OptimizerState

import numpy as np
import numpy.typing as npt

_A = TypeVar("_A", bound=np.ndarray[Any, Any])

def check_finite(a: npt.NDArray[Any], name: str) -> None:
    """Raise ValueError unless every value of the float array a is finite."""

class CSRMatrix:
    """A sparse X (n, cols) in compressed sparse row form as the engine takes it (values float32
    or float64, int32 columns, intp row offsets), its structure checked once; read-only."""

    data: npt.NDArray[Any]
    indices: npt.NDArray[np.int32]
    indptr: npt.NDArray[np.intp]
    shape: tuple[int, int]
    def __init__(self, data: npt.NDArray[Any], indices: npt.NDArray[np.int32],
                 indptr: npt.NDArray[np.intp], n_cols: int) -> None: ...
    @property
    def dtype(self) -> np.dtype[Any]: ...
    @property
    def nnz(self) -> int: ...

class Engine:
    """The native training state of one network: its layout, and workspaces for a batch.

    sizes: layer widths; acts: the Activation after each Dense; params/grads: the network's
    flat buffers (W_l then b_l for each layer, in order); masks: per layer, a (fan_in, fan_out)
    array or None. Not safe to use from two threads at once (it says so if tried).
    """

    @property
    def dtype(self) -> np.dtype[Any]: ...
    def __init__(self, sizes: Sequence[int],
                 acts: Sequence[int | tuple[int, float, float]], params: npt.NDArray[Any],
                 grads: npt.NDArray[Any], masks: Sequence[npt.NDArray[Any] | None],
                 drops: Sequence[tuple[float, npt.NDArray[np.uint64]] | None] | None = ...,
                 fused_max_batch: int = 1, rowsplit_max_batch: int = 128) -> None: ...
    def set_dropout(self, l: int, p: float, state: npt.NDArray[np.uint64]) -> None:
        """Dropout with probability p after layer l, drawing its masks from state."""
    @property
    def rowsplit_max_batch(self) -> int:
        """Batches up to this size take the row-split step."""
    @rowsplit_max_batch.setter
    def rowsplit_max_batch(self, value: int) -> None: ...
    @property
    def fused_max_batch(self) -> int:
        """Batches up to this size form each weight row's gradient inside its update."""
    @fused_max_batch.setter
    def fused_max_batch(self, value: int) -> None: ...
    @property
    def capacity(self) -> int:
        """Rows the workspaces hold now (the largest batch seen)."""
    @property
    def pace(self) -> dict[str, float]:
        """The busy-machine pacing state."""
    @property
    def failure(self) -> tuple[str, int] | None:
        """None, or (what was not finite: "loss", "gradient" or "update", the batch) of the
        last training call."""
    def workspaces(self) -> dict[str, npt.NDArray[Any]]:
        """{name: array} of the workspace buffers."""
    def check_data(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int) -> None:
        """Raise unless X and target fit this network and the loss."""
    def train_step(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int,
                   reduction: int, optimizer: OptimizerState,
                   max_grad_norm: float = 0,
                   pos_weight: npt.NDArray[Any] | None = None,
                   sample_weight: npt.NDArray[Any] | None = None,
                   team: Any = None) -> float:
        """One fused step on the batch X; returns the loss (of the weights before the step).
        pos_weight: BCE_LOGITS's (outputs,) weights of the positive term, or None; team: a
        bpcore.distributed.Team's one-step plan, or None."""
    def run_epoch(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int,
                  reduction: int, order: npt.NDArray[np.intp] | None, batch_size: int,
                  optimizer: OptimizerState, max_grad_norm: float = 0,
                  check: bool = True, batches: int = -1,
                  pos_weight: npt.NDArray[Any] | None = None,
                  sample_weight: npt.NDArray[Any] | None = None,
                  progress: Callable[[int, int], object] | None = None,
                  team: Any = None) -> float:
        """Train one epoch; returns the summed batch losses, each weighted by its rows for
        mean reductions. progress(batches done, batches), if given, is called where the loop
        returns to Python for Ctrl-C (every few batches). team: a bpcore.distributed.Team's
        plan of the epoch (exactly `batches` steps, each gradient summed over the ranks)."""
    def predict(self, X: npt.NDArray[Any], out: _A) -> _A:
        """out (n, outputs) = the network's output for X, computed in chunks of rows."""
    def evaluate(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int,
                 pos_weight: npt.NDArray[Any] | None = None,
                 sample_weight: npt.NDArray[Any] | None = None) -> tuple[float, float]:
        """(summed loss, summed weight of the rows right) over all rows of X, in chunks."""
    def loss_and_gradient(self, X: npt.NDArray[Any], target: npt.NDArray[Any], loss_kind: int,
                          scale: float, pos_weight: npt.NDArray[Any] | None = None,
                          sample_weight: npt.NDArray[Any] | None = None) -> float:
        """scale times the summed loss, its gradient written into the flat gradient buffer."""
