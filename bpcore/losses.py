"""Losses. ``loss(output, target)`` returns the loss as a float and keeps its gradient;
``loss.backward()`` returns dloss/doutput, to hand to ``model.backward``."""
import numpy as np

from bpcore import _losses
from bpcore._validation import (as_array, as_labels, as_matrix, check_choice, check_real,
                                check_same_rows, check_sample_weight, float_dtype_of)

__all__ = ["Loss", "MSELoss", "SoftmaxCrossEntropyLoss", "BCEWithLogitsLoss", "PoissonLoss"]

_R = _losses.Reduction
_REDUCTIONS = {"mean": _R.MEAN, "sum": _R.SUM, "half_sum": _R.HALF_SUM}
_KIND = _losses.LossKind


class Loss:
    """Base class. For the training engine a loss says which native loss it is and how its
    target is laid out (``target_for``), hands over the array its kernel reads besides the
    target (``native_pos_weight``), turns a summed loss into its own reduction (``from_sum``)
    and a count of rows right into an accuracy (``accuracy``)."""

    reductions = ("mean", "sum")

    def __init__(self, reduction="mean"):
        self.reduction = check_choice(reduction, "reduction", self.reductions)
        self._grad = None

    def __call__(self, output, target, sample_weight=None):
        return self.forward(output, target, sample_weight)

    def forward(self, output, target, sample_weight=None):
        """The loss of output (n, c) against target (rows weighted by sample_weight (n,), if
        given); keeps its gradient for backward."""
        Z = self._output(output)
        kind, T = self.target_for(target, Z.shape[0], Z.shape[1], Z.dtype)
        w = check_sample_weight(sample_weight, Z.shape[0], Z.dtype)
        dZ = np.empty_like(Z)
        value = self._kernel(kind, Z, T, dZ, w)
        self._grad = dZ
        return value

    def _kernel(self, kind, Z, T, dZ, w):
        """The native kernel of this loss: returns the loss, writes dZ."""
        raise NotImplementedError

    def backward(self):
        """dloss/doutput for the last forward."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        return self._grad

    def _output(self, output):
        out = as_array(output, "output")
        return as_matrix(out, "output", float_dtype_of(out), what="n_outputs")

    def row_weights(self, kind, T, class_weight, c):
        """Each row's weight from its class under class_weight (a dict {class: weight}, the
        classes left out weighing 1, or "balanced": n / (classes * rows of the class), as
        scikit-learn's classifiers); kind and T as target_for gives them. Classification
        losses only."""
        raise ValueError(f"class_weight: expected None for {type(self).__name__} (class weights "
                         f"apply to classification losses), got {class_weight!r}")

    @property
    def reduction_code(self):
        return _REDUCTIONS[self.reduction]

    def elements_per_row(self, c):
        """What "mean" divides by per row of an output with c columns."""
        return 1

    def from_sum(self, total, n, c):
        """The loss over n rows (their summed sample weight) of c outputs in this reduction,
        from the summed loss."""
        if self.reduction == "mean":
            return total / (n * self.elements_per_row(c))
        return 0.5 * total if self.reduction == "half_sum" else total

    def native_pos_weight(self, dtype, c):
        """The per-output weights the native kernel reads, as a (c,) array of dtype, or None
        (the engine's pos_weight argument): None but for BCEWithLogitsLoss."""
        return None

    def accuracy(self, correct, n, c):
        """The share of n rows the engine counted right (the argmax rule), or None where that
        rule means nothing: one output column."""
        return correct / n if c > 1 else None

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSELoss(Loss):
    """Squared error between output and target, both (n, m).

    reduction="mean": mean over all n*m elements (as torch.nn.MSELoss);
    "sum": the plain sum; "half_sum": the 1986 paper's E = 1/2 sum (y - d)^2 over cases and
    outputs, with which the paper's learning rates and momenta can be used as printed.
    A target of shape (n,) is read as (n, 1) when the output has one column.

    "mean" averages over all n*m elements in the loss and in its gradient alike, as torch.
    scikit-learn's MLPRegressor does not (its issue #8349): the loss it reports
    (``sklearn.neural_network._base.squared_loss``) is 1/2 sum (y - d)^2 / (n m), exactly
    ``MSELoss("mean") / 2``, but the gradient it trains on is that of 1/2 sum (y - d)^2 / n,
    which is ``MSELoss("half_sum") / n``: m/2 times the gradient of ``MSELoss("mean")``, and m
    times that of the loss it reports. bpcore follows torch; scikit-learn's steps are taken
    with ``MSELoss("half_sum")`` and a learning rate divided by n (with one output, also
    ``MSELoss("mean")`` and half the learning rate).
    """
    reductions = ("mean", "sum", "half_sum")

    def elements_per_row(self, c):
        return c  # torch.nn.MSELoss's mean is over every element

    def _kernel(self, kind, Y, T, dY, w):
        return _losses.py_mse(Y, T, dY, _REDUCTIONS[self.reduction], w)

    def target_for(self, target, n, c, dtype, finite=True, name="target"):
        """(loss kind, target as a C-contiguous (n, c) array of dtype); errors name `name`."""
        return _KIND.MSE, _target_rows(target, n, c, dtype, finite, name)


def _target_rows(target, n, c, dtype, finite, name):
    """target as a C-contiguous (n, c) array of dtype, a target of shape (n,) read as (n, 1)
    when c == 1; finite values checked if `finite` (else the engine checks them natively)."""
    if (type(target) is np.ndarray and target.flags.c_contiguous and target.dtype == dtype
            and target.shape == (n, c) and not finite):
        return target  # exact arrays go straight through: checked natively
    T = as_array(target, name)
    if T.ndim == 1 and c == 1:
        T = T.reshape(-1, 1)
    T = as_matrix(T, name, dtype, cols=c, what="n_outputs", finite=finite)
    check_same_rows(n, T, name, "output")
    return T


def _ranged_rows(kind, target, n, c, dtype, finite, name):
    """(kind, target rows) whose values must also lie in the loss's range (checked when
    `finite`, else by the engine): BCE's [0, 1], Poisson's [0, inf)."""
    T = _target_rows(target, n, c, dtype, False, name)
    if finite:
        _losses.check_targets(T, kind, name)
    return kind, T


def _per_class(class_weight, counts):
    """The (c,) weights of c classes under class_weight (a dict, or "balanced" from counts, the
    rows of each class)."""
    c = len(counts)
    if isinstance(class_weight, str):
        check_choice(class_weight, "class_weight", ("balanced",))
        if not (counts > 0).all():
            k = int(np.flatnonzero(~(counts > 0))[0])
            raise ValueError(f"class_weight: 'balanced' needs rows of every class, got none of "
                             f"class {k}")
        return counts.sum() / (c * counts)
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight: expected None, a dict {{class: weight}} or 'balanced', "
                        f"got {type(class_weight).__name__}")
    weights = np.ones(c)
    for k, v in class_weight.items():
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k < c:
            raise ValueError(f"class_weight: expected classes in [0, {c}), got {k!r}")
        weights[k] = check_real(v, f"class_weight[{k}]", low=0)
    return weights


class SoftmaxCrossEntropyLoss(Loss):
    """Softmax of the output logits (n, c) and cross-entropy against the targets, fused.

    target: integer class labels (n,), or (n, c) rows of target probabilities (one-hot rows for
    hard labels). Stable for any logits (the row max is taken out before exp). reduction="mean"
    averages over the n rows (as torch.nn.CrossEntropyLoss), "sum" adds them.
    The gradient is (softmax - target) / n, handed to a network whose last layer is linear.
    """

    def row_weights(self, kind, T, class_weight, c):
        if kind == _KIND.XENT_LABELS:
            return _per_class(class_weight, np.bincount(T, minlength=c).astype(np.float64))[T]
        # probability rows: each row weighs its classes' weights in its proportions
        weights = _per_class(class_weight, T.sum(axis=0, dtype=np.float64))
        return T @ weights

    def _kernel(self, kind, Z, T, dZ, w):
        if Z.shape[1] == 0:  # a softmax over no classes
            raise ValueError(f"output: expected at least one class column, got shape {Z.shape}")
        red = _REDUCTIONS[self.reduction]
        if kind == _KIND.XENT_LABELS:
            return _losses.py_softmax_xent_labels(Z, T, dZ, red, w)
        return _losses.py_softmax_xent_probs(Z, T, dZ, red, w)

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


class BCEWithLogitsLoss(Loss):
    """Sigmoid and binary cross-entropy, fused, per element of the logits Z (n, c) against
    targets T (n, c): 0/1 labels or probabilities in [0, 1] (a target of shape (n,) is read as
    (n, 1) when c == 1). Each column is one binary problem (multi-label classification, or
    binary with c = 1), as torch.nn.BCEWithLogitsLoss:

        l = -(p t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))
        dl/dz = (1 + (p - 1) t) sigmoid(z) - p t

    with p the column's ``pos_weight`` (None: 1; a number: every column's; else one positive
    number per output column), which weighs the positive examples against the negative ones.
    Stable for any logits. reduction="mean" averages over all n*c elements (as torch),
    "sum" adds them. The network's last layer is linear: the sigmoid is the loss's.
    """

    def __init__(self, reduction="mean", pos_weight=None):
        super().__init__(reduction)
        self._pos_weight = _checked_pos_weight(pos_weight)
        self._native = {}  # (dtype, c): pos_weight as the kernel reads it, made once

    @property
    def pos_weight(self):
        """None, a number, or the (c,) weights (a read-only copy of what was given)."""
        return self._pos_weight

    def elements_per_row(self, c):
        return c  # torch's mean is over every element

    def accuracy(self, correct, n, c):
        return correct / n  # a row is right when every output is (subset accuracy)

    def row_weights(self, kind, T, class_weight, c):
        if c != 1:
            raise ValueError(f"class_weight: expected one output column (binary targets), got "
                             f"{c}; for multi-label outputs weight the positive terms with "
                             f"pos_weight")
        t = T[:, 0].astype(np.float64)
        weights = _per_class(class_weight, np.array([t.size - t.sum(), t.sum()]))
        return weights[0] * (1 - t) + weights[1] * t

    def _kernel(self, kind, Z, T, dZ, w):
        return _losses.py_bce_logits(Z, T, self.native_pos_weight(Z.dtype, Z.shape[1]), dZ,
                                     _REDUCTIONS[self.reduction], w)

    def target_for(self, target, n, c, dtype, finite=True, name="target"):
        """(loss kind, target as a C-contiguous (n, c) array of dtype, values in [0, 1] when
        `finite`, else checked by the engine); errors name `name`."""
        return _ranged_rows(_KIND.BCE_LOGITS, target, n, c, dtype, finite, name)

    def native_pos_weight(self, dtype, c):
        if self._pos_weight is None:
            return None
        key = (np.dtype(dtype), c)
        pw = self._native.get(key)
        if pw is None:
            pw = self._pos_weight
            if np.ndim(pw) and pw.shape[0] != c:
                raise ValueError(f"pos_weight: expected {c} values (one per output column), "
                                 f"got {pw.shape[0]}")
            with np.errstate(over="ignore", under="ignore"):
                pw = np.full(c, pw, dtype=dtype)  # a number broadcast; an array converted
            if not (np.isfinite(pw) & (pw > 0)).all():  # 1e39 is inf in float32, 1e-50 is 0
                raise ValueError(f"pos_weight: expected positive numbers finite in "
                                 f"{key[0].name}, got {self._pos_weight!r}")
            pw.flags.writeable = False
            self._native[key] = pw
        return pw

    def __repr__(self):
        return (f"{type(self).__name__}(reduction={self.reduction!r}, "
                f"pos_weight={self._pos_weight!r})")


def _checked_pos_weight(pos_weight):
    """None, a float, or a read-only float64 copy of a 1-D array: positive finite numbers."""
    if pos_weight is None:
        return None
    arr = as_array(pos_weight, "pos_weight")
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"pos_weight: expected None, a number or a 1-D array of numbers, got "
                        f"{type(pos_weight).__name__} of dtype {arr.dtype.name!r}")
    if arr.ndim > 1 or arr.size == 0:
        raise ValueError(f"pos_weight: expected None, a number or a non-empty 1-D array (one "
                         f"weight per output column), got shape {arr.shape}")
    values = arr.astype(np.float64).reshape(-1)
    bad = np.flatnonzero(~(np.isfinite(values) & (values > 0)))
    if bad.size:
        where = f" at index {bad[0]}" if arr.ndim else ""
        raise ValueError(f"pos_weight: expected positive finite numbers, got "
                         f"{arr.reshape(-1)[bad[0]].item()!r}{where}")
    if arr.ndim == 0:
        return float(values[0])
    values.flags.writeable = False
    return values


class PoissonLoss(Loss):
    """Poisson negative log-likelihood of the output read as a log-rate z (a linear last
    layer; the predicted mean is exp(z), as scikit-learn's MLPRegressor(loss="poisson"))
    against targets t >= 0 (counts or rates; a target of shape (n,) is read as (n, 1) when the
    output has one column):

        l = exp(z) - t z,  dl/dz = exp(z) - t

    torch.nn.PoissonNLLLoss(log_input=True, full=False). reduction="mean" averages over all
    n*c elements (as torch), "sum" adds them. scikit-learn's ``poisson_loss`` (half the
    Poisson deviance) is ``PoissonLoss("sum") / n`` plus sum(t log t - t) / n, a constant of
    the targets, so the two have the same gradient.
    """

    def elements_per_row(self, c):
        return c  # torch's mean is over every element

    def accuracy(self, correct, n, c):
        return None  # a rate has no right answer to count

    def _kernel(self, kind, Z, T, dZ, w):
        return _losses.py_poisson_nll(Z, T, dZ, _REDUCTIONS[self.reduction], w)

    def target_for(self, target, n, c, dtype, finite=True, name="target"):
        """(loss kind, target as a C-contiguous (n, c) array of dtype, finite and >= 0 when
        `finite`, else checked by the engine); errors name `name`."""
        return _ranged_rows(_KIND.POISSON, target, n, c, dtype, finite, name)
