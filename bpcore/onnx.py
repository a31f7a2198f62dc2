"""ONNX export of bpcore's networks and of its scikit-learn drop-ins.

``to_onnx(model)`` builds an ``onnx.ModelProto`` from the weights: ``Gemm`` for each dense
layer and ONNX's own operator for each activation, so any ONNX runtime reproduces
``predict`` (and ``predict_proba``) to round-off. Input ``X`` (n, n_features); outputs named
as skl2onnx names them: ``label`` and ``probabilities`` for a classifier, ``variable``
(n, n_outputs) for a regressor and for a plain network's raw output.

onnx is an optional dependency (``pip install 'bpcore[onnx]'``): ``import bpcore`` never
imports it, this module does. When skl2onnx is installed, importing this module also
registers bpcore's estimators with it (``register_skl2onnx``), so that
``skl2onnx.to_onnx(estimator, X[:1])`` converts them, alone or inside a Pipeline.
"""
import sys

import numpy as np

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # pragma: no cover - exercised only without onnx
    raise ImportError("bpcore.onnx needs onnx: pip install 'bpcore[onnx]'") from exc

from bpcore._version import __version__
from bpcore.layers import (ELU, GELU, Dense, Dropout, Identity, LeakyReLU, ReLU, Sigmoid, SiLU,
                           Softmax, Softplus, Tanh)
from bpcore.model import Sequential

__all__ = ["to_onnx", "register_skl2onnx", "OPSET"]

OPSET = 13
"""The ONNX opset of the exported graphs: the oldest in which every operator used has the
semantics relied on (Softmax over one axis), so older runtimes load them too."""

_FLOATS = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.float64): TensorProto.DOUBLE}

# scikit-learn's activation names -> the layer that computes it in a bpcore network
_SKLEARN_HIDDEN = {"identity": Identity, "logistic": Sigmoid, "tanh": Tanh, "relu": ReLU}


# ---------------------------------------------------------------------------------------------
# Where the nodes go: onnx's own lists (to_onnx) or skl2onnx's container (its converter). The
# graph of a network is written once, against this interface.

class _Nodes:
    """A graph under construction, made with onnx.helper."""

    def __init__(self):
        self.nodes, self.initializers, self._counts = [], [], {}

    def fresh(self, hint):
        """hint_k, k counting the uses of hint: never an input's or an output's name."""
        k = self._counts.get(hint, 0)
        self._counts[hint] = k + 1
        return f"{hint}_{k}"

    def constant(self, hint, array):
        name = self.fresh(hint)
        self.initializers.append(_tensor(name, array))
        return name

    def node(self, op, inputs, hint=None, output=None, **attrs):
        output = output or self.fresh(hint or op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [output],
                                           name=self.fresh(op), **attrs))
        return output


class _Container:
    """A graph under construction inside skl2onnx's conversion (its scope and container)."""

    def __init__(self, scope, container):
        self.scope, self.container = scope, container

    def constant(self, hint, array):
        name = self.scope.get_unique_variable_name(hint)
        tensor = _tensor(name, array)
        if tensor.data_type == TensorProto.STRING:  # the container copies raw_data only
            self.container.add_initializer(name, TensorProto.STRING, list(tensor.dims),
                                           list(tensor.string_data))
        else:
            self.container.add_initializer(name, tensor.data_type, list(tensor.dims), tensor)
        return name

    def node(self, op, inputs, hint=None, output=None, **attrs):
        output = output or self.scope.get_unique_variable_name(hint or op.lower())
        self.container.add_node(op, list(inputs), [output],
                                name=self.scope.get_unique_operator_name(op), **attrs)
        return output


def _tensor(name, array):
    array = np.asarray(array)
    if array.dtype.kind in "OU":
        return helper.make_tensor(name, TensorProto.STRING, array.shape,
                                  [str(s).encode("utf-8") for s in array.ravel()])
    return numpy_helper.from_array(np.ascontiguousarray(array), name)


# ---------------------------------------------------------------------------------------------
# A network as steps: ("dense", W, b) or ("act", layer, where), where names the layer in
# error messages.

def _network_steps(model):
    """The steps of a bpcore Sequential/MLP, read from its layers' public attributes."""
    steps = []
    for i, layer in enumerate(model.layers):
        if type(layer) is Dense:
            steps.append(("dense", layer.W, layer.b))  # masked weights are stored as zeros
        elif type(layer) is Dropout:
            continue  # the identity at inference, as in predict
        else:
            steps.append(("act", layer, f"layers[{i}] ({layer!r})"))
    return steps


def _estimator_steps(est):
    """The steps of a fitted bpcore scikit-learn estimator, from coefs_ and intercepts_ as
    they are now (predict reads the same)."""
    hidden = _SKLEARN_HIDDEN.get(est.activation)
    if hidden is None:
        raise ValueError(f"activation: expected one of {sorted(_SKLEARN_HIDDEN)} for the ONNX "
                         f"export, got {est.activation!r}")
    steps = []
    last = len(est.coefs_) - 1
    for i, (W, b) in enumerate(zip(est.coefs_, est.intercepts_)):
        steps.append(("dense", np.asarray(W), np.asarray(b)))
        if i < last:
            steps.append(("act", hidden(), f"activation ({est.activation!r})"))
    return steps


def _activation(graph, layer, x, dtype, where):
    """The nodes of one activation layer applied to x; returns the output's name."""
    kind = type(layer)
    if kind is Identity:
        return x
    if kind is ReLU:
        return graph.node("Relu", [x])
    if kind is Sigmoid:
        return graph.node("Sigmoid", [x])
    if kind is Tanh:
        return graph.node("Tanh", [x])
    if kind is Softmax:
        return graph.node("Softmax", [x], axis=1)
    # LeakyReLU, ELU and Softplus are written with elementary operators: onnxruntime has
    # float32 kernels only for LeakyRelu, Elu and Softplus
    if kind is LeakyReLU:
        positive = graph.node("Greater", [x, graph.constant("zero", np.array(0.0, dtype))])
        slope = graph.constant("slope", np.array(layer.negative_slope, dtype))
        return graph.node("Where", [positive, x, graph.node("Mul", [x, slope])],
                          hint="leaky_relu")
    if kind is ELU:
        positive = graph.node("Greater", [x, graph.constant("zero", np.array(0.0, dtype))])
        one = graph.constant("one", np.array(1.0, dtype))
        negative = graph.node("Mul", [graph.node("Sub", [graph.node("Exp", [x]), one]),
                                      graph.constant("alpha", np.array(layer.alpha, dtype))])
        return graph.node("Where", [positive, x, negative], hint="elu")
    if kind is SiLU:
        return graph.node("Mul", [x, graph.node("Sigmoid", [x])], hint="silu")
    if kind is GELU:
        half = graph.constant("half", np.array(0.5, dtype))
        one = graph.constant("one", np.array(1.0, dtype))
        if layer.approximate == "none":  # z Phi(z) = z (1 + erf(z / sqrt 2)) / 2
            if dtype != np.float32:
                # a float32 Erf would silently round the float64 graph to float32
                raise ValueError(f"{where}: the exact GELU needs Erf, which onnxruntime runs "
                                 "in float32 only: export with dtype='float32', or use "
                                 "GELU(approximate='tanh')")
            scaled = graph.node("Mul", [x, graph.constant("rsqrt2", np.array(np.sqrt(0.5),
                                                                                dtype))])
            phi2 = graph.node("Add", [one, graph.node("Erf", [scaled])])
        else:  # torch's tanh form: z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3))) / 2
            cube = graph.node("Mul", [x, graph.node("Mul", [x, x])])
            inner = graph.node("Add", [x, graph.node("Mul", [cube, graph.constant(
                "gelu_c", np.array(0.044715, dtype))])])
            arg = graph.node("Mul", [inner, graph.constant(
                "sqrt_2_over_pi", np.array(np.sqrt(2.0 / np.pi), dtype))])
            phi2 = graph.node("Add", [one, graph.node("Tanh", [arg])])
        return graph.node("Mul", [graph.node("Mul", [x, half]), phi2], hint="gelu")
    if kind is Softplus:
        # torch's rule: log(1 + exp(beta z)) / beta, and z itself where beta z > threshold;
        # log(1 + exp(u)) = max(u, 0) + log(1 + exp(-|u|)) does not overflow
        beta = graph.constant("beta", np.array(layer.beta, dtype))
        bz = graph.node("Mul", [x, beta])
        one = graph.constant("one", np.array(1.0, dtype))
        tail = graph.node("Log", [graph.node("Add", [one, graph.node("Exp", [
            graph.node("Neg", [graph.node("Abs", [bz])])])])])
        soft = graph.node("Div", [graph.node("Add", [graph.node("Relu", [bz]), tail]), beta])
        linear = graph.node("Greater", [bz, graph.constant("threshold",
                                                           np.array(layer.threshold, dtype))])
        return graph.node("Where", [linear, x, soft], hint="softplus")
    raise ValueError(f"{where}: {kind.__name__} has no ONNX export (supported: Dense, Dropout, "
                     "Identity, ReLU, Sigmoid, Tanh, Softmax, LeakyReLU, ELU, GELU, SiLU, "
                     "Softplus)")


def _forward(graph, steps, x, dtype):
    """The nodes of the steps applied to x, computing in dtype; returns the output's name."""
    for step in steps:
        if step[0] == "dense":
            _, W, b = step
            x = graph.node("Gemm", [x, graph.constant("W", np.asarray(W, dtype)),
                                    graph.constant("b", np.asarray(b, dtype))], hint="Z")
        else:
            x = _activation(graph, step[1], x, dtype, step[2])
    return x


# ---------------------------------------------------------------------------------------------
# The estimators' heads

def _estimator_kind(est):
    """"classifier", "regressor", or None when est is not one of bpcore's estimators. Only a
    program that imported bpcore.sklearn can hold one: scikit-learn is not imported here."""
    module = sys.modules.get("bpcore.sklearn")
    if module is None:
        return None
    if isinstance(est, module.MLPClassifier):
        return "classifier"
    if isinstance(est, module.MLPRegressor):
        return "regressor"
    return None


def _check_fitted(est):
    from sklearn.utils.validation import check_is_fitted
    check_is_fitted(est, "coefs_")


def _label_table(classes):
    """classes_ as an ONNX label table: int64 for integer (and integral float, and bool)
    labels, as skl2onnx does, strings for string labels."""
    classes = np.asarray(classes)
    if classes.dtype.kind in "biu":
        return classes.astype(np.int64)
    if classes.dtype.kind == "f":
        if not np.array_equal(classes, np.round(classes)):
            raise ValueError(f"classes_: expected integer or string labels for the ONNX "
                             f"export, got {classes.tolist()!r}")
        return classes.astype(np.int64)
    if classes.dtype.kind == "U" or all(isinstance(c, str) for c in classes):
        return classes.astype(object)
    if all(isinstance(c, (int, np.integer)) and not isinstance(c, bool) for c in classes):
        return classes.astype(np.int64)
    raise ValueError(f"classes_: expected integer or string labels for the ONNX export, got "
                     f"{classes.tolist()!r}")


def _classifier_task(est):
    """"binary" (one logistic output), "multilabel" (several) or "multiclass" (softmax): what
    predict does, read from out_activation_ and n_outputs_."""
    if est.out_activation_ == "softmax":
        return "multiclass"
    if est.out_activation_ == "logistic":
        return "binary" if est.n_outputs_ == 1 else "multilabel"
    raise ValueError(f"out_activation_: expected 'softmax' or 'logistic' for a classifier, "
                     f"got {est.out_activation_!r}")


def _outputs(est, dtype, class_indices=False):
    """The estimator's outputs' ONNX element types and shapes after the rows: a classifier's
    labels and probabilities, a regressor's values."""
    if _estimator_kind(est) == "regressor":
        return [(_FLOATS[dtype], [est.n_outputs_])]
    task = _classifier_task(est)
    if task == "multilabel":
        return [(TensorProto.INT64, [est.n_outputs_]), (_FLOATS[dtype], [est.n_outputs_])]
    strings = not class_indices and _label_table(est.classes_).dtype == object
    return [(TensorProto.STRING if strings else TensorProto.INT64, []),
            (_FLOATS[dtype], [len(est.classes_) if task == "multiclass" else 2])]


def _classifier_graph(graph, est, x, dtype, label_name, proba_name, class_indices=False):
    """The classifier's nodes; class_indices: labels are the classes' indices (skl2onnx's
    option nocl), not classes_."""
    task = _classifier_task(est)
    table = (np.arange(len(est.classes_), dtype=np.int64) if class_indices
             else _label_table(est.classes_))
    steps = _estimator_steps(est)
    z = _forward(graph, steps, x, dtype)
    if task == "multiclass":
        proba = graph.node("Softmax", [z], output=proba_name, axis=1)
        # predict: the class of the largest probability (the first of equal ones)
        index = graph.node("ArgMax", [proba], hint="index", axis=1, keepdims=0)
        graph.node("Gather", [graph.constant("classes", table), index], output=label_name,
                   axis=0)
        return
    p = graph.node("Sigmoid", [z], hint="p")
    half = graph.constant("half", np.array(0.5, dtype))
    positive = graph.node("Greater", [p, half], hint="positive")  # LabelBinarizer's rule
    if task == "multilabel":
        graph.node("Identity", [p], output=proba_name)
        graph.node("Cast", [positive], output=label_name, to=TensorProto.INT64)
        return
    graph.node("Concat", [graph.node("Sub", [graph.constant("one", np.array(1.0, dtype)), p]),
                          p], output=proba_name, axis=1)
    # binary: classes_[p > 0.5]; a one-class fit predicts its one class either way
    if table.shape[0] == 1:
        table = np.concatenate([table, table])
    index = graph.node("Reshape", [graph.node("Cast", [positive], to=TensorProto.INT64),
                                   graph.constant("flat", np.array([-1], np.int64))])
    graph.node("Gather", [graph.constant("classes", table), index], output=label_name, axis=0)


def _regressor_graph(graph, est, x, dtype, value_name):
    z = _forward(graph, _estimator_steps(est), x, dtype)
    if est.out_activation_ == "exp":  # Poisson: the rate of the log-rate output
        z = graph.node("Exp", [z])
    elif est.out_activation_ != "identity":
        raise ValueError(f"out_activation_: expected 'identity' or 'exp' for a regressor, got "
                         f"{est.out_activation_!r}")
    graph.node("Identity", [z], output=value_name)


# ---------------------------------------------------------------------------------------------
# to_onnx

def _resolve_dtype(dtype, default):
    if dtype is None:
        return np.dtype(default)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved not in _FLOATS:
        raise ValueError(f"dtype: expected None, float32 or float64, got {dtype!r}")
    return resolved


def to_onnx(estimator, *, dtype=None, name=None):
    """The ONNX model (``onnx.ModelProto``, opset ``OPSET``) of a fitted bpcore
    ``MLPClassifier``/``MLPRegressor`` or of a bpcore ``Sequential``/``MLP``.

    Input ``X`` (n, n_features) of ``dtype`` (default: the weights' dtype, float32 or float64;
    the graph computes in it). Outputs:

    - classifier: ``label`` (n,) = ``predict`` (int64 for integer labels, strings for string
      labels; (n, n_outputs) int64 indicators for multi-label targets) and ``probabilities``
      (n, n_classes) = ``predict_proba``;
    - regressor: ``variable`` (n, n_outputs) = ``predict`` (a column for one output);
    - network: ``variable`` (n, n_outputs) = ``predict`` (its raw output; Dropout is the
      identity).

    ``name``: the graph's name (default: the model's class name). Raises NotFittedError for
    an unfitted estimator, ValueError naming the layer for one without an ONNX export.
    """
    kind = _estimator_kind(estimator)
    if kind is None and not isinstance(estimator, Sequential):
        raise TypeError(f"estimator: expected a bpcore MLPClassifier, MLPRegressor, Sequential "
                        f"or MLP, got {type(estimator).__name__}")
    if name is None:
        name = type(estimator).__name__
    elif not isinstance(name, str) or not name:
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    graph = _Nodes()
    if kind is None:
        dtype = _resolve_dtype(dtype, estimator.dtype)
        n_in = estimator.n_inputs
        graph.node("Identity", [_forward(graph, _network_steps(estimator), "X", dtype)],
                   output="variable")
        outputs = [helper.make_tensor_value_info("variable", _FLOATS[dtype],
                                                 ["N", estimator.n_outputs])]
    else:
        _check_fitted(estimator)
        dtype = _resolve_dtype(dtype, np.asarray(estimator.coefs_[0]).dtype)
        n_in = estimator.n_features_in_
        if kind == "classifier":
            names = ["label", "probabilities"]
            _classifier_graph(graph, estimator, "X", dtype, *names)
        else:
            names = ["variable"]
            _regressor_graph(graph, estimator, "X", dtype, *names)
        outputs = [helper.make_tensor_value_info(output, elem_type, ["N"] + shape)
                   for output, (elem_type, shape) in zip(names, _outputs(estimator, dtype))]
    inputs = [helper.make_tensor_value_info("X", _FLOATS[dtype], ["N", n_in])]
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(helper.make_graph(graph.nodes, name, inputs, outputs,
                                                graph.initializers),
                              opset_imports=opsets, producer_name="bpcore",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets))
    onnx.checker.check_model(model, full_check=True)  # types and shapes inferred, strictly
    return model


# ---------------------------------------------------------------------------------------------
# skl2onnx

def _skl2onnx_dtype(operator):
    """The dtype the converted graph computes in: the input's when it is double, else float32
    (skl2onnx's rule for its own MLP converters)."""
    from skl2onnx.common.data_types import DoubleTensorType
    return np.dtype(np.float64 if isinstance(operator.inputs[0].type, DoubleTensorType)
                    else np.float32)


def _skl2onnx_shapes(operator):
    """skl2onnx's shape calculator for bpcore's estimators."""
    from skl2onnx.common.data_types import (DoubleTensorType, FloatTensorType,
                                            Int64TensorType, StringTensorType)
    types = {TensorProto.FLOAT: FloatTensorType, TensorProto.DOUBLE: DoubleTensorType,
             TensorProto.INT64: Int64TensorType, TensorProto.STRING: StringTensorType}
    est = operator.raw_operator
    _check_fitted(est)
    n = operator.inputs[0].get_first_dimension()
    indices = _estimator_kind(est) == "classifier" and _class_indices(operator)
    for output, (elem_type, shape) in zip(operator.outputs,
                                          _outputs(est, _skl2onnx_dtype(operator), indices)):
        output.type = types[elem_type]([n] + shape)


def _skl2onnx_convert(scope, operator, container):
    """skl2onnx's converter for bpcore's estimators: the graph to_onnx builds, written into
    skl2onnx's container."""
    est = operator.raw_operator
    _check_fitted(est)
    dtype = _skl2onnx_dtype(operator)
    graph = _Container(scope, container)
    x = operator.inputs[0].full_name
    from skl2onnx.common.data_types import guess_proto_type
    if guess_proto_type(operator.inputs[0].type) != _FLOATS[dtype]:
        x = graph.node("Cast", [x], hint="X_cast", to=_FLOATS[dtype])
    if _estimator_kind(est) == "regressor":
        _regressor_graph(graph, est, x, dtype, operator.outputs[0].full_name)
    else:
        _classifier_graph(graph, est, x, dtype, operator.outputs[0].full_name,
                          operator.outputs[1].full_name, _class_indices(operator))


def _class_indices(operator):
    """skl2onnx's option nocl: labels are the classes' indices."""
    return bool(operator.scope_inst.get_options(operator.raw_operator,
                                                dict(nocl=False))["nocl"])


def register_skl2onnx():
    """Register bpcore's MLPClassifier and MLPRegressor with skl2onnx (imports skl2onnx and
    bpcore.sklearn): ``skl2onnx.to_onnx(estimator, X[:1])`` then converts them, with
    skl2onnx's classifier options (``options={"zipmap": False}`` for ``label`` and
    ``probabilities`` tensors). Importing bpcore.onnx calls it when skl2onnx is installed."""
    from skl2onnx import update_registered_converter

    from bpcore.sklearn import MLPClassifier, MLPRegressor

    update_registered_converter(MLPClassifier, "BpcoreMLPClassifier", _skl2onnx_shapes,
                                _skl2onnx_convert,
                                options={"zipmap": [True, False, "columns"],
                                         "output_class_labels": [False, True],
                                         "nocl": [False, True]})
    update_registered_converter(MLPRegressor, "BpcoreMLPRegressor", _skl2onnx_shapes,
                                _skl2onnx_convert)


try:
    import skl2onnx  # noqa: F401
except ImportError:
    pass
else:
    register_skl2onnx()
