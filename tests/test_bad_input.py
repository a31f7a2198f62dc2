"""Bad input at the API boundary.

The requirement: wrong ndim, shape or dtype, X and y of different lengths, labels out of range,
a non-finite or negative learning rate, an empty batch -> ValueError/TypeError naming the
argument, the expected and the received value. Non-contiguous, Fortran-ordered, read-only or
other-dtype arrays are converted once at the boundary and give the same answer as clean input.
Nothing crashes the interpreter and nothing gives a silently wrong answer.

Every ``match=`` below checks the argument's name and, where there is one, the received value or
shape. A failing test here is a bpcore bug, not a test to relax.
"""
import re
import warnings

import numpy as np
import scipy.sparse
import pytest

import bpcore
from bpcore import (MLP, SGD, Dense, Identity, MSELoss, Parameter, ReLU, Sequential, Sigmoid,
                    SoftmaxCrossEntropyLoss, Tanh, one_hot)
from bpcore import _blas, _layers, _losses, _optim

NAN, INF = float("nan"), float("inf")
DTYPES = ["float32", "float64"]
N_IN, N_OUT = 3, 2


def _x(n=4, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (n, N_IN)).astype(dtype)


# ---------------------------------------------------------------------------------------------
# The entry points that take X: each builds a fresh (seeded) model with 3 inputs, 2 outputs.

def _mlp(dtype="float32"):
    return MLP([N_IN, 5, N_OUT], activation="tanh", dtype=dtype, seed=7)


def _seq(dtype="float32"):
    return Sequential(Dense(N_IN, 4, dtype=dtype, seed=1), Sigmoid(),
                      Dense(4, N_OUT, dtype=dtype, seed=2))


ENTRY_POINTS = {
    "MLP.forward": lambda dtype: _mlp(dtype).forward,
    "MLP.predict": lambda dtype: _mlp(dtype).predict,
    "MLP.__call__": lambda dtype: _mlp(dtype),
    "Sequential.forward": lambda dtype: _seq(dtype).forward,
    "Sequential.predict": lambda dtype: _seq(dtype).predict,
    "Dense.forward": lambda dtype: Dense(N_IN, N_OUT, dtype=dtype, seed=3).forward,
}


@pytest.fixture(params=list(ENTRY_POINTS))
def entry(request):
    return ENTRY_POINTS[request.param]


def _nan_x():
    X = np.ones((2, N_IN))
    X[1, 2] = NAN
    return X


def _inf_x(sign):
    X = np.ones((2, N_IN))
    X[0, 1] = sign * INF
    return X


BAD_X = [
    ("1-D", lambda: np.ones(N_IN), ValueError,
     r"X: expected a 2-D array.*got 1-D with shape \(3,\)"),
    ("3-D", lambda: np.ones((2, N_IN, 1)), ValueError,
     r"X: expected a 2-D array.*got 3-D with shape \(2, 3, 1\)"),
    ("0-D", lambda: np.float64(1.0), ValueError, r"X: expected a 2-D array.*got 0-D"),
    ("python-scalar", lambda: 2.5, ValueError, r"X: expected a 2-D array.*got 0-D"),
    ("1-D-list", lambda: [1.0, 2.0, 3.0], ValueError, r"X: expected a 2-D array.*\(3,\)"),
    ("too-many-columns", lambda: np.ones((2, 5)), ValueError,
     r"X: expected 3 columns.*got shape \(2, 5\)"),
    ("too-few-columns", lambda: np.ones((2, 1)), ValueError,
     r"X: expected 3 columns.*got shape \(2, 1\)"),
    ("transposed", lambda: np.ones((N_IN, 2)), ValueError,
     r"X: expected 3 columns.*got shape \(3, 2\)"),
    ("zero-columns", lambda: np.ones((2, 0)), ValueError,
     r"X: expected 3 columns.*got shape \(2, 0\)"),
    ("empty-batch", lambda: np.ones((0, N_IN)), ValueError,
     r"X: expected at least one row.*empty batch.*\(0, 3\)"),
    ("empty-batch-float32", lambda: np.ones((0, N_IN), np.float32), ValueError,
     r"X: expected at least one row.*\(0, 3\)"),
    ("empty-list", lambda: [], ValueError, r"X: expected a 2-D array.*got 1-D with shape \(0,\)"),
    ("empty-2d-list", lambda: [[]], ValueError, r"X: expected 3 columns.*\(1, 0\)"),
    ("NaN", _nan_x, ValueError, r"X: expected finite values, got NaN"),
    ("+inf", lambda: _inf_x(+1), ValueError, r"X: expected finite values, got .*infinity"),
    ("-inf", lambda: _inf_x(-1), ValueError, r"X: expected finite values, got .*infinity"),
    ("NaN-float32", lambda: np.full((2, N_IN), NAN, np.float32), ValueError,
     r"X: expected finite values, got NaN"),
    ("NaN-in-list", lambda: [[1.0, NAN, 0.0]], ValueError, r"X: expected finite values"),
    ("complex", lambda: np.ones((2, N_IN), complex), TypeError,
     r"X: expected a real numeric array, got dtype 'complex128'"),
    ("complex-list", lambda: [[1j, 0, 0]], TypeError, r"X: .*got dtype 'complex128'"),
    ("object-dtype", lambda: np.ones((2, N_IN), object), TypeError,
     r"X: expected a real numeric array, got dtype 'object'"),
    ("str-dtype", lambda: np.array([["a", "b", "c"]]), TypeError, r"X: .*got dtype 'str"),
    ("numeric-strings", lambda: [["1", "2", "3"]], TypeError, r"X: .*got dtype 'str"),
    ("bytes-dtype", lambda: np.array([[b"a", b"b", b"c"]]), TypeError, r"X: .*got dtype 'bytes"),
    ("datetime64", lambda: np.ones((2, N_IN), "M8[s]"), TypeError, r"X: .*'datetime64"),
    ("timedelta64", lambda: np.ones((2, N_IN), "m8[s]"), TypeError, r"X: .*'timedelta64"),
    ("ragged-list", lambda: [[1.0, 2.0, 3.0], [4.0, 5.0]], TypeError,
     r"X: expected a numeric array, got list"),
    ("None", lambda: None, TypeError, r"X: .*got dtype 'object'"),
    ("dict", lambda: {"a": 1}, TypeError, r"X: .*got dtype 'object'"),
    ("string", lambda: "1 2 3", TypeError, r"X: .*got dtype 'str"),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("make,exc,pattern", [b[1:] for b in BAD_X], ids=[b[0] for b in BAD_X])
def test_bad_X_is_rejected_by_name(entry, dtype, make, exc, pattern):
    f = entry(dtype)
    with pytest.raises(exc, match=pattern):
        f(make())


def test_float64_X_that_overflows_float32_is_rejected_not_passed_on_as_inf():
    """A finite value beyond float32's range is refused as out of range, naming the argument
    and the value, with no RuntimeWarning from the conversion (before: NumPy's "overflow
    encountered in cast" and then "expected finite values", for a finite value)."""
    X = np.ones((2, N_IN))
    X[0, 0] = 1e39  # finite in float64, inf once converted to the model's float32
    out_of_range = r"X: expected values within float32's range .*got 1e\+39"
    model = _mlp("float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in (model.forward, model.predict):
            with pytest.raises(ValueError, match=out_of_range):
                call(X)
        with pytest.raises(ValueError, match=out_of_range):
            model.predict(scipy.sparse.csr_matrix(X))
        T = np.zeros((2, model.n_outputs))
        T[1, 0] = -1e300
        with pytest.raises(ValueError, match=r"target: expected values within float32's range"):
            model.train_step(np.ones((2, N_IN)), T, MSELoss(), SGD(model, lr=0.1))
        X[1, 1] = np.inf  # an infinity of the caller's is not an overflow, but still refused
        with pytest.raises(ValueError, match=r"X: expected"):
            model.predict(X)
    # the same value is fine for a float64 model
    assert np.isfinite(_mlp("float64").predict(X[:1] / 1e30)).all()


def test_bad_X_leaves_the_last_forward_usable():
    m = _mlp()
    X = _x()
    m.forward(X)
    with pytest.raises(ValueError, match="X:"):
        m.forward(np.ones((7, 5)))
    with pytest.raises(ValueError, match="X:"):
        m.forward(_nan_x())
    m.backward(np.ones((X.shape[0], N_OUT)))  # still the state of the good forward
    ref = _mlp()
    ref.forward(X)
    ref.backward(np.ones((X.shape[0], N_OUT)))
    np.testing.assert_array_equal(m.flat_grads, ref.flat_grads)


# ---------------------------------------------------------------------------------------------
# Accepted conversions: the same answer as the clean, C-contiguous, model-dtype input.

def _fortran(X):
    return np.asfortranarray(X)


def _strided_columns(X):
    big = np.zeros((X.shape[0], 2 * X.shape[1]), X.dtype)
    big[:, ::2] = X
    out = big[:, ::2]
    assert not out.flags.c_contiguous
    return out


def _strided_rows(X):
    big = np.zeros((2 * X.shape[0], X.shape[1]), X.dtype)
    big[::2] = X
    out = big[::2]
    assert not out.flags.c_contiguous
    return out


def _reversed(X):
    out = np.ascontiguousarray(X[::-1])[::-1]
    assert out.strides[0] < 0
    return out


def _transposed_view(X):
    out = np.ascontiguousarray(X.T).T
    assert out.flags.f_contiguous and not out.flags.c_contiguous
    return out


def _read_only(X):
    out = X.copy()
    out.setflags(write=False)
    return out


def _read_only_fortran(X):
    out = np.asfortranarray(X)
    out.setflags(write=False)
    return out


def _big_endian(X):
    return X.astype(X.dtype.newbyteorder(">"))


CONVERSIONS = {
    "fortran": _fortran,
    "strided-columns": _strided_columns,
    "strided-rows": _strided_rows,
    "negative-strides": _reversed,
    "transposed-view": _transposed_view,
    "read-only": _read_only,
    "read-only-fortran": _read_only_fortran,
    "big-endian": _big_endian,
    "float64": lambda X: X.astype(np.float64),
    "float32": lambda X: X.astype(np.float32),
    "float16": lambda X: X.astype(np.float16),
    "list": lambda X: X.tolist(),
    "tuple": lambda X: tuple(tuple(r) for r in X.tolist()),
    "memoryview": lambda X: memoryview(np.ascontiguousarray(X)),
}

INT_CONVERSIONS = {
    "int64": lambda X: X.astype(np.int64),
    "int32": lambda X: X.astype(np.int32),
    "int8": lambda X: X.astype(np.int8),
    "uint8": lambda X: X.astype(np.uint8),
    "bool": lambda X: X.astype(bool),
    "int-list": lambda X: X.astype(int).tolist(),
    "bool-list": lambda X: X.astype(bool).tolist(),
}


def _int_x(n=5):
    return np.random.default_rng(3).integers(0, 2, (n, N_IN)).astype(np.float64)


def _reference(f_factory, dtype, X_values):
    """The entry point on the clean, C-contiguous array of the model's dtype."""
    clean = np.ascontiguousarray(np.asarray(X_values, dtype=np.float64).astype(dtype))
    return f_factory(dtype)(clean)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(CONVERSIONS))
def test_converted_X_gives_the_same_output(entry, dtype, name):
    X = _x(5, np.float64)
    if name == "float16":
        X = X.astype(np.float16).astype(np.float64)  # values float16 can hold exactly
    conv = CONVERSIONS[name](X)
    want = _reference(entry, dtype, np.asarray(conv, dtype=np.float64))
    got = entry(dtype)(conv)
    assert got.dtype == np.dtype(dtype)
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(INT_CONVERSIONS))
def test_integer_and_bool_X_gives_the_same_output(entry, dtype, name):
    X = _int_x()
    conv = INT_CONVERSIONS[name](X)
    want = _reference(entry, dtype, X)
    got = entry(dtype)(conv)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)


def test_float64_X_into_float32_model_is_converted():
    X64 = _x(6, np.float64) * 1.000000123  # digits float32 cannot hold
    m = _mlp("float32")
    got = m.predict(X64)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, _mlp("float32").predict(X64.astype(np.float32)))


def test_float32_X_into_float64_model_is_converted():
    X32 = _x(6, np.float32)
    got = _mlp("float64").predict(X32)
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, _mlp("float64").predict(X32.astype(np.float64)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["fortran", "strided-columns", "read-only", "float64",
                                  "float32", "list", "negative-strides"])
def test_converted_inputs_give_the_same_gradients(dtype, name):
    X = _x(6, np.float64)
    G = np.random.default_rng(9).uniform(-1, 1, (6, N_OUT))
    conv = CONVERSIONS[name]

    ref = _mlp(dtype)  # on the clean arrays of the values the converted inputs hold
    ref.forward(np.asarray(conv(X), np.float64).astype(dtype))
    dX_ref = ref.backward(np.asarray(conv(G), np.float64).astype(dtype), input_grad=True)

    m = _mlp(dtype)
    m.forward(conv(X))
    dX = m.backward(conv(G), input_grad=True)
    np.testing.assert_array_equal(m.flat_grads, ref.flat_grads)
    np.testing.assert_array_equal(dX, dX_ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_X_is_accepted_and_left_untouched(dtype):
    X = _x(4, dtype)
    keep = X.copy()
    X.setflags(write=False)
    m = _mlp(dtype)
    out = m.forward(X)
    dX = m.backward(np.ones_like(out), input_grad=True)
    assert not X.flags.writeable
    np.testing.assert_array_equal(X, keep)
    assert dX.flags.writeable and out.flags.writeable
    d = Dense(N_IN, N_OUT, dtype=dtype, seed=0)
    d.forward(X)
    d.backward(np.ones((4, N_OUT), dtype))
    np.testing.assert_array_equal(X, keep)


@pytest.mark.parametrize("name", ["fortran", "strided-columns", "float64", "list"])
def test_converted_X_is_not_modified(name):
    X = _x(4, np.float64)
    conv = CONVERSIONS[name](X)
    before = np.array(conv, copy=True)
    m = _mlp("float32")
    m.forward(conv)
    m.backward(np.ones((4, N_OUT)), input_grad=True)
    np.testing.assert_array_equal(np.asarray(conv), before)


@pytest.mark.parametrize("dtype", DTYPES)
def test_fitting_X_is_used_without_a_copy(dtype):
    # documented in bpcore._validation: arrays that already fit are used as they are
    X = _x(4, dtype)
    d = Dense(N_IN, N_OUT, dtype=dtype, seed=0)
    d.forward(X)
    assert np.shares_memory(d._X, X)
    Xf = np.asfortranarray(X)
    d.forward(Xf)
    assert not np.shares_memory(d._X, Xf) and d._X.flags.c_contiguous


def test_read_only_input_to_activations_and_losses():
    Z = _x(4, np.float64)
    Z.setflags(write=False)
    for act in (Identity(), ReLU(), Sigmoid(), Tanh()):
        A = act.forward(Z)
        act.backward(np.ones_like(A))
    T = np.zeros((4, N_IN))
    T.setflags(write=False)
    MSELoss()(Z, T)
    labels = np.array([0, 1, 2, 0])
    labels.setflags(write=False)
    SoftmaxCrossEntropyLoss()(Z, labels)


# ---------------------------------------------------------------------------------------------
# Activations used on their own

@pytest.mark.parametrize("act", [Identity, ReLU, Sigmoid, Tanh])
@pytest.mark.parametrize("value,exc,pattern", [
    (np.ones(3), ValueError, r"Z: expected a 2-D array.*1-D with shape \(3,\)"),
    (np.ones((2, 2, 2)), ValueError, r"Z: expected a 2-D array.*3-D"),
    (np.ones((0, 2)), ValueError, r"Z: expected at least one row.*\(0, 2\)"),
    (np.array([[NAN, 1.0]]), ValueError, r"Z: expected finite values"),
    (np.array([[INF, 1.0]]), ValueError, r"Z: expected finite values"),
    (np.ones((2, 2), complex), TypeError, r"Z: .*complex128"),
    (np.ones((2, 2), object), TypeError, r"Z: .*object"),
], ids=["1-D", "3-D", "empty", "NaN", "inf", "complex", "object"])
def test_activation_bad_input(act, value, exc, pattern):
    with pytest.raises(exc, match=pattern):
        act().forward(value)


@pytest.mark.parametrize("act", [Identity, ReLU, Sigmoid, Tanh])
def test_activation_ragged_list_is_a_named_type_error(act):
    with pytest.raises(TypeError, match=r"Z: expected a numeric array, got list"):
        act().forward([[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("act", [Identity, ReLU, Sigmoid, Tanh])
def test_activation_backward_checks(act):
    a = act()
    with pytest.raises(RuntimeError, match="call forward first"):
        a.backward(np.ones((2, 2)))
    a.forward(np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"dA: expected shape \(2, 2\).*got \(3, 2\)"):
        a.backward(np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"dA: expected 2 columns.*\(2, 3\)"):
        a.backward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"dA: expected finite"):
        a.backward(np.full((2, 2), NAN))


# ---------------------------------------------------------------------------------------------
# MSELoss

def test_mse_target_shape_mismatch():
    with pytest.raises(ValueError, match=r"target: expected 2 columns.*got shape \(4, 3\)"):
        MSELoss()(np.ones((4, 2)), np.ones((4, 3)))


def test_mse_target_different_row_count():
    with pytest.raises(ValueError, match=r"target: expected 4 rows to match output, got 3"):
        MSELoss()(np.ones((4, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"target: expected 4 rows to match output, got 5"):
        MSELoss()(np.ones((4, 1)), np.ones(5))  # (n,) read as (n, 1): still the wrong n


def test_mse_1d_target_against_several_outputs():
    with pytest.raises(ValueError, match=r"target: expected a 2-D array.*1-D with shape \(4,\)"):
        MSELoss()(np.ones((4, 2)), np.ones(4))


def test_mse_1d_target_with_one_output_is_accepted():
    Y = np.arange(4.0).reshape(4, 1)
    assert MSELoss()(Y, np.zeros(4)) == MSELoss()(Y, np.zeros((4, 1)))


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_mse_non_finite_target(bad):
    T = np.ones((4, 2))
    T[2, 1] = bad
    with pytest.raises(ValueError, match=r"target: expected finite values"):
        MSELoss()(np.ones((4, 2)), T)


@pytest.mark.parametrize("bad", [NAN, INF])
def test_mse_non_finite_output(bad):
    Y = np.ones((4, 2))
    Y[0, 0] = bad
    with pytest.raises(ValueError, match=r"output: expected finite values"):
        MSELoss()(Y, np.ones((4, 2)))


def test_mse_target_that_overflows_float32_output():
    T = np.ones((2, 2))
    T[0, 0] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning from the conversion
        with pytest.raises(ValueError, match="target: expected values within float32's range"):
            MSELoss()(np.ones((2, 2), np.float32), T)


def test_mse_empty_batch():
    with pytest.raises(ValueError, match=r"output: expected at least one row.*\(0, 2\)"):
        MSELoss()(np.ones((0, 2)), np.ones((0, 2)))


@pytest.mark.parametrize("value,exc,pattern", [
    (np.ones(4), ValueError, r"output: expected a 2-D array.*1-D with shape \(4,\)"),
    (np.ones((2, 2, 1)), ValueError, r"output: expected a 2-D array.*3-D"),
    (np.ones((2, 2), complex), TypeError, r"output: .*complex128"),
    (np.ones((2, 2), object), TypeError, r"output: .*object"),
], ids=["1-D", "3-D", "complex", "object"])
def test_mse_bad_output(value, exc, pattern):
    with pytest.raises(exc, match=pattern):
        MSELoss()(value, np.ones((2, 2)))


@pytest.mark.parametrize("value,exc,pattern", [
    (np.ones((2, 2), complex), TypeError, r"target: .*complex128"),
    (np.array([["a", "b"], ["c", "d"]]), TypeError, r"target: .*str"),
    (np.ones((2, 2, 1)), ValueError, r"target: expected a 2-D array.*3-D"),
], ids=["complex", "str", "3-D"])
def test_mse_bad_target_dtype_or_ndim(value, exc, pattern):
    with pytest.raises(exc, match=pattern):
        MSELoss()(np.ones((2, 2)), value)


def test_mse_ragged_output_is_a_named_type_error():
    with pytest.raises(TypeError, match=r"output: expected a numeric array, got list"):
        MSELoss()([[1.0, 2.0], [3.0]], np.ones((2, 2)))


def test_mse_ragged_target_is_a_named_type_error():
    with pytest.raises(TypeError, match=r"target: expected a numeric array, got list"):
        MSELoss()(np.ones((2, 2)), [[1.0, 2.0], [3.0]])


@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None, 0, "none", ["mean"]])
def test_mse_bad_reduction(reduction):
    with pytest.raises(ValueError, match=r"reduction: expected one of 'mean', 'sum', "
                                         r"'half_sum', got " + re.escape(repr(reduction))):
        MSELoss(reduction)


@pytest.mark.parametrize("conv", [_fortran, _strided_rows, _strided_columns, _reversed,
                                  _read_only, _big_endian, lambda a: a.tolist()],
                         ids=["fortran", "strided-rows", "strided-columns", "negative-strides",
                              "read-only", "big-endian", "list"])
def test_mse_converted_output_and_target_give_the_same_loss(conv):
    Y = _x(5, np.float64)
    T = _x(5, np.float64, seed=1)
    ref = MSELoss()
    want = ref(Y, T)
    loss = MSELoss()
    assert loss(conv(Y), conv(T)) == want
    np.testing.assert_array_equal(loss.backward(), ref.backward())
    # a float64 target against a float32 output is converted to float32
    Y32 = Y.astype(np.float32)
    assert MSELoss()(Y32, conv(T)) == MSELoss()(Y32, T.astype(np.float32))


# ---------------------------------------------------------------------------------------------
# SoftmaxCrossEntropyLoss

Z4 = np.random.default_rng(5).normal(size=(4, 3))


@pytest.mark.parametrize("labels,bad", [
    ([0, 1, 3, 2], "3"), ([0, -1, 2, 1], "-1"), ([0, 1, 2, 100], "100"),
    (np.array([0, 1, 2, -5], np.int8), "-5"), (np.array([0, 3, 1, 1], np.uint8), "3"),
    (np.array([0, 1, 2, 2**63 - 1]), str(2**63 - 1)),
    (np.array([0, 1, 2, 2**64 - 1], np.uint64), str(2**64 - 1)),
    ([0.0, 1.0, 3.0, 1.0], "3"),
], ids=["==n_classes", "negative", "far-above", "int8-negative", "uint8-above", "int64-max",
        "uint64-max", "float-above"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_xent_labels_out_of_range(labels, bad, reduction):
    with pytest.raises(ValueError,
                       match=rf"target: expected class labels in \[0, 3\), got .*{re.escape(bad)}"):
        SoftmaxCrossEntropyLoss(reduction)(Z4, labels)


@pytest.mark.parametrize("labels", [[0, 1.5, 2, 1], [0, 1, NAN, 1], [0, INF, 1, 1],
                                    [0, -INF, 1, 1], np.array([0, 1, 2, 0.5], np.float32)],
                         ids=["1.5", "NaN", "inf", "-inf", "float32-0.5"])
def test_xent_non_integral_float_labels(labels):
    with pytest.raises(TypeError, match=r"target: expected integer class labels, got "
                                        r"non-integral values of dtype 'float"):
        SoftmaxCrossEntropyLoss()(Z4, labels)


@pytest.mark.parametrize("n", [0, 3, 5])
def test_xent_labels_wrong_length(n):
    with pytest.raises(ValueError, match=rf"target: expected 4 labels.*got {n}\b"):
        SoftmaxCrossEntropyLoss()(Z4, np.zeros(n, int))


@pytest.mark.parametrize("labels,exc,pattern", [
    (np.array(["a", "b", "c", "d"]), TypeError, r"target: .*str"),
    (np.ones(4, complex), TypeError, r"target: .*complex128"),
    (np.array([0, 1, 2, None], object), TypeError, r"target: .*object"),
    (np.zeros((4, 3, 1), int), ValueError, r"target: expected a 2-D array.*3-D"),
    (1, ValueError, r"target: expected a 2-D array.*0-D"),
], ids=["str", "complex", "object", "3-D", "scalar"])
def test_xent_bad_label_dtype_or_ndim(labels, exc, pattern):
    with pytest.raises(exc, match=pattern):
        SoftmaxCrossEntropyLoss()(Z4, labels)


def test_xent_ragged_target_is_a_named_type_error():
    with pytest.raises(TypeError, match=r"target: expected a numeric array, got list"):
        SoftmaxCrossEntropyLoss()(Z4, [[1, 0, 0], [0, 1], [0, 0, 1], [1, 0, 0]])


def test_xent_ragged_output_is_a_named_type_error():
    with pytest.raises(TypeError, match=r"output: expected a numeric array, got list"):
        SoftmaxCrossEntropyLoss()([[1.0, 2.0, 3.0], [1.0]], [0, 1])


@pytest.mark.parametrize("c", [1, 2, 4])
def test_xent_probability_target_wrong_number_of_classes(c):
    T = np.full((4, c), 1.0 / c)
    with pytest.raises(ValueError, match=rf"target: expected 3 columns.*got shape \(4, {c}\)"):
        SoftmaxCrossEntropyLoss()(Z4, T)


def test_xent_probability_target_wrong_rows():
    with pytest.raises(ValueError, match=r"target: expected 4 rows to match output, got 2"):
        SoftmaxCrossEntropyLoss()(Z4, np.full((2, 3), 1 / 3))


def test_xent_labels_as_column_vector_is_rejected():
    with pytest.raises(ValueError, match=r"target: expected 3 columns.*got shape \(4, 1\)"):
        SoftmaxCrossEntropyLoss()(Z4, [[0], [1], [2], [1]])


def test_xent_negative_probabilities():
    T = np.array([[1.5, -0.5, 0.0], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(ValueError, match=r"target: expected non-negative .*got -0\.5"):
        SoftmaxCrossEntropyLoss()(Z4, T)


@pytest.mark.parametrize("bad", [NAN, INF])
def test_xent_non_finite_probabilities(bad):
    T = np.full((4, 3), 1 / 3)
    T[1, 1] = bad
    with pytest.raises(ValueError, match=r"target: expected finite values"):
        SoftmaxCrossEntropyLoss()(Z4, T)


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_xent_non_finite_logits(bad):
    Z = Z4.copy()
    Z[3, 0] = bad
    with pytest.raises(ValueError, match=r"output: expected finite values"):
        SoftmaxCrossEntropyLoss()(Z, [0, 1, 2, 0])


def test_xent_empty_batch():
    with pytest.raises(ValueError, match=r"output: expected at least one row.*\(0, 3\)"):
        SoftmaxCrossEntropyLoss()(np.ones((0, 3)), np.zeros(0, int))


@pytest.mark.parametrize("reduction", ["half_sum", "avg", None])
def test_xent_bad_reduction(reduction):
    with pytest.raises(ValueError, match=r"reduction: expected one of 'mean', 'sum', got "
                                         + re.escape(repr(reduction))):
        SoftmaxCrossEntropyLoss(reduction)


@pytest.mark.parametrize("loss", [MSELoss, SoftmaxCrossEntropyLoss])
def test_loss_backward_before_forward(loss):
    with pytest.raises(RuntimeError, match=r"backward: call forward first"):
        loss().backward()


def test_loss_failed_forward_does_not_leave_a_gradient():
    loss = SoftmaxCrossEntropyLoss()
    with pytest.raises(ValueError):
        loss(Z4, [0, 1, 2, 3])
    with pytest.raises(RuntimeError):
        loss.backward()


@pytest.mark.parametrize("labels", [
    [0, 1, 2, 1], np.array([0, 1, 2, 1], np.int8), np.array([0, 1, 2, 1], np.uint64),
    np.array([0.0, 1.0, 2.0, 1.0]), np.array([0, 1, 2, 1], np.int32)[::1],
    np.array([0, 9, 1, 9, 2, 9, 1, 9])[::2], (0, 1, 2, 1),
], ids=["list", "int8", "uint64", "integral-float", "int32", "strided", "tuple"])
def test_xent_label_conversions_give_the_same_loss(labels):
    ref = SoftmaxCrossEntropyLoss()
    want = ref(Z4, np.array([0, 1, 2, 1]))
    loss = SoftmaxCrossEntropyLoss()
    assert loss(Z4, labels) == want
    np.testing.assert_array_equal(loss.backward(), ref.backward())


def test_xent_labels_agree_with_one_hot_target():
    labels = np.array([0, 1, 2, 1])
    a, b = SoftmaxCrossEntropyLoss(), SoftmaxCrossEntropyLoss()
    np.testing.assert_allclose(a(Z4, labels), b(Z4, one_hot(labels, 3, "float64")), rtol=1e-12)
    np.testing.assert_allclose(a.backward(), b.backward(), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------------------------------
# Model / layer backward

def test_model_backward_before_forward():
    with pytest.raises(RuntimeError, match=r"backward: call forward first"):
        _mlp().backward(np.ones((4, N_OUT)))


def test_model_backward_after_predict_only():
    m = _mlp()
    m.predict(_x())
    with pytest.raises(RuntimeError, match=r"backward: call forward first"):
        m.backward(np.ones((4, N_OUT)))


@pytest.mark.parametrize("G,exc,pattern", [
    (np.ones((4, 3)), ValueError, r"grad_output: expected 2 columns.*got shape \(4, 3\)"),
    (np.ones((3, N_OUT)), ValueError, r"grad_output: expected 4 rows.*got 3"),
    (np.ones((5, N_OUT)), ValueError, r"grad_output: expected 4 rows.*got 5"),
    (np.ones(N_OUT), ValueError, r"grad_output: expected a 2-D array.*1-D with shape \(2,\)"),
    (np.ones((4, N_OUT, 1)), ValueError, r"grad_output: expected a 2-D array.*3-D"),
    (np.full((4, N_OUT), NAN), ValueError, r"grad_output: expected finite values"),
    (np.full((4, N_OUT), INF), ValueError, r"grad_output: expected finite values"),
    (np.ones((4, N_OUT), complex), TypeError, r"grad_output: .*complex128"),
    (np.ones((4, N_OUT), object), TypeError, r"grad_output: .*object"),
    ([[1.0, 2.0], [3.0]], TypeError, r"grad_output: expected a numeric array, got list"),
], ids=["cols", "fewer-rows", "more-rows", "1-D", "3-D", "NaN", "inf", "complex", "object",
        "ragged"])
@pytest.mark.parametrize("make", [_mlp, _seq], ids=["MLP", "Sequential"])
def test_model_backward_bad_grad_output(make, G, exc, pattern):
    m = make()
    m.forward(_x(4))
    with pytest.raises(exc, match=pattern):
        m.backward(G)
    assert not m.flat_grads.any(), "a rejected backward must not touch the gradients"


def test_dense_backward_checks():
    d = Dense(N_IN, N_OUT, seed=0)
    with pytest.raises(RuntimeError, match=r"Dense.backward: call forward first"):
        d.backward(np.ones((4, N_OUT)))
    d.forward(_x(4))
    with pytest.raises(ValueError, match=r"dZ: expected 2 columns.*got shape \(4, 3\)"):
        d.backward(np.ones((4, 3)))
    with pytest.raises(ValueError, match=r"dZ: expected 4 rows.*got 1"):
        d.backward(np.ones((1, N_OUT)))
    with pytest.raises(ValueError, match=r"dZ: expected finite"):
        d.backward(np.full((4, N_OUT), NAN))
    assert not d.dW.any() and not d.db.any()


# ---------------------------------------------------------------------------------------------
# SGD

@pytest.mark.parametrize("lr,exc,pattern", [
    (-0.1, ValueError, r"lr: expected a finite number in \[0, inf\], got -0\.1"),
    (-1e-300, ValueError, r"lr: expected a finite number .*got -1e-300"),
    (NAN, ValueError, r"lr: expected a finite number .*got nan"),
    (INF, ValueError, r"lr: expected a finite number .*got inf"),
    (-INF, ValueError, r"lr: expected a finite number .*got -inf"),
    (np.float32(NAN), ValueError, r"lr: expected a finite number .*nan"),
    ("0.1", TypeError, r"lr: expected a real number, got str '0\.1'"),
    (None, TypeError, r"lr: expected a real number, got NoneType None"),
    (True, TypeError, r"lr: expected a real number, got bool True"),
    (1j, TypeError, r"lr: expected a real number, got complex 1j"),
    (np.array([0.1]), TypeError, r"lr: expected a real number, got ndarray"),
], ids=["negative", "tiny-negative", "NaN", "inf", "-inf", "float32-NaN", "string", "None",
        "bool", "complex", "array"])
def test_sgd_bad_lr(lr, exc, pattern):
    with pytest.raises(exc, match=pattern):
        SGD(_mlp(), lr=lr)


@pytest.mark.parametrize("lr", [NAN, INF, -0.5, "0.1", None])
def test_sgd_bad_lr_set_later(lr):
    opt = SGD(_mlp(), lr=0.1)
    with pytest.raises((ValueError, TypeError), match=r"^lr: expected .*got"):
        opt.lr = lr
    assert opt.lr == 0.1, "a rejected lr must leave the old one in place"


@pytest.mark.parametrize("momentum", [NAN, INF, -0.5, "0.9"])
def test_sgd_bad_momentum_set_later(momentum):
    opt = SGD(_mlp(), lr=0.1, momentum=0.5)
    with pytest.raises((ValueError, TypeError), match=r"^momentum: expected .*got"):
        opt.momentum = momentum
    assert opt.momentum == 0.5


def test_sgd_lr_zero_is_allowed():
    m = _mlp()
    before = m.flat_params.copy()
    m.forward(_x())
    m.backward(np.ones((4, N_OUT)))
    SGD(m, lr=0).step()
    np.testing.assert_array_equal(m.flat_params, before)


def test_sgd_lr_that_is_infinite_in_a_float32_model():
    # 1e39 is finite as a Python float but becomes inf in the float32 kernel: the lr must be
    # refused (at construction or at step), not turn every weight into -inf.
    m = _mlp("float32")
    m.forward(_x())
    m.backward(np.ones((4, N_OUT)))
    try:
        opt = SGD(m, lr=1e39)
        opt.step()
    except ValueError as exc:
        assert "lr" in str(exc)
    else:
        n_bad = int((~np.isfinite(m.flat_params)).sum())
        assert n_bad == 0, (f"SGD(float32 model, lr=1e39) accepted lr and step() wrote "
                            f"{n_bad} non-finite weights")


@pytest.mark.parametrize("momentum,exc,pattern", [
    (-0.9, ValueError, r"momentum: expected a finite number in \[0, inf\], got -0\.9"),
    (NAN, ValueError, r"momentum: expected a finite number .*got nan"),
    (INF, ValueError, r"momentum: expected a finite number .*got inf"),
    ("0.9", TypeError, r"momentum: expected a real number, got str '0\.9'"),
])
def test_sgd_bad_momentum(momentum, exc, pattern):
    with pytest.raises(exc, match=pattern):
        SGD(_mlp(), lr=0.1, momentum=momentum)


@pytest.mark.parametrize("decay,exc,pattern", [
    (1, ValueError, r"decay: expected a finite number in \[0, 1\), got 1"),
    (1.0, ValueError, r"decay: expected a finite number in \[0, 1\), got 1\.0"),
    (1.5, ValueError, r"decay: expected .*got 1\.5"),
    (-0.1, ValueError, r"decay: expected .*got -0\.1"),
    (NAN, ValueError, r"decay: expected .*got nan"),
    ("0.1", TypeError, r"decay: expected a real number, got str"),
])
def test_sgd_bad_decay(decay, exc, pattern):
    with pytest.raises(exc, match=pattern):
        SGD(_mlp(), lr=0.1, decay=decay)


@pytest.mark.parametrize("wd,exc,pattern", [
    (-1e-4, ValueError, r"weight_decay: expected a finite number in \[0, inf\], got -0\.0001"),
    (NAN, ValueError, r"weight_decay: expected .*got nan"),
    (INF, ValueError, r"weight_decay: expected .*got inf"),
    (None, TypeError, r"weight_decay: expected a real number, got NoneType"),
])
def test_sgd_bad_weight_decay(wd, exc, pattern):
    with pytest.raises(exc, match=pattern):
        SGD(_mlp(), lr=0.1, weight_decay=wd)


@pytest.mark.parametrize("momentum", [0, 0.0])
def test_sgd_nesterov_without_momentum(momentum):
    with pytest.raises(ValueError, match=r"nesterov: expected momentum > 0.*got momentum=0"):
        SGD(_mlp(), lr=0.1, momentum=momentum, nesterov=True)


def test_sgd_nesterov_momentum_cannot_be_set_to_zero_later():
    # the constructor refuses nesterov with momentum 0; the setter must keep that invariant
    opt = SGD(_mlp(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match=r"momentum"):
        opt.momentum = 0


class _NoWeights:
    def parameters(self):
        return []


@pytest.mark.parametrize("params", [[], (), iter([]), _NoWeights()],
                         ids=["list", "tuple", "iterator", "module-without-parameters"])
def test_sgd_empty_parameter_list(params):
    with pytest.raises(ValueError, match=r"params: expected at least one parameter, got none"):
        SGD(params, lr=0.1)


@pytest.mark.parametrize("params", [None, 1.5, "abc", [1, 2], [np.ones(3)]],
                         ids=["None", "float", "str", "list-of-ints", "list-of-arrays"])
def test_sgd_non_parameters_are_a_named_type_error(params):
    with pytest.raises(TypeError, match=r"params"):
        SGD(params, lr=0.1)


def test_sgd_mixed_dtypes():
    params = Dense(2, 2).parameters() + Dense(2, 2, dtype="float64").parameters()
    with pytest.raises(TypeError, match=r"params: expected one dtype, got \['float32', 'float64'\]"):
        SGD(params, lr=0.1)


def test_sgd_non_contiguous_parameter():
    data = np.ones((3, 4))[:, ::2]
    with pytest.raises(ValueError, match=r"params: .*must be C-contiguous"):
        SGD([Parameter("w", data, np.zeros((3, 2)))], lr=0.1)


def test_sgd_integer_parameter_is_a_named_error():
    p = Parameter("w", np.ones(3, np.int64), np.ones(3, np.int64))
    with pytest.raises((TypeError, ValueError), match=r"params"):
        SGD([p], lr=0.1).step()


def test_sgd_parameter_with_mismatched_gradient_raises():
    data = np.ones(3)
    with pytest.raises(ValueError, match=r"expected length 3, got 4"):
        SGD([Parameter("w", data, np.ones(4))], lr=0.1).step()
    np.testing.assert_array_equal(data, np.ones(3))


# ---------------------------------------------------------------------------------------------
# MLP constructor

@pytest.mark.parametrize("sizes,exc,pattern", [
    ([3, 0, 2], ValueError, r"sizes\[1\]: expected an integer >= 1, got 0"),
    ([0, 2], ValueError, r"sizes\[0\]: expected an integer >= 1, got 0"),
    ([3, 4, -2], ValueError, r"sizes\[2\]: expected an integer >= 1, got -2"),
    ([3], ValueError, r"sizes: expected at least two sizes.*got \[3\]"),
    ([], ValueError, r"sizes: expected at least two sizes.*got \[\]"),
    ([3, 2.0], TypeError, r"sizes\[1\]: expected an integer, got float 2\.0"),
    ([3, 2.5], TypeError, r"sizes\[1\]: expected an integer, got float 2\.5"),
    ([3, "4", 2], TypeError, r"sizes\[1\]: expected an integer, got str '4'"),
    ([True, 2], TypeError, r"sizes\[0\]: expected an integer, got bool True"),
    ([3, None], TypeError, r"sizes\[1\]: expected an integer, got NoneType None"),
    ([3, 2**31], ValueError, r"sizes\[1\]: expected at most 2147483647.*got 2147483648"),
    (3, TypeError, r"sizes: expected a list of layer sizes, got 3"),
    (None, TypeError, r"sizes: expected a list of layer sizes, got None"),
], ids=["zero-hidden", "zero-input", "negative", "single", "empty", "float-integral",
        "float", "string", "bool", "None", "too-big", "int", "None-sizes"])
def test_mlp_bad_sizes(sizes, exc, pattern):
    with pytest.raises(exc, match=pattern):
        MLP(sizes)


def test_mlp_numpy_integer_sizes_are_accepted():
    m = MLP(np.array([3, 4, 2]), seed=0)
    assert m.sizes == [3, 4, 2] and m.num_parameters == 3 * 4 + 4 + 4 * 2 + 2


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(activation="swish"), ValueError,
     r"activation: expected one of 'identity', 'relu', 'sigmoid', 'tanh', 'leaky_relu', 'elu', "
     r"'gelu', 'silu', 'softplus', 'gelu_tanh', got 'swish'"),
    (dict(activation="softmax"), ValueError, r"activation: expected one of .*got 'softmax'"),
    (dict(activation="ReLU"), ValueError, r"activation: expected one of .*got 'ReLU'"),
    (dict(activation=None), ValueError, r"activation: expected one of .*got None"),
    (dict(activation=ReLU), ValueError, r"activation: expected one of .*got <class"),
    (dict(output_activation="Softmax"), ValueError,
     r"output_activation: expected one of .*'softmax', None, got 'Softmax'"),
    (dict(dtype="int32"), TypeError, r"dtype: expected 'float32' or 'float64', got 'int32'"),
    (dict(dtype="float16"), TypeError, r"dtype: expected 'float32' or 'float64', got 'float16'"),
    (dict(dtype=np.int64), TypeError, r"dtype: expected 'float32' or 'float64', got 'int64'"),
    (dict(dtype="complex128"), TypeError, r"dtype: .*got 'complex128'"),
    (dict(dtype="float128-ish"), TypeError, r"dtype: .*got 'float128-ish'"),
    (dict(dtype=object), TypeError, r"dtype: .*got 'object'"),
    (dict(seed=-1), (TypeError, ValueError), r"seed: expected None or an integer.*got -1"),
    (dict(seed="1"), TypeError, r"seed: expected None or an integer.*got '1'"),
    (dict(seed=1.0), TypeError, r"seed: expected None or an integer.*got 1\.0"),
    (dict(seed=True), TypeError, r"seed: expected None or an integer.*got True"),
    (dict(seed=2**64), (TypeError, ValueError), r"seed: expected .*got 18446744073709551616"),
    (dict(init="xavier"), ValueError,
     r"init: expected one of 'auto', 'he', 'glorot', got 'xavier'"),
    (dict(init=-0.1), ValueError, r"init: expected a finite number in \[0, inf\], got -0\.1"),
    (dict(init=NAN), ValueError, r"init: expected a finite number .*got nan"),
    (dict(init=INF), ValueError, r"init: expected a finite number .*got inf"),
    (dict(init=None), TypeError, r"init: expected a real number, got NoneType None"),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_mlp_bad_options(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        MLP([3, 4, 2], **kw)


# ---------------------------------------------------------------------------------------------
# Dense

@pytest.mark.parametrize("args,kw,exc,pattern", [
    ((0, 2), {}, ValueError, r"fan_in: expected an integer >= 1, got 0"),
    ((2, -1), {}, ValueError, r"fan_out: expected an integer >= 1, got -1"),
    ((2.5, 2), {}, TypeError, r"fan_in: expected an integer, got float 2\.5"),
    ((2, "3"), {}, TypeError, r"fan_out: expected an integer, got str '3'"),
    ((2, 3), dict(dtype="int32"), TypeError, r"dtype: .*got 'int32'"),
    ((2, 3), dict(init="auto"), ValueError, r"init: expected one of 'glorot', 'he', got 'auto'"),
    ((2, 3), dict(init=-1), ValueError, r"init: expected a finite number .*got -1"),
    ((2, 3), dict(seed=-3), (TypeError, ValueError), r"seed: .*got -3"),
])
def test_dense_bad_constructor(args, kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        Dense(*args, **kw)


@pytest.mark.parametrize("mask,pattern", [
    (np.ones((3, 2)), r"mask: expected 3 columns.*got shape \(3, 2\)"),
    (np.ones((4, 3)), r"mask: expected shape \(2, 3\), got \(4, 3\)"),
    (np.ones((1, 3)), r"mask: expected shape \(2, 3\), got \(1, 3\)"),
    (np.ones(6), r"mask: expected a 2-D array.*1-D with shape \(6,\)"),
    (np.ones((2, 3, 1)), r"mask: expected a 2-D array.*3-D"),
    (np.ones((0, 3)), r"mask: .*\(0, 3\)"),
], ids=["transposed", "too-many-rows", "too-few-rows", "1-D", "3-D", "empty"])
def test_dense_mask_wrong_shape(mask, pattern):
    with pytest.raises(ValueError, match=pattern):
        Dense(2, 3, mask=mask)


@pytest.mark.parametrize("value", [0.5, 2, -1, 1.0000001])
def test_dense_mask_values_other_than_0_1(value):
    mask = np.ones((2, 3))
    mask[1, 2] = value
    with pytest.raises(ValueError, match=r"mask: expected only 0 and 1 entries"):
        Dense(2, 3, mask=mask)


def test_dense_mask_error_shows_the_bad_value():
    mask = np.ones((2, 3))
    mask[1, 2] = 0.5
    with pytest.raises(ValueError, match=r"mask: expected only 0 and 1 entries.*0\.5"):
        Dense(2, 3, mask=mask)


@pytest.mark.parametrize("bad", [NAN, INF])
def test_dense_mask_non_finite(bad):
    mask = np.ones((2, 3))
    mask[0, 0] = bad
    with pytest.raises(ValueError, match=r"mask: expected (finite values|only 0 and 1)"):
        Dense(2, 3, mask=mask)


@pytest.mark.parametrize("mask,exc", [(np.ones((2, 3), complex), TypeError),
                                      (np.array([["1", "0", "1"], ["1", "1", "1"]]), TypeError),
                                      ([[1, 0, 1], [1]], TypeError)],
                         ids=["complex", "str", "ragged"])
def test_dense_mask_bad_dtype(mask, exc):
    with pytest.raises(exc, match=r"mask: "):
        Dense(2, 3, mask=mask)


@pytest.mark.parametrize("conv", [lambda m: m.astype(bool), lambda m: m.astype(np.int8),
                                  lambda m: np.asfortranarray(m), lambda m: m.tolist(),
                                  _read_only],
                         ids=["bool", "int8", "fortran", "list", "read-only"])
def test_dense_mask_conversions_give_the_same_layer(conv):
    mask = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    ref = Dense(2, 3, mask=mask, seed=4)
    d = Dense(2, 3, mask=conv(mask), seed=4)
    np.testing.assert_array_equal(d.W, ref.W)
    assert (d.W[mask == 0] == 0).all()


def test_dense_failed_reset_keeps_the_weights():
    d = Dense(3, 2, seed=0)
    W, b = d.W.copy(), d.b.copy()
    for init in ("auto", -1.0, NAN, None):
        with pytest.raises((ValueError, TypeError), match="init"):
            d.reset_parameters(init, seed=1)
    with pytest.raises(TypeError, match="seed"):
        d.reset_parameters("glorot", seed="x")
    np.testing.assert_array_equal(d.W, W)
    np.testing.assert_array_equal(d.b, b)


# ---------------------------------------------------------------------------------------------
# Sequential

def test_sequential_without_layers():
    with pytest.raises(ValueError, match=r"layers: expected at least one layer, got none"):
        Sequential()


def test_sequential_without_dense():
    with pytest.raises(ValueError, match=r"layers: expected at least one Dense layer, got none"):
        Sequential(ReLU(), Tanh())


def test_sequential_mismatched_fan_sizes():
    with pytest.raises(ValueError, match=r"layers: Dense\(3, 4\) gives 4 features but the next "
                                         r"Dense\(5, 2\) expects 5"):
        Sequential(Dense(3, 4), ReLU(), Dense(5, 2))


def test_sequential_mixed_dtypes():
    with pytest.raises(TypeError, match=r"layers: expected one dtype.*\['float32', 'float64'\]"):
        Sequential(Dense(3, 4), ReLU(), Dense(4, 2, dtype="float64"))


@pytest.mark.parametrize("bad", [np.tanh, "relu", None, 3],
                         ids=["ufunc", "str", "None", "int"])
def test_sequential_non_layer(bad):
    with pytest.raises(TypeError, match=r"layers\[1\]: expected a bpcore layer, got "):
        Sequential(Dense(3, 3), bad)


def test_sequential_dense_reused_twice():
    d = Dense(3, 3)
    with pytest.raises(ValueError, match=r"layers\[2\]: Dense\(3, 3\) already belongs"):
        Sequential(d, ReLU(), d)


def test_sequential_activation_reused_twice():
    r = ReLU()
    with pytest.raises(ValueError, match=r"layers\[3\]: ReLU\(\) already belongs"):
        Sequential(Dense(3, 3), r, Dense(3, 3), r)


def test_sequential_dense_already_in_another_network():
    d = Dense(3, 3)
    Sequential(d, ReLU())
    with pytest.raises(ValueError, match=r"layers\[0\]: Dense\(3, 3\) already belongs"):
        Sequential(d)
    m = _mlp()
    with pytest.raises(ValueError, match=r"already belongs"):
        Sequential(*m.layers)


def test_sequential_failed_construction_leaves_layers_free():
    d1, d2 = Dense(3, 4, seed=0), Dense(5, 2, seed=1)
    with pytest.raises(ValueError):
        Sequential(d1, ReLU(), d2)
    net = Sequential(d1, ReLU(), Dense(4, 2, seed=2))  # d1 is still free to join a network
    assert net.num_parameters == 3 * 4 + 4 + 4 * 2 + 2


def test_activation_shared_between_two_networks_is_refused_or_harmless():
    # an activation keeps its forward output for backward: shared by two networks, the second
    # network's forward would silently corrupt the first network's gradients
    X1, X2 = _x(4, seed=1), _x(4, seed=2)
    G = np.ones((4, N_OUT), np.float32)
    shared = ReLU()
    try:
        net1 = Sequential(Dense(N_IN, 4, seed=1), shared, Dense(4, N_OUT, seed=2))
        net2 = Sequential(Dense(N_IN, 4, seed=3), shared, Dense(4, N_OUT, seed=4))
    except ValueError as exc:
        assert "already belongs" in str(exc)
        return
    ref = Sequential(Dense(N_IN, 4, seed=1), ReLU(), Dense(4, N_OUT, seed=2))
    ref.forward(X1)
    ref.backward(G)
    net1.forward(X1)
    net2.forward(X2)
    net1.backward(G)
    np.testing.assert_array_equal(net1.flat_grads, ref.flat_grads,
                                  err_msg="a ReLU shared by two networks gave net1 wrong gradients")


# ---------------------------------------------------------------------------------------------
# Threads and one_hot

@pytest.mark.parametrize("n,exc,pattern", [
    (0, ValueError, r"n: expected an integer >= 1, got 0"),
    (-1, ValueError, r"n: expected an integer >= 1, got -1"),
    ("2", TypeError, r"n: expected an integer, got str '2'"),
    (2.0, TypeError, r"n: expected an integer, got float 2\.0"),
    (True, TypeError, r"n: expected an integer, got bool True"),
    (None, TypeError, r"n: expected an integer, got NoneType None"),
    (2**31, ValueError, r"n: expected at most 2147483647.*got 2147483648"),
])
def test_set_num_threads_bad(n, exc, pattern):
    before = bpcore.get_num_threads()
    with pytest.raises(exc, match=pattern):
        bpcore.set_num_threads(n)
    with pytest.raises(exc, match=pattern):
        with bpcore.num_threads(n):
            pass
    assert bpcore.get_num_threads() == before


@pytest.mark.parametrize("labels,pattern", [
    ([0, 1, 3], r"labels: expected class labels in \[0, 3\), got .*3"),
    ([0, -1, 2], r"labels: expected class labels in \[0, 3\), got .*-1"),
    (np.array([5, 0], np.uint8), r"labels: expected class labels in \[0, 3\), got .*5"),
    ([[0, 1], [2, 0]], r"labels: expected a 1-D array.*got shape \(2, 2\)"),
    (1, r"labels: expected a 1-D array.*got shape \(\)"),
], ids=["==n_classes", "negative", "uint8", "2-D", "scalar"])
def test_one_hot_bad_labels(labels, pattern):
    with pytest.raises(ValueError, match=pattern):
        one_hot(labels, 3)


@pytest.mark.parametrize("labels,pattern", [
    ([0, 1.5], r"labels: expected integer class labels.*non-integral"),
    ([0, NAN], r"labels: expected integer class labels"),
    (["a", "b"], r"labels: .*str"),
    (None, r"labels: .*object"),
    ([[0, 1], [2]], r"labels: expected a numeric array, got list"),
], ids=["float", "NaN", "str", "None", "ragged"])
def test_one_hot_bad_label_types(labels, pattern):
    with pytest.raises(TypeError, match=pattern):
        one_hot(labels, 3)


@pytest.mark.parametrize("n_classes,exc,pattern", [
    (0, ValueError, r"n_classes: expected an integer >= 1, got 0"),
    (-2, ValueError, r"n_classes: expected an integer >= 1, got -2"),
    ("3", TypeError, r"n_classes: expected an integer, got str '3'"),
    (3.0, TypeError, r"n_classes: expected an integer, got float 3\.0"),
])
def test_one_hot_bad_n_classes(n_classes, exc, pattern):
    with pytest.raises(exc, match=pattern):
        one_hot([0, 1], n_classes)


def test_one_hot_bad_dtype():
    with pytest.raises(TypeError, match=r"dtype: expected 'float32' or 'float64', got 'int32'"):
        one_hot([0, 1], 3, dtype="int32")


def test_one_hot_accepts_integral_floats_and_int_dtypes():
    want = one_hot(np.array([0, 2, 1]), 3)
    for labels in ([0.0, 2.0, 1.0], np.array([0, 2, 1], np.uint8), (0, 2, 1),
                   np.array([0, 9, 2, 9, 1, 9])[::2]):
        np.testing.assert_array_equal(one_hot(labels, 3), want)


# ---------------------------------------------------------------------------------------------
# The native twins, called directly: checks of their own, a ValueError, never a crash.

@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_native_gemm_mismatched_shapes(dt):
    A, B, C = np.ones((2, 3), dt), np.ones((4, 5), dt), np.zeros((2, 5), dt)
    with pytest.raises(ValueError, match=r"B: expected 3 rows in op\(B\).*got 4"):
        _blas.py_gemm("n", "n", 1.0, A, B, 0.0, C)
    with pytest.raises(ValueError, match=r"C: expected shape \(2, 5\), got \(5, 2\)"):
        _blas.py_gemm("n", "n", 1.0, A, np.ones((3, 5), dt), 0.0, np.zeros((5, 2), dt))
    with pytest.raises(ValueError, match=r"B: expected 2 rows in op\(B\).*got 3"):
        _blas.py_gemm("t", "n", 1.0, A, np.ones((3, 5), dt), 0.0, C)
    with pytest.raises(ValueError, match=r"B: expected 3 rows in op\(B\).*got 5"):
        _blas.py_gemm("n", "t", 1.0, A, np.ones((3, 5), dt), 0.0, C)
    with pytest.raises(ValueError, match=r"C: expected shape \(2, 5\), got \(0, 0\)"):
        _blas.py_gemm("n", "n", 1.0, A, np.ones((3, 5), dt), 0.0, None)
    with pytest.raises(ValueError, match=r"ta: expected 'n' or 't', got 'x'"):
        _blas.py_gemm("x", "n", 1.0, A, np.ones((3, 5), dt), 0.0, C)
    with pytest.raises(ValueError, match=r"tb: expected 'n' or 't', got 'c'"):
        _blas.py_gemm("n", "c", 1.0, A, np.ones((3, 5), dt), 0.0, C)


def test_native_gemm_layout_dtype_and_read_only():
    A, B, C = np.ones((2, 3)), np.ones((3, 5)), np.zeros((2, 5))
    with pytest.raises(ValueError, match=r"C-contiguous"):
        _blas.py_gemm("n", "n", 1.0, np.asfortranarray(A), B, 0.0, C)
    with pytest.raises(ValueError, match=r"C-contiguous"):
        _blas.py_gemm("n", "n", 1.0, A, np.ones((3, 10))[:, ::2], 0.0, C)
    with pytest.raises((ValueError, TypeError)):
        _blas.py_gemm("n", "n", 1.0, A, B.astype(np.float32), 0.0, C)
    with pytest.raises((ValueError, TypeError)):
        _blas.py_gemm("n", "n", 1.0, A.astype(int), B.astype(int), 0.0, C.astype(int))
    C.setflags(write=False)
    with pytest.raises(ValueError, match=r"read-only"):
        _blas.py_gemm("n", "n", 1.0, A, B, 0.0, C)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_native_dense_forward_wrong_shapes(dt):
    X, W, b, Z = np.ones((4, 3), dt), np.ones((3, 2), dt), np.ones(2, dt), np.empty((4, 2), dt)
    with pytest.raises(ValueError, match=r"W: expected 3 rows, got 5"):
        _layers.py_dense_forward(X, np.ones((5, 2), dt), b, Z)
    with pytest.raises(ValueError, match=r"b: expected length 2, got 3"):
        _layers.py_dense_forward(X, W, np.ones(3, dt), Z)
    with pytest.raises(ValueError, match=r"Z: expected shape \(4, 2\)"):
        _layers.py_dense_forward(X, W, b, np.empty((4, 3), dt))
    with pytest.raises(ValueError, match=r"Z: expected shape \(4, 2\)"):
        _layers.py_dense_forward(X, W, b, np.empty((3, 2), dt))
    with pytest.raises(ValueError, match=r"b: expected length 2, got 0"):
        _layers.py_dense_forward(X, W, None, Z)
    with pytest.raises(ValueError, match=r"W: expected 3 rows, got 0"):
        _layers.py_dense_forward(X, None, b, Z)
    with pytest.raises(ValueError, match=r"C-contiguous"):
        _layers.py_dense_forward(np.asfortranarray(X), W, b, Z)
    with pytest.raises((ValueError, TypeError)):
        _layers.py_dense_forward(X, W.astype(np.float16), b, Z)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_native_dense_backward_wrong_shapes(dt):
    X, W, dZ = np.ones((4, 3), dt), np.ones((3, 2), dt), np.ones((4, 2), dt)
    dW, db = np.zeros((3, 2), dt), np.zeros(2, dt)
    with pytest.raises(ValueError, match=r"dZ: expected shape \(4, 2\)"):
        _layers.py_dense_backward(X, W, np.ones((3, 2), dt), dW, db)
    with pytest.raises(ValueError, match=r"dW: expected shape \(3, 2\)"):
        _layers.py_dense_backward(X, W, dZ, np.zeros((2, 3), dt), db)
    with pytest.raises(ValueError, match=r"db: expected length 2"):
        _layers.py_dense_backward(X, W, dZ, dW, np.zeros(3, dt))
    with pytest.raises(ValueError, match=r"dX: expected shape \(4, 3\)"):
        _layers.py_dense_backward(X, W, dZ, dW, db, np.zeros((4, 2), dt))
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 2\)"):
        _layers.py_dense_backward(X, W, dZ, dW, db, None, np.ones((2, 3), dt))
    with pytest.raises(ValueError, match=r"dW: expected shape \(3, 2\)"):
        _layers.py_dense_backward(X, W, dZ, None, db)
    assert not dW.any() and not db.any()


def test_native_activations_bad_arguments():
    one = np.ones((1, 3))
    with pytest.raises(ValueError, match=r"act: expected 0\.\.10, got 11"):
        _layers.py_activation_forward(11, one, one.copy())
    with pytest.raises(ValueError, match=r"act: expected 0\.\.10, got -1"):
        _layers.py_activation_backward(-1, one, one, one.copy())
    with pytest.raises(ValueError, match=r"A: expected shape \(1, 3\)"):
        _layers.py_activation_forward(1, one, np.ones((1, 2)))
    with pytest.raises(ValueError, match=r"A: expected shape \(1, 3\)"):
        _layers.py_activation_forward(1, one, None)
    with pytest.raises(ValueError, match=r"dA, dZ: expected shape \(1, 3\)"):
        _layers.py_activation_backward(1, one, np.ones((1, 4)), one.copy())
    # an activation whose derivative needs its input refuses to go without it
    with pytest.raises(ValueError, match=r"Z: expected the activation's input, got None"):
        _layers.py_activation_backward(_layers.Activation.GELU, one, one, one.copy())
    with pytest.raises(ValueError, match=r"Z: expected shape \(1, 3\)"):
        _layers.py_activation_backward(_layers.Activation.GELU, one, one, one.copy(),
                                       np.ones((2, 3)))


@pytest.mark.parametrize("dt", [np.float32, np.float64])
@pytest.mark.parametrize("labels,pattern", [
    ([0, 1, 4], r"labels: expected class labels in \[0, 4\), got 4 at index 2"),
    ([0, -1, 2], r"labels: expected class labels in \[0, 4\), got -1 at index 1"),
    ([0, 1, 2**40], r"labels: expected class labels in \[0, 4\), got 1099511627776"),
    ([-(2**40), 1, 2], r"labels: expected class labels in \[0, 4\), got -1099511627776"),
])
def test_native_softmax_xent_labels_out_of_range(dt, labels, pattern):
    Z = np.zeros((3, 4), dt)
    dZ = np.full((3, 4), 7, dt)
    with pytest.raises(ValueError, match=pattern):
        _losses.py_softmax_xent_labels(Z, np.array(labels, np.intp), dZ, 0)


def test_native_softmax_xent_other_bad_arguments():
    Z, labels, dZ = np.zeros((3, 4)), np.array([0, 1, 2], np.intp), np.empty((3, 4))
    with pytest.raises(ValueError, match=r"labels: expected length 3, got 2"):
        _losses.py_softmax_xent_labels(Z, labels[:2].copy(), dZ, 0)
    with pytest.raises(ValueError, match=r"labels: expected length 3, got 0"):
        _losses.py_softmax_xent_labels(Z, None, dZ, 0)
    with pytest.raises(ValueError, match=r"dZ: expected shape \(3, 4\)"):
        _losses.py_softmax_xent_labels(Z, labels, np.empty((4, 3)), 0)
    with pytest.raises(ValueError, match=r"red: expected MEAN or SUM, got 9"):
        _losses.py_softmax_xent_labels(Z, labels, dZ, 9)
    with pytest.raises(ValueError, match=r"Z: expected a non-empty .*got \(0, 4\)"):
        _losses.py_softmax_xent_labels(np.zeros((0, 4)), np.zeros(0, np.intp),
                                       np.empty((0, 4)), 0)
    with pytest.raises((ValueError, TypeError)):
        _losses.py_softmax_xent_labels(Z, labels.astype(np.int32), dZ, 0)
    with pytest.raises(ValueError, match=r"target: expected shape \(3, 4\)"):
        _losses.py_softmax_xent_probs(Z, np.ones((3, 3)), dZ, 0)
    with pytest.raises(ValueError, match=r"Z: expected a non-empty"):
        _losses.py_softmax_xent_probs(np.zeros((0, 4)), np.zeros((0, 4)), np.empty((0, 4)), 0)
    with pytest.raises(ValueError, match=r"target: expected shape \(3, 4\)"):
        _losses.py_mse(Z, np.ones((3, 5)), dZ, 0)
    with pytest.raises(ValueError, match=r"dY: expected shape \(3, 4\)"):
        _losses.py_mse(Z, Z, np.empty((3, 3)), 0)
    with pytest.raises(ValueError, match=r"red: expected 0\.\.2, got 5"):
        _losses.py_mse(Z, Z, dZ, 5)


@pytest.mark.parametrize("dt", [np.float32, np.float64])
def test_native_optimizer_state_refuses_bad_runs(dt):
    w = np.ones(3, dt)
    with pytest.raises(ValueError, match=r"runs: expected a gradient as long as its data"):
        _optim.OptimizerState(_optim.Rule.SGD_RULE, dt, [(w, np.ones(4, dt), 0)], [0], 1)
    with pytest.raises(ValueError, match=r"runs: expected a gradient as long as its data"):
        _optim.OptimizerState(_optim.Rule.SGD_RULE, dt, [(w, np.ones(3, dt), 1)], [0], 1)
    other = np.float64 if dt is np.float32 else np.float32
    with pytest.raises(ValueError, match=r"runs: expected writable C-contiguous"):
        _optim.OptimizerState(_optim.Rule.ADAM_RULE, dt, [(w, np.ones(3, other), 0)], [0], 1)
    ro = np.ones(3, dt)
    ro.setflags(write=False)
    with pytest.raises(ValueError, match=r"runs: expected writable C-contiguous"):
        _optim.OptimizerState(_optim.Rule.SGD_RULE, dt, [(ro, np.ones(3, dt), 0)], [0], 1)
    with pytest.raises(ValueError, match=r"group_of: expected group indices in \[0, 1\)"):
        _optim.OptimizerState(_optim.Rule.SGD_RULE, dt, [(w, np.ones(3, dt), 0)], [2], 1)
    with pytest.raises(ValueError, match=r"rule: expected SGD_RULE or ADAM_RULE, got 7"):
        _optim.OptimizerState(7, dt, [(w, np.ones(3, dt), 0)], [0], 1)
    np.testing.assert_array_equal(w, np.ones(3, dt))


def test_native_entry_points_with_none_everywhere_do_not_crash():
    # Cython typed memoryviews accept None: every entry point must still check, never
    # dereference a NULL buffer.
    calls = [
        lambda: _blas.py_gemm("n", "n", 1.0, None, None, 0.0, None),
        lambda: _layers.py_dense_forward(None, None, None, None),
        lambda: _layers.py_dense_backward(None, None, None, None, None),
        lambda: _layers.py_activation_forward(1, None, None),
        lambda: _layers.py_activation_backward(1, None, None, None),
        lambda: _losses.py_mse(None, None, None, 0),
        lambda: _losses.py_softmax_xent_labels(None, None, None, 0),
        lambda: _losses.py_softmax_xent_probs(None, None, None, 0),
        lambda: _optim.py_global_norm(None),
        lambda: _optim.py_scale(None, 2.0),
        lambda: _optim.OptimizerState(0, "float32", None, None, 1),
        lambda: _losses.check_labels(None, 3),
    ]
    for call in calls:
        try:
            call()
        except (ValueError, TypeError):
            pass


# ---------------------------------------------------------------------------------------------
# fit: every argument checked before the first epoch trains, errors naming the argument

def _fit_case():
    """A fresh model and optimizer, data for them, and a check that nothing was trained."""
    m = _mlp()
    opt = SGD(m, lr=0.5)
    X = _x(6)
    y = np.array([0, 1, 0, 1, 1, 0])
    before = m.flat_params.copy()

    def untouched():
        np.testing.assert_array_equal(m.flat_params, before)
        assert opt.steps == 0

    return m, opt, X, y, untouched


def _fit(m, opt, X, y, **kw):
    return m.fit(X, y, loss=SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=2, batch_size=2,
                 **kw)


@pytest.mark.parametrize("seed,exc,pattern", [
    (-1, ValueError, r"^seed: expected None or an integer in \[0, 2\*\*64\).*got -1$"),
    (2**64, ValueError, r"^seed: expected None or an integer .*got 18446744073709551616$"),
    (1.5, TypeError, r"^seed: expected None or an integer .*got 1\.5$"),
    (np.float64(2.0), TypeError, r"^seed: expected None or an integer .*got (np\.float64\()?2\.0\)?$"),
    ("1", TypeError, r"^seed: expected None or an integer .*got '1'$"),
    (True, TypeError, r"^seed: expected None or an integer .*got True$"),
], ids=["negative", "2**64", "float", "numpy-float", "str", "bool"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_bad_seed_is_the_seed_rule_of_mlp(seed, exc, pattern, shuffle):
    m, opt, X, y, untouched = _fit_case()
    with pytest.raises(exc, match=pattern):
        _fit(m, opt, X, y, seed=seed, shuffle=shuffle)
    untouched()
    with pytest.raises(exc, match=pattern):  # one rule for seeds
        MLP([N_IN, N_OUT], seed=seed)


def test_fit_seed_accepts_numpy_integers_and_generators():
    runs = []
    for seed in (5, np.int64(5), np.uint64(5), bpcore._rng.Generator(5)):
        m, opt, X, y, _ = _fit_case()
        _fit(m, opt, X, y, seed=seed)
        runs.append(m.flat_params.copy())
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])


@pytest.mark.parametrize("schedule,exc,pattern", [
    (lambda epoch: 0.1, TypeError,
     r"^schedule: expected schedule\(0\) to return a dict of optimizer settings.*got float 0\.1"),
    (lambda epoch: [("lr", 0.1)], TypeError, r"^schedule: expected schedule\(0\) to return a "
                                             r"dict.*got list"),
    (0.1, TypeError, r"^schedule: expected a bpcore\.schedules object or a callable.*got float"),
    ("step", TypeError, r"^schedule: expected .*got str 'step'"),
    (lambda epoch: {"lr": -1.0}, ValueError, r"^lr: expected a finite number"),
    (lambda epoch: {"beta1": 0.5}, ValueError, r"^schedule: expected settings 'lr' or 'momentum'"),
], ids=["returns-float", "returns-list", "float", "str", "bad-lr", "unknown-key"])
def test_fit_bad_schedule_is_refused_before_training(schedule, exc, pattern):
    m, opt, X, y, untouched = _fit_case()
    with pytest.raises(exc, match=pattern):
        _fit(m, opt, X, y, schedule=schedule)
    untouched()


def test_fit_schedule_returning_none_keeps_the_settings():
    m, opt, X, y, _ = _fit_case()
    _fit(m, opt, X, y, schedule=lambda epoch: None)
    assert opt.lr == 0.5


@pytest.mark.parametrize("callbacks,pattern", [
    ([1], r"^callbacks\[0\]: expected a callable cb\(epoch, logs\), got int 1"),
    ([lambda e, logs: None, "stop"], r"^callbacks\[1\]: expected a callable .*got str 'stop'"),
    (5, r"^callbacks: expected a callable cb\(epoch, logs\) or a list of them, got int 5"),
    ("print", r"^callbacks: expected a callable .*got str 'print'"),
    ({"cb": print}, r"^callbacks: expected a callable .*got dict"),
], ids=["int-in-list", "str-in-list", "int", "str", "dict"])
def test_fit_bad_callbacks_are_refused_before_training(callbacks, pattern):
    m, opt, X, y, untouched = _fit_case()
    with pytest.raises(TypeError, match=pattern):
        _fit(m, opt, X, y, callbacks=callbacks)
    untouched()


def test_fit_takes_a_single_callable_as_one_callback():
    m, opt, X, y, _ = _fit_case()
    seen = []
    _fit(m, opt, X, y, callbacks=lambda epoch, logs: seen.append(epoch))
    assert seen == [0, 1]
    seen.clear()
    _fit(m, opt, X, y, callbacks=(lambda epoch, logs: seen.append(epoch) or True,))
    assert seen == [0], "a callback returning True stops training"


def _val_nan():
    Xv = np.ones((2, N_IN))
    Xv[1, 0] = NAN
    return Xv, np.array([0, 1])


@pytest.mark.parametrize("make,exc,pattern", [
    (lambda: (_x(2), np.array([0, 5])), ValueError,
     r"^validation_data\[1\]: expected class labels in \[0, 2\), got 5"),
    (lambda: (_x(2), np.array([0, -1])), ValueError,
     r"^validation_data\[1\]: expected class labels in \[0, 2\), got -1"),
    (lambda: (_x(2), np.array([0, 1, 1])), ValueError,
     r"^validation_data\[1\]: expected 2 labels \(one per row of the output\), got 3"),
    (lambda: (_x(2), np.array([0.5, 1.0])), TypeError,
     r"^validation_data\[1\]: expected integer class labels"),
    (lambda: (_x(2), np.int64(1)), ValueError, r"^validation_data\[1\]: expected .*got 0-D"),
    (lambda: (_x(2), np.array([[0.5, NAN], [0.5, 0.5]])), ValueError,
     r"^validation_data\[1\]: expected finite values"),
    (lambda: (_x(2), np.ones((2, 3))), ValueError, r"^validation_data\[1\]: expected 2 columns"),
    (_val_nan, ValueError, r"^validation_data\[0\]: expected finite values"),
    (lambda: (np.ones((2, 5)), np.array([0, 1])), ValueError,
     r"^validation_data\[0\]: expected 3 columns \(n_features\), got shape \(2, 5\)"),
    (lambda: (np.ones(N_IN), np.array([0])), ValueError,
     r"^validation_data\[0\]: expected a 2-D array"),
    (lambda: _x(2), TypeError, r"^validation_data: expected a pair \(X_val, y_val\), got ndarray"),
    (lambda: (_x(2),), TypeError,
     r"^validation_data: expected a pair \(X_val, y_val\), got tuple of length 1"),
    (lambda: {"X": _x(2)}, TypeError, r"^validation_data: expected a pair .*got dict"),
], ids=["label-too-big", "label-negative", "too-many-labels", "fractional-labels", "0-d-labels",
        "nan-probabilities", "wrong-classes", "nan-X", "wrong-columns", "1-D-X", "just-X",
        "1-tuple", "dict"])
def test_fit_bad_validation_data_is_named_and_refused_before_training(make, exc, pattern):
    m, opt, X, y, untouched = _fit_case()
    with pytest.raises(exc, match=pattern):
        _fit(m, opt, X, y, validation_data=make())
    untouched()


def test_fit_validation_data_in_exact_form_is_still_checked():
    # intp labels of the right shape once went straight through, unchecked until evaluated
    m, opt, X, y, untouched = _fit_case()
    with pytest.raises(ValueError, match=r"^validation_data\[1\]: expected class labels"):
        _fit(m, opt, X, y, validation_data=(_x(2), np.array([0, 2], np.intp)))
    untouched()


@pytest.mark.parametrize("y", [np.int64(1), 1, np.array(0.5)], ids=["numpy-int", "int", "0-d"])
def test_fit_0d_y_is_a_named_shape_error(y):
    m, opt, X, _, untouched = _fit_case()
    with pytest.raises(ValueError, match=r"^target: expected a 2-D array .*got 0-D with shape \(\)"):
        _fit(m, opt, X, y)
    untouched()


@pytest.mark.parametrize("kw", [dict(callbacks=[print]), dict(schedule=lambda e: {"lr": 1}),
                                dict(validation_data=(np.ones((2, N_IN)), np.array([0, 1]))),
                                dict(max_grad_norm=1.0)],
                         ids=["callbacks", "schedule", "validation_data", "max_grad_norm"])
def test_fit_with_lbfgs_refuses_what_it_would_ignore(kw):
    m, _, X, y, _ = _fit_case()
    before = m.flat_params.copy()
    name = next(iter(kw))
    with pytest.raises(ValueError, match=f"^{name}: expected None with optimizer=LBFGS"):
        m.fit(X, y, loss=SoftmaxCrossEntropyLoss(), optimizer=bpcore.LBFGS(), **kw)
    np.testing.assert_array_equal(m.flat_params, before)


def test_fit_with_lbfgs_checks_the_seed_too():
    m, _, X, y, _ = _fit_case()
    with pytest.raises(ValueError, match=r"^seed: expected"):
        m.fit(X, y, loss=SoftmaxCrossEntropyLoss(), optimizer=bpcore.LBFGS(), seed=-1)


# ---------------------------------------------------------------------------------------------
# Networks take Dense layers and activations only

class _UserModule(bpcore.Module):
    def forward(self, X):
        return X


@pytest.mark.parametrize("make", [lambda: Sequential(Dense(3, 2)), lambda: _mlp(),
                                  lambda: _UserModule(), lambda: bpcore.Module()],
                         ids=["Sequential", "MLP", "user-Module", "Module"])
def test_sequential_refuses_a_nested_network_or_user_module(make):
    inner = make()
    with pytest.raises(TypeError, match=r"^layers\[1\]: expected a bpcore layer, got "
                                        rf"{type(inner).__name__} \(a network takes Dense"):
        Sequential(Dense(N_IN, 3), inner)


# ---------------------------------------------------------------------------------------------
# dtype in a non-native byte order is the same precision

@pytest.mark.parametrize("dtype,want", [(">f4", np.float32), (np.dtype(">f8"), np.float64),
                                        ("<f4", np.float32)])
def test_non_native_byte_order_dtype_is_accepted(dtype, want):
    m = MLP([N_IN, 4, N_OUT], dtype=dtype, seed=0)
    ref = MLP([N_IN, 4, N_OUT], dtype=want, seed=0)
    assert m.dtype == want and m.flat_params.dtype == np.dtype(want)
    np.testing.assert_array_equal(m.predict(_x(3, want)), ref.predict(_x(3, want)))
    assert Dense(2, 2, dtype=dtype).dtype == np.dtype(want)


@pytest.mark.parametrize("dtype,name", [(">i4", "int32"), (">f2", "float16"), (">c8", "complex64")])
def test_non_native_byte_order_of_another_dtype_names_it(dtype, name):
    with pytest.raises(TypeError, match=rf"^dtype: expected 'float32' or 'float64', got '{name}'"):
        MLP([N_IN, N_OUT], dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Checkpoint paths

@pytest.mark.parametrize("path,shown", [(123, "int 123"), (0, "int 0"), (None, "NoneType None"),
                                        (b"m.safetensors", "bytes b'm.safetensors'"),
                                        (1.5, "float 1.5")],
                         ids=["int", "fd-0", "None", "bytes", "float"])
def test_checkpoint_path_must_be_a_path(path, shown):
    m = _mlp()
    pattern = r"^path: expected a str or os\.PathLike, got " + re.escape(shown) + "$"
    with pytest.raises(TypeError, match=pattern):
        m.save(path)
    with pytest.raises(TypeError, match=pattern):  # an int must not be read as a descriptor
        bpcore.load(path)
    with pytest.raises(TypeError, match=pattern):
        bpcore.load_optimizer(path, SGD(m))


def test_checkpoint_path_accepts_str_and_pathlike(tmp_path):
    m = _mlp()
    m.save(tmp_path / "a.safetensors")
    m.save(str(tmp_path / "b.safetensors"))
    np.testing.assert_array_equal(bpcore.load(str(tmp_path / "a.safetensors")).flat_params,
                                  bpcore.load(tmp_path / "b.safetensors").flat_params)
