"""A NaN or an infinity is never hidden: kernels keep it, and a training step that meets one is
not applied (the weights and the optimizer's state stay as before it) and raises
bpcore.NonFiniteError, or, with fit(on_nonfinite="stop"), ends training at the last good
weights."""
import re

import numpy as np
import pytest

import bpcore
from bpcore import _layers
from bpcore import MLP, SGD, Adam, AdamW, MSELoss, NonFiniteError, SoftmaxCrossEntropyLoss
from bpcore.layers import ReLU

RNG = np.random.default_rng(0)
X = RNG.standard_normal((64, 3))
LABELS = np.arange(64) % 2
ONE_HOT = np.eye(2)[LABELS]


def _state(model, opt):
    return (model.flat_params.copy(), {k: v.copy() for k, v in opt.native().state().items()},
            opt.steps)


def _same_state(a, b):
    assert np.array_equal(a[0], b[0], equal_nan=True)
    assert a[1].keys() == b[1].keys()
    for k in a[1]:
        assert np.array_equal(a[1][k], b[1][k], equal_nan=True), k
    assert a[2] == b[2]


# ---------------------------------------------------------------------------------------------
# kernels keep NaN

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_of_nan_is_nan_and_its_derivative_too(dtype):
    # the kernels' twins (the layer API refuses non-finite input before it gets here)
    z = np.array([[np.nan, -1.0, 2.0, np.inf, -np.inf]], dtype)
    out = np.empty_like(z)
    _layers.py_activation_forward(ReLU.kind, z, out)
    np.testing.assert_array_equal(out, np.array([[np.nan, 0, 2, np.inf, 0]], dtype))
    grad = np.empty_like(z)
    _layers.py_activation_backward(ReLU.kind, out, np.ones_like(z), grad)
    np.testing.assert_array_equal(grad, np.array([[np.nan, 0, 1, 1, 0]], dtype))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
def test_a_nan_weight_gives_nan_predictions(activation):
    m = MLP([3, 4, 2], activation=activation, seed=0, dtype="float64")
    m.layers[0].W[0, :] = np.nan  # every hidden unit reads input 0
    assert np.isnan(m.predict(X[:4])).all()
    assert np.isnan(m.forward(X[:4])).all()


# ---------------------------------------------------------------------------------------------
# train_step: a non-finite loss or gradient stops the step before it changes anything

@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("batch", [1, 8, 256])
@pytest.mark.parametrize("make_opt", [lambda m: SGD(m, lr=0.1, momentum=0.9),
                                      lambda m: Adam(m, lr=0.01),
                                      lambda m: AdamW(m, lr=0.01, amsgrad=True)])
def test_train_step_with_a_nan_weight_raises_and_changes_nothing(activation, batch, make_opt):
    m = MLP([3, 4, 2], activation=activation, seed=0, dtype="float64")
    opt = make_opt(m)
    Xb, yb = np.resize(X, (batch, 3)), np.resize(LABELS, batch)
    m.train_step(Xb, yb, SoftmaxCrossEntropyLoss(), opt)  # one good step: state to keep
    m.flat_params[0] = np.nan
    before = _state(m, opt)
    with pytest.raises(NonFiniteError, match="loss is NaN or infinite; the step was not"):
        m.train_step(Xb, yb, SoftmaxCrossEntropyLoss(), opt)
    _same_state(before, _state(m, opt))


def test_clipped_step_with_a_gradient_that_overflows_is_not_applied():
    m = MLP([3, 16, 2], activation="relu", seed=0, dtype="float32")
    opt = SGD(m, lr=1e15)
    loss = MSELoss()
    m.train_step(X[:8] * 10, ONE_HOT[:8], loss, opt, max_grad_norm=1.0)
    before = _state(m, opt)
    with pytest.raises(NonFiniteError, match="gradient is NaN or infinite"):
        m.train_step(X[8:16] * 10, ONE_HOT[8:16], loss, opt, max_grad_norm=1.0)
    _same_state(before, _state(m, opt))


def test_train_step_whose_update_overflows_raises():
    m = MLP([3, 4, 2], activation="relu", seed=0, dtype="float32")
    opt = SGD(m, lr=3e38)
    with pytest.raises(NonFiniteError, match="update wrote a NaN or an infinity"):
        m.train_step(X[:8] * 1e3, ONE_HOT[:8], MSELoss(), opt)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [5, 16, 17, 33, 150])
def test_batch_of_one_update_finds_an_overflow_in_any_row_and_column(dtype, width, simd_levels):
    # the batch-of-one SGD update runs over all of a layer's rows in one call (short rows a
    # block of whole rows at a time) and keeps its check running across them (whole vectors,
    # and each row's remainder): a weight that overflows anywhere is reported, at every SIMD
    # level
    big = np.finfo(dtype).max * 0.6
    x = np.zeros((1, 6))
    x[0, 3] = 1.0  # input 0 is 0: its weights move only by their velocity
    for level in simd_levels():
        for col in (0, width // 2, width - 1):
            m = MLP([6, width, 2], activation="tanh", seed=1, dtype=dtype)
            opt = SGD(m, lr=1e-3, momentum=0.9)
            m.train_step(x, ONE_HOT[:1], MSELoss(), opt)
            velocity = opt.native().state()["momentum_buffer"]
            m.layers[0].W[0, col] = big
            velocity[col] = big  # layer 0's W comes first in the flat buffers, row by row
            with pytest.raises(NonFiniteError, match="update wrote"):
                m.train_step(x, ONE_HOT[:1], MSELoss(), opt)
            assert np.isinf(m.layers[0].W[0, col]), (level, col)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [5, 16, 17, 33, 150])
def test_batch_of_one_plain_sgd_update_finds_an_overflow_in_any_row_and_column(dtype, width,
                                                                               simd_levels):
    # plain SGD's batch-of-one update (w -= lr * x[r] * d, row by row): one input is huge and
    # its weights zero, so the forward pass is finite; only hidden unit `col` has a nonzero
    # delta (the next layer's other rows are zero), so only W[row, col] overflows, not its bias
    huge = np.finfo(dtype).max * 0.5
    for level in simd_levels():
        for row in (0, 5):
            for col in (0, width // 2, width - 1):
                m = MLP([6, width, 2], activation="tanh", seed=1, dtype=dtype)
                m.layers[0].W[row, :] = 0
                m.layers[0].b[:] = 0.5
                m.layers[2].W[:] = 0
                m.layers[2].W[col, :] = 100
                x = np.zeros((1, 6))
                x[0, row] = huge
                with pytest.raises(NonFiniteError, match="update wrote"):
                    m.train_step(x, ONE_HOT[:1], MSELoss(), SGD(m, lr=1.0))
                W = m.layers[0].W
                assert np.isinf(W[row, col]), (level, row, col)
                assert np.isfinite(m.layers[0].b).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [5, 16, 17, 33, 150])
def test_batch_of_one_adam_update_finds_an_overflow_in_any_row_and_column(dtype, width,
                                                                          simd_levels):
    # Adam's batch-of-one update (short rows in blocks of whole rows; long ones a row at a
    # time, whole vectors and then the rest): input 0 is 0, so
    # row 0's gradient is 0 and its weights move by their moments alone; one of them is given a
    # huge first moment and no second, which makes its step overflow
    big = np.finfo(dtype).max * 0.5
    x = np.zeros((1, 6))
    x[0, 3] = 1.0
    for level in simd_levels():
        for col in (0, width // 2, width - 1):
            m = MLP([6, width, 2], activation="tanh", seed=1, dtype=dtype)
            opt = Adam(m, lr=1e-3)
            m.train_step(x, ONE_HOT[:1], MSELoss(), opt)
            state = opt.native().state()
            state["exp_avg"][col] = big  # layer 0's W comes first, row by row
            state["exp_avg_sq"][col] = 0
            with pytest.raises(NonFiniteError, match="update wrote"):
                m.train_step(x, ONE_HOT[:1], MSELoss(), opt)
            assert np.isinf(m.layers[0].W[0, col]), (level, col)
            assert np.isfinite(np.delete(m.flat_params, col)).all(), (level, col)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda m: SGD(m, lr=1e-9),
                                      lambda m: SGD(m, lr=1e-9, momentum=0.9),
                                      lambda m: Adam(m, lr=1e-3)])
def test_batch_of_one_update_with_weights_of_two_and_more_is_not_a_false_alarm(dtype, make_opt,
                                                                               simd_levels):
    # the vector loops keep an OR of the weights' bits; weights of 2 or more beside smaller ones
    # fill its exponent too, and then every weight is looked at: no error, the same weights as
    # the layer API's steps
    rng = np.random.default_rng(3)
    x = rng.standard_normal((10, 40))
    for level in simd_levels():
        models = [MLP([40, 300, 64, 2], activation="relu", seed=2, dtype=dtype) for _ in range(2)]
        for m in models:
            m.flat_params *= 40  # weights from about 0.01 to 8
        fused, layered = models
        opt_fused, opt_layered = make_opt(fused), make_opt(layered)
        for i in range(10):
            fused.train_step(x[i:i + 1], ONE_HOT[i:i + 1], MSELoss(), opt_fused)
            opt_layered.zero_grad()
            loss = MSELoss()
            loss(layered(x[i:i + 1]), ONE_HOT[i:i + 1])
            layered.backward(loss.backward())
            opt_layered.step()
        assert np.abs(fused.flat_params).max() > 2
        np.testing.assert_allclose(fused.flat_params, layered.flat_params, rtol=1e-5, atol=1e-6,
                                   err_msg=f"SIMD level {level}")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_step_finds_an_overflow_at_any_position(dtype, momentum, simd_levels):
    # the layer API's update of the flat buffer: whole vectors (16 or 8 lanes) and the
    # remainder; one gradient overflows its weight's update, wherever it is
    for level in simd_levels():
        m = MLP([3, 33, 2], seed=0, dtype=dtype)
        n = m.flat_params.size
        for at in (0, 7, 15, 16, 17, 40, n - 1):
            m = MLP([3, 33, 2], seed=0, dtype=dtype)
            opt = SGD(m, lr=float(np.finfo(dtype).max) * 0.5, momentum=momentum)
            m.flat_grads[:] = 0
            m.flat_grads[at] = 4
            with pytest.raises(NonFiniteError, match="update wrote"):
                opt.step()
            assert np.isinf(m.flat_params[at]), (level, at)
            assert np.isfinite(np.delete(m.flat_params, at)).all(), (level, at)


# ---------------------------------------------------------------------------------------------
# fit: raise naming the epoch and batch, or stop, with the weights of before that step

def _reference(make, opt_kw, X, Y, batch_size, epochs_done, batches_done, mgn):
    """The state after the given whole epochs and batches, by train_step in stored order."""
    m = make()
    opt = SGD(m, **opt_kw)
    n = X.shape[0]
    for e in range(epochs_done + 1):
        stop = batches_done if e == epochs_done else -(-n // batch_size)
        for b in range(stop):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            m.train_step(X[sl], Y[sl], MSELoss(), opt, max_grad_norm=mgn)
    return _state(m, opt)


@pytest.mark.parametrize("lr, mgn, what, rows, batch_size", [
    (1e10, None, "update", 64, 8),      # the update overflows: undone by replaying the epoch
    (1e15, 1.0, "gradient", 64, 8),     # the clipped step sees the whole gradient first
    (1e25, None, "loss", 64, 8),
    (1e10, None, "update", 512, 256),   # the large-batch step
])
@pytest.mark.parametrize("on_nonfinite", ["raise", "stop"])
def test_fit_restores_the_weights_of_before_the_failed_step(lr, mgn, what, rows, batch_size,
                                                           on_nonfinite):
    Xr = np.resize(X, (rows, 3)) * 10
    Yr = np.resize(ONE_HOT, (rows, 2))

    def make():
        return MLP([3, 16, 2], activation="relu", seed=0, dtype="float32")

    m = make()
    opt = SGD(m, lr=lr)
    kw = dict(loss=MSELoss(), optimizer=opt, epochs=6, batch_size=batch_size, shuffle=False,
              max_grad_norm=mgn, on_nonfinite=on_nonfinite)
    if on_nonfinite == "raise":
        with pytest.raises(NonFiniteError, match=rf"fit: epoch \d+, batch \d+: the step's {what}"
                           ) as info:
            m.fit(Xr, Yr, **kw)
        epoch, batch = (int(s) for s in re.search(r"epoch (\d+), batch (\d+)",
                                                  str(info.value)).groups())
    else:
        history = m.fit(Xr, Yr, **kw)
        epoch, batch = history["stopped"]
        assert len(history["loss"]) == epoch - 1
        assert np.isfinite(history["loss"]).all()
    assert np.isfinite(m.flat_params).all()
    expect = _reference(make, {"lr": lr}, Xr, Yr, batch_size, epoch - 1, batch - 1, mgn)
    _same_state(expect, _state(m, opt))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make_opt", [lambda m: SGD(m, lr=1e37, momentum=0.9),
                                      lambda m: Adam(m, lr=1e37)])
def test_diverging_fit_never_reports_a_nan_followed_by_numbers(dtype, make_opt):
    m = MLP([3, 4, 2], activation="relu", seed=0, dtype=dtype)
    opt = make_opt(m)
    history = m.fit(X * 1e3, ONE_HOT, loss=MSELoss(), optimizer=opt, epochs=40, batch_size=8,
                    seed=0, on_nonfinite="stop")
    assert np.isfinite(history["loss"]).all()
    assert np.isfinite(m.flat_params).all()
    for buf in opt.native().state().values():
        assert np.isfinite(buf).all()


def test_fit_checks_on_nonfinite():
    m = MLP([3, 4, 2], seed=0)
    with pytest.raises(ValueError, match="on_nonfinite: expected one of 'raise', 'stop'"):
        m.fit(X, LABELS, loss=SoftmaxCrossEntropyLoss(), optimizer=SGD(m), on_nonfinite="skip")


# ---------------------------------------------------------------------------------------------
# optimizer.step (the layer API)

@pytest.mark.parametrize("make_opt", [lambda m: SGD(m, lr=0.1, momentum=0.9),
                                      lambda m: Adam(m, lr=0.01)])
def test_step_with_a_nan_gradient_raises_and_changes_nothing(make_opt):
    m = MLP([3, 4, 2], seed=0, dtype="float64")
    opt = make_opt(m)
    m.zero_grad()
    m.flat_grads[:] = 1.0
    opt.step()
    m.flat_grads[5] = np.nan
    before = _state(m, opt)
    with pytest.raises(NonFiniteError, match="no parameter was updated"):
        opt.step()
    _same_state(before, _state(m, opt))


def test_step_whose_update_overflows_raises():
    m = MLP([3, 4, 2], seed=0, dtype="float32")
    opt = SGD(m, lr=3e38)
    m.flat_grads[:] = 10.0
    with pytest.raises(NonFiniteError, match="update wrote a NaN or an infinity"):
        opt.step()


def test_nonfinite_error_is_a_floating_point_error():
    assert issubclass(bpcore.NonFiniteError, FloatingPointError)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_global_norm_against_an_exact_sum_at_every_simd_level(dtype, simd_levels):
    # the sum of squares runs in 16 lanes added up in a fixed order: whole lanes, tails of
    # every length, the threads' chunks; float32's squares are exact in double, so every level
    # gives the same bits there
    import math
    from bpcore import _optim
    rng = np.random.default_rng(8)
    for n in (0, 1, 15, 16, 17, 33, 1000, 235_146):
        x = (rng.standard_normal(n) * rng.choice([1e-3, 1.0, 1e3], n)).astype(dtype)
        exact = math.sqrt(math.fsum(float(v) * float(v) for v in x))
        norms = [_optim.py_global_norm(x) for _ in simd_levels()]
        for norm in norms:
            assert norm == pytest.approx(exact, rel=1e-14, abs=0), (n, norms, exact)
        if dtype == np.float32:
            assert len(set(norms)) == 1, (n, norms)


def test_global_norm_does_not_overflow_for_finite_gradients():
    from bpcore import _optim
    g = np.array([1e200, -1e200, 3.0])
    assert _optim.py_global_norm(g) == pytest.approx(np.sqrt(2) * 1e200, rel=1e-15)
    assert _optim.py_global_norm(np.array([1.0, np.inf])) == np.inf
    assert np.isnan(_optim.py_global_norm(np.array([1.0, np.nan])))
    assert _optim.py_global_norm(np.array([3e38, 3e38], np.float32)) == pytest.approx(
        np.sqrt(2) * 3e38, rel=1e-6)
    m = MLP([1, 1], dtype="float64", seed=0)
    m.flat_grads[...] = [1e200, 1e200]
    assert bpcore.clip_grad_norm(m, 1.0) == pytest.approx(np.sqrt(2) * 1e200)
    np.testing.assert_allclose(m.flat_grads, [1 / np.sqrt(2)] * 2, rtol=1e-9)
    m.flat_grads[...] = [np.inf, 1.0]
    assert bpcore.clip_grad_norm(m, 1.0) == np.inf
    np.testing.assert_array_equal(m.flat_grads, [np.inf, 1.0])  # left as they are, not 0 or NaN
