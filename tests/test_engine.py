"""The fused engine: train_step equals the layer API, fit equals a loop of train_step,
evaluate and predict equal their definitions, Ctrl-C leaves a usable model."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import bpcore
from memory import STEP_BYTES_BOUND, peak_bytes, steady_step_bytes

TOL = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=2e-4, atol=2e-5)}

OPTS = {
    "plain": dict(lr=0.05),
    "momentum": dict(lr=0.05, momentum=0.9),
    "nesterov": dict(lr=0.05, momentum=0.9, nesterov=True),
    "l2+decay": dict(lr=0.05, momentum=0.5, weight_decay=0.01, decay=0.002),
}


def _data(rng, n, n_in, n_out, kind, dtype):
    X = rng.uniform(-1, 1, (n, n_in)).astype(dtype)
    if kind == "mse":
        return X, rng.uniform(0, 1, (n, n_out)).astype(dtype)
    if kind == "labels":
        return X, rng.integers(0, n_out, n)
    return X, bpcore.one_hot(rng.integers(0, n_out, n), n_out, dtype)


def _loss(kind, reduction="mean"):
    return bpcore.MSELoss(reduction) if kind == "mse" else bpcore.SoftmaxCrossEntropyLoss(reduction)


def _layer_api_step(model, X, y, loss, opt):
    model.zero_grad()
    value = loss(model.forward(X), y)
    model.backward(loss.backward())
    opt.step()
    return value


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 3, 4, 5, 17, 64, 150])  # fused, row-split and batch-split
@pytest.mark.parametrize("opt", list(OPTS))
def test_train_step_equals_layer_api(rng, dtype, n, opt):
    a = bpcore.MLP([7, 12, 9, 4], activation="tanh", dtype=dtype, seed=3)
    b = bpcore.MLP([7, 12, 9, 4], activation="tanh", dtype=dtype, seed=3)
    oa, ob = bpcore.SGD(a, **OPTS[opt]), bpcore.SGD(b, **OPTS[opt])
    loss = _loss("labels")
    for step in range(6):
        X, y = _data(rng, n, 7, 4, "labels", dtype)
        la = a.train_step(X, y, loss, oa)
        lb = _layer_api_step(b, X, y, loss, ob)
        np.testing.assert_allclose(la, lb, **TOL[dtype])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL[dtype])


BATCH_OF_ONE_OPTS = {**{k: lambda m, kw=kw: bpcore.SGD(m, **kw) for k, kw in OPTS.items()},
                     "adam": lambda m: bpcore.Adam(m, lr=0.01),
                     "amsgrad+l2": lambda m: bpcore.Adam(m, lr=0.01, amsgrad=True,
                                                         weight_decay=0.01),
                     "adamw": lambda m: bpcore.AdamW(m, lr=0.01, weight_decay=0.1)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", list(BATCH_OF_ONE_OPTS))
def test_batch_of_one_step_equals_layer_api_at_every_simd_level(rng, dtype, opt, simd_levels):
    # the fused batch-of-one update runs over all of a thread's rows of a layer in one call:
    # widths 33 and 17 (whole vectors and tails), 1 and 3 (tails only)
    for level in simd_levels():
        a = bpcore.MLP([5, 33, 17, 1, 3], activation="tanh", dtype=dtype, seed=4)
        b = bpcore.MLP([5, 33, 17, 1, 3], activation="tanh", dtype=dtype, seed=4)
        oa, ob = BATCH_OF_ONE_OPTS[opt](a), BATCH_OF_ONE_OPTS[opt](b)
        loss = _loss("labels")
        for step in range(4):
            X, y = _data(rng, 1, 5, 3, "labels", dtype)
            a.train_step(X, y, loss, oa)
            _layer_api_step(b, X, y, loss, ob)
        np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL[dtype])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [5, 16, 17, 33, 150])
@pytest.mark.parametrize("path", ["batch of one", "rows", "layer API"])
@pytest.mark.parametrize("opt", ["momentum", "adam"])
def test_updates_store_no_subnormal_state(dtype, width, path, opt, simd_levels):
    # state decaying below the smallest normal number (subnormals cost x86 about a hundred
    # times more per operation) is stored as 0: input 0 is 0 in every row, so the gradient of
    # layer 0's row 0 is exactly 0 and its velocity or moments only shrink, from just above
    # the smallest normal to just below it; every update path, widths with whole vectors,
    # remainders and short rows, every SIMD level
    tiny = np.finfo(dtype).tiny
    n = 1 if path == "batch of one" else 4
    X = np.random.default_rng(5).uniform(-1, 1, (n, 6)).astype(dtype)
    X[:, 0] = 0
    y = np.arange(n) % 2
    loss = bpcore.SoftmaxCrossEntropyLoss()
    for level in simd_levels():
        m = bpcore.MLP([6, width, 2], activation="tanh", dtype=dtype, seed=2)
        o = (bpcore.SGD(m, lr=0.1, momentum=0.5) if opt == "momentum"
             else bpcore.Adam(m, lr=0.01, betas=(0.9, 0.999)))
        m.train_step(X, y, loss, o)
        state = o.native().state()
        # layer 0's W comes first in the flat buffers, row by row: row 0 is [0, width)
        shrinking = {"momentum_buffer": 1.5} if opt == "momentum" else {"exp_avg": 1.05,
                                                                        "exp_avg_sq": 1.0005}
        for name, above in shrinking.items():
            state[name][:width] = above * tiny
        row0 = m.flat_params[:width].copy()
        if path == "layer API":
            _layer_api_step(m, X, y, loss, o)
        else:
            m.train_step(X, y, loss, o)
        for name in shrinking:
            kept = state[name][:width]
            assert (kept == 0).all(), (level, name, kept[kept != 0][:3])
        assert (m.flat_params[:width] == row0).all()  # moved by a zero velocity or moment
        assert (state[next(iter(shrinking))][width:] != 0).any()  # the others still move
    # on x86 the updates flush in the processor's flush-to-zero mode, for their call only
    half_tiny = np.array([tiny], dtype) * np.array([0.5], dtype)
    assert half_tiny[0] != 0


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("n", [1, 8, 64, 200])  # every path of the step, with threads in play
def test_train_step_equals_layer_api_on_a_wide_net(rng, threads, n):
    """Wide enough (100k weights) that every path runs on several threads."""
    a = bpcore.MLP([300, 256, 96, 10], dtype="float64", seed=5)
    b = bpcore.MLP([300, 256, 96, 10], dtype="float64", seed=5)
    kw = dict(lr=0.05, momentum=0.9, weight_decay=1e-4)
    oa, ob = bpcore.SGD(a, **kw), bpcore.SGD(b, **kw)
    loss = _loss("labels")
    with bpcore.num_threads(threads):
        for _ in range(3):
            X, y = _data(rng, n, 300, 10, "labels", "float64")
            np.testing.assert_allclose(a.train_step(X, y, loss, oa),
                                       _layer_api_step(b, X, y, loss, ob), **TOL["float64"])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL["float64"])


@pytest.mark.parametrize("kind,reduction,act,out", [
    ("mse", "mean", "relu", None), ("mse", "half_sum", "sigmoid", "sigmoid"),
    ("mse", "sum", "tanh", "tanh"), ("labels", "sum", "relu", None),
    ("probs", "mean", "sigmoid", None)])
@pytest.mark.parametrize("n", [2, 33])
def test_train_step_losses_and_activations(rng, kind, reduction, act, out, n):
    a = bpcore.MLP([5, 8, 3], activation=act, output_activation=out, dtype="float64", seed=4)
    b = bpcore.MLP([5, 8, 3], activation=act, output_activation=out, dtype="float64", seed=4)
    oa, ob = bpcore.SGD(a, lr=0.02, momentum=0.9), bpcore.SGD(b, lr=0.02, momentum=0.9)
    loss = _loss(kind, reduction)
    for _ in range(5):
        X, y = _data(rng, n, 5, 3, kind, "float64")
        np.testing.assert_allclose(a.train_step(X, y, loss, oa), _layer_api_step(b, X, y, loss, ob),
                                   **TOL["float64"])
    np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL["float64"])


@pytest.mark.parametrize("n", [1, 8, 40])
def test_train_step_keeps_masked_weights_at_zero(rng, n):
    mask = (rng.uniform(size=(6, 5)) > 0.5).astype(float)
    def net():
        return bpcore.Sequential(bpcore.Dense(6, 5, mask=mask, dtype="float64", seed=1),
                                 bpcore.Sigmoid(), bpcore.Dense(5, 2, dtype="float64", seed=2),
                                 bpcore.Sigmoid())
    a, b = net(), net()
    kw = dict(lr=0.3, momentum=0.9, weight_decay=0.01, decay=0.002)
    oa, ob = bpcore.SGD(a, **kw), bpcore.SGD(b, **kw)
    loss = bpcore.MSELoss("half_sum")
    for _ in range(5):
        X, y = _data(rng, n, 6, 2, "mse", "float64")
        a.train_step(X, y, loss, oa)
        _layer_api_step(b, X, y, loss, ob)
    np.testing.assert_allclose(a.flat_params, b.flat_params, **TOL["float64"])
    np.testing.assert_array_equal(a.layers[0].W[mask == 0], 0)


def test_workspaces_grow_to_the_largest_batch_and_stay(rng):
    model = bpcore.MLP([4, 6, 2], seed=0)
    opt, loss = bpcore.SGD(model, lr=0.1), bpcore.MSELoss()
    for n, cap in [(3, 3), (10, 10), (2, 10), (7, 10)]:
        model.train_step(*_data(rng, n, 4, 2, "mse", "float32"), loss, opt)
        assert bpcore.training.engine_for(model).capacity == cap


@pytest.mark.parametrize("batch_size", [1, 7, 32, 100])
def test_fit_without_shuffle_equals_a_loop_of_train_step(rng, batch_size):
    X, y = _data(rng, 100, 6, 3, "labels", "float64")
    a = bpcore.MLP([6, 10, 3], dtype="float64", seed=5)
    b = bpcore.MLP([6, 10, 3], dtype="float64", seed=5)
    oa, ob = bpcore.SGD(a, lr=0.05, momentum=0.9), bpcore.SGD(b, lr=0.05, momentum=0.9)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    hist = a.fit(X, y, loss=loss, optimizer=oa, epochs=3, batch_size=batch_size, shuffle=False)
    for epoch in range(3):
        total = 0.0
        for s in range(0, 100, batch_size):
            total += b.train_step(X[s:s + batch_size], y[s:s + batch_size], loss, ob) * \
                len(X[s:s + batch_size])
        np.testing.assert_allclose(hist["loss"][epoch], total / 100, rtol=1e-12)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)


def test_fit_shuffles_with_its_seed_and_is_bitwise_reproducible(rng):
    X, y = _data(rng, 300, 8, 4, "mse", "float32")

    def run(seed):
        m = bpcore.MLP([8, 16, 4], seed=1)
        h = m.fit(X, y, loss=bpcore.MSELoss(), optimizer=bpcore.SGD(m, lr=0.1, momentum=0.9),
                  epochs=3, batch_size=16, seed=seed)
        return h["loss"], m.flat_params.copy()

    l1, w1 = run(7)
    l2, w2 = run(7)
    l3, w3 = run(8)
    assert l1 == l2
    np.testing.assert_array_equal(w1, w2)
    assert not np.array_equal(w1, w3)


def test_full_batch_schedule_and_history(rng):
    X, y = _data(rng, 64, 6, 1, "mse", "float64")
    model = bpcore.MLP([6, 2, 1], activation="sigmoid", output_activation="sigmoid",
                       dtype="float64", seed=0, init=0.3)
    opt = bpcore.SGD(model, lr=0.1, momentum=0.9)
    seen = []
    hist = model.fit(X, y, loss=bpcore.MSELoss("half_sum"), optimizer=opt, epochs=30,
                     batch_size=len(X), shuffle=False,
                     schedule=lambda e: {"lr": 0.005, "momentum": 0.5} if e < 20 else
                     {"lr": 0.01, "momentum": 0.9},
                     callbacks=[lambda e, logs: seen.append((opt.lr, opt.momentum))])
    assert len(hist["loss"]) == 30
    assert seen[19] == (0.005, 0.5) and seen[20] == (0.01, 0.9)
    # with the whole set as one batch, the epoch loss is the paper's E before the sweep
    ref = bpcore.MLP([6, 2, 1], activation="sigmoid", output_activation="sigmoid",
                     dtype="float64", seed=0, init=0.3)
    E0 = bpcore.MSELoss("half_sum")(ref.predict(X), y)
    assert hist["loss"][0] == pytest.approx(E0, rel=1e-12)


def test_callback_can_stop_and_validation_is_reported(rng):
    X, y = _data(rng, 200, 5, 3, "labels", "float32")
    model = bpcore.MLP([5, 16, 3], seed=0)
    hist = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                     optimizer=bpcore.SGD(model, lr=0.1, momentum=0.9), epochs=10,
                     validation_data=(X[:50], y[:50]), callbacks=[lambda e, logs: e == 3])
    assert len(hist["loss"]) == len(hist["val_loss"]) == len(hist["val_accuracy"]) == 4
    ev = model.evaluate(X[:50], y[:50], bpcore.SoftmaxCrossEntropyLoss())
    assert ev["loss"] == pytest.approx(hist["val_loss"][-1], rel=1e-6)
    assert ev["accuracy"] == hist["val_accuracy"][-1]


@pytest.mark.parametrize("kind,reduction", [("mse", "mean"), ("mse", "half_sum"),
                                            ("labels", "mean"), ("probs", "sum")])
def test_evaluate_and_predict_equal_their_definitions(rng, kind, reduction):
    model = bpcore.MLP([9, 20, 4], dtype="float64", seed=2)
    X, y = _data(rng, 2500, 9, 4, kind, "float64")  # more rows than one predict chunk
    loss = _loss(kind, reduction)
    out = model.predict(X)
    ref = X
    for m in model.layers:
        ref = m.forward_unchecked(ref, keep=False)
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
    ev = model.evaluate(X, y, loss)
    assert ev["loss"] == pytest.approx(loss(out, y), rel=1e-10)
    want = y if kind == "labels" else np.asarray(y).argmax(axis=1)
    assert ev["accuracy"] == (out.argmax(axis=1) == want).mean()


def test_engine_rejects_an_optimizer_over_other_parameters(rng):
    model = bpcore.MLP([3, 4, 2], seed=0)
    other = bpcore.SGD(model.layers[0].parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer: expected one over all"):
        model.train_step(*_data(rng, 2, 3, 2, "mse", "float32"), bpcore.MSELoss(), other)


def test_engine_rejects_bad_values_natively(rng):
    model = bpcore.MLP([3, 4, 2], seed=0)
    opt, loss = bpcore.SGD(model, lr=0.1), bpcore.SoftmaxCrossEntropyLoss()
    X = np.ones((2, 3), np.float32)
    X[1, 1] = np.nan
    with pytest.raises(ValueError, match="X: expected finite"):
        model.train_step(X, np.array([0, 1]), loss, opt)
    with pytest.raises(ValueError, match=r"target: expected class labels in \[0, 2\), got 2"):
        model.train_step(np.ones((2, 3), np.float32), np.array([0, 2]), loss, opt)
    with pytest.raises(ValueError, match=r"target: expected class labels in \[0, 2\), got 5"):
        model.fit(np.ones((2, 3), np.float32), np.array([5, 0]), loss=loss, optimizer=opt)


def test_ctrl_c_during_fit_raises_and_leaves_a_usable_model(rng):
    X, y = _data(rng, 20000, 64, 10, "labels", "float32")
    model = bpcore.MLP([64, 256, 10], seed=0)
    opt, loss = bpcore.SGD(model, lr=0.01, momentum=0.9), bpcore.SoftmaxCrossEntropyLoss()
    done = []

    def interrupt():
        time.sleep(0.3)
        done.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)

    # Python's own Ctrl-C handler, whatever this process inherited: a shell without job
    # control starts background commands with SIGINT ignored, and Python keeps that
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt, daemon=True).start()
    try:
        with pytest.raises(KeyboardInterrupt):
            model.fit(X, y, loss=loss, optimizer=opt, epochs=1000, batch_size=8)
    finally:
        signal.signal(signal.SIGINT, previous)
    latency = time.perf_counter() - done[0]
    assert latency < 1.0, f"KeyboardInterrupt came {latency:.2f} s after SIGINT"
    assert np.isfinite(model.flat_params).all()
    before = model.evaluate(X, y, loss)["loss"]
    model.fit(X, y, loss=loss, optimizer=opt, epochs=1, batch_size=64)
    assert model.evaluate(X, y, loss)["loss"] < before
    assert model.predict(X[:3]).shape == (3, 10)


@pytest.mark.parametrize("where", [0, 65535, 65536, -1])  # either side of a check block
def test_nan_anywhere_in_a_large_batch_is_found(where):
    model = bpcore.MLP([400, 8, 3], seed=0)
    opt, loss = bpcore.SGD(model, lr=0.1), bpcore.MSELoss()
    X = np.zeros((300, 400), np.float32)
    X.flat[where] = np.inf
    before = model.flat_params.copy()
    with pytest.raises(ValueError, match="X: expected finite"):
        model.train_step(X, np.zeros((300, 3), np.float32), loss, opt)
    np.testing.assert_array_equal(model.flat_params, before)  # nothing was applied


@pytest.mark.parametrize("n", [1, 16, 200])  # fused, row-split and batch-split steps
def test_steady_state_train_step_allocates_no_arrays(rng, n):
    model = bpcore.MLP([50, 40, 10], seed=0)
    opt, loss = bpcore.SGD(model, lr=0.01, momentum=0.9), bpcore.SoftmaxCrossEntropyLoss()
    X, y = _data(rng, n, 50, 10, "labels", "float32")
    for _ in range(3):  # the workspaces grow to this batch here
        model.train_step(X, y, loss, opt)
    # NumPy reports its buffers to tracemalloc (the bound's reasons: tests/memory.py)
    assert steady_step_bytes(lambda: model.train_step(X, y, loss, opt)) < STEP_BYTES_BOUND
    # the check can fail: the layer API's step makes arrays
    assert peak_bytes(lambda: _layer_api_step(model, X, y, loss, opt), 50) > 40 * n


def test_predict_works_for_layouts_the_engine_does_not_run(rng):
    net = bpcore.Sequential(bpcore.Tanh(), bpcore.Dense(3, 2, dtype="float64", seed=0))
    X = rng.uniform(-1, 1, (4, 3))
    np.testing.assert_allclose(net.predict(X), np.tanh(X) @ net.layers[1].W + net.layers[1].b,
                               rtol=1e-12)
    with pytest.raises(ValueError, match="X: expected finite"):
        net.predict(np.full((1, 3), np.nan))
    with pytest.raises(ValueError, match=r"layers\[0\]: the training engine takes Dense"):
        net.train_step(X, np.zeros((4, 2)), bpcore.MSELoss(), bpcore.SGD(net, lr=0.1))


_WORKSPACE_TOO_BIG = r"""
import numpy as np, bpcore, resource
m = bpcore.MLP([784, 256, 10], seed=0); opt = bpcore.SGD(m, lr=0.1)
loss = bpcore.SoftmaxCrossEntropyLoss()
m.train_step(np.zeros((64, 784), np.float32), np.zeros(64, int), loss, opt)
X = np.zeros((160_000, 784), np.float32); y = np.zeros(160_000, int)
usage = int(open('/proc/self/statm').read().split()[0]) * 4096
resource.setrlimit(resource.RLIMIT_AS, (usage + (300 << 20), usage + (300 << 20)))
try:
    m.train_step(X, y, loss, opt)
    print("no error")
except MemoryError as e:
    print(e)
# the workspace of the smaller batches is whole: training goes on
before = m.flat_params.copy()
value = m.train_step(X[:64], y[:64], loss, opt)
assert np.isfinite(value) and not np.array_equal(before, m.flat_params)
print(m.predict(X[:3]).shape)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux's /proc")
def test_a_workspace_too_big_says_so_and_leaves_the_engine_whole(tmp_path):
    out = subprocess.run([sys.executable, "-c", _WORKSPACE_TOO_BIG], capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert "workspace for batches of 160000 rows on" in lines[0] and "threads" in lines[0]
    assert lines[-1] == "(3, 10)"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sparse", [False, True])
def test_a_clip_that_does_not_bind_gives_the_plain_step(dtype, sparse):
    # the clipped (and the data-parallel) step forms the whole gradient first, by the row-split
    # strategy up to its batch limit and the layer-by-layer one above it; the plain step fuses
    # the update into the backward pass: with a clip that never binds both are the same update
    import scipy.sparse as sps
    rng = np.random.default_rng(1)
    for n, drop, threads in [(1, 0.0, 1), (3, 0.3, 2), (40, 0.0, 2), (129, 0.3, 1), (300, 0.0, 2)]:
        X = rng.standard_normal((n, 30))
        X[X < 0.5] = 0
        y = rng.integers(0, 4, n)
        runs = []
        for clip in (None, 1e30):
            layers = [bpcore.Dense(30, 20, dtype=dtype, seed=1), bpcore.ReLU()]
            layers += [bpcore.Dropout(drop, seed=5)] if drop else []
            model = bpcore.Sequential(*layers, bpcore.Dense(20, 4, dtype=dtype, seed=2))
            opt = bpcore.Adam(model.parameters(), lr=0.01)
            with bpcore.num_threads(threads):
                for _ in range(3):
                    model.train_step(sps.csr_matrix(X) if sparse else X, y,
                                     bpcore.SoftmaxCrossEntropyLoss(), opt, max_grad_norm=clip)
            runs.append(model.flat_params.copy())
        np.testing.assert_allclose(runs[1], runs[0], rtol=1e-12 if dtype == "float64" else 1e-5,
                                   atol=0, err_msg=f"n={n}, dropout={drop}, threads={threads}")
