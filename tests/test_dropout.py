"""Dropout: the masks against a NumPy reimplementation of their stream, the share dropped, the
gradient with the mask frozen, the engine equal to the layer API on every path, inactive in
predict and evaluate, p = 0 identical to no dropout, reproducible, resumed from files."""
import numpy as np
import pytest

import bpcore
from bpcore.layers import ACTIVATIONS
from bpcore.training import engine_for

M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
STEP = np.uint64(0x9E3779B97F4A7C15)


def _hash(z):
    """The mixing function of csrc/bp_simd.h (splitmix64's), on uint64 arrays (wrapping)."""
    z = np.asarray(z, np.uint64)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def reference_mask(seed, draw, shape, p):
    """Mask number `draw` (0 first) of a Dropout(p, seed), written from its definition."""
    with np.errstate(over="ignore"):
        key = _hash(_hash(np.uint64(seed)) + np.uint64(draw + 1) * STEP)
        i = np.arange(int(np.prod(shape)), dtype=np.uint64)
        bits = _hash(key + i * STEP) >> np.uint64(32)
    threshold = min(int(p * 2**32), 2**32 - 1)
    return (bits >= threshold).astype(np.uint8).reshape(shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_masks_replay_the_numpy_reference_exactly(dtype):
    X = np.random.default_rng(0).standard_normal((7, 13)).astype(dtype)
    layer = bpcore.Dropout(0.3, seed=12345)
    for draw in range(3):
        A = layer.forward(X)
        want = reference_mask(12345, draw, X.shape, 0.3)
        np.testing.assert_array_equal(layer.mask, want)
        scale = dtype(1 / (1 - 0.3))
        np.testing.assert_array_equal(A, X * np.where(want == 1, scale, dtype(0)))
        dA = np.ones_like(X)
        np.testing.assert_array_equal(layer.backward(dA), dA * np.where(want == 1, scale, 0))
    assert layer.settings() == {"p": 0.3, "seed": 12345, "draws": 3}


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_the_share_dropped_is_p_within_statistical_bounds(p):
    X = np.ones((400, 500))
    layer = bpcore.Dropout(p, seed=1)
    dropped = [(layer.forward(X) == 0).mean() for _ in range(3)]
    sigma = np.sqrt(p * (1 - p) / X.size)
    for share in dropped:
        assert abs(share - p) < 5 * sigma
    # and the masks differ from step to step
    assert dropped[0] != dropped[1] or dropped[1] != dropped[2]


def _net(p=0.4, dtype="float64", act="relu"):
    return bpcore.Sequential(
        bpcore.Dense(20, 64, dtype=dtype, seed=1), ACTIVATIONS[act](),
        bpcore.Dropout(p, seed=7),
        bpcore.Dense(64, 32, dtype=dtype, seed=2), bpcore.Tanh(), bpcore.Dropout(p / 2, seed=8),
        bpcore.Dense(32, 5, dtype=dtype, seed=3))


def test_gradient_against_finite_differences_with_the_mask_frozen():
    rng = np.random.default_rng(1)
    model = _net(act="gelu")
    X, y = rng.uniform(-1, 1, (6, 20)), rng.integers(0, 5, 6)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    drops = [m for m in model.layers if isinstance(m, bpcore.Dropout)]

    def f():  # the same masks every time: each layer's counter set back
        for d in drops:
            d.state[1] = 4
        return loss(model.forward(X), y)

    model.zero_grad()
    f()
    model.backward(loss.backward())
    analytic = model.flat_grads.copy()
    idx = rng.choice(model.flat_params.size, 120, replace=False)
    numeric = np.empty(idx.size)
    for k, i in enumerate(idx):
        old = model.flat_params[i]
        model.flat_params[i] = old + 1e-6
        up = f()
        model.flat_params[i] = old - 1e-6
        down = f()
        model.flat_params[i] = old
        numeric[k] = (up - down) / 2e-6
    scale = max(np.abs(numeric).max(), 1e-3)
    assert np.abs(analytic[idx] - numeric).max() / scale < 1e-6


ENGINE_TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n,clip", [(1, None), (8, None), (300, None), (8, 1.0)])
def test_train_step_equals_the_layer_api(n, clip, threads, dtype):
    rng = np.random.default_rng(2)
    a, b = _net(dtype=dtype), _net(dtype=dtype)
    oa, ob = bpcore.SGD(a, lr=0.1, momentum=0.9), bpcore.SGD(b, lr=0.1, momentum=0.9)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    with bpcore.num_threads(threads):
        for _ in range(3):
            X, y = rng.uniform(-1, 1, (n, 20)).astype(dtype), rng.integers(0, 5, n)
            la = a.train_step(X, y, loss, oa, max_grad_norm=clip)
            b.zero_grad()
            lb = loss(b.forward(X), y)
            b.backward(loss.backward())
            if clip is not None:
                bpcore.clip_grad_norm(b, clip)
            ob.step()
            np.testing.assert_allclose(la, lb, **ENGINE_TOL[dtype])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **ENGINE_TOL[dtype])
    for da, db in zip(a.layers, b.layers):
        if isinstance(da, bpcore.Dropout):
            np.testing.assert_array_equal(da.state, db.state)


def test_the_engines_mask_is_the_reference_mask_whatever_the_threads():
    rng = np.random.default_rng(3)
    X, y = rng.uniform(-1, 1, (40, 20)), rng.integers(0, 5, 40)
    masks = []
    for threads in (1, 2):
        model = _net()
        with bpcore.num_threads(threads):
            model.train_step(X, y, bpcore.SoftmaxCrossEntropyLoss(), bpcore.SGD(model, lr=0.1))
        masks.append(engine_for(model).workspaces()["dropout_masks"].copy())
    np.testing.assert_array_equal(masks[0], masks[1])
    # the first dropout layer's mask leads the buffer: mask number 0 of seed 7
    np.testing.assert_array_equal(masks[0][:40 * 64].reshape(40, 64),
                                  reference_mask(7, 0, (40, 64), 0.4))


def test_inactive_in_predict_evaluate_and_eval_mode():
    rng = np.random.default_rng(4)
    X, y = rng.uniform(-1, 1, (30, 20)), rng.integers(0, 5, 30)
    model = _net()
    plain = bpcore.Sequential(*[bpcore.Dense(20, 64, dtype="float64", seed=1), bpcore.ReLU(),
                                bpcore.Dense(64, 32, dtype="float64", seed=2), bpcore.Tanh(),
                                bpcore.Dense(32, 5, dtype="float64", seed=3)])
    np.testing.assert_array_equal(model.predict(X), plain.predict(X))
    loss = bpcore.SoftmaxCrossEntropyLoss()
    assert model.evaluate(X, y, loss) == plain.evaluate(X, y, loss)
    np.testing.assert_array_equal(model.eval().forward(X), plain.forward(X))
    assert [m.state[1] for m in model.layers if isinstance(m, bpcore.Dropout)] == [0, 0]
    assert model.train().training and model.layers[2].training


def test_p_zero_is_no_dropout_bit_for_bit():
    rng = np.random.default_rng(5)
    X, y = rng.uniform(-1, 1, (100, 20)), rng.integers(0, 5, 100)
    a = _net(p=0.0)
    b = bpcore.Sequential(*[bpcore.Dense(20, 64, dtype="float64", seed=1), bpcore.ReLU(),
                            bpcore.Dense(64, 32, dtype="float64", seed=2), bpcore.Tanh(),
                            bpcore.Dense(32, 5, dtype="float64", seed=3)])
    for model in (a, b):
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                  optimizer=bpcore.Adam(model, lr=1e-3), epochs=2, batch_size=16, seed=0)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_fit_is_reproducible_and_learns():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    runs = []
    for _ in range(2):
        model = bpcore.Sequential(bpcore.Dense(64, 64, seed=0), bpcore.ReLU(),
                                  bpcore.Dropout(0.2, seed=3), bpcore.Dense(64, 10, seed=1))
        h = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                      optimizer=bpcore.Adam(model, lr=3e-3), epochs=4, batch_size=32, seed=0)
        runs.append(model.flat_params.copy())
        assert h["loss"][-1] < 0.5 * h["loss"][0]
        assert model.evaluate(X, y, bpcore.SoftmaxCrossEntropyLoss())["accuracy"] > 0.9
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_checkpoint_resumes_the_masks(tmp_path):
    rng = np.random.default_rng(6)
    X, y = rng.uniform(-1, 1, (50, 20)), rng.integers(0, 5, 50)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    model = _net()
    opt = bpcore.SGD(model, lr=0.05)
    for _ in range(3):
        model.train_step(X, y, loss, opt)
    model.save(tmp_path / "d.safetensors", optimizer=opt)
    back = bpcore.load(tmp_path / "d.safetensors")
    back_opt = bpcore.load_optimizer(tmp_path / "d.safetensors", bpcore.SGD(back, lr=0.05))
    assert back.layers[2].settings() == {"p": 0.4, "seed": 7, "draws": 3}
    for _ in range(2):
        model.train_step(X, y, loss, opt)
        back.train_step(X, y, loss, back_opt)
    np.testing.assert_array_equal(back.flat_params, model.flat_params)


def test_bad_settings_and_layouts_are_refused():
    with pytest.raises(ValueError, match=r"p: expected a finite number in \[0, 1\), got 1"):
        bpcore.Dropout(1)
    with pytest.raises(TypeError, match=r"seed: expected None or an integer in \[0, 2\*\*64\)"):
        bpcore.Dropout(0.5, seed=1.5)
    with pytest.raises(ValueError, match=r"draws: expected an integer >= 0, got -1"):
        bpcore.Dropout(0.5, draws=-1)
    X, T = np.ones((2, 3), np.float32), np.zeros((2, 2), np.float32)
    m = bpcore.Sequential(bpcore.Dropout(0.5), bpcore.Dense(3, 2, seed=0))
    with pytest.raises(ValueError, match=r"layers\[0\]: the training engine takes Dense layers"):
        m.train_step(X, T, bpcore.MSELoss(), bpcore.SGD(m, lr=0.1))
    m = bpcore.Sequential(bpcore.Dense(3, 2, seed=0), bpcore.Softmax(), bpcore.Dropout(0.5))
    with pytest.raises(ValueError, match=r"dropout after a softmax output is not supported"):
        m.train_step(X, T, bpcore.MSELoss(), bpcore.SGD(m, lr=0.1))


@pytest.mark.parametrize("n", [1, 16, 200])  # fused, row-split and batch-split steps
def test_steady_state_steps_with_dropout_and_kept_inputs_allocate_no_arrays(n):
    from memory import STEP_BYTES_BOUND, steady_step_bytes
    rng = np.random.default_rng(8)
    model = _net(act="gelu")  # GELU keeps its input; both dropout layers keep masks
    opt, loss = bpcore.SGD(model, lr=0.01), bpcore.SoftmaxCrossEntropyLoss()
    X, y = rng.uniform(-1, 1, (n, 20)), rng.integers(0, 5, n)
    for _ in range(3):  # the workspaces grow to this batch here
        model.train_step(X, y, loss, opt)
    # a mask or a kept input of 200 rows is 6-100 KB
    assert steady_step_bytes(lambda: model.train_step(X, y, loss, opt)) < STEP_BYTES_BOUND
