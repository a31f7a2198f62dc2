"""scipy.sparse input: the first layer multiplies the CSR rows natively, and every entry point
(predict, evaluate, train_step, fit, loss_and_gradient, L-BFGS) agrees with the dense path on
X.toarray() to round-off; the gradient of the first layer is checked by finite differences."""
import numpy as np
import pytest

sp = pytest.importorskip("scipy.sparse")

import bpcore
from bpcore import training
from bpcore._engine import CSRMatrix

TOL = {np.float64: 1e-12, np.float32: 1e-5}
DTYPES = [np.float64, np.float32]


def random_csr(n, m, density, seed, dtype=np.float64, empty_rows=()):
    """A random (n, m) CSR matrix, no repeated entries, with the given rows emptied."""
    X = sp.random(n, m, density=density, format="lil", random_state=seed, dtype=np.float64,
                  data_rvs=np.random.default_rng(seed).standard_normal)
    for r in empty_rows:
        X[r, :] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    return X.astype(dtype)


def twins(sizes, dtype, seed=0, **kw):
    """Two identical models: one fed sparse input, one dense."""
    return (bpcore.MLP(sizes, dtype=dtype, seed=seed, **kw),
            bpcore.MLP(sizes, dtype=dtype, seed=seed, **kw))


def close(a, b, dtype, scale=None):
    """|a - b| within the dtype's tolerance, relative to the largest magnitude of b."""
    scale = max(np.abs(b).max(), 1e-30) if scale is None else scale
    err = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max() / scale
    assert err <= TOL[dtype], f"relative error {err:.3g} > {TOL[dtype]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, density, empty", [
    (1, 7, 0.5, ()), (37, 20, 0.2, (0, 5, 36)), (2500, 60, 0.05, (1, 1024, 2047)),
    (64, 3000, 0.002, ()),
])
def test_predict_equals_dense(dtype, n, m, density, empty):
    X = random_csr(n, m, density, 1, dtype, empty)
    a, b = twins([m, 24, 5], dtype, output_activation="softmax")
    close(a.predict(X), b.predict(X.toarray()), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_zero_batch_gives_the_bias_path(dtype):
    X = sp.csr_matrix((6, 40), dtype=dtype)
    a, b = twins([40, 8, 3], dtype)
    out = a.predict(X)
    np.testing.assert_array_equal(out, b.predict(np.zeros((6, 40), dtype)))


@pytest.mark.parametrize("fmt", ["csc", "coo", "lil", "dok", "bsr"])
def test_other_formats_are_converted(fmt):
    X = random_csr(30, 25, 0.2, 2)
    a, b = twins([25, 6, 2], np.float64)
    close(a.predict(X.asformat(fmt)), b.predict(X.toarray()), np.float64)


def test_unsorted_and_repeated_columns_add_up():
    # row 0: columns 3, 1, 3 (3 twice); row 1: empty; row 2: column 0
    X = sp.csr_matrix((np.array([1.5, -2.0, 0.25, 4.0]), np.array([3, 1, 3, 0]),
                       np.array([0, 3, 3, 4])), shape=(3, 5))
    assert not X.has_sorted_indices
    dense = np.array([[0, -2.0, 0, 1.75, 0], [0] * 5, [4.0, 0, 0, 0, 0]])
    a, b = twins([5, 4, 2], np.float64)
    close(a.predict(X), b.predict(dense), np.float64)


def test_integer_values_are_converted_like_dense():
    X = sp.random(20, 10, density=0.3, format="csr", random_state=3, dtype=np.float64)
    Xi = X.copy()
    Xi.data = np.round(Xi.data * 10).astype(np.int64)
    a, b = twins([10, 4, 2], np.float32)
    close(a.predict(Xi), b.predict(Xi.toarray()), np.float32)


def problem(dtype, n=300, m=400, density=0.03, outputs=3, seed=5):
    X = random_csr(n, m, density, seed, dtype, empty_rows=(0, 7))
    y = np.random.default_rng(seed).integers(0, outputs, n)
    return X, y


OPTIMIZERS = {
    "sgd": lambda model: bpcore.SGD(model, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "adam": lambda model: bpcore.Adam(model, lr=1e-2),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("batch", [1, 16, 300])  # fused row-split, row-split, batch-split
@pytest.mark.parametrize("weighted", [False, True])
def test_train_step_equals_dense(dtype, opt, batch, weighted):
    X, y = problem(dtype)
    a, b = twins([400, 32, 3], dtype)
    oa, ob = OPTIMIZERS[opt](a), OPTIMIZERS[opt](b)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    w = np.random.default_rng(0).uniform(0, 2, X.shape[0]) if weighted else None
    Xd = X.toarray()
    for start in range(0, min(X.shape[0], 4 * batch), batch):
        rows = slice(start, start + batch)
        la = a.train_step(X[rows], y[rows], loss, oa, sample_weight=None if w is None else w[rows])
        lb = b.train_step(Xd[rows], y[rows], loss, ob, sample_weight=None if w is None else w[rows])
        close(la, lb, dtype)
    close(a.flat_params, b.flat_params, dtype)
    assert not np.array_equal(a.flat_params, bpcore.MLP([400, 32, 3], dtype=dtype,
                                                          seed=0).flat_params)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_equals_dense(dtype, opt, shuffle):
    X, y = problem(dtype)
    a, b = twins([400, 32, 3], dtype)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    w = np.random.default_rng(1).uniform(0, 2, X.shape[0])
    Xv, yv = X[:50], y[:50]
    kw = dict(loss=loss, epochs=3, batch_size=40, shuffle=shuffle, seed=11, sample_weight=w)
    ha = a.fit(X, y, optimizer=OPTIMIZERS[opt](a), validation_data=(Xv, yv), **kw)
    hb = b.fit(X.toarray(), y, optimizer=OPTIMIZERS[opt](b),
               validation_data=(Xv.toarray(), yv), **kw)
    close(a.flat_params, b.flat_params, dtype)
    close(ha["loss"], hb["loss"], dtype)
    close(ha["val_loss"], hb["val_loss"], dtype)
    assert ha["loss"][-1] < ha["loss"][0]


@pytest.mark.parametrize("batch", [8, 200])
def test_masked_first_layer_and_dropout_equal_dense(batch):
    dtype = np.float64
    X, y = problem(dtype)
    mask = (np.random.default_rng(2).random((400, 16)) < 0.5).astype(dtype)

    def model():
        return bpcore.Sequential(bpcore.Dense(400, 16, mask=mask, dtype=dtype, seed=1),
                                 bpcore.ReLU(), bpcore.Dropout(0.3, seed=4),
                                 bpcore.Dense(16, 3, dtype=dtype, seed=2))
    a, b = model(), model()
    kw = dict(loss=bpcore.SoftmaxCrossEntropyLoss(), epochs=2, batch_size=batch, seed=3)
    a.fit(X, y, optimizer=bpcore.SGD(a, lr=0.1, momentum=0.5), **kw)
    b.fit(X.toarray(), y, optimizer=bpcore.SGD(b, lr=0.1, momentum=0.5), **kw)
    close(a.flat_params, b.flat_params, dtype)
    W = a.layers[0].W
    assert np.all(W[mask == 0] == 0) and np.any(W[mask == 1] != 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_clipped_step_equals_dense(dtype):
    X, y = problem(dtype)
    a, b = twins([400, 16, 3], dtype)
    kw = dict(loss=bpcore.SoftmaxCrossEntropyLoss(), epochs=2, batch_size=50, seed=3,
              max_grad_norm=0.05)
    a.fit(X, y, optimizer=bpcore.SGD(a, lr=0.5), **kw)
    b.fit(X.toarray(), y, optimizer=bpcore.SGD(b, lr=0.5), **kw)
    close(a.flat_params, b.flat_params, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_evaluate_equals_dense(dtype):
    X, y = problem(dtype, n=2100)
    a, b = twins([400, 16, 3], dtype)
    w = np.random.default_rng(3).uniform(0, 1, X.shape[0])
    loss = bpcore.SoftmaxCrossEntropyLoss()
    ra, rb = a.evaluate(X, y, loss, sample_weight=w), b.evaluate(X.toarray(), y, loss,
                                                                 sample_weight=w)
    close(ra["loss"], rb["loss"], dtype)
    assert ra["accuracy"] == pytest.approx(rb["accuracy"], abs=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_loss_and_gradient_equals_dense(dtype):
    X, y = problem(dtype, n=2100)  # more than one chunk of rows
    a, b = twins([400, 16, 3], dtype)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    la, ga = training.loss_and_gradient(a, X, y, loss)
    lb, gb = training.loss_and_gradient(b, X.toarray(), y, loss)
    close(la, lb, dtype)
    close(ga, gb, dtype)


def test_first_layer_gradient_by_finite_differences():
    X, y = problem(np.float64, n=40, m=30, density=0.15)
    model = bpcore.MLP([30, 6, 3], activation="tanh", dtype=np.float64, seed=7)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    w = np.random.default_rng(4).uniform(0.5, 2, X.shape[0])
    _, grad = training.loss_and_gradient(model, X, y, loss, sample_weight=w)
    W = model.layers[0].W
    cols = np.unique(X.indices)
    absent = np.setdiff1d(np.arange(30), cols)
    h = 1e-6
    for i, j in [(cols[0], 0), (cols[-1], 5), (cols[len(cols) // 2], 3),
                 (absent[0] if absent.size else 0, 2)]:
        keep = W[i, j]
        W[i, j] = keep + h
        up = training.loss_and_gradient(model, X, y, loss, sample_weight=w)[0]
        W[i, j] = keep - h
        down = training.loss_and_gradient(model, X, y, loss, sample_weight=w)[0]
        W[i, j] = keep
        numeric = (up - down) / (2 * h)
        analytic = grad[i * 6 + j]  # W_0 comes first in the flat buffers
        assert analytic == pytest.approx(numeric, rel=1e-6, abs=1e-9)
    assert absent.size == 0 or np.all(grad[:30 * 6].reshape(30, 6)[absent] == 0)


def test_lbfgs_equals_dense():
    X, y = problem(np.float64, n=120, m=50, density=0.1)
    a, b = twins([50, 8, 3], np.float64)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    ha = a.fit(X, y, loss=loss, optimizer=bpcore.LBFGS(max_iter=15))
    hb = b.fit(X.toarray(), y, loss=loss, optimizer=bpcore.LBFGS(max_iter=15))
    assert len(ha["loss"]) == len(hb["loss"])
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-7, atol=1e-9)


def _fits(sizes, X, y, threads):
    """Parameters and outputs after an epoch at each step strategy's batch size."""
    model = bpcore.MLP(sizes, dtype=np.float32, seed=0)
    with bpcore.num_threads(threads):
        for batch in (1, 20, 200):  # fused row-split, row-split, batch-split
            model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                      optimizer=bpcore.Adam(model, lr=1e-3), epochs=1, batch_size=batch, seed=9)
        return model.flat_params.copy(), model.predict(X)


def test_identical_fits_are_bitwise_equal():
    X, y = problem(np.float32, n=600, m=2000, density=0.01)
    threads = bpcore.threads.max_threads()
    first, again = _fits([2000, 32, 3], X, y, threads), _fits([2000, 32, 3], X, y, threads)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_sparse_layer_is_free_of_the_thread_count():
    # a network of the sparse layer alone (64 outputs: enough weights for a threaded row-split
    # step): every sum of the sparse kernels is formed in the entries' order, whatever the
    # threads (the dense layers above it split their sums by bpcore's thread count, as
    # documented, so a deeper network is only reproducible for a fixed count)
    X, y = problem(np.float32, n=600, m=2000, density=0.01, outputs=64)
    one = _fits([2000, 64], X, y, 1)
    for threads in {2, bpcore.threads.max_threads()}:
        for a, b in zip(_fits([2000, 64], X, y, threads), one):
            np.testing.assert_array_equal(a, b)


# ---- bad input ----

def test_nan_in_data_is_refused_naming_X():
    X, y = problem(np.float64, n=20, m=10, density=0.3)
    X.data[3] = np.nan
    model = bpcore.MLP([10, 4, 3], dtype=np.float64)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    before = model.flat_params.copy()
    for call in (lambda: model.predict(X), lambda: model.evaluate(X, y, loss),
                 lambda: model.train_step(X, y, loss, bpcore.SGD(model)),
                 lambda: model.fit(X, y, loss=loss, optimizer=bpcore.SGD(model))):
        with pytest.raises(ValueError, match="^X: expected finite values"):
            call()
    with pytest.raises(ValueError, match=r"^validation_data\[0\]: expected finite"):
        model.fit(np.zeros((20, 10)), y, loss=loss, optimizer=bpcore.SGD(model),
                  validation_data=(X, y))
    np.testing.assert_array_equal(model.flat_params, before)


def test_bad_sparse_inputs_are_refused_clearly():
    model = bpcore.MLP([10, 4, 3], dtype=np.float64)
    with pytest.raises(ValueError, match=r"^X: expected 10 columns \(n_features\), got shape "
                                         r"\(5, 9\)"):
        model.predict(sp.random(5, 9, density=0.5, format="csr"))
    with pytest.raises(ValueError, match="^X: expected at least one row"):
        model.predict(sp.csr_matrix((0, 10)))
    with pytest.raises(TypeError, match="^X: expected a sparse matrix of real numbers, got "
                                        "dtype 'complex128'"):
        model.predict(sp.csr_matrix(np.ones((2, 10), complex)))
    broken = sp.csr_matrix(np.eye(3, 10))
    broken.indices[1] = 12  # past the last column: what scipy's check_format would refuse
    with pytest.raises(ValueError, match=r"^X: expected a valid CSR structure"):
        model.predict(broken)
    wide = sp.csr_matrix(np.eye(3, 10))
    wide.indices = wide.indices.astype(np.int64)
    wide.indices[0] = 2**32  # would wrap to column 0 as int32
    with pytest.raises(ValueError, match=r"^X: expected column indices in \[0, 10\)"):
        model.predict(wide)


def test_predict_of_a_layout_the_engine_does_not_run():
    def model():
        return bpcore.Sequential(bpcore.Dense(10, 4, dtype=np.float64, seed=1), bpcore.Tanh(),
                                 bpcore.ReLU(), bpcore.Dense(4, 2, dtype=np.float64, seed=2))
    repeated = sp.csr_matrix((np.array([1.5, -2.0, 0.25, 4.0]), np.array([3, 1, 3, 9]),
                              np.array([0, 3, 3, 4])), shape=(3, 10))  # column 3 twice
    X = sp.vstack([random_csr(50, 10, 0.3, 4), repeated], format="csr")
    close(model().predict(X), model().predict(X.toarray()), np.float64)
    X.data[0] = np.inf
    with pytest.raises(ValueError, match="^X: expected finite values"):
        model().predict(X)


def test_engine_csr_checks_its_structure():
    data, idx = np.ones(2), np.array([0, 1], np.int32)
    with pytest.raises(ValueError, match="^indptr: expected non-decreasing"):
        CSRMatrix(data, idx, np.array([0, 2, 1, 2], np.intp), 3)
    with pytest.raises(ValueError, match="^indptr: expected n \\+ 1 offsets"):
        CSRMatrix(data, idx, np.array([0, 1], np.intp), 3)
    with pytest.raises(ValueError, match=r"^indices: expected columns in \[0, 1\)"):
        CSRMatrix(data, idx, np.array([0, 2], np.intp), 1)
    X = CSRMatrix(data, idx, np.array([0, 1, 2], np.intp), 3)
    assert X.shape == (2, 3) and X.nnz == 2
    with pytest.raises(ValueError):
        X.indices[0] = 5  # the checked structure is read-only


def test_sparse_input_is_not_densified():
    # 2000 x 500,000 would take 8 GB as a dense float64 array; the sparse path needs the
    # entries, the weights, and batch-sized workspaces only
    tracemalloc = pytest.importorskip("tracemalloc")
    rng = np.random.default_rng(0)
    nnz = 20_000  # sp.random draws its positions from all n * m: minutes at this size
    X = sp.csr_matrix((rng.standard_normal(nnz), (rng.integers(0, 2000, nnz),
                                                  rng.integers(0, 500_000, nnz))),
                      shape=(2000, 500_000))
    y = np.random.default_rng(0).integers(0, 2, 2000)
    model = bpcore.MLP([500_000, 4, 2], dtype=np.float64, seed=0)
    tracemalloc.start()
    try:
        model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=bpcore.SGD(model),
                  epochs=1, batch_size=100, seed=0)
        model.predict(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100e6, f"peak {peak / 1e6:.0f} MB"
