"""The networks users train: Sequential and MLP, with their training, inference and files.

A network gathers its layers' weights into one flat parameter buffer and one flat gradient
buffer; the training engine (bpcore.training), the optimizers and the checkpoint files
(bpcore.io) all see those two vectors.
"""
import functools
import weakref

import numpy as np

from bpcore import io, training
from bpcore._buffers import aligned_zeros
from bpcore._claims import Claimed
from bpcore._validation import (as_matrix, assign_array, check_choice, check_init_scale,
                                check_int, resolve_dtype)
from bpcore.layers import ACTIVATIONS, GELU, NAMED_LAYERS, Activation, Dense, Dropout, Module
from bpcore.optim import Optimizer
from bpcore.params import as_generator

__all__ = ["Sequential", "MLP", "load", "load_optimizer", "load_extra", "activation_layer"]

# layers that belong to a network: a layer keeps its weights and its last input for one only
_IN_A_NETWORK = weakref.WeakSet()


class Sequential(Module):
    """Layers applied in order, with all their parameters gathered into one flat buffer.

    ``flat_params`` and ``flat_grads`` are those buffers: every ``W``/``b`` of every layer is a
    view into them, in layer order (W then b). Writing into ``flat_params`` changes the weights;
    assigning to it (or to a layer's ``W``/``b``) copies into the buffer, which must keep its
    shape and dtype. ``layers`` is a tuple: a network's layers are fixed when it is made.
    """

    def __init__(self, *layers):
        if not layers:
            raise ValueError("layers: expected at least one layer, got none")
        for i, layer in enumerate(layers):
            # the network drives its layers through forward_unchecked/backward_unchecked and
            # saves them by kind: Dense, the activations and Dropout are the layers it knows
            if not isinstance(layer, (Dense, Activation, Dropout)):
                raise TypeError(f"layers[{i}]: expected a bpcore layer, got "
                                f"{type(layer).__name__} (a network takes Dense layers and "
                                f"activations, not networks or other Modules)")
            if layer in _IN_A_NETWORK or layers.index(layer) != i:
                raise ValueError(f"layers[{i}]: {layer!r} already belongs to a network; a layer "
                                 "keeps its weights and its last input for one network only")
        self._layers = tuple(layers)
        dense = [m for m in layers if isinstance(m, Dense)]
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
        self._flat_params = aligned_zeros(total, self.dtype)
        self._flat_grads = aligned_zeros(total, self.dtype)
        offset = 0
        for m in dense:
            m.bind(self._flat_params, self._flat_grads, offset)
            offset += m.size
        _IN_A_NETWORK.update(layers)
        # layers before the first Dense have no weights: backward stops there unless the input
        # gradient is asked for, and the first Dense skips computing its dX
        self._first_dense = layers.index(dense[0])
        self._rows = None  # rows of the last forward pass that kept its state

    @property
    def layers(self):
        """The layers, in order (a tuple: the engine is built from them on first use)."""
        return self._layers

    @layers.setter
    def layers(self, value):
        raise AttributeError("layers: a network's layers are fixed when it is made; build a new "
                             "Sequential from the layers you want")

    # Assigning copies into the buffers: the engine and the optimizers hold these arrays.
    @property
    def flat_params(self):
        return self._flat_params

    @flat_params.setter
    def flat_params(self, value):
        assign_array(self._flat_params, value, "flat_params")

    @property
    def flat_grads(self):
        return self._flat_grads

    @flat_grads.setter
    def flat_grads(self, value):
        assign_array(self._flat_grads, value, "flat_grads")

    def parameters(self):
        return [p for m in self.layers for p in m.parameters()]

    def train(self, mode=True):
        super().train(mode)
        for m in self.layers:
            m.train(mode)
        return self

    def forward(self, X):
        """X (n, n_inputs) -> the network's output (n, n_outputs); keeps what backward needs."""
        X = as_matrix(X, "X", self.dtype, cols=self.n_inputs)
        self._rows = X.shape[0]
        for m in self.layers:
            X = m.forward_unchecked(X)
        return X

    def backward(self, grad_output, input_grad=False):
        """Back-propagate dloss/doutput through every layer, accumulating parameter gradients.

        Returns dloss/dX when ``input_grad`` is true, else None (the first Dense then skips
        computing it).
        """
        if self._rows is None:
            raise RuntimeError("backward: call forward first (predict keeps no state)")
        g = as_matrix(grad_output, "grad_output", self.dtype, cols=self.n_outputs,
                      what="n_outputs")
        if g.shape[0] != self._rows:
            raise ValueError(f"grad_output: expected {self._rows} rows (the batch of the last "
                             f"forward), got {g.shape[0]}")
        stop = 0 if input_grad else self._first_dense
        for i in range(len(self.layers) - 1, stop - 1, -1):
            g = self.layers[i].backward_unchecked(g, input_grad=input_grad or i > stop)
        return g if input_grad else None

    def predict(self, X):
        """The network's output for X, computed natively in chunks; keeps no state for backward."""
        return training.predict(self, X)

    def train_step(self, X, y, loss, optimizer, max_grad_norm=None, sample_weight=None,
                   comm=None):
        """One fused native step: forward, loss, backward, update. Returns the batch loss.
        See bpcore.training.train_step for the arguments."""
        return training.train_step(self, X, y, loss, optimizer, max_grad_norm=max_grad_norm,
                                   sample_weight=sample_weight, comm=comm)

    def fit(self, X, y, **kwargs):
        """Train natively for whole epochs; see bpcore.training.fit for the arguments."""
        return training.fit(self, X, y, **kwargs)

    def evaluate(self, X, y, loss, sample_weight=None):
        """{"loss", "accuracy"} over all of X, computed natively (rows weighted by
        sample_weight)."""
        return training.evaluate(self, X, y, loss, sample_weight)

    def save(self, path, optimizer=None, *, extra=None):
        """Write the layers and weights (and the optimizer's state, if given) to path, a
        safetensors file; ``bpcore.load(path)`` reads the network back and
        ``bpcore.load_optimizer(path, optimizer)`` the optimizer's state. ``extra``: JSON
        data kept beside them (``bpcore.load_extra(path)`` reads it back), e.g. what a
        wrapper such as bpcore.sklearn's estimators needs besides the network."""
        if optimizer is not None and not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer: expected None or a bpcore optimizer, got "
                            f"{type(optimizer).__name__}")
        with Claimed((self.flat_params,), "save"):  # a snapshot, not weights mid-update
            io.save_network(path, describe(self), _tensors(self),
                            None if optimizer is None else optimizer.state_dict(), extra)

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for i, m in enumerate(self.layers):
            n = m.num_parameters
            lines.append(f"  ({i}) {m!r}" + (f"  {n:,} parameters" if n else ""))
        lines.append(f")  {self.num_parameters:,} parameters, {self.dtype.name}")
        return "\n".join(lines)


def describe(model):
    """The architecture of model as plain data: what a file needs to rebuild it."""
    layers = []
    for m in model.layers:
        if isinstance(m, Dense):
            layers.append({"type": "dense", "fan_in": m.fan_in, "fan_out": m.fan_out,
                           "mask": m.mask is not None})
        else:
            layers.append({"type": m.name, **m.settings()})
    spec = {"dtype": np.dtype(model.dtype).name, "layers": layers}
    if isinstance(model, MLP):
        spec["mlp"] = {"sizes": model.sizes, "activation": model.activation,
                       "output_activation": model.output_activation}
    return spec


def _tensors(model):
    """The network's arrays by name: layers.{i}.W, layers.{i}.b and layers.{i}.mask."""
    tensors = {}
    for i, m in enumerate(model.layers):
        if isinstance(m, Dense):
            tensors[f"layers.{i}.W"], tensors[f"layers.{i}.b"] = m.W, m.b
            if m.mask is not None:
                tensors[f"layers.{i}.mask"] = m.mask
    return tensors


def build(spec, tensors):
    """A new network from describe()'s plain data and _tensors()'s arrays."""
    masks = {i: tensors[f"layers.{i}.mask"] for i in range(len(spec["layers"]))
             if f"layers.{i}.mask" in tensors}
    model = _architecture(spec, masks)
    for name, array in _tensors(model).items():
        if not name.endswith(".mask"):
            array[...] = tensors[name]
    return model


def _architecture(spec, masks):
    dtype = spec["dtype"]
    if "mlp" in spec and not masks:
        mlp = spec["mlp"]
        return MLP(mlp["sizes"], activation=mlp["activation"],
                   output_activation=mlp["output_activation"], dtype=dtype, seed=0)
    layers = []
    for i, d in enumerate(spec["layers"]):
        if d["type"] == "dense":
            layers.append(Dense(d["fan_in"], d["fan_out"], mask=masks.get(i), dtype=dtype, seed=0))
        elif d["type"] in NAMED_LAYERS:
            layers.append(NAMED_LAYERS[d["type"]](**{k: v for k, v in d.items() if k != "type"}))
        else:
            raise ValueError(f"layers[{i}]: unknown layer type {d['type']!r}")
    return Sequential(*layers)


def load(path):
    """The network saved at path (safetensors, or the .npz files of bpcore 0.1), as a new
    object with its weights."""
    spec, tensors = io.load_network(path)
    try:
        model = build(spec, tensors)
    except (KeyError, TypeError, ValueError) as exc:
        raise io.CheckpointError(path, f"architecture: {exc}") from None
    # the file's description of the layers must be the network its settings build (an MLP's
    # activations, say): the rule of which layers a network has lives in its constructor
    if describe(model) != spec:
        raise io.CheckpointError(path, f"architecture: the settings build "
                                       f"{describe(model)['layers']}, the file lists "
                                       f"{spec['layers']}")
    if not np.isfinite(model.flat_params).all():  # as assigning weights refuses them
        raise io.CheckpointError(path, "weights: expected finite values, got NaN or infinity")
    return model


def load_optimizer(path, optimizer):
    """Restore optimizer's state (moments, velocities, step count, settings) from the file
    written by ``model.save(path, optimizer=...)``, for an exact resume."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a bpcore optimizer (SGD, Adam, AdamW), got "
                        f"{type(optimizer).__name__}")
    optimizer.load_state_dict(io.load_optimizer_state(path))
    return optimizer


def load_extra(path):
    """The JSON data saved with ``model.save(path, extra=...)`` (None if there is none)."""
    return io.load_extra(path)


# the activations an MLP takes by name (each layer gets its own object, default settings), and
# those "auto" initialises with He's limits (rectifier-like: about half the units pass)
_MLP_ACTIVATIONS = {**{name: cls for name, cls in ACTIVATIONS.items() if name != "softmax"},
                    "gelu_tanh": functools.partial(GELU, approximate="tanh")}
_RECTIFIERS = ("relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus")


def activation_layer(name):
    """A new activation layer for one of MLP's activation names (or "softmax")."""
    check_choice(name, "activation", tuple(_MLP_ACTIVATIONS) + ("softmax",))
    return (_MLP_ACTIVATIONS.get(name) or ACTIVATIONS[name])()


class MLP(Sequential):
    """Multilayer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Hidden layers use ``activation``; the last layer uses ``output_activation`` (None for linear
    outputs, the right choice with SoftmaxCrossEntropyLoss, BCEWithLogitsLoss and PoissonLoss,
    which take logits or log-rates). Activations: "relu", "sigmoid", "tanh", "identity",
    "leaky_relu", "elu", "gelu", "gelu_tanh" (GELU's tanh form), "silu", "softplus", with
    torch.nn's default settings (build a Sequential for others); the output may also be
    "softmax" (probabilities, e.g. trained with MSELoss or for inference).

    Initialisation (``init``): "auto" draws each layer's weights uniformly with He limits
    sqrt(6 / fan_in) when the unit after it is a rectifier (ReLU, LeakyReLU, ELU, GELU, SiLU,
    Softplus) and Glorot limits sqrt(6 / (fan_in + fan_out)) otherwise, biases zero; "he" or "glorot" force one rule; a number ``s`` draws weights and
    biases uniformly in [-s, s] (the 1986 paper). One seeded stream initialises the layers in
    order, so ``seed`` fixes every weight.

    >>> MLP([784, 256, 128, 10]).num_parameters
    235146
    """

    def __init__(self, sizes, activation="relu", output_activation=None, dtype="float32",
                 seed=None, init="auto"):
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"sizes: expected a list of layer sizes, got {sizes!r}") from None
        if len(sizes) < 2:
            raise ValueError(f"sizes: expected at least two sizes (inputs and outputs), "
                             f"got {sizes!r}")
        sizes = [check_int(s, f"sizes[{i}]", low=1) for i, s in enumerate(sizes)]
        names = tuple(_MLP_ACTIVATIONS)
        check_choice(activation, "activation", names)
        check_choice("identity" if output_activation is None else output_activation,
                     "output_activation", names + ("softmax", None))
        dtype = resolve_dtype(dtype)
        if isinstance(init, str):
            check_choice(init, "init", ("auto", "he", "glorot"))
        else:
            check_init_scale(init, dtype)
        self.sizes = sizes
        self.activation = activation
        self.output_activation = output_activation
        rng = as_generator(seed)
        layers = []
        for i, (fi, fo) in enumerate(zip(sizes, sizes[1:])):
            act = activation if i < len(sizes) - 2 else (output_activation or "identity")
            rule = init
            if init == "auto":
                rule = "he" if act in _RECTIFIERS else "glorot"
            try:
                layers.append(Dense(fi, fo, init=rule, dtype=dtype, seed=rng))
            except ValueError as exc:  # name MLP's argument, not Dense's
                raise ValueError(f"sizes[{i}], sizes[{i + 1}]: {exc}") from None
            if act != "identity":
                layers.append(activation_layer(act))
        super().__init__(*layers)

    def __repr__(self):
        arch = " -> ".join(str(s) for s in self.sizes)
        out = self.output_activation or "identity"
        head = (f"MLP({arch}, activation={self.activation!r}, output_activation={out!r}, "
                f"dtype={self.dtype.name})")
        rows = []
        for m in self.layers:
            if isinstance(m, Dense):
                shape = f"W {m.fan_in}x{m.fan_out} + b {m.fan_out}"
                rows.append(f"  {m!r:<20}{shape:<24}{m.num_parameters:>12,}")
            else:
                rows.append(f"  {m!r}")
        rows.append(f"  {'total':<44}{self.num_parameters:>12,}")
        return "\n".join([head] + rows)
