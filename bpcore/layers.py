"""Layers: Dense and the activations, in the manner of torch.nn.

Every layer has ``forward`` and ``backward``; layers with weights expose them through
``parameters()``. Weights are ``W (fan_in, fan_out)`` and ``b (fan_out,)``, and ``forward``
computes ``X @ W + b``. Gradients accumulate (``backward`` adds to ``dW``/``db``) until
``zero_grad()``, as in PyTorch.

A layer's ``W``, ``b``, ``dW`` and ``db`` are views into one flat parameter buffer and one flat
gradient buffer. A standalone layer owns its own pair; a network (bpcore.model.Sequential)
gathers its layers into one pair, through ``bind``, so the optimiser updates every weight in one
loop. ``forward_unchecked``/``backward_unchecked`` are ``forward``/``backward`` for input a
network has already checked and converted.
"""
import numpy as np

from bpcore import _layers
from bpcore._claims import Claimed
from bpcore._validation import (as_array, as_matrix, assign_array, check_choice,
                                check_init_scale, check_int, check_real, float_dtype_of,
                                resolve_dtype, within_scale)
from bpcore.params import Parameter, as_generator, seed_value

__all__ = ["Module", "Dense", "Activation", "Identity", "ReLU", "Sigmoid", "Tanh", "LeakyReLU",
           "ELU", "GELU", "SiLU", "Softplus", "Softmax", "Dropout", "ACTIVATIONS", "NAMED_LAYERS"]


class Module:
    """Base class: parameters(), num_parameters, zero_grad(), train()/eval(), and calling =
    forward."""

    training = True  # dropout drops in the layer API's forward only in training mode

    def parameters(self):
        return []

    def train(self, mode=True):
        """Training mode (Dropout drops in forward), or evaluation mode with mode=False;
        returns self. train_step and fit always train; predict and evaluate never drop."""
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    @property
    def num_parameters(self):
        return sum(p.size for p in self.parameters())

    def zero_grad(self):
        params = self.parameters()
        with Claimed([p.grad for p in params], "zero_grad"):
            for p in params:
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
        try:
            flat, gflat = np.zeros(size, dtype), np.zeros(size, dtype)
        except (MemoryError, ValueError):  # ValueError: NumPy's "array is too big"
            raise ValueError(f"fan_in, fan_out: expected a layer that fits in memory, got "
                             f"{self.fan_in} x {self.fan_out} ({size:,} weights and as many "
                             f"gradients of {np.dtype(dtype).name})") from None
        self.bind(flat, gflat, 0)
        self.reset_parameters(init, seed)
        self._X = None

    # the flat-buffer plumbing ---------------------------------------------------------------
    @property
    def size(self):
        return self.fan_in * self.fan_out + self.fan_out

    def bind(self, flat, gflat, offset):
        """Make W, b, dW, db views of flat[offset:offset+size] and gflat[...], keeping the
        weights' values and zeroing the gradient. The Parameter objects stay the same, so an
        optimizer made over this layer before it joined a network follows it there."""
        nw = self.fan_in * self.fan_out
        w = flat[offset:offset + nw].reshape(self.fan_in, self.fan_out)
        b = flat[offset + nw:offset + nw + self.fan_out]
        dw = gflat[offset:offset + nw].reshape(self.fan_in, self.fan_out)
        db = gflat[offset + nw:offset + nw + self.fan_out]
        params = getattr(self, "_params", None)
        if params is None:
            self._params = (Parameter("W", w, dw, flat, gflat, offset),
                            Parameter("b", b, db, flat, gflat, offset + nw))
            return
        w[...], b[...] = params[0].data, params[1].data
        gflat[offset:offset + self.size] = 0
        params[0].move_to(w, dw, flat, gflat, offset)
        params[1].move_to(b, db, flat, gflat, offset + nw)

    # Assigning W, b, dW or db copies into the views (same shape and dtype, checked): the
    # network's flat buffers, which the engine, the optimizers and save use, are the weights.
    @property
    def W(self):
        return self._params[0].data

    @W.setter
    def W(self, value):
        self._params[0].data = value

    @property
    def b(self):
        return self._params[1].data

    @b.setter
    def b(self, value):
        self._params[1].data = value

    @property
    def dW(self):
        return self._params[0].grad

    @dW.setter
    def dW(self, value):
        assign_array(self.dW, value, "dW")

    @property
    def db(self):
        return self._params[1].grad

    @db.setter
    def db(self, value):
        assign_array(self.db, value, "db")

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
            s = check_init_scale(init, self.W.dtype)
            rng.uniform(self.W.reshape(-1), -s, s)
            rng.uniform(self.b, -s, s)
            within_scale(self.W, s)
            within_scale(self.b, s)
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
        return self.forward_unchecked(as_matrix(X, "X", self.W.dtype, cols=self.fan_in,
                                                what="fan_in"))

    def forward_unchecked(self, X, keep=True):
        Z = np.empty((X.shape[0], self.fan_out), self.W.dtype)
        with Claimed((self.W,), "forward"):
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
        return self.backward_unchecked(dZ, input_grad)

    def backward_unchecked(self, dZ, input_grad=True):
        X = self._X
        dX = np.empty_like(X) if input_grad else None
        with Claimed((self.W, self.dW), "backward"):
            _layers.py_dense_backward(X, self.W, dZ, self.dW, self.db, dX, self.mask)
        return dX

    def __repr__(self):
        masked = ""
        if self.mask is not None:
            masked = f", mask={int(self.mask.sum())}/{self.mask.size} connections"
        return f"Dense({self.fan_in}, {self.fan_out}{masked})"


# ---------------------------------------------------------------------------------------------
# Activations. The derivative is taken from the output the forward pass kept, except for those
# whose output does not determine it accurately (bpcore._layers.needs_input): they keep their
# input too.

class Activation(Module):
    """Base class of the activations. ``settings()`` are the constructor's arguments (saved in
    checkpoint files); ``spec`` is the native description (kind, p0, p1) the engine runs."""

    kind = _layers.Activation.IDENTITY
    name = "identity"

    def __init__(self):
        self._A = None
        self._Z = None

    def settings(self):
        return {}

    def _native_settings(self):
        """The native settings p0, p1 (see bpcore._layers.Activation)."""
        return 0.0, 0.0

    @property
    def spec(self):
        return (int(self.kind),) + self._native_settings()

    def forward(self, Z):
        Z = _as_activation_input(Z, "Z")
        return self.forward_unchecked(Z)

    def forward_unchecked(self, Z, keep=True):
        A = np.empty_like(Z)
        _layers.py_activation_forward(self.kind, Z, A, *self._native_settings())
        self._A = A if keep else None
        self._Z = Z if keep and _layers.needs_input(*self.spec) else None
        return A

    def backward(self, dA, input_grad=True):
        if self._A is None:
            raise RuntimeError(f"{type(self).__name__}.backward: call forward first")
        dA = as_matrix(dA, "dA", self._A.dtype, cols=self._A.shape[1], what="features")
        if dA.shape != self._A.shape:
            raise ValueError(f"dA: expected shape {self._A.shape} (the last forward's output), "
                             f"got {dA.shape}")
        return self.backward_unchecked(dA)

    def backward_unchecked(self, dA, input_grad=True):
        dZ = np.empty_like(dA)
        _layers.py_activation_backward(self.kind, self._A, dA, dZ, self._Z,
                                       *self._native_settings())
        return dZ

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({args})"


def _as_activation_input(Z, name):
    arr = as_array(Z, name)
    return as_matrix(arr, name, float_dtype_of(arr), what="features")


class Identity(Activation):
    """f(z) = z."""
    kind = _layers.Activation.IDENTITY
    name = "identity"


class ReLU(Activation):
    """f(z) = max(z, 0); f' = 1 where the output is positive, else 0."""
    kind = _layers.Activation.RELU
    name = "relu"


class Sigmoid(Activation):
    """The logistic f(z) = 1 / (1 + exp(-z)) of the 1986 paper; f' = f (1 - f)."""
    kind = _layers.Activation.SIGMOID
    name = "sigmoid"


class Tanh(Activation):
    """f(z) = tanh(z); f' = 1 - f^2."""
    kind = _layers.Activation.TANH
    name = "tanh"


class LeakyReLU(Activation):
    """f(z) = z for z > 0, else negative_slope * z (as torch.nn.LeakyReLU). With a slope >= 0
    the derivative comes from the output; a negative slope keeps the input."""
    kind = _layers.Activation.LEAKY_RELU
    name = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_real(negative_slope, "negative_slope")

    def settings(self):
        return {"negative_slope": self.negative_slope}

    def _native_settings(self):
        return self.negative_slope, 0.0


class ELU(Activation):
    """f(z) = z for z > 0, else alpha * (exp(z) - 1) (as torch.nn.ELU); keeps its input."""
    kind = _layers.Activation.ELU
    name = "elu"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_real(alpha, "alpha")

    def settings(self):
        return {"alpha": self.alpha}

    def _native_settings(self):
        return self.alpha, 0.0


class GELU(Activation):
    """f(z) = z * Phi(z), Phi the standard normal CDF: exact (erf) with approximate="none", or
    0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) with "tanh" (as torch.nn.GELU); keeps its
    input."""
    name = "gelu"

    def __init__(self, approximate="none"):
        super().__init__()
        self.approximate = check_choice(approximate, "approximate", ("none", "tanh"))
        self.kind = (_layers.Activation.GELU if approximate == "none"
                     else _layers.Activation.GELU_TANH)

    def settings(self):
        return {"approximate": self.approximate}


class SiLU(Activation):
    """f(z) = z * sigmoid(z) (as torch.nn.SiLU, also called swish); keeps its input."""
    kind = _layers.Activation.SILU
    name = "silu"


class Softplus(Activation):
    """f(z) = log(1 + exp(beta z)) / beta, and z where beta z > threshold (as
    torch.nn.Softplus); keeps its input."""
    kind = _layers.Activation.SOFTPLUS
    name = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = check_real(beta, "beta")
        if self.beta == 0:
            raise ValueError(f"beta: expected a nonzero number, got {beta!r}")
        self.threshold = check_real(threshold, "threshold")

    def settings(self):
        return {"beta": self.beta, "threshold": self.threshold}

    def _native_settings(self):
        return self.beta, self.threshold


class Softmax(Activation):
    """Softmax over each row (as torch.nn.Softmax(dim=1)): an output layer, for a network that
    predicts probabilities. Train the logits with SoftmaxCrossEntropyLoss (which applies the
    softmax itself) and add this layer for inference, or train through it with another loss.
    The training engine takes it as the last layer only."""
    kind = _layers.Activation.SOFTMAX
    name = "softmax"


ACTIVATIONS = {cls.name: cls for cls in (Identity, ReLU, Sigmoid, Tanh, LeakyReLU, ELU, GELU,
                                         SiLU, Softplus, Softmax)}
"""The activations by name (a checkpoint file's layer "type"), constructed with settings()."""


# ---------------------------------------------------------------------------------------------
# Dropout

class Dropout(Module):
    """Inverted dropout (as torch.nn.Dropout): in training, each value is zeroed with
    probability p and the others are scaled by 1 / (1 - p); the identity in predict, evaluate
    and the layer API's forward after eval().

    Masks come from a counter-based stream: element i of mask k is a hash of (seed, k, i), so
    a mask is the same whatever the thread count or the split of the rows. forward in training
    mode, and each train_step (every step of fit), draw the next mask: the layer API and the
    engine drop the same units from the same state. ``draws`` (masks drawn so far) is saved in
    checkpoint files, so a resumed run draws the masks it would have drawn.
    """
    name = "dropout"

    def __init__(self, p=0.5, seed=None, *, draws=0):
        self._p = check_real(p, "p", low=0, high=1, high_open=True)
        self._seed = seed_value(seed)
        draws = check_int(draws, "draws", low=0)
        self.state = np.array([self._seed, draws], np.uint64)  # the engine advances it too
        self._mask = None

    @property
    def p(self):
        return self._p

    @property
    def seed(self):
        return self._seed

    @property
    def mask(self):
        """The last training-mode forward's mask (n, features) of 0/1 bytes, or None."""
        return self._mask

    def settings(self):
        return {"p": self.p, "seed": self.seed, "draws": int(self.state[1])}

    def forward(self, X):
        return self.forward_unchecked(_as_activation_input(X, "X"))

    def forward_unchecked(self, X, keep=True):
        self._mask = None
        if not (keep and self.training) or self.p == 0:
            return X
        A = np.empty_like(X)
        self._mask = np.empty(X.shape, np.uint8)
        _layers.py_dropout(self.p, self.state, X, A, self._mask)
        return A

    def backward(self, dA, input_grad=True):
        if self._mask is None:
            return as_matrix(dA, "dA", float_dtype_of(as_array(dA, "dA")), what="features")
        dA = as_matrix(dA, "dA", np.result_type(dA), cols=self._mask.shape[1], what="features")
        if dA.shape != self._mask.shape:
            raise ValueError(f"dA: expected shape {self._mask.shape} (the last forward's output), "
                             f"got {dA.shape}")
        return self.backward_unchecked(dA)

    def backward_unchecked(self, dA, input_grad=True):
        if self._mask is None:  # the last forward did not drop
            return dA
        dX = np.array(dA, copy=True)
        _layers.py_undrop(self.p, self._mask, dX)
        return dX

    def __repr__(self):
        return f"Dropout(p={self.p})"


NAMED_LAYERS = {**ACTIVATIONS, Dropout.name: Dropout}
"""The layers without weights by name (a checkpoint file's layer "type"): activations and
Dropout, each constructed with its settings()."""
