"""bpcore.onnx: the exported graphs, run by onnxruntime, against bpcore's own predictions.

For every head of the scikit-learn drop-ins (binary, multiclass with string labels,
multi-label; one output, several, Poisson) with each hidden activation, in float32 and
float64: onnxruntime's labels equal predict exactly, its probabilities and values agree with
predict_proba/predict to round-off, through bpcore.onnx.to_onnx and through skl2onnx.to_onnx.
Then plain networks (every activation bpcore.MLP names, and a Sequential with settings,
dropout and a mask), and the errors.
"""
import functools
import pathlib
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import bpcore  # noqa: E402
from bpcore import onnx as bponnx  # noqa: E402
from bpcore.layers import Activation  # noqa: E402

HIDDEN = ["identity", "logistic", "tanh", "relu"]
DTYPES = [np.float32, np.float64]
CLASSIFIER_TASKS = ["binary", "multiclass_str", "multilabel"]
REGRESSOR_TASKS = ["single", "multi", "poisson"]


def _run(model, X):
    """onnxruntime's outputs for X, by output name."""
    session = ort.InferenceSession(model.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {session.get_inputs()[0].name: X})))


def _close(got, expected, dtype):
    """float32: within 1e-6 of values of order one (the regressors' targets are scaled to
    it); float64: 1e-12 relatively."""
    assert got.dtype == dtype
    if dtype == np.float32:
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


# -- the estimators ----------------------------------------------------------------------------

def _data(task):
    from sklearn.datasets import (load_digits, load_iris, make_multilabel_classification,
                                  make_regression)
    if task == "binary":  # versicolor against virginica: labels 1 and 2, not 0 and 1
        X, y = load_iris(return_X_y=True)
        return X[50:], y[50:]
    if task == "multiclass_str":
        X, y = load_digits(return_X_y=True)
        names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven",
                          "eight", "nine"])
        return X[:400] / 16, names[y[:400]]
    if task == "multilabel":
        X, Y = make_multilabel_classification(n_samples=150, n_features=8, n_classes=4,
                                              random_state=0)
        return X / 4, Y
    X, Y = make_regression(n_samples=150, n_features=5, n_targets=3, random_state=0)
    if task == "single":
        return X, Y[:, 0] / 100
    if task == "multi":
        return X, Y / 100
    rates = np.exp(X[:, :2].sum(axis=1) / 4)
    return X, np.random.RandomState(0).poisson(rates).astype(float)


@functools.lru_cache(maxsize=None)
def _fitted(task, activation, dtype):
    """A small network fitted for a few iterations (the export reads its weights, whatever
    they are), with two hidden layers; and its data, in dtype."""
    from sklearn.exceptions import ConvergenceWarning

    from bpcore import sklearn as bp
    X, y = _data(task)
    X = X.astype(dtype)
    if task in CLASSIFIER_TASKS:
        est = bp.MLPClassifier((8, 6), activation=activation, max_iter=15, random_state=0)
    else:
        est = bp.MLPRegressor(hidden_layer_sizes=(8, 6), activation=activation, max_iter=15, random_state=0,
                              loss="poisson" if task == "poisson" else "squared_error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert est.coefs_[0].dtype == dtype
    return est, X


def _check_classifier(est, X, outputs, dtype):
    label, proba = outputs["label"], outputs["probabilities"]
    expected = est.predict(X)
    assert label.shape == expected.shape
    assert np.array_equal(label, expected)
    _close(proba, est.predict_proba(X), dtype)


def _check_regressor(est, X, outputs, dtype):
    value = outputs["variable"]
    assert value.shape == (X.shape[0], est.n_outputs_)
    _close(value, est.predict(X).reshape(X.shape[0], -1), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize("task", CLASSIFIER_TASKS + REGRESSOR_TASKS)
def test_to_onnx_matches_predict(task, activation, dtype):
    pytest.importorskip("sklearn")
    est, X = _fitted(task, activation, dtype)
    model = bponnx.to_onnx(est)
    assert model.graph.input[0].type.tensor_type.elem_type == (
        onnx.TensorProto.FLOAT if dtype == np.float32 else onnx.TensorProto.DOUBLE)
    outputs = _run(model, X)
    if task in CLASSIFIER_TASKS:
        assert list(outputs) == ["label", "probabilities"]
        _check_classifier(est, X, outputs, dtype)
    else:
        assert list(outputs) == ["variable"]
        _check_regressor(est, X, outputs, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize("task", CLASSIFIER_TASKS + REGRESSOR_TASKS)
def test_skl2onnx_converts_the_estimators(task, activation, dtype):
    skl2onnx = pytest.importorskip("skl2onnx")
    est, X = _fitted(task, activation, dtype)
    if task in CLASSIFIER_TASKS:
        model = skl2onnx.to_onnx(est, X[:1], options={"zipmap": False})
        _check_classifier(est, X, _run(model, X), dtype)
    else:
        model = skl2onnx.to_onnx(est, X[:1])
        _check_regressor(est, X, _run(model, X), dtype)


def test_skl2onnx_zipmap_and_pipeline():
    """skl2onnx's default classifier output (ZipMap: a dict of probabilities per row), and a
    bpcore estimator converted inside a scikit-learn Pipeline."""
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bpcore import sklearn as bp
    est, X = _fitted("multiclass_str", "relu", np.float32)
    outputs = _run(skl2onnx.to_onnx(est, X[:1]), X)
    assert np.array_equal(outputs["output_label"], est.predict(X))
    proba = np.array([[row[c] for c in est.classes_] for row in outputs["output_probability"]])
    _close(proba.astype(np.float32), est.predict_proba(X), np.float32)

    # option nocl: the classes' indices as labels
    outputs = _run(skl2onnx.to_onnx(est, X[:1], options={"zipmap": False, "nocl": True}), X)
    assert outputs["label"].dtype == np.int64
    assert np.array_equal(est.classes_[outputs["label"]], est.predict(X))

    Xd, y = _data("multiclass_str")
    pipe = make_pipeline(StandardScaler(), bp.MLPClassifier((8,), max_iter=200, tol=0,
                                                            random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe.fit(Xd, y)
    outputs = _run(skl2onnx.to_onnx(pipe, Xd[:1], options={"zipmap": False}), Xd)
    assert np.array_equal(outputs["label"], pipe.predict(Xd))
    _close(outputs["probabilities"], pipe.predict_proba(Xd), np.float64)


def test_classifier_label_types():
    """Integer labels come out int64, integral float and bool labels as int64 equal to
    predict's; a one-class fit predicts its class."""
    pytest.importorskip("sklearn")
    from bpcore import sklearn as bp
    X, y = _data("binary")
    for labels in (y.astype(float), y == 2, np.full(y.shape, 7)):
        est = bp.MLPClassifier((4,), max_iter=200, tol=0, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            est.fit(X, labels)
        outputs = _run(bponnx.to_onnx(est), X.astype(np.float64))
        assert outputs["label"].dtype == np.int64
        assert np.array_equal(outputs["label"], est.predict(X))
        _close(outputs["probabilities"], est.predict_proba(X), np.float64)


def test_estimator_dtype_and_name():
    """dtype= sets the input and the arithmetic (float64 weights rounded to float32 here);
    name= names the graph; the outputs' types and the opset are declared."""
    pytest.importorskip("sklearn")
    est, X = _fitted("multiclass_str", "tanh", np.float64)
    model = bponnx.to_onnx(est, dtype="float32", name="digits")
    assert model.graph.name == "digits"
    assert model.opset_import[0].version == bponnx.OPSET
    label, proba = model.graph.output
    assert (label.name, label.type.tensor_type.elem_type) == ("label", onnx.TensorProto.STRING)
    assert proba.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    outputs = _run(model, X.astype(np.float32))
    np.testing.assert_allclose(outputs["probabilities"], est.predict_proba(X), atol=1e-5)
    assert np.mean(outputs["label"] == est.predict(X)) > 0.99
    assert bponnx.to_onnx(est).graph.name == "MLPClassifier"


# -- plain networks ----------------------------------------------------------------------------

MLP_ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity", "leaky_relu", "elu", "gelu",
                   "gelu_tanh", "silu", "softplus"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_activation", [None, "softmax", "sigmoid"])
@pytest.mark.parametrize("activation", MLP_ACTIVATIONS)
def test_mlp_export_matches_predict(activation, output_activation, dtype):
    model = bpcore.MLP([5, 9, 7, 3], activation=activation, output_activation=output_activation,
                       dtype=dtype, seed=1)
    X = np.random.default_rng(0).normal(scale=2.0, size=(64, 5)).astype(dtype)
    if activation == "gelu" and dtype == np.float64:
        # onnxruntime has no float64 Erf: refused, rather than rounded through float32
        with pytest.raises(ValueError, match=r"layers\[1\] \(GELU.*needs Erf.*float32 only"):
            bponnx.to_onnx(model)
        return
    outputs = _run(bponnx.to_onnx(model), X)
    assert list(outputs) == ["variable"]
    _close_network(outputs["variable"], model.predict(X), dtype)


def _close_network(got, expected, dtype):
    # erf, tanh and exp of the runtime and of the C library may differ by an ulp or two
    assert got.dtype == dtype
    if dtype == np.float32:
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sequential_with_settings_dropout_and_mask(dtype):
    """Settings other than the defaults (Softplus's threshold branch taken), Dropout (the
    identity at inference) and a masked Dense."""
    rng = np.random.default_rng(3)
    mask = (rng.random((6, 8)) < 0.6).astype(dtype)
    model = bpcore.Sequential(
        bpcore.Dense(6, 8, mask=mask, dtype=dtype, seed=0), bpcore.LeakyReLU(0.2),
        bpcore.Dropout(0.5, seed=0),
        bpcore.Dense(8, 8, dtype=dtype, seed=1), bpcore.ELU(0.5),
        bpcore.Dense(8, 8, dtype=dtype, seed=2), bpcore.Softplus(beta=2.0, threshold=1.0),
        bpcore.Dense(8, 4, dtype=dtype, init=1.0, seed=3), bpcore.Softmax())
    X = rng.normal(scale=3.0, size=(50, 6)).astype(dtype)
    outputs = _run(bponnx.to_onnx(model), X)
    _close_network(outputs["variable"], model.predict(X), dtype)


def test_network_dtype_override():
    model = bpcore.MLP([4, 6, 2], activation="tanh", dtype="float32", seed=0)
    X = np.random.default_rng(1).normal(size=(20, 4))
    got = _run(bponnx.to_onnx(model, dtype=np.float64), X)["variable"]
    W = [layer.W.astype(np.float64) for layer in model.layers if isinstance(layer, bpcore.Dense)]
    b = [layer.b.astype(np.float64) for layer in model.layers if isinstance(layer, bpcore.Dense)]
    expected = np.tanh(X @ W[0] + b[0]) @ W[1] + b[1]  # float32 weights, float64 arithmetic
    np.testing.assert_allclose(got, expected, rtol=1e-12)


# -- errors ------------------------------------------------------------------------------------

class _Swish(Activation):
    name = "swish"


def test_unsupported_layer_is_named():
    model = bpcore.Sequential(bpcore.Dense(3, 4), _Swish(), bpcore.Dense(4, 2))
    with pytest.raises(ValueError, match=r"layers\[1\].*_Swish has no ONNX export"):
        bponnx.to_onnx(model)


def test_estimator_errors():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import NotFittedError

    from bpcore import sklearn as bp
    for unfitted in (bp.MLPClassifier(), bp.MLPRegressor()):
        with pytest.raises(NotFittedError):
            bponnx.to_onnx(unfitted)
    est, _ = _fitted("binary", "relu", np.float64)
    for attribute, value, match in [("activation", "softsign", "activation: expected"),
                                    ("out_activation_", "exp", "out_activation_: expected"),
                                    ("classes_", np.array([0.5, 1.5]), "classes_: expected")]:
        bad = _pickle_copy(est)
        setattr(bad, attribute, value)
        with pytest.raises(ValueError, match=match):
            bponnx.to_onnx(bad)
    with pytest.raises(ValueError, match="dtype: expected None, float32 or float64, got 'int32'"):
        bponnx.to_onnx(est, dtype="int32")
    with pytest.raises(ValueError, match="name: expected a non-empty string"):
        bponnx.to_onnx(est, name="")
    with pytest.raises(TypeError, match="estimator: expected a bpcore .* got LinearRegression"):
        from sklearn.linear_model import LinearRegression
        bponnx.to_onnx(LinearRegression())


def test_skl2onnx_refuses_unfitted():
    skl2onnx = pytest.importorskip("skl2onnx")
    from sklearn.exceptions import NotFittedError

    from bpcore import sklearn as bp
    with pytest.raises(NotFittedError):
        skl2onnx.to_onnx(bp.MLPRegressor(), np.zeros((1, 3), np.float32))


def _pickle_copy(obj):
    import pickle
    return pickle.loads(pickle.dumps(obj))


def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)


def test_imports():
    """import bpcore imports no onnx; bpcore.onnx without onnx names the extra; without
    skl2onnx it imports, exports, and leaves scikit-learn alone."""
    result = _python("import sys, bpcore\n"
                     "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                     "('onnx', 'skl2onnx') or m == 'bpcore.onnx'))\n"
                     "sys.modules['skl2onnx'] = None\n"
                     "import bpcore.onnx\n"
                     "model = bpcore.onnx.to_onnx(bpcore.MLP([2, 3, 1]))\n"
                     "print(model.graph.output[0].name, 'sklearn' in sys.modules)")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["[]", "variable False"]

    result = _python("import sys; sys.modules['onnx'] = None; import bpcore.onnx")
    assert result.returncode != 0
    assert "ImportError: bpcore.onnx needs onnx: pip install 'bpcore[onnx]'" in result.stderr


def test_readme_example_runs(tmp_path, monkeypatch):
    """The README's "ONNX export" example (a ```py block, which the README test leaves to
    this file: it needs the optional packages)."""
    pytest.importorskip("sklearn")
    readme = pathlib.Path(__file__).resolve().parents[1] / "README.md"
    if not readme.is_file():  # the wheel's test run copies tests/ without the README
        pytest.skip(f"no README.md beside {readme.parent / 'tests'}")
    section = readme.read_text(encoding="utf-8").split("## ONNX export", 1)[1].split("\n## ")[0]
    (block,) = re.findall(r"```py\n(.*?)```", section, re.S)
    monkeypatch.chdir(tmp_path)  # the example writes its .onnx file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        namespace = {}
        exec(compile(block, str(readme), "exec"), namespace)
    assert list(tmp_path.glob("*.onnx"))
    assert np.array_equal(namespace["label"], namespace["clf"].predict(namespace["X"]))
