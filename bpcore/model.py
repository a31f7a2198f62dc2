"""MLP: a Sequential of Dense layers and activations built from a list of layer sizes."""
from bpcore.layers import ACTIVATIONS, Dense, Sequential, as_generator
from bpcore._validation import check_choice, check_int, check_real, resolve_dtype

__all__ = ["MLP"]


class MLP(Sequential):
    """Multilayer perceptron ``sizes[0] -> sizes[1] -> ... -> sizes[-1]``.

    Hidden layers use ``activation``; the last layer uses ``output_activation`` (None for linear
    outputs, the right choice with SoftmaxCrossEntropyLoss). Activations: "relu", "sigmoid",
    "tanh", "identity".

    Initialisation (``init``): "auto" draws each layer's weights uniformly with He limits
    sqrt(6 / fan_in) when the unit after it is ReLU and Glorot limits sqrt(6 / (fan_in + fan_out))
    otherwise, biases zero; "he" or "glorot" force one rule; a number ``s`` draws weights and
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
        names = tuple(ACTIVATIONS)
        check_choice(activation, "activation", names)
        check_choice("identity" if output_activation is None else output_activation,
                     "output_activation", names + (None,))
        if isinstance(init, str):
            check_choice(init, "init", ("auto", "he", "glorot"))
        else:
            check_real(init, "init", low=0)
        dtype = resolve_dtype(dtype)
        self.sizes = sizes
        self.activation = activation
        self.output_activation = output_activation
        rng = as_generator(seed)
        layers = []
        for i, (fi, fo) in enumerate(zip(sizes, sizes[1:])):
            act = activation if i < len(sizes) - 2 else (output_activation or "identity")
            rule = init
            if init == "auto":
                rule = "he" if act == "relu" else "glorot"
            layers.append(Dense(fi, fo, init=rule, dtype=dtype, seed=rng))
            if act != "identity":
                layers.append(ACTIVATIONS[act]())
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
