"""Losses. ``loss(output, target)`` returns the loss as a float and keeps its gradient;
``loss.backward()`` returns dloss/doutput, to hand to ``model.backward``."""
import numpy as np

from bpcore import _losses
from bpcore._validation import (as_array, as_labels, as_matrix, check_choice, check_same_rows,
                                float_dtype_of)

__all__ = ["Loss", "MSELoss", "SoftmaxCrossEntropyLoss"]

_R = _losses.Reduction
_REDUCTIONS = {"mean": _R.MEAN, "sum": _R.SUM, "half_sum": _R.HALF_SUM}
_KIND = _losses.LossKind


class Loss:
    """Base class. For the training engine a loss says which native loss it is and how its
    target is laid out (``target_for``), and turns a summed loss into its own reduction
    (``from_sum``)."""

    reductions = ("mean", "sum")

    def __init__(self, reduction="mean"):
        self.reduction = check_choice(reduction, "reduction", self.reductions)
        self._grad = None

    def __call__(self, output, target):
        return self.forward(output, target)

    def backward(self):
        """dloss/doutput for the last forward."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        return self._grad

    def _output(self, output):
        out = as_array(output, "output")
        return as_matrix(out, "output", float_dtype_of(out), what="n_outputs")

    @property
    def reduction_code(self):
        return _REDUCTIONS[self.reduction]

    def elements_per_row(self, c):
        """What "mean" divides by per row of an output with c columns."""
        return 1

    def from_sum(self, total, n, c):
        """The loss over n rows of c outputs in this reduction, from the summed loss."""
        if self.reduction == "mean":
            return total / (n * self.elements_per_row(c))
        return 0.5 * total if self.reduction == "half_sum" else total

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error between output and target, both (n, m).

    reduction="mean": mean over all n*m elements (as torch.nn.MSELoss);
    "sum": the plain sum; "half_sum": the 1986 paper's E = 1/2 sum (y - d)^2 over cases and
    outputs, with which the paper's learning rates and momenta can be used as printed.
    A target of shape (n,) is read as (n, 1) when the output has one column.
    """
    reductions = ("mean", "sum", "half_sum")

    def elements_per_row(self, c):
        return c  # torch.nn.MSELoss's mean is over every element

    def forward(self, output, target):
        Y = self._output(output)
        _, T = self.target_for(target, Y.shape[0], Y.shape[1], Y.dtype)
        dY = np.empty_like(Y)
        loss = _losses.py_mse(Y, T, dY, _REDUCTIONS[self.reduction])
        self._grad = dY
        return loss

    def target_for(self, target, n, c, dtype, finite=True, name="target"):
        """(loss kind, target as a C-contiguous (n, c) array of dtype); errors name `name`."""
        if (type(target) is np.ndarray and target.flags.c_contiguous and target.dtype == dtype
                and target.shape == (n, c) and not finite):
            return _KIND.MSE, target  # exact arrays go straight through: checked natively
        T = as_array(target, name)
        if T.ndim == 1 and c == 1:
            T = T.reshape(-1, 1)
        T = as_matrix(T, name, dtype, cols=c, what="n_outputs", finite=finite)
        check_same_rows(n, T, name, "output")
        return _KIND.MSE, T


class SoftmaxCrossEntropyLoss(Loss):
    """Softmax of the output logits (n, c) and cross-entropy against the targets, fused.

    target: integer class labels (n,), or (n, c) rows of target probabilities (one-hot rows for
    hard labels). Stable for any logits (the row max is taken out before exp). reduction="mean"
    averages over the n rows (as torch.nn.CrossEntropyLoss), "sum" adds them.
    The gradient is (softmax - target) / n, handed to a network whose last layer is linear.
    """

    def forward(self, output, target):
        Z = self._output(output)
        kind, T = self.target_for(target, Z.shape[0], Z.shape[1], Z.dtype)
        if Z.shape[1] == 0:  # a softmax over no classes
            raise ValueError(f"output: expected at least one class column, got shape {Z.shape}")
        dZ = np.empty_like(Z)
        red = _REDUCTIONS[self.reduction]
        if kind == _KIND.XENT_LABELS:
            loss = _losses.py_softmax_xent_labels(Z, T, dZ, red)
        else:
            loss = _losses.py_softmax_xent_probs(Z, T, dZ, red)
        self._grad = dZ
        return loss

    def target_for(self, target, n, c, dtype, finite=True, name="target"):
        """(loss kind, target): intp labels (n,) or a C-contiguous (n, c) array of dtype;
        errors name `name`."""
        if (type(target) is np.ndarray and target.flags.c_contiguous and target.dtype == np.intp
                and target.shape == (n,) and not finite):
            return _KIND.XENT_LABELS, target  # exact labels go straight through: checked natively
        T = as_array(target, name)
        if T.ndim == 1:
            return _KIND.XENT_LABELS, as_labels(T, name, n, c)
        T = as_matrix(T, name, dtype, cols=c, what="n_classes", finite=finite)
        check_same_rows(n, T, name, "output")
        if (T < 0).any():
            raise ValueError(f"{name}: expected non-negative class probabilities, got {T[T < 0][0]}")
        return _KIND.XENT_PROBS, T
