"""bpcore against the plain NumPy float64 reference (tests/reference.py), step by step."""
import numpy as np
import pytest

import bpcore
from reference import from_bpcore

STEPS = 8
# float64 agrees to round-off; float32 is compared with the float64 reference run on the same
# (float32-rounded) starting weights
TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=2e-5)}

OPTIMIZERS = {
    "plain": dict(lr=0.1),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "l2": dict(lr=0.05, momentum=0.5, weight_decay=0.01),
    "decoupled": dict(lr=0.05, momentum=0.9, decay=0.002),
}


def _data(rng, loss_kind, n, n_in, n_out):
    X = rng.uniform(-1, 1, (n, n_in))
    if loss_kind == "mse":
        return X, rng.uniform(0, 1, (n, n_out))
    return X, rng.integers(0, n_out, n)


def run_both(model, loss_kind, reduction, X, T, opt_kw, steps=STEPS):
    ref = from_bpcore(model)
    loss = bpcore.MSELoss(reduction) if loss_kind == "mse" else \
        bpcore.SoftmaxCrossEntropyLoss(reduction)
    opt = bpcore.SGD(model, **opt_kw)
    ours, theirs = [], []
    for _ in range(steps):
        model.zero_grad()
        ours.append(loss(model.forward(X), T))
        model.backward(loss.backward())
        opt.step()
        theirs.append(ref.train_step(X, T, loss_kind, reduction, **opt_kw))
    return ours, theirs, ref


def assert_same_weights(model, ref, tol):
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    for i, m in enumerate(dense):
        np.testing.assert_allclose(m.W, ref.W[i], **tol, err_msg=f"W of layer {i}")
        np.testing.assert_allclose(m.b, ref.b[i], **tol, err_msg=f"b of layer {i}")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("act", ["relu", "sigmoid", "tanh"])
@pytest.mark.parametrize("loss_kind,reduction", [("mse", "mean"), ("mse", "half_sum"),
                                                 ("xent", "mean"), ("xent", "sum")])
def test_training_matches_reference(rng, dtype, act, loss_kind, reduction):
    model = bpcore.MLP([6, 9, 7, 4], activation=act, dtype=dtype, seed=7)
    X, T = _data(rng, loss_kind, 13, 6, 4)
    lr = 0.01 if reduction in ("sum", "half_sum") else 0.1
    ours, theirs, ref = run_both(model, loss_kind, reduction, X, T, dict(lr=lr, momentum=0.9))
    np.testing.assert_allclose(ours, theirs, **TOL[dtype])
    assert_same_weights(model, ref, TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_optimizers_match_reference(rng, dtype, opt):
    model = bpcore.MLP([5, 8, 3], activation="tanh", output_activation="sigmoid", dtype=dtype,
                       seed=8)
    X, T = _data(rng, "mse", 10, 5, 3)
    ours, theirs, ref = run_both(model, "mse", "mean", X, T, OPTIMIZERS[opt])
    np.testing.assert_allclose(ours, theirs, **TOL[dtype])
    assert_same_weights(model, ref, TOL[dtype])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 3, 17, 1000])
def test_odd_batch_sizes(rng, dtype, n):
    model = bpcore.MLP([17, 3, 1], activation="relu", dtype=dtype, seed=9)
    X, T = _data(rng, "mse", n, 17, 1)
    ours, theirs, ref = run_both(model, "mse", "mean", X, T, dict(lr=0.05, momentum=0.9))
    np.testing.assert_allclose(ours, theirs, **TOL[dtype])
    assert_same_weights(model, ref, TOL[dtype])


def test_masked_training_matches_reference_and_keeps_zeros(rng):
    mask = (rng.uniform(size=(6, 4)) > 0.5).astype(float)
    net = bpcore.Sequential(bpcore.Dense(6, 4, mask=mask, dtype="float64", seed=10),
                            bpcore.Sigmoid(), bpcore.Dense(4, 2, dtype="float64", seed=11))
    X, T = _data(rng, "mse", 8, 6, 2)
    ours, theirs, ref = run_both(net, "mse", "half_sum", X, T,
                                 dict(lr=0.1, momentum=0.9, weight_decay=0.01, decay=0.002))
    np.testing.assert_allclose(ours, theirs, **TOL["float64"])
    assert_same_weights(net, ref, TOL["float64"])
    np.testing.assert_array_equal(net.layers[0].W[mask == 0], 0)


def test_wide_layer_float64_to_round_off(rng):
    """Sizes above the parallel threshold, so the OpenMP paths are compared too."""
    model = bpcore.MLP([300, 256, 10], activation="relu", dtype="float64", seed=12)
    X, T = _data(rng, "xent", 200, 300, 10)
    ours, theirs, ref = run_both(model, "xent", "mean", X, T, dict(lr=0.1, momentum=0.9), steps=4)
    np.testing.assert_allclose(ours, theirs, **TOL["float64"])
    assert_same_weights(model, ref, TOL["float64"])
