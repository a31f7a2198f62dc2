"""The activations beyond the 1986 paper's: LeakyReLU, ELU, GELU (erf and tanh), SiLU, Softplus
and the Softmax output layer. Each against an independent NumPy/SciPy reference and finite
differences in float64, against torch.nn.functional forward and backward in both dtypes, on
every path of the engine, at every SIMD level, through checkpoint files."""
import numpy as np
import pytest
from scipy.special import erf, expit

import bpcore
from bpcore import _layers
from bpcore.layers import ACTIVATIONS
from test_engine import _layer_api_step
from test_gradcheck import numeric_grad

# name -> (layer factory, NumPy reference f(z), its derivative f'(z))
_SQRT_2_PI = np.sqrt(2 / np.pi)


def _gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(_SQRT_2_PI * (z + 0.044715 * z ** 3)))


def _dgelu_tanh(z):
    t = np.tanh(_SQRT_2_PI * (z + 0.044715 * z ** 3))
    return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * _SQRT_2_PI * (1 + 3 * 0.044715 * z * z)


def _softplus(beta, threshold):
    def f(z):
        return np.where(beta * z > threshold, z, np.log1p(np.exp(np.minimum(beta * z, 700))) / beta)

    def df(z):
        return np.where(beta * z > threshold, 1.0, expit(beta * z))
    return f, df


CASES = {
    "leaky_relu": (lambda: bpcore.LeakyReLU(0.1),
                   lambda z: np.where(z > 0, z, 0.1 * z), lambda z: np.where(z > 0, 1.0, 0.1)),
    "leaky_relu_negative": (lambda: bpcore.LeakyReLU(-0.3),
                            lambda z: np.where(z > 0, z, -0.3 * z),
                            lambda z: np.where(z > 0, 1.0, -0.3)),
    "elu": (lambda: bpcore.ELU(1.3), lambda z: np.where(z > 0, z, 1.3 * np.expm1(np.minimum(z, 0))),
            lambda z: np.where(z > 0, 1.0, 1.3 * np.exp(np.minimum(z, 0)))),
    "gelu": (lambda: bpcore.GELU(), lambda z: z * 0.5 * (1 + erf(z / np.sqrt(2))),
             lambda z: 0.5 * (1 + erf(z / np.sqrt(2))) + z * np.exp(-z * z / 2) / np.sqrt(2 * np.pi)),
    "gelu_tanh": (lambda: bpcore.GELU(approximate="tanh"), _gelu_tanh, _dgelu_tanh),
    "silu": (lambda: bpcore.SiLU(), lambda z: z * expit(z),
             lambda z: expit(z) * (1 + z * (1 - expit(z)))),
    "softplus": (lambda: bpcore.Softplus(2.0, 15.0),) + _softplus(2.0, 15.0),
    "softplus_default": (lambda: bpcore.Softplus(),) + _softplus(1.0, 20.0),
}

# z over the range where each function bends, plus large magnitudes and the neighbourhood of 0
Z_GRID = np.concatenate([np.linspace(-30, 30, 1201), [-1e4, -300, -1e-10, 0, 1e-10, 300, 1e4]])
# torch's results agree relatively (rtol) except where the formula cancels (GELU's left tail,
# 1 + erf(z) for z << 0): there both are round-off around 0, and agree within a few ulps of
# the formula's terms, measured: <= 7e-15 (float64), <= 2e-6 (float32)
TOL = {np.float64: dict(rtol=1e-12, atol=64 * np.finfo(np.float64).eps),
       np.float32: dict(rtol=1e-5, atol=64 * np.finfo(np.float32).eps)}


def _forward_backward(layer, Z, dA):
    A = layer.forward(Z)
    return A, layer.backward(dA)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_against_numpy_reference(name, dtype):
    make, f, df = CASES[name]
    Z = Z_GRID.astype(dtype).reshape(1, -1)
    dA = np.random.default_rng(0).standard_normal(Z.shape).astype(dtype)
    A, dZ = _forward_backward(make(), Z, dA)
    z = Z.astype(np.float64)
    with np.errstate(over="ignore"):
        np.testing.assert_allclose(A, f(z), **TOL[dtype])
        np.testing.assert_allclose(dZ, dA * df(z), **TOL[dtype])


@pytest.mark.parametrize("name", list(CASES))
def test_derivative_against_finite_differences(name):
    make, _, _ = CASES[name]
    layer = make()
    # away from the kinks of LeakyReLU, ELU, Softplus (z = 0, beta z = threshold)
    z = np.array([[-6.0, -2.5, -1.1, -0.4, -0.05, 0.07, 0.3, 1.7, 4.2, 9.5]])
    h = 1e-6
    up, down = layer.forward(z + h), layer.forward(z - h)
    numeric = (up - down) / (2 * h)
    layer.forward(z)
    analytic = layer.backward(np.ones_like(z))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-7, atol=1e-9)


TORCH = {
    "leaky_relu": lambda F, t: F.leaky_relu(t, 0.1),
    "leaky_relu_negative": lambda F, t: F.leaky_relu(t, -0.3),
    "elu": lambda F, t: F.elu(t, 1.3),
    "gelu": lambda F, t: F.gelu(t),
    "gelu_tanh": lambda F, t: F.gelu(t, approximate="tanh"),
    "silu": lambda F, t: F.silu(t),
    "softplus": lambda F, t: F.softplus(t, 2.0, 15.0),
    "softplus_default": lambda F, t: F.softplus(t),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_matches_torch_forward_and_backward(name, dtype):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    Z = Z_GRID.astype(dtype).reshape(1, -1)
    dA = np.random.default_rng(1).standard_normal(Z.shape).astype(dtype)
    A, dZ = _forward_backward(CASES[name][0](), Z, dA)
    t = torch.tensor(Z, requires_grad=True)
    out = TORCH[name](F, t)
    out.backward(torch.tensor(dA))
    np.testing.assert_allclose(A, out.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dZ, t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_layer_matches_torch(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    Z = (rng.standard_normal((6, 5)) * 20).astype(dtype)
    Z[0] += 1e4  # shifted rows: the max is taken out
    dA = rng.standard_normal(Z.shape).astype(dtype)
    A, dZ = _forward_backward(bpcore.Softmax(), Z, dA)
    np.testing.assert_allclose(A.sum(axis=1), 1, rtol=10 * np.finfo(dtype).eps)
    t = torch.tensor(Z, requires_grad=True)
    out = torch.softmax(t, dim=1)
    out.backward(torch.tensor(dA))
    np.testing.assert_allclose(A, out.detach().numpy(), **TOL[dtype])
    np.testing.assert_allclose(dZ, t.grad.numpy(), **TOL[dtype])


@pytest.mark.parametrize("name", list(CASES) + ["softmax"])
def test_nan_stays_nan(name):
    layer = bpcore.Softmax() if name == "softmax" else CASES[name][0]()
    Z = np.array([[np.nan, -1.0, 2.0]])
    Z_checked = Z.copy()
    A = np.empty_like(Z)
    # the layer API refuses NaN input; the kernels keep it (and a whole softmax row is NaN)
    _layers.py_activation_forward(layer.kind, Z_checked, A, *layer.spec[1:])
    assert np.isnan(A[0, 0])
    dZ = np.empty_like(Z)
    _layers.py_activation_backward(layer.kind, A, np.ones_like(Z), dZ, Z, *layer.spec[1:])
    assert np.isnan(dZ[0, 0])


# ---------------------------------------------------------------------------------------------
# through networks: the gradient by finite differences, and the engine's paths

NET_ACTS = ["leaky_relu", "elu", "gelu", "gelu_tanh", "silu", "softplus"]


@pytest.mark.parametrize("act", NET_ACTS)
def test_network_gradient_against_finite_differences(act):
    rng = np.random.default_rng(3)
    model = bpcore.MLP([4, 6, 5, 3], activation=act, dtype="float64", seed=1)
    for m in model.layers:
        if isinstance(m, bpcore.Dense):
            m.b[...] = rng.uniform(-0.5, 0.5, m.b.shape)
    X, y = rng.uniform(-2, 2, (7, 4)), rng.integers(0, 3, 7)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    model.zero_grad()
    loss(model.forward(X), y)
    model.backward(loss.backward())
    numeric = numeric_grad(lambda: loss(model.predict(X), y), model.flat_params)
    scale = max(np.abs(numeric).max(), 1e-3)
    assert np.abs(model.flat_grads - numeric).max() / scale < 1e-6


ENGINE_TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,clip", [(1, None), (8, None), (300, None), (8, 0.5)])
@pytest.mark.parametrize("act", NET_ACTS + ["leaky_relu_negative"])
def test_train_step_equals_layer_api(act, n, clip, threads, dtype):
    """Batch 1 (the fused update), 8 (row-split), 300 (batch-split), a clipped step; the net is
    wide enough (70k weights) for the row-split step to use threads."""
    rng = np.random.default_rng(4)

    def net():
        if act == "leaky_relu_negative":
            return bpcore.Sequential(bpcore.Dense(200, 256, dtype=dtype, seed=5),
                                     bpcore.LeakyReLU(-0.2),
                                     bpcore.Dense(256, 64, dtype=dtype, seed=6),
                                     bpcore.LeakyReLU(-0.2),
                                     bpcore.Dense(64, 10, dtype=dtype, seed=7))
        return bpcore.MLP([200, 256, 64, 10], activation=act, dtype=dtype, seed=5)
    a, b = net(), net()
    oa, ob = bpcore.Adam(a, lr=1e-3), bpcore.Adam(b, lr=1e-3)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    with bpcore.num_threads(threads):
        for _ in range(3):
            X, y = rng.uniform(-2, 2, (n, 200)).astype(dtype), rng.integers(0, 10, n)
            la = a.train_step(X, y, loss, oa, max_grad_norm=clip)
            if clip is not None:
                b.zero_grad()
                lb = loss(b.forward(X), y)
                b.backward(loss.backward())
                bpcore.clip_grad_norm(b, clip)
                ob.step()
            else:
                lb = _layer_api_step(b, X, y, loss, ob)
            np.testing.assert_allclose(la, lb, **ENGINE_TOL[dtype])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **ENGINE_TOL[dtype])


@pytest.mark.parametrize("n", [1, 8, 300])
def test_output_activation_and_softmax_output_on_every_path(n):
    rng = np.random.default_rng(5)
    for out in ("softplus", "elu", "softmax"):
        a = bpcore.MLP([30, 40, 4], activation="silu", output_activation=out, dtype="float64",
                       seed=2)
        b = bpcore.MLP([30, 40, 4], activation="silu", output_activation=out, dtype="float64",
                       seed=2)
        oa, ob = bpcore.SGD(a, lr=0.1, momentum=0.9), bpcore.SGD(b, lr=0.1, momentum=0.9)
        loss = bpcore.MSELoss()
        for _ in range(3):
            X, T = rng.uniform(-1, 1, (n, 30)), rng.uniform(0, 1, (n, 4))
            np.testing.assert_allclose(a.train_step(X, T, loss, oa),
                                       _layer_api_step(b, X, T, loss, ob), rtol=1e-10)
        np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-10, atol=1e-12)
        if out == "softmax":
            np.testing.assert_allclose(a.predict(X).sum(axis=1), 1, rtol=1e-14)
        np.testing.assert_allclose(a.predict(X), b.forward(X), rtol=1e-12)


def test_fit_learns_with_the_new_activations():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    for act in NET_ACTS:
        model = bpcore.MLP([64, 32, 10], activation=act, seed=0)
        history = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                            optimizer=bpcore.Adam(model, lr=3e-3), epochs=3, batch_size=32,
                            seed=0)
        assert history["loss"][-1] < 0.5 * history["loss"][0], act
        assert model.evaluate(X, y, bpcore.SoftmaxCrossEntropyLoss())["accuracy"] > 0.85, act


def test_softmax_is_the_engines_last_layer_only():
    m = bpcore.Sequential(bpcore.Dense(3, 4, seed=0), bpcore.Softmax(), bpcore.Dense(4, 2, seed=0))
    with pytest.raises(ValueError, match=r"acts\[0\]: softmax works on whole rows"):
        m.train_step(np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32),
                     bpcore.MSELoss(), bpcore.SGD(m, lr=0.1))


def test_softmax_output_with_the_softmax_loss_is_refused():
    m = bpcore.MLP([3, 4, 2], output_activation="softmax", seed=0)
    with pytest.raises(ValueError, match="loss: SoftmaxCrossEntropyLoss applies the softmax"):
        m.train_step(np.ones((2, 3), np.float32), np.array([0, 1]),
                     bpcore.SoftmaxCrossEntropyLoss(), bpcore.SGD(m, lr=0.1))


def test_only_activations_that_need_their_input_keep_it():
    from bpcore.training import engine_for
    X = np.ones((50, 20), np.float32)
    sizes = {}
    for act in ("relu", "leaky_relu", "gelu", "tanh", "silu"):
        m = bpcore.MLP([20, 30, 8, 2], activation=act, seed=0)
        m.predict(X)
        sizes[act] = engine_for(m).workspaces()["keeps"].size
    # (capacity, 30) and (capacity, 8) of each hidden layer, for those that keep them, each
    # rounded up to whole 64-byte lines (16 floats: every matrix of the workspace starts on one)
    def lines(count):
        return -(-count // 16) * 16
    assert sizes["relu"] == sizes["leaky_relu"] == sizes["tanh"] == 1
    assert sizes["gelu"] == sizes["silu"] == lines(50 * 30) + lines(50 * 8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_simd_level_computes_the_same_activations(dtype, simd_levels):
    Z = Z_GRID.astype(dtype).reshape(1, -1)
    dA = np.random.default_rng(6).standard_normal(Z.shape).astype(dtype)
    runs = {}
    for level in simd_levels():
        runs[level] = [_forward_backward(CASES[name][0](), Z, dA) for name in CASES]
    tol = dict(rtol=4 * np.finfo(dtype).eps, atol=4 * np.finfo(dtype).eps)
    for level in range(1, len(runs)):
        for (A0, d0), (A, d) in zip(runs[0], runs[level]):
            np.testing.assert_allclose(A, A0, **tol)
            np.testing.assert_allclose(d, d0, **tol)


# ---------------------------------------------------------------------------------------------
# settings, names and files

@pytest.mark.parametrize("make,pattern", [
    (lambda: bpcore.LeakyReLU(float("nan")), r"negative_slope: expected a finite number"),
    (lambda: bpcore.LeakyReLU("0.1"), r"negative_slope: expected a real number, got str"),
    (lambda: bpcore.ELU(float("inf")), r"alpha: expected a finite number"),
    (lambda: bpcore.GELU("erf"), r"approximate: expected one of 'none', 'tanh', got 'erf'"),
    (lambda: bpcore.Softplus(0), r"beta: expected a nonzero number, got 0"),
    (lambda: bpcore.Softplus(1, float("nan")), r"threshold: expected a finite number"),
])
def test_bad_settings_are_refused(make, pattern):
    with pytest.raises((TypeError, ValueError), match=pattern):
        make()


@pytest.mark.parametrize("act", NET_ACTS)
def test_mlp_by_name_and_checkpoint_round_trip(tmp_path, act):
    m = bpcore.MLP([5, 7, 3], activation=act, output_activation="softmax", seed=0)
    X = np.random.default_rng(7).uniform(-1, 1, (4, 5)).astype(np.float32)
    m.save(tmp_path / "m.safetensors")
    back = bpcore.load(tmp_path / "m.safetensors")
    assert repr(back) == repr(m)
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_settings_survive_a_checkpoint_of_a_sequential(tmp_path):
    layers = [bpcore.Dense(3, 4, seed=0), bpcore.LeakyReLU(-0.25), bpcore.Dense(4, 4, seed=1),
              bpcore.ELU(0.7), bpcore.Dense(4, 4, seed=2), bpcore.Softplus(3.0, 9.0),
              bpcore.Dense(4, 2, seed=3), bpcore.GELU("tanh")]
    m = bpcore.Sequential(*layers)
    m.save(tmp_path / "s.safetensors")
    back = bpcore.load(tmp_path / "s.safetensors")
    got = [(type(x).__name__, x.settings()) for x in back.layers if not isinstance(x, bpcore.Dense)]
    assert got == [("LeakyReLU", {"negative_slope": -0.25}), ("ELU", {"alpha": 0.7}),
                   ("Softplus", {"beta": 3.0, "threshold": 9.0}), ("GELU", {"approximate": "tanh"})]
    X = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_every_activation_has_a_name_and_a_kind():
    kinds = {int(k) for k in _layers.Activation}
    made = {int(cls().kind) for cls in ACTIVATIONS.values()} | {int(bpcore.GELU("tanh").kind)}
    assert made == kinds
