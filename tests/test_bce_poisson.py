"""BCEWithLogitsLoss and PoissonLoss: NumPy reference values, finite differences, PyTorch parity
(losses and gradients, logits up to +-1e4, and SGD steps through a network), every path of the
engine's step against the layer API, fit, evaluate's accuracy rule, L-BFGS, bad targets and
pos_weights, non-finite logits, pickling and checkpoints. Also scikit-learn's squared loss
against MSELoss (the relation MSELoss's docstring states).

Tolerances against torch: float64 1e-12 relative, float32 1e-5, for the loss and for each
gradient element (relative to the largest, as tests/test_torch_parity.py: a gradient element
near zero carries the rounding of the terms it is made of). Set BPCORE_TOL_REPORT=1 (with -s)
to print the worst differences seen.
"""
import os
import pickle

import numpy as np
import pytest
from scipy.special import expit

import bpcore
from bpcore import _losses
from bpcore.training import loss_and_gradient
from memory import STEP_BYTES_BOUND, steady_step_bytes
from test_gradcheck import assert_grad_close, check_model, numeric_grad

TORCH_TOL = {"float64": 1e-12, "float32": 1e-5}
# the engine against the layer API (the same kernels, summed in another order)
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}

_WORST = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    if os.environ.get("BPCORE_TOL_REPORT"):
        print("\nworst relative differences against torch (what, dtype)")
        for key in sorted(_WORST):
            print(f"  {key[0]:<22} {key[1]:<8} {_WORST[key]:.2e}")


@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # its tiny ops on a busy 2-core machine: see test_optimizers.py
    yield torch
    torch.set_num_threads(before)


def assert_torch_close(actual, expected, dtype, what):
    """|actual - expected| <= rtol (|expected| + max |expected|), elementwise."""
    rtol = TORCH_TOL[dtype]
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    scale = np.abs(e) + np.abs(e).max()
    err = np.abs(a - e) / np.where(scale > 0, scale, 1)
    _WORST[(what, dtype)] = max(_WORST.get((what, dtype), 0.0), float(err.max()))
    assert err.max() <= rtol, f"{what}: relative difference {err.max():.2e} > {rtol:.0e}"


# ---------------------------------------------------------------------------------------------
# the NumPy reference: the textbook formulas, in float64 (logaddexp for the logs of sigmoids)

def ref_bce(Z, T, pw, reduction):
    Z, T = np.asarray(Z, np.float64), np.asarray(T, np.float64)
    p = np.ones(Z.shape[1]) if pw is None else np.broadcast_to(np.asarray(pw, np.float64),
                                                               Z.shape[1:])
    # log sigmoid(z) = -log(1 + e^-z), log(1 - sigmoid(z)) = -log(1 + e^z)
    elements = p * T * np.logaddexp(0, -Z) + (1 - T) * np.logaddexp(0, Z)
    grad = (1 + (p - 1) * T) * expit(Z) - p * T
    if reduction == "mean":
        return elements.mean(), grad / Z.size
    return elements.sum(), grad


def ref_poisson(Z, T, reduction):
    Z, T = np.asarray(Z, np.float64), np.asarray(T, np.float64)
    elements, grad = np.exp(Z) - T * Z, np.exp(Z) - T
    if reduction == "mean":
        return elements.mean(), grad / Z.size
    return elements.sum(), grad


def _bce_data(rng, n, c, kind="binary"):
    Z = rng.normal(0, 3, (n, c))
    T = (rng.uniform(size=(n, c)) < 0.4).astype(float) if kind == "binary" else \
        rng.uniform(0, 1, (n, c))
    return Z, T


def _poisson_data(rng, n, c):
    Z = rng.normal(0, 1.5, (n, c))
    return Z, rng.poisson(np.exp(Z + rng.normal(0, 0.3, (n, c)))).astype(float)


PW = {"none": None, "scalar": 2.5, "array": [0.5, 1.0, 3.0]}


def _pw(name, c):
    pw = PW[name]
    return pw[:c] if isinstance(pw, list) else pw


# ---------------------------------------------------------------------------------------------
# values: the NumPy reference and finite differences

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("pw", list(PW))
@pytest.mark.parametrize("kind", ["binary", "probs"])
def test_bce_matches_numpy(rng, dtype, reduction, pw, kind):
    Z, T = _bce_data(rng, 23, 3, kind)
    Z, T = Z.astype(dtype), T.astype(dtype)  # the reference takes the same rounded values
    loss = bpcore.BCEWithLogitsLoss(reduction, pos_weight=_pw(pw, 3))
    value = loss(Z, T)
    want, grad = ref_bce(Z, T, _pw(pw, 3), reduction)
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == "float64" else dict(rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(value, want, **tol)
    assert loss.backward().dtype == np.dtype(dtype)
    np.testing.assert_allclose(loss.backward(), grad, rtol=tol["rtol"],
                               atol=tol["rtol"] * np.abs(grad).max())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_poisson_matches_numpy(rng, dtype, reduction):
    Z, T = _poisson_data(rng, 31, 2)
    Z, T = Z.astype(dtype), T.astype(dtype)
    loss = bpcore.PoissonLoss(reduction)
    want, grad = ref_poisson(Z, T, reduction)
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == "float64" else dict(rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(loss(Z, T), want, **tol)
    np.testing.assert_allclose(loss.backward(), grad, rtol=tol["rtol"],
                               atol=tol["rtol"] * np.abs(grad).max())


def test_hand_computed_values():
    """A few elements worked out by hand: log 2 at z = 0, the weighted positive term."""
    bce = bpcore.BCEWithLogitsLoss("sum", pos_weight=[3.0, 1.0])
    # z = 0: sigmoid = 1/2, each term log 2; the first column's positive term weighs 3
    assert bce(np.zeros((1, 2)), np.array([[1.0, 1.0]])) == pytest.approx(4 * np.log(2), rel=1e-15)
    np.testing.assert_allclose(bce.backward(), [[3 * (0.5 - 1), 0.5 - 1]], rtol=1e-15)
    # t = 0.5 at z = 0 with p = 1: the minimum, gradient 0
    assert bpcore.BCEWithLogitsLoss()(np.zeros((1, 1)), [0.5]) == pytest.approx(np.log(2))
    poisson = bpcore.PoissonLoss("sum")
    assert poisson(np.array([[np.log(3.0)]]), [[3.0]]) == pytest.approx(3 - 3 * np.log(3))
    assert poisson.backward()[0, 0] == pytest.approx(0.0, abs=1e-15)  # the rate is the target


LOSSES = {
    "bce_mean": lambda: bpcore.BCEWithLogitsLoss(),
    "bce_sum_pw": lambda: bpcore.BCEWithLogitsLoss("sum", pos_weight=[0.5, 2.0, 4.0]),
    "poisson_mean": lambda: bpcore.PoissonLoss(),
    "poisson_sum": lambda: bpcore.PoissonLoss("sum"),
}


def _targets(name, rng, n, c):
    if name.startswith("bce"):
        return _bce_data(rng, n, c, "probs")[1]
    return _poisson_data(rng, n, c)[1]


@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_of_each_loss_alone(rng, name):
    loss = LOSSES[name]()
    Y = rng.uniform(-2, 2, (6, 3))
    T = _targets(name, rng, 6, 3)
    loss(Y, T)
    assert_grad_close(loss.backward(), numeric_grad(lambda: loss(Y, T), Y))


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_gradient_through_the_network(rng, act, name):
    """model.forward + loss + model.backward against central differences of the loss with
    respect to every weight and bias, and the input."""
    model = bpcore.MLP([4, 6, 3], activation=act, dtype="float64", seed=1)
    for m in model.layers:
        if isinstance(m, bpcore.Dense):
            m.b[...] = rng.uniform(-0.5, 0.5, m.b.shape)
    X = rng.uniform(-1, 1, (5, 4))
    check_model(model, X, _targets(name, rng, 5, 3), LOSSES[name]())


# ---------------------------------------------------------------------------------------------
# PyTorch parity

def _torch_bce(torch, Z, T, pw, reduction, dtype):
    tdt = getattr(torch, dtype)
    weight = None if pw is None else torch.as_tensor(np.broadcast_to(pw, Z.shape[1:]).copy(),
                                                     dtype=tdt)
    z = torch.tensor(Z, requires_grad=True)
    value = torch.nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=weight)(
        z, torch.as_tensor(T.reshape(Z.shape)))
    value.backward()
    return value.item(), z.grad.numpy()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("pw", list(PW))
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_bce_matches_torch(torch, rng, dtype, reduction, c, pw, scale):
    Z = (rng.normal(0, 1, (40, c)) * scale).astype(dtype)
    Z[0, 0], Z[1, 0] = scale, -scale  # the extremes, whatever the draw
    T = _bce_data(rng, 40, c, "binary")[1].astype(dtype)
    T[0, 0], T[1, 0] = 0, 1  # ... on the wrong side: each costs |z|
    T[2:12] = rng.uniform(0, 1, (10, c))  # probabilities too
    weight = _pw(pw, c)
    loss = bpcore.BCEWithLogitsLoss(reduction, pos_weight=weight)
    target = T[:, 0] if c == 1 else T  # (n,) is read as (n, 1)
    value = loss(Z, target)
    want, grad = _torch_bce(torch, Z, T, weight, reduction, dtype)
    assert np.isfinite(value) and np.isfinite(loss.backward()).all()
    assert_torch_close(value, want, dtype, "bce loss")
    assert_torch_close(loss.backward(), grad, dtype, "bce gradient")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("extreme", [False, True])
def test_poisson_matches_torch(torch, rng, dtype, reduction, c, extreme):
    Z, T = _poisson_data(rng, 40, c)
    if extreme:  # the largest rates that stay finite (e^88 and e^709 are the ends), and tiny
        big = 80.0 if dtype == "float32" else 700.0
        Z[0, 0], Z[1, 0] = big, -big
    Z, T = Z.astype(dtype), T.astype(dtype)
    loss = bpcore.PoissonLoss(reduction)
    value = loss(Z, T[:, 0] if c == 1 else T)
    z = torch.tensor(Z, requires_grad=True)
    tv = torch.nn.PoissonNLLLoss(log_input=True, full=False, reduction=reduction)(
        z, torch.as_tensor(T))
    tv.backward()
    assert_torch_close(value, tv.item(), dtype, "poisson loss")
    assert_torch_close(loss.backward(), z.grad.numpy(), dtype, "poisson gradient")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_poisson_overflow_is_infinite_as_in_torch(torch, dtype):
    Z = np.array([[1e4], [0.0]], dtype)
    T = np.array([[1.0], [2.0]], dtype)
    value = bpcore.PoissonLoss()(Z, T)
    want = torch.nn.PoissonNLLLoss()(torch.as_tensor(Z), torch.as_tensor(T)).item()
    assert value == want == np.inf


def _torch_mlp(torch, model, activation):
    nn = torch.nn
    mods = []
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    for i, d in enumerate(dense):
        lin = nn.Linear(d.fan_in, d.fan_out, dtype=getattr(torch, model.dtype.name))
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(d.W.T)))
            lin.bias.copy_(torch.from_numpy(d.b.copy()))
        mods.append(lin)
        if i < len(dense) - 1:
            mods.append({"tanh": nn.Tanh, "relu": nn.ReLU}[activation]())
    return nn.Sequential(*mods), dense, [m for m in mods if isinstance(m, nn.Linear)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", ["bce_pw", "poisson"])
@pytest.mark.parametrize("n", [1, 8, 300])  # the fused, row-split and batch-split steps
def test_sgd_steps_through_a_network_match_torch(torch, rng, dtype, name, n):
    """train_step, 6 SGD steps with momentum: the losses at each step and the weights after,
    against torch doing the same from the same weights."""
    c = 3
    model = bpcore.MLP([5, 16, c], activation="tanh", dtype=dtype, seed=3)
    tnet, dense, linear = _torch_mlp(torch, model, "tanh")
    if name == "bce_pw":
        pw = [0.5, 1.0, 3.0]
        loss = bpcore.BCEWithLogitsLoss(pos_weight=pw)
        tloss = torch.nn.BCEWithLogitsLoss(pos_weight=torch.as_tensor(pw, dtype=getattr(
            torch, dtype)))
    else:
        loss, tloss = bpcore.PoissonLoss(), torch.nn.PoissonNLLLoss(log_input=True, full=False)
    opt = bpcore.SGD(model, lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tnet.parameters(), lr=0.1, momentum=0.9)
    for step in range(6):
        X = rng.uniform(-1, 1, (n, 5)).astype(dtype)
        T = (_bce_data(rng, n, c, "probs")[1] if name == "bce_pw"
             else _poisson_data(rng, n, c)[1]).astype(dtype)
        value = model.train_step(X, T, loss, opt)
        topt.zero_grad()
        tv = tloss(tnet(torch.from_numpy(X)), torch.from_numpy(T))
        tv.backward()
        topt.step()
        assert_torch_close(value, tv.item(), dtype, f"{name} step loss")
    for d, lin in zip(dense, linear):
        assert_torch_close(d.W, lin.weight.detach().numpy().T, dtype, f"{name} weights")
        assert_torch_close(d.b, lin.bias.detach().numpy(), dtype, f"{name} weights")


# ---------------------------------------------------------------------------------------------
# the engine's paths against the layer API

def _layer_api_step(model, X, y, loss, opt, max_norm=None):
    model.zero_grad()
    value = loss(model.forward(X), y)
    model.backward(loss.backward())
    if max_norm is not None:
        bpcore.clip_grad_norm(model, max_norm)
    opt.step()
    return value


def _make_loss(name):
    if name == "bce":
        return bpcore.BCEWithLogitsLoss()
    if name == "bce_pw":
        return bpcore.BCEWithLogitsLoss("sum", pos_weight=[2.0, 0.5, 1.5])
    return bpcore.PoissonLoss()


def _data(rng, name, n, n_in, c, dtype):
    X = rng.uniform(-1, 1, (n, n_in)).astype(dtype)
    T = _bce_data(rng, n, c, "binary")[1] if name.startswith("bce") else _poisson_data(
        rng, n, c)[1]
    return X, T.astype(dtype)


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 8, 300])  # fused, row-split, batch-split
@pytest.mark.parametrize("name", ["bce", "bce_pw", "poisson"])
@pytest.mark.parametrize("clip", [None, 0.05])  # 0.05: every step is clipped
def test_train_step_equals_layer_api(rng, threads, n, name, clip):
    """A net of 14k weights: enough that the row-split and batch-split steps use threads."""
    a = bpcore.MLP([40, 128, 64, 3], activation="tanh", dtype="float64", seed=5, init=0.2)
    b = bpcore.MLP([40, 128, 64, 3], activation="tanh", dtype="float64", seed=5, init=0.2)
    oa, ob = bpcore.SGD(a, lr=0.05, momentum=0.9), bpcore.SGD(b, lr=0.05, momentum=0.9)
    loss = _make_loss(name)
    with bpcore.num_threads(threads):
        for _ in range(3):
            X, y = _data(rng, name, n, 40, 3, "float64")
            la = a.train_step(X, y, loss, oa, max_grad_norm=clip)
            lb = _layer_api_step(b, X, y, loss, ob, clip)
            np.testing.assert_allclose(la, lb, **TOL["float64"])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL["float64"])
    assert not np.array_equal(a.flat_params, bpcore.MLP([40, 128, 64, 3], activation="tanh",
                                                         dtype="float64", seed=5,
                                                         init=0.2).flat_params)


@pytest.mark.parametrize("n", [1, 8, 300])
@pytest.mark.parametrize("name", ["bce_pw", "poisson"])
def test_train_step_equals_layer_api_float32(rng, n, name):
    a = bpcore.MLP([6, 12, 3], activation="relu", seed=6)
    b = bpcore.MLP([6, 12, 3], activation="relu", seed=6)
    oa, ob = bpcore.Adam(a, lr=0.01), bpcore.Adam(b, lr=0.01)
    loss = _make_loss(name)
    for _ in range(4):
        X, y = _data(rng, name, n, 6, 3, "float32")
        np.testing.assert_allclose(a.train_step(X, y, loss, oa),
                                   _layer_api_step(b, X, y, loss, ob), **TOL["float32"])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL["float32"])


@pytest.mark.parametrize("name", ["bce_pw", "poisson"])
def test_loss_values_do_not_depend_on_threads(rng, name):
    """The sums are taken in fixed pieces: one and two threads give the same bits."""
    Z, T = _data(rng, name, 20000, 3, 3, "float32")  # enough elements for threads
    runs = []
    for threads in (1, 2):
        loss = _make_loss(name)
        with bpcore.num_threads(threads):
            runs.append((loss(Z, T), loss.backward()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("n", [1, 16, 200])
def test_steady_state_train_step_allocates_no_arrays(rng, n):
    model = bpcore.MLP([50, 40, 10], seed=0)
    opt = bpcore.SGD(model, lr=0.01, momentum=0.9)
    loss = bpcore.BCEWithLogitsLoss(pos_weight=np.linspace(0.5, 2.0, 10))
    X, y = _data(rng, "bce", n, 50, 10, "float32")

    def step():
        model.train_step(X, y, loss, opt)

    for _ in range(3):  # the workspaces grow to this batch here
        step()
    # pos_weight is converted once per dtype and width, then handed over as it is
    assert loss.native_pos_weight(np.float32, 10) is loss.native_pos_weight(np.float32, 10)
    # a copy of the target or the gradient of a batch of 200 rows, 8 KB, would not fit
    assert steady_step_bytes(step) < STEP_BYTES_BOUND


# ---------------------------------------------------------------------------------------------
# fit, evaluate, L-BFGS

def test_fit_learns_breast_cancer():
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.load_breast_cancer(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    model = bpcore.MLP([30, 16, 1], activation="relu", dtype="float64", seed=0)
    loss = bpcore.BCEWithLogitsLoss(pos_weight=0.6)  # 357 benign (1) against 212 malignant
    before = model.evaluate(X, y, loss)
    hist = model.fit(X, y, loss=loss, optimizer=bpcore.SGD(model, lr=0.05, momentum=0.9),
                     epochs=8, batch_size=16, seed=0, validation_data=(X[:200], y[:200]))
    after = model.evaluate(X, y, loss)
    assert all(b < a for a, b in zip(hist["loss"], hist["loss"][1:3]))
    assert after["loss"] < before["loss"] / 3
    assert after["accuracy"] > 0.95
    assert hist["val_accuracy"][-1] == model.evaluate(X[:200], y[:200], loss)["accuracy"]


def test_fit_learns_a_poisson_rate(rng, capsys):
    X = rng.uniform(-1, 1, (2000, 4))
    rate = np.exp(0.3 + X @ np.array([0.8, -0.5, 0.3, 0.6]))
    y = rng.poisson(rate).astype(float)
    model = bpcore.MLP([4, 8, 1], activation="tanh", dtype="float64", seed=0)
    loss = bpcore.PoissonLoss()
    before = model.evaluate(X, y, loss)
    hist = model.fit(X, y, loss=loss, optimizer=bpcore.Adam(model, lr=0.01), epochs=10,
                     batch_size=32, seed=0, validation_data=(X, y), verbose=1)
    assert hist["loss"][-1] < hist["loss"][0] < before["loss"]
    assert hist["val_accuracy"] == [None] * 10 and before["accuracy"] is None
    assert "val_loss" in capsys.readouterr().out  # the verbose line skips the None accuracy
    # the fitted rate is close to the true one: the mean Poisson deviance shrank
    fitted = np.exp(model.predict(X)[:, 0])
    assert np.abs(np.log(fitted / rate)).mean() < 0.15


@pytest.mark.parametrize("c", [1, 3])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_evaluate_bce_loss_and_subset_accuracy(rng, c, reduction):
    model = bpcore.MLP([6, 12, c], dtype="float64", seed=4, init=2.0)
    X = rng.uniform(-1, 1, (2500, 6))  # more rows than one chunk of the native pass
    Z = model.predict(X)
    T = np.where(rng.uniform(size=Z.shape) < 0.8, Z > 0, Z <= 0).astype(float)
    T[::7] = rng.uniform(0, 1, T[::7].shape)  # probabilities: right when on Z's side of 1/2
    loss = bpcore.BCEWithLogitsLoss(reduction, pos_weight=np.arange(1, c + 1) / 2)
    ev = model.evaluate(X, T, loss)
    assert ev["loss"] == pytest.approx(loss(Z, T), rel=1e-12)
    want = ((Z > 0) == (T > 0.5)).all(axis=1).mean()
    assert ev["accuracy"] == want
    if c > 1:  # the rule is the whole row's, not the elements' share
        assert want < ((Z > 0) == (T > 0.5)).mean() - 0.1


def test_evaluate_poisson(rng):
    model = bpcore.MLP([3, 5, 2], dtype="float64", seed=1)
    X = rng.uniform(-1, 1, (1500, 3))
    T = rng.poisson(2.0, (1500, 2)).astype(float)
    ev = model.evaluate(X, T, bpcore.PoissonLoss("sum"))
    assert ev["loss"] == pytest.approx(bpcore.PoissonLoss("sum")(model.predict(X), T), rel=1e-12)
    assert ev["accuracy"] is None


@pytest.mark.parametrize("name", ["bce", "bce_pw", "poisson"])
def test_loss_and_gradient_equals_the_layer_api(rng, name):
    model = bpcore.MLP([5, 9, 3], activation="tanh", dtype="float64", seed=2)
    X, y = _data(rng, name, 1500, 5, 3, "float64")
    loss = _make_loss(name)
    value, grad = loss_and_gradient(model, X, y, loss)
    model.zero_grad()
    want = loss(model.forward(X), y)
    model.backward(loss.backward())
    assert value == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(grad, model.flat_grads, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["bce_pw", "poisson"])
def test_fit_lbfgs(rng, name):
    model = bpcore.MLP([5, 8, 3], activation="tanh", dtype="float64", seed=3)
    X, y = _data(rng, name, 200, 5, 3, "float64")
    loss = _make_loss(name)
    before = model.evaluate(X, y, loss)["loss"]
    hist = model.fit(X, y, loss=loss, optimizer=bpcore.LBFGS(max_iter=30))
    assert hist["loss"][-1] < before
    assert hist["loss"][-1] == pytest.approx(model.evaluate(X, y, loss)["loss"], rel=1e-10)


# ---------------------------------------------------------------------------------------------
# bad input, non-finite values

BAD_BCE_TARGETS = [(1.5, r"1\.5"), (-0.25, r"-0\.25"), (np.nan, "nan"), (np.inf, "inf")]
BAD_POISSON_TARGETS = [(-1.0, r"-1\.0"), (np.nan, "nan"), (np.inf, "inf")]


def _bad_target(name, value):
    T = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])
    T[1, 2] = value
    return T


@pytest.mark.parametrize("name,value,shown", [("bce", v, s) for v, s in BAD_BCE_TARGETS]
                         + [("poisson", v, s) for v, s in BAD_POISSON_TARGETS])
@pytest.mark.parametrize("entry", ["loss", "train_step", "fit", "evaluate", "validation",
                                   "lbfgs"])
def test_bad_targets_raise_naming_the_argument(name, value, shown, entry):
    model = bpcore.MLP([2, 4, 3], dtype="float64", seed=0)
    loss, opt = _make_loss(name), bpcore.SGD(model, lr=0.1)
    X, T, good = np.ones((2, 2)), _bad_target(name, value), _bad_target(name, 1.0)
    expected = ("values in \\[0, 1\\]" if name == "bce" else "finite values >= 0")
    arg = "validation_data\\[1\\]" if entry == "validation" else "target"
    before = model.flat_params.copy()
    with pytest.raises(ValueError, match=f"{arg}: expected {expected}.*got {shown} at index "
                                         f"\\(1, 2\\)"):
        if entry == "loss":
            loss(model.predict(X), T)
        elif entry == "train_step":
            model.train_step(X, T, loss, opt)
        elif entry == "fit":
            model.fit(X, T, loss=loss, optimizer=opt)
        elif entry == "evaluate":
            model.evaluate(X, T, loss)
        elif entry == "validation":
            model.fit(X, good, loss=loss, optimizer=opt, validation_data=(X, T))
        else:
            model.fit(X, T, loss=loss, optimizer=bpcore.LBFGS())
    np.testing.assert_array_equal(model.flat_params, before)


def test_targets_of_the_wrong_shape():
    loss = bpcore.BCEWithLogitsLoss()
    with pytest.raises(ValueError, match=r"target: expected a 2-D array \(n_samples, "
                                         r"n_outputs\), got 1-D with shape \(2,\)"):
        loss(np.zeros((2, 3)), np.zeros(2))  # (n,) is (n, 1) only for one output
    with pytest.raises(ValueError, match=r"target: expected 2 rows to match output, got 3"):
        bpcore.PoissonLoss()(np.zeros((2, 1)), np.zeros(3))


@pytest.mark.parametrize("pw,error,match", [
    (0.0, ValueError, r"pos_weight: expected positive finite numbers, got 0\.0"),
    (-1, ValueError, r"pos_weight: expected positive finite numbers, got -1"),
    ([1.0, np.nan], ValueError, r"positive finite numbers, got nan at index 1"),
    ([np.inf], ValueError, r"positive finite numbers, got inf at index 0"),
    ([[1.0, 2.0]], ValueError, r"pos_weight: expected None, a number or a non-empty 1-D array"
                               r".*got shape \(1, 2\)"),
    ([], ValueError, r"pos_weight: expected .*non-empty.*got shape \(0,\)"),
    ("2", TypeError, r"pos_weight: expected None, a number or a 1-D array of numbers, got str"),
    (True, TypeError, r"pos_weight: expected .* got bool of dtype 'bool'"),
])
def test_bad_pos_weight_raises_at_construction(pw, error, match):
    with pytest.raises(error, match=match):
        bpcore.BCEWithLogitsLoss(pos_weight=pw)


def test_pos_weight_of_the_wrong_length_or_range_raises_where_used(rng):
    model = bpcore.MLP([2, 4, 3], seed=0)
    X, T = np.ones((2, 2), np.float32), np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match=r"pos_weight: expected 3 values \(one per output "
                                         r"column\), got 2"):
        model.train_step(X, T, bpcore.BCEWithLogitsLoss(pos_weight=[1, 2]),
                         bpcore.SGD(model, lr=0.1))
    with pytest.raises(ValueError, match=r"pos_weight: expected positive numbers finite in "
                                         r"float32, got 1e\+39"):
        model.evaluate(X, T, bpcore.BCEWithLogitsLoss(pos_weight=1e39))
    assert np.isfinite(bpcore.BCEWithLogitsLoss(pos_weight=1e39)(np.zeros((1, 1)), [1.0]))


def test_the_engine_checks_pos_weight_itself(rng):
    model = bpcore.MLP([2, 4, 3], seed=0)
    eng = bpcore.training.engine_for(model)
    X, T = np.ones((2, 2), np.float32), np.ones((2, 3), np.float32)
    kind = bpcore.losses._KIND
    with pytest.raises(TypeError, match="pos_weight: expected dtype float32, got float64"):
        eng.evaluate(X, T, kind.BCE_LOGITS, np.ones(3))
    with pytest.raises(ValueError, match=r"pos_weight: expected shape \(3,\), got \(4,\)"):
        eng.evaluate(X, T, kind.BCE_LOGITS, np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"pos_weight: expected None for loss kind 4"):
        eng.evaluate(X, T, kind.POISSON, np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"target: expected values in \[0, 1\]"):
        eng.evaluate(X, T * 2, kind.BCE_LOGITS)  # the range is checked natively too
    with pytest.raises(ValueError, match="reduction: expected a Reduction valid for the loss"):
        eng.train_step(X, T, kind.BCE_LOGITS, bpcore.losses._R.HALF_SUM,
                       bpcore.SGD(model, lr=0.1).native())


def test_half_sum_is_mse_only():
    for cls in (bpcore.BCEWithLogitsLoss, bpcore.PoissonLoss):
        with pytest.raises(ValueError, match=r"reduction: expected one of 'mean', 'sum', got "
                                             r"'half_sum'"):
            cls("half_sum")


@pytest.mark.parametrize("z", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_non_finite_logit_never_gives_a_finite_loss(z, t, dtype):
    """The kernels themselves (the loss objects refuse a non-finite output before them; the
    engine runs them on whatever the forward pass made)."""
    Z, T = np.array([[0.5, z]], dtype), np.array([[t, t]], dtype)
    dZ = np.empty_like(Z)
    for red in (0, 1):
        for pw in (None, np.array([1.0, 2.0], dtype)):
            assert not np.isfinite(_losses.py_bce_logits(Z, T, pw, dZ, red)), (z, t, pw)
        assert not np.isfinite(_losses.py_poisson_nll(Z, T, dZ, red)), (z, t)
    with pytest.raises(ValueError, match="output: expected finite values"):
        bpcore.BCEWithLogitsLoss()(Z, T)


@pytest.mark.parametrize("name", ["bce", "poisson"])
@pytest.mark.parametrize("n", [1, 8, 300])
def test_a_step_with_an_overflowing_output_is_not_applied(rng, name, n):
    model = bpcore.MLP([3, 4, 3], activation="relu", seed=0)
    first, last = model.layers[0], model.layers[-1]
    first.W[...], first.b[...] = 1.0, 1.0  # hidden units > 1 for positive inputs
    if name == "bce":  # logits overflow to inf
        last.W[...], last.b[...] = 3e38, 3e38
    else:  # the rate e^100 overflows float32
        last.W[...], last.b[...] = 0.0, 100.0
    X, T = _data(rng, name, n, 3, 3, "float32")
    X[:] = np.abs(X) + 0.1
    opt = bpcore.SGD(model, lr=0.1)
    before = model.flat_params.copy()
    with pytest.raises(bpcore.NonFiniteError, match="loss is NaN or infinite; the step was "
                                                    "not applied"):
        model.train_step(X, T, _make_loss(name), opt)
    np.testing.assert_array_equal(model.flat_params, before)


def test_logits_of_1e4_train_without_overflow(rng):
    """A network whose logits are +-1e4 takes finite steps (the BCE gradient is bounded)."""
    model = bpcore.MLP([2, 1], seed=0)
    model.layers[0].W[...] = [[1e4], [0.0]]
    model.layers[0].b[...] = 0.0
    X = np.array([[1.0, 0.0], [-1.0, 0.0]], np.float32)
    opt = bpcore.SGD(model, lr=0.1)
    value = model.train_step(X, np.array([0.0, 1.0]), bpcore.BCEWithLogitsLoss(), opt)
    assert value == pytest.approx(1e4, rel=1e-6)  # both wrong by 1e4: mean 1e4
    assert np.isfinite(model.flat_params).all()


# ---------------------------------------------------------------------------------------------
# copies, checkpoints, the public names

def test_losses_pickle_and_copy(rng):
    import copy

    Z, T = _bce_data(rng, 5, 3, "probs")
    for loss in (bpcore.BCEWithLogitsLoss("sum", pos_weight=[1.0, 2.0, 3.0]),
                 bpcore.BCEWithLogitsLoss(pos_weight=2.0), bpcore.PoissonLoss("sum")):
        value = loss(Z, T)
        for other in (pickle.loads(pickle.dumps(loss)), copy.deepcopy(loss)):
            assert repr(other) == repr(loss) and other(Z, T) == value
    assert repr(bpcore.BCEWithLogitsLoss(pos_weight=2.0)) == \
        "BCEWithLogitsLoss(reduction='mean', pos_weight=2.0)"


def test_pos_weight_is_a_copy_that_cannot_change(rng):
    given = np.array([1.0, 2.0])
    loss = bpcore.BCEWithLogitsLoss(pos_weight=given)
    given[0] = 100.0
    assert loss.pos_weight[0] == 1.0
    with pytest.raises(ValueError, match="read-only"):
        loss.pos_weight[0] = 5.0


def test_a_model_trained_with_the_new_losses_saves_and_loads(rng, tmp_path):
    model = bpcore.MLP([4, 6, 2], seed=0)
    opt = bpcore.Adam(model, lr=0.01)
    X, T = _data(rng, "bce", 64, 4, 2, "float32")
    model.fit(X, T, loss=bpcore.BCEWithLogitsLoss(pos_weight=[1.0, 2.0]), optimizer=opt,
              epochs=2, batch_size=8, seed=0)
    model.save(tmp_path / "m.safetensors", optimizer=opt)
    back = bpcore.load(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_public_names():
    assert {"BCEWithLogitsLoss", "PoissonLoss"} <= set(bpcore.__all__)
    with pytest.raises(TypeError, match=r"loss: expected a bpcore loss \(MSELoss, "
                                        r"SoftmaxCrossEntropyLoss, BCEWithLogitsLoss, "
                                        r"PoissonLoss\), got str"):
        bpcore.MLP([2, 1]).evaluate(np.ones((1, 2)), [1.0], "bce")


# ---------------------------------------------------------------------------------------------
# scikit-learn's squared error against MSELoss (what MSELoss's docstring states)

def _sklearn_squared_loss():
    try:
        from sklearn.neural_network._base import squared_loss
    except ImportError:  # a private module: where it is gone, its formula
        def squared_loss(y_true, y_pred):
            return 0.5 * ((y_true - y_pred) ** 2).mean(axis=0).mean()
    return squared_loss


def test_sklearn_squared_loss_is_half_mse_mean(rng):
    Y, T = rng.normal(size=(17, 3)), rng.normal(size=(17, 3))
    assert _sklearn_squared_loss()(T, Y) == pytest.approx(bpcore.MSELoss("mean")(Y, T) / 2,
                                                          rel=1e-14)


def test_sklearn_trains_on_the_gradient_of_half_sum_over_n(rng):
    """scikit-learn's MLPRegressor: its gradient is that of MSELoss("half_sum") / n, c times the
    gradient of the loss it reports (c outputs), c/2 times that of MSELoss("mean")."""
    nn = pytest.importorskip("sklearn.neural_network")
    n, c = 20, 3
    X, Y = rng.normal(size=(n, 4)), rng.normal(size=(n, c))
    reg = nn.MLPRegressor(hidden_layer_sizes=(5,), activation="tanh", alpha=0.0, max_iter=1,
                          random_state=0)
    with pytest.warns(Warning):  # one iteration does not converge
        reg.fit(X, Y)
    acts = [X] + [None] * 2
    deltas = [None] * 2
    cg = [np.empty_like(w) for w in reg.coefs_]
    ig = [np.empty_like(b) for b in reg.intercepts_]
    try:
        value, cg, ig = reg._backprop(X, Y, None, acts, deltas, cg, ig)
    except TypeError:
        pytest.skip("scikit-learn's private _backprop has another signature")
    model = bpcore.Sequential(bpcore.Dense(4, 5, dtype="float64"), bpcore.Tanh(),
                              bpcore.Dense(5, c, dtype="float64"))
    for d, w, b in zip([model.layers[0], model.layers[2]], reg.coefs_, reg.intercepts_):
        d.W, d.b = w, b
    grads = {}
    for reduction in ("mean", "half_sum"):
        model.zero_grad()
        loss = bpcore.MSELoss(reduction)
        value_ours = loss(model.forward(X), Y)
        model.backward(loss.backward())
        grads[reduction] = (value_ours, model.flat_grads.copy())
    sk = np.concatenate([cg[0].ravel(), ig[0], cg[1].ravel(), ig[1]])
    assert value == pytest.approx(grads["mean"][0] / 2, rel=1e-12)
    np.testing.assert_allclose(sk, grads["half_sum"][1] / n, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(sk, c / 2 * grads["mean"][1], rtol=1e-10, atol=1e-14)


def test_sklearn_poisson_loss_differs_from_poisson_sum_over_n_by_a_constant(rng):
    base = pytest.importorskip("sklearn.neural_network._base")
    if not hasattr(base, "poisson_loss"):
        pytest.skip("this scikit-learn has no poisson_loss")
    Z, T = _poisson_data(rng, 25, 2)
    const = (np.where(T > 0, T * np.log(np.where(T > 0, T, 1)), 0) - T).sum() / 25
    assert base.poisson_loss(T, np.exp(Z)) == pytest.approx(
        bpcore.PoissonLoss("sum")(Z, T) / 25 + const, rel=1e-12)
