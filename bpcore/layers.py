"""Layers: Dense, the activations and Sequential, in the manner of torch.nn.

Every layer has ``forward`` and ``backward``; layers with weights expose them through
``parameters()``. Weights are ``W (fan_in, fan_out)`` and ``b (fan_out,)``, and ``forward``
computes ``X @ W + b``. Gradients accumulate (``backward`` adds to ``dW``/``db``) until
``zero_grad()``, as in PyTorch.

A layer's ``W``, ``b``, ``dW`` and ``db`` are views into one flat parameter buffer and one flat
gradient buffer. A standalone layer owns its own pair; ``Sequential`` gathers the layers it is
given into one pair for the whole network, so the optimiser updates every weight in one loop.
"""
import os

import numpy as np

from bpcore import _layers
from bpcore._rng import Generator
from bpcore._validation import (as_array, as_matrix, check_choice, check_int, check_real,
                                float_dtype_of, resolve_dtype)

__all__ = ["Parameter", "Module", "Dense", "Identity", "ReLU", "Sigmoid", "Tanh", "Sequential"]


class Parameter:
    """A named weight array and its gradient, both views into flat buffers."""

    __slots__ = ("name", "data", "grad", "_flat", "_offset")

    def __init__(self, name, data, grad, flat=None, offset=0):
        self.name = name
        self.data = data
        self.grad = grad
        self._flat = flat  # (flat params, flat grads) this parameter lives in, if any
        self._offset = offset

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype.name})"


def new_seed():
    """A fresh 64-bit seed from the operating system, for seed=None."""
    return int.from_bytes(os.urandom(8), "little")


def as_generator(seed, name="seed"):
    if isinstance(seed, Generator):
        return seed
    if seed is None:
        return Generator(new_seed())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise TypeError(f"{name}: expected None or an integer in [0, 2**64), got {seed!r}")
    return Generator(int(seed))


class Module:
    """Base class: parameters(), num_parameters, zero_grad(), and calling = forward."""

    _owner = None  # the Sequential this layer belongs to: a layer keeps state for one network

    def parameters(self):
        return []

    @property
    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        for p in self.parameters():
            p.grad[...] = 0

    def __call__(self, X):
        return self.forward(X)


# ---------------------------------------------------------------------------------------------
# Dense

_INITS = ("glorot", "he")


class Dense(Module):
    """Fully connected layer: ``Z = X @ W + b`` with ``W (fan_in, fan_out)``.

    ``mask`` (fan_in, fan_out) of 0/1 fixes the connectivity: masked weights start at zero and
    their gradient is zeroed in every backward pass, so they stay zero through training (the
    restricted connectivity of the 1986 networks).

    ``init``: "glorot" (uniform, limit sqrt(6 / (fan_in + fan_out)); for sigmoid, tanh and
    linear units), "he" (uniform, limit sqrt(6 / fan_in); for ReLU), or a number ``s`` for
    weights *and* biases uniform in [-s, s] (the 1986 paper's scheme). Biases start at zero
    otherwise. ``seed`` is an integer, None (fresh entropy) or a bpcore Generator.
    """

    def __init__(self, fan_in, fan_out, mask=None, *, init="glorot", dtype="float32", seed=None):
        self.fan_in = check_int(fan_in, "fan_in", low=1)
        self.fan_out = check_int(fan_out, "fan_out", low=1)
        dtype = resolve_dtype(dtype)
        if mask is not None:
            mask = as_matrix(mask, "mask", dtype, cols=self.fan_out, what="fan_out")
            if mask.shape[0] != self.fan_in:
                raise ValueError(f"mask: expected shape ({self.fan_in}, {self.fan_out}), "
                                 f"got {mask.shape}")
            bad = mask[(mask != 0) & (mask != 1)]
            if bad.size:
                raise ValueError(f"mask: expected only 0 and 1 entries, got {bad[0]}")
        self.mask = mask
        size = self.fan_in * self.fan_out + self.fan_out
        self._bind(np.zeros(size, dtype), np.zeros(size, dtype), 0)
        self.reset_parameters(init, seed)
        self._X = None

    # the flat-buffer plumbing ---------------------------------------------------------------
    @property
    def size(self):
        return self.fan_in * self.fan_out + self.fan_out

    def _bind(self, flat, gflat, offset):
        """Make W, b, dW, db views of flat[offset:offset+size] and gflat[...]; keep the values."""
        nw = self.fan_in * self.fan_out
        old = getattr(self, "W", None), getattr(self, "b", None)
        w = flat[offset:offset + nw].reshape(self.fan_in, self.fan_out)
        b = flat[offset + nw:offset + nw + self.fan_out]
        if old[0] is not None:
            w[...] = old[0]
            b[...] = old[1]
            gflat[offset:offset + self.size] = 0
        self.W, self.b = w, b
        self.dW = gflat[offset:offset + nw].reshape(self.fan_in, self.fan_out)
        self.db = gflat[offset + nw:offset + nw + self.fan_out]
        self._params = [Parameter("W", self.W, self.dW, (flat, gflat), offset),
                        Parameter("b", self.b, self.db, (flat, gflat), offset + nw)]

    def reset_parameters(self, init="glorot", seed=None):
        """Draw fresh weights (see the class docstring for ``init`` and ``seed``)."""
        rng = as_generator(seed)
        if isinstance(init, str):
            check_choice(init, "init", _INITS)
            fan = self.fan_in + self.fan_out if init == "glorot" else self.fan_in
            limit = float(np.sqrt(6.0 / fan))
            rng.uniform(self.W.reshape(-1), -limit, limit)
            self.b[...] = 0
        else:
            s = check_real(init, "init", low=0)
            rng.uniform(self.W.reshape(-1), -s, s)
            rng.uniform(self.b, -s, s)
        if self.mask is not None:
            self.W *= self.mask

    def parameters(self):
        return list(self._params)

    @property
    def dtype(self):
        return self.W.dtype

    # forward and backward -------------------------------------------------------------------
    def forward(self, X):
        """X (n, fan_in) -> X @ W + b (n, fan_out)."""
        return self._forward(as_matrix(X, "X", self.W.dtype, cols=self.fan_in, what="fan_in"))

    def _forward(self, X, keep=True):
        Z = np.empty((X.shape[0], self.fan_out), self.W.dtype)
        _layers.py_dense_forward(X, self.W, self.b, Z)
        self._X = X if keep else None
        return Z

    def backward(self, dZ, input_grad=True):
        """Add X.T @ dZ to dW and dZ.sum(0) to db; return dZ @ W.T (None if not input_grad)."""
        if self._X is None:
            raise RuntimeError("Dense.backward: call forward first (predict keeps no state)")
        dZ = as_matrix(dZ, "dZ", self.W.dtype, cols=self.fan_out, what="fan_out")
        if dZ.shape[0] != self._X.shape[0]:
            raise ValueError(f"dZ: expected {self._X.shape[0]} rows (the batch of the last "
                             f"forward), got {dZ.shape[0]}")
        return self._backward(dZ, input_grad)

    def _backward(self, dZ, input_grad=True):
        X = self._X
        dX = np.empty_like(X) if input_grad else None
        _layers.py_dense_backward(X, self.W, dZ, self.dW, self.db, dX, self.mask)
        return dX

    def __repr__(self):
        masked = ""
        if self.mask is not None:
            masked = f", mask={int(self.mask.sum())}/{self.mask.size} connections"
        return f"Dense({self.fan_in}, {self.fan_out}{masked})"


# ---------------------------------------------------------------------------------------------
# Activations: the derivative is taken from the output the forward pass kept.

class _Activation(Module):
    kind = _layers.Activation.IDENTITY
    name = "identity"

    def __init__(self):
        self._A = None

    def forward(self, Z):
        Z = _as_activation_input(Z, "Z")
        return self._forward(Z)

    def _forward(self, Z, keep=True):
        A = np.empty_like(Z)
        _layers.py_activation_forward(self.kind, Z.reshape(-1), A.reshape(-1))
        self._A = A if keep else None
        return A

    def backward(self, dA, input_grad=True):
        if self._A is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        dA = as_matrix(dA, "dA", self._A.dtype, cols=self._A.shape[1], what="features")
        if dA.shape != self._A.shape:
            raise ValueError(f"dA: expected shape {self._A.shape} (the last forward's output), "
                             f"got {dA.shape}")
        return self._backward(dA)

    def _backward(self, dA, input_grad=True):
        dZ = np.empty_like(dA)
        _layers.py_activation_backward(self.kind, self._A.reshape(-1), dA.reshape(-1),
                                       dZ.reshape(-1))
        return dZ

    def __repr__(self):
        return f"{type(self).__name__}()"


def _as_activation_input(Z, name):
    arr = as_array(Z, name)
    return as_matrix(arr, name, float_dtype_of(arr), what="features")


class Identity(_Activation):
    """f(z) = z."""
    kind = _layers.Activation.IDENTITY
    name = "identity"


class ReLU(_Activation):
    """f(z) = max(z, 0); f' = 1 where the output is positive, else 0."""
    kind = _layers.Activation.RELU
    name = "relu"


class Sigmoid(_Activation):
    """The logistic f(z) = 1 / (1 + exp(-z)) of the 1986 paper; f' = f (1 - f)."""
    kind = _layers.Activation.SIGMOID
    name = "sigmoid"


class Tanh(_Activation):
    """f(z) = tanh(z); f' = 1 - f^2."""
    kind = _layers.Activation.TANH
    name = "tanh"


ACTIVATIONS = {cls.name: cls for cls in (Identity, ReLU, Sigmoid, Tanh)}


# ---------------------------------------------------------------------------------------------
# Sequential

class Sequential(Module):
    """Layers applied in order, with all their parameters gathered into one flat buffer.

    ``flat_params`` and ``flat_grads`` are those buffers: every ``W``/``b`` of every layer is a
    view into them, in layer order (W then b). Writing into ``flat_params`` changes the weights.
    """

    def __init__(self, *layers):
        if not layers:
            raise ValueError("layers: expected at least one layer, got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Module):
                raise TypeError(f"layers[{i}]: expected a bpcore layer, got {type(layer).__name__}")
            if layer._owner is not None or layers.index(layer) != i:
                raise ValueError(f"layers[{i}]: {layer!r} already belongs to a network; a layer "
                                 "keeps its weights and its last input for one network only")
        self.layers = list(layers)
        dense = [m for m in self.layers if isinstance(m, Dense)]
        if not dense:
            raise ValueError("layers: expected at least one Dense layer, got none")
        dtypes = {m.dtype for m in dense}
        if len(dtypes) > 1:
            raise TypeError(f"layers: expected one dtype for all Dense layers, got "
                            f"{sorted(d.name for d in dtypes)}")
        for a, b in zip(dense, dense[1:]):
            if a.fan_out != b.fan_in:
                raise ValueError(f"layers: {a!r} gives {a.fan_out} features but the next "
                                 f"{b!r} expects {b.fan_in}")
        self.dtype = dense[0].dtype
        self.n_inputs = dense[0].fan_in
        self.n_outputs = dense[-1].fan_out
        total = sum(m.size for m in dense)
        self.flat_params = np.zeros(total, self.dtype)
        self.flat_grads = np.zeros(total, self.dtype)
        offset = 0
        for m in dense:
            m._bind(self.flat_params, self.flat_grads, offset)
            offset += m.size
        for m in self.layers:
            m._owner = self
        # layers before the first Dense have no weights: backward stops there unless the input
        # gradient is asked for, and the first Dense skips computing its dX
        self._first_dense = self.layers.index(dense[0])

    def parameters(self):
        return [p for m in self.layers for p in m.parameters()]

    def forward(self, X):
        """X (n, n_inputs) -> the network's output (n, n_outputs); keeps what backward needs."""
        X = as_matrix(X, "X", self.dtype, cols=self.n_inputs)
        for m in self.layers:
            X = m._forward(X)
        return X

    def backward(self, grad_output, input_grad=False):
        """Back-propagate dloss/doutput through every layer, accumulating parameter gradients.

        Returns dloss/dX when ``input_grad`` is true, else None (the first Dense then skips
        computing it).
        """
        last = self.layers[-1]
        kept = last._X if isinstance(last, Dense) else last._A
        if kept is None:
            raise RuntimeError("backward: call forward first (predict keeps no state)")
        n = kept.shape[0]
        g = as_matrix(grad_output, "grad_output", self.dtype, cols=self.n_outputs,
                      what="n_outputs")
        if g.shape[0] != n:
            raise ValueError(f"grad_output: expected {n} rows (the batch of the last forward), "
                             f"got {g.shape[0]}")
        stop = 0 if input_grad else self._first_dense
        for i in range(len(self.layers) - 1, stop - 1, -1):
            g = self.layers[i]._backward(g, input_grad=input_grad or i > stop)
        return g if input_grad else None

    def predict(self, X):
        """The network's output for X, computed natively in chunks; keeps no state for backward."""
        return training.predict(self, X)

    def train_step(self, X, y, loss, optimizer):
        """One fused native step: forward, loss, backward, update. Returns the batch loss."""
        return training.train_step(self, X, y, loss, optimizer)

    def fit(self, X, y, **kwargs):
        """Train natively for whole epochs; see bpcore.training.fit for the arguments."""
        return training.fit(self, X, y, **kwargs)

    def evaluate(self, X, y, loss):
        """{"loss", "accuracy"} over all of X, computed natively."""
        return training.evaluate(self, X, y, loss)

    def save(self, path):
        """Write the layers and weights to path (.npz); ``bpcore.load(path)`` reads them back."""
        io.save(self, path)

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for i, m in enumerate(self.layers):
            n = m.num_parameters
            lines.append(f"  ({i}) {m!r}" + (f"  {n:,} parameters" if n else ""))
        lines.append(f")  {self.num_parameters:,} parameters, {self.dtype.name}")
        return "\n".join(lines)


# the engine and file formats drive Sequential and import it: imported last, once it exists
from bpcore import io, training  # noqa: E402
