"""Central finite differences in float64: every layer, activation and loss, deep nets, biases,
masked layers and the input gradient."""
import numpy as np
import pytest

import bpcore

ACTS = ["identity", "relu", "sigmoid", "tanh"]
H = 1e-6
RTOL = 1e-6


def numeric_grad(f, x):
    """d f / d x by central differences, perturbing x in place."""
    g = np.zeros_like(x)
    flat, gflat = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + H
        fp = f()
        flat[i] = old - H
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * H)
    return g


def assert_grad_close(analytic, numeric):
    scale = max(np.abs(numeric).max(), 1e-3)
    err = np.abs(analytic - numeric).max() / scale
    assert err < RTOL, f"relative gradient error {err:.2e}"


LOSSES = {
    "mse_mean": (lambda: bpcore.MSELoss("mean"), "dense"),
    "mse_sum": (lambda: bpcore.MSELoss("sum"), "dense"),
    "mse_half_sum": (lambda: bpcore.MSELoss("half_sum"), "dense"),
    "xent_labels": (lambda: bpcore.SoftmaxCrossEntropyLoss(), "labels"),
    "xent_sum_probs": (lambda: bpcore.SoftmaxCrossEntropyLoss("sum"), "probs"),
}


def _target(kind, rng, n, c):
    if kind == "dense":
        return rng.uniform(-1, 1, (n, c))
    if kind == "labels":
        return rng.integers(0, c, n)
    p = rng.uniform(0, 1, (n, c))
    return p / p.sum(axis=1, keepdims=True)


def check_model(model, X, T, loss):
    def f():
        return loss(model.predict(X), T)

    model.zero_grad()
    loss(model.forward(X), T)
    dX = model.backward(loss.backward(), input_grad=True)
    analytic = model.flat_grads.copy()
    assert_grad_close(analytic, numeric_grad(f, model.flat_params))
    assert_grad_close(dX, numeric_grad(f, X))


# cross-entropy takes logits, so it is only paired with a linear output layer
COMBOS = [(act, out, loss) for act in ACTS for out in (None, "sigmoid", "tanh") for loss in LOSSES
          if out is None or not loss.startswith("xent")]


@pytest.mark.parametrize("act,out_act,loss_name", COMBOS)
def test_activation_by_loss(rng, act, out_act, loss_name):
    make, kind = LOSSES[loss_name]
    model = bpcore.MLP([4, 6, 3], activation=act, output_activation=out_act, dtype="float64",
                       seed=1)
    for m in model.layers:  # non-zero biases, so their effect is tested too
        if isinstance(m, bpcore.Dense):
            m.b[...] = rng.uniform(-0.5, 0.5, m.b.shape)
    X = rng.uniform(-1, 1, (5, 4))
    check_model(model, X, _target(kind, rng, 5, 3), make())


@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
def test_deep_net(rng, act):
    model = bpcore.MLP([3, 7, 5, 6, 4], activation=act, dtype="float64", seed=2, init=0.8)
    X = rng.uniform(-1, 1, (9, 3))
    check_model(model, X, rng.integers(0, 4, 9), bpcore.SoftmaxCrossEntropyLoss())


def test_batch_of_one(rng):
    model = bpcore.MLP([5, 4, 2], activation="tanh", dtype="float64", seed=3)
    check_model(model, rng.uniform(-1, 1, (1, 5)), rng.uniform(-1, 1, (1, 2)), bpcore.MSELoss())


def test_masked_layers(rng):
    mask = (rng.uniform(size=(6, 5)) > 0.4).astype(float)
    net = bpcore.Sequential(bpcore.Dense(6, 5, mask=mask, dtype="float64", seed=4),
                            bpcore.Sigmoid(),
                            bpcore.Dense(5, 3, dtype="float64", seed=5), bpcore.Sigmoid())
    X = rng.uniform(-1, 1, (7, 6))
    T = rng.uniform(0, 1, (7, 3))
    loss = bpcore.MSELoss("half_sum")

    def f():
        return loss(net.predict(X), T)

    net.zero_grad()
    loss(net.forward(X), T)
    net.backward(loss.backward())
    first = net.layers[0]
    np.testing.assert_array_equal(first.W[mask == 0], 0)
    np.testing.assert_array_equal(first.dW[mask == 0], 0)
    num = numeric_grad(f, net.flat_params)
    num_first = num[:first.W.size].reshape(first.W.shape) * mask  # only free weights move
    assert_grad_close(first.dW, num_first)
    assert_grad_close(net.flat_grads[first.W.size:], num[first.W.size:])


@pytest.mark.parametrize("act", ["identity", "relu", "sigmoid", "tanh"])
def test_each_layer_alone(rng, act):
    """Dense and each activation as standalone layers, objective sum(out * G)."""
    layers = [bpcore.Dense(4, 3, dtype="float64", seed=6)]
    if act != "identity":
        layers.append(bpcore.layers.ACTIVATIONS[act]())
    X = rng.uniform(-1, 1, (5, 4))
    G = rng.uniform(-1, 1, (5, 3))

    def run(keep):
        out = X
        for m in layers:
            out = m.forward_unchecked(out, keep=keep)
        return out

    def f():
        return float((run(False) * G).sum())

    dense = layers[0]
    dense.zero_grad()
    run(True)
    g = G
    for m in reversed(layers):
        g = m.backward(g)
    assert_grad_close(np.concatenate([dense.dW.ravel(), dense.db]),
                      np.concatenate([numeric_grad(f, dense.W).ravel(), numeric_grad(f, dense.b)]))
    assert_grad_close(g, numeric_grad(f, X))


@pytest.mark.parametrize("loss_name", list(LOSSES))
def test_each_loss_alone(rng, loss_name):
    make, kind = LOSSES[loss_name]
    loss = make()
    Y = rng.uniform(-2, 2, (6, 4))
    T = _target(kind, rng, 6, 4)
    loss(Y, T)
    assert_grad_close(loss.backward(), numeric_grad(lambda: loss(Y, T), Y))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_xent_ignores_classes_of_zero_probability_at_any_logit(dtype):
    # lse - z overflows for the class at -max: its target is 0, so it must add 0, not NaN
    big = np.finfo(dtype).max
    Z = np.array([[big / 1e6, big / 1e6, -big]], dtype)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    value = loss(Z, np.array([[0.5, 0.5, 0.0]]))
    # log 2 exactly, to within the round-off of logits this large (lse carries log 2 beside 1e32)
    assert np.isfinite(value) and abs(value - np.log(2)) <= 4 * np.finfo(dtype).eps * big / 1e6
    assert np.isfinite(loss.backward()).all()
    assert loss(Z, np.zeros((1, 3))) == 0  # no target mass at all: no loss


def test_softmax_xent_is_stable_for_huge_logits():
    loss = bpcore.SoftmaxCrossEntropyLoss()
    Z = np.array([[1000.0, 0.0, -1000.0], [-1e4, 1e4, 0.0]])
    value = loss(Z, np.array([0, 0]))
    assert np.isfinite(value) and abs(value - 1e4) < 1e-9  # rows cost 0 and 2e4
    assert np.isfinite(loss.backward()).all()
