"""SGD over flat parameter buffers.

The update is the 1986 paper's eq. 9 (also scikit-learn's form), ``v <- momentum * v - lr * g;
w <- w + v``, which with a constant learning rate matches ``torch.optim.SGD`` step for step.
Options: ``nesterov``; ``weight_decay`` (L2: ``g <- g + weight_decay * w``, as torch); ``decay``
(the paper's decoupled decay, ``w <- (1 - decay) * w`` after each update, biases included).
"""
import numpy as np

from bpcore import _optim
from bpcore._validation import check_real

__all__ = ["SGD"]


class _Segment:
    """A run of parameters that sit back to back in one flat buffer: updated in one call."""

    __slots__ = ("data", "grad", "velocity")

    def __init__(self, data, grad):
        self.data, self.grad = data, grad
        self.velocity = np.zeros_like(data)


def _segments(params):
    """Merge parameters that are adjacent in the same flat buffers into 1-D segments."""
    runs = []  # [flat, gflat, start, stop] or [None, param]
    for p in params:
        if p._flat is not None:
            flat, gflat = p._flat
            start, stop = p._offset, p._offset + p.size
            if runs and runs[-1][0] is flat and runs[-1][3] == start:
                runs[-1][3] = stop
            else:
                runs.append([flat, gflat, start, stop])
        else:
            runs.append([None, p])
    segs = []
    for run in runs:
        if run[0] is None:
            p = run[1]
            if not (p.data.flags.c_contiguous and p.grad.flags.c_contiguous):
                raise ValueError(f"params: {p!r} must be C-contiguous")
            segs.append(_Segment(p.data.reshape(-1), p.grad.reshape(-1)))
        else:
            flat, gflat, start, stop = run
            segs.append(_Segment(flat[start:stop], gflat[start:stop]))
    return segs


def _as_parameter_list(params):
    from bpcore.layers import Parameter

    if hasattr(params, "parameters"):
        params = params.parameters()
    if isinstance(params, (str, bytes)) or not hasattr(params, "__iter__"):
        raise TypeError(f"params: expected a model or a list of its Parameters, got "
                        f"{type(params).__name__}")
    params = list(params)
    if not params:
        raise ValueError("params: expected at least one parameter, got none")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"params[{i}]: expected a bpcore Parameter, got {type(p).__name__}")
        if p.data.dtype not in (np.float32, np.float64):
            raise TypeError(f"params[{i}]: expected float32 or float64, got {p.data.dtype.name}")
    dtypes = {p.data.dtype for p in params}
    if len(dtypes) > 1:
        raise TypeError(f"params: expected one dtype, got {sorted(d.name for d in dtypes)}")
    return params


class SGD:
    """Stochastic gradient descent with momentum, Nesterov, L2 and decoupled weight decay.

    ``params``: a model (anything with ``parameters()``) or a list of its Parameters.
    ``lr`` and ``momentum`` may be changed between steps (schedules).
    """

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 decay=0.0):
        self.params = _as_parameter_list(params)
        self.dtype = self.params[0].data.dtype
        self.nesterov = False
        self.lr = lr
        self.momentum = momentum
        if nesterov and self._momentum == 0:
            raise ValueError("nesterov: expected momentum > 0 with Nesterov, got momentum=0")
        self.nesterov = bool(nesterov)
        self.weight_decay = self._hyper(weight_decay, "weight_decay", low=0)
        self.decay = self._hyper(decay, "decay", low=0, high=1, high_open=True)
        self._segments = _segments(self.params)

    def _hyper(self, value, name, **bounds):
        v = check_real(value, name, **bounds)
        with np.errstate(over="ignore"):
            fits = np.isfinite(self.dtype.type(v))
        if not fits:
            raise ValueError(f"{name}: expected a value finite in {self.dtype.name}, got {value!r}")
        return v

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = self._hyper(value, "lr", low=0)

    @property
    def momentum(self):
        return self._momentum

    @momentum.setter
    def momentum(self, value):
        m = self._hyper(value, "momentum", low=0)
        if self.nesterov and m == 0:
            raise ValueError("momentum: expected momentum > 0 with Nesterov, got momentum=0")
        self._momentum = m

    def step(self):
        """Apply one update to every parameter from its accumulated gradient."""
        for s in self._segments:
            _optim.py_sgd_update(s.data, s.grad, s.velocity, self._lr, self._momentum,
                                 self.nesterov, self.weight_decay, self.decay)

    def zero_grad(self):
        for s in self._segments:
            s.grad[...] = 0

    def __repr__(self):
        opts = [f"lr={self._lr:g}", f"momentum={self._momentum:g}"]
        if self.nesterov:
            opts.append("nesterov=True")
        if self.weight_decay:
            opts.append(f"weight_decay={self.weight_decay:g}")
        if self.decay:
            opts.append(f"decay={self.decay:g}")
        return f"SGD({', '.join(opts)})"
