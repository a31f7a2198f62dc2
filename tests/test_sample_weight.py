"""Sample and class weights: every loss against NumPy and torch with weights, finite
differences, all-ones weights bit for bit the unweighted result, zero weights removing rows,
integer weights equal to repeated rows, weights travelling with their rows through fit's
shuffle, evaluate and L-BFGS weighted, class_weight as scikit-learn computes it, bad weights
refused."""
import numpy as np
import pytest

import bpcore
from bpcore.params import as_generator

LOSSES = {
    "mse_mean": lambda: bpcore.MSELoss(),
    "mse_sum": lambda: bpcore.MSELoss("sum"),
    "mse_half_sum": lambda: bpcore.MSELoss("half_sum"),
    "xent_labels": lambda: bpcore.SoftmaxCrossEntropyLoss(),
    "xent_probs_sum": lambda: bpcore.SoftmaxCrossEntropyLoss("sum"),
    "bce": lambda: bpcore.BCEWithLogitsLoss(pos_weight=[2.0, 0.5, 1.0]),
    "poisson": lambda: bpcore.PoissonLoss(),
}


def _target(name, rng, n, c=3):
    if name == "xent_labels":
        return rng.integers(0, c, n)
    if name == "xent_probs_sum":
        p = rng.uniform(0, 1, (n, c))
        return p / p.sum(axis=1, keepdims=True)
    if name == "bce":
        return (rng.uniform(size=(n, c)) > 0.5).astype(float)
    if name == "poisson":
        return rng.poisson(1.5, (n, c)).astype(float)
    return rng.uniform(-1, 1, (n, c))


def _reference(name, Z, T, w):
    """The weighted loss from its definition: per-row losses (NumPy), weighted, reduced."""
    n, c = Z.shape
    if name.startswith("mse"):
        rows = ((Z - T) ** 2).sum(axis=1)
        per = c
    elif name.startswith("xent"):
        lse = np.log(np.exp(Z - Z.max(axis=1, keepdims=True)).sum(axis=1)) + Z.max(axis=1)
        onehot = np.eye(c)[T] if T.ndim == 1 else T
        rows = (onehot * (lse[:, None] - Z)).sum(axis=1)
        per = 1
    elif name == "bce":
        p = np.array([2.0, 0.5, 1.0])
        rows = (p * T * np.logaddexp(0, -Z) + (1 - T) * np.logaddexp(0, Z)).sum(axis=1)
        per = c
    else:
        rows = (np.exp(Z) - T * Z).sum(axis=1)
        per = c
    total = (w * rows).sum()
    if name.endswith("sum"):
        return 0.5 * total if name == "mse_half_sum" else total
    return total / (w.sum() * per)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name", list(LOSSES))
def test_weighted_loss_against_its_definition_and_finite_differences(name, dtype):
    rng = np.random.default_rng(1)
    Z = rng.uniform(-2, 2, (9, 3))
    T = _target(name, rng, 9)
    w = rng.uniform(0, 3, 9)
    w[4] = 0
    loss = LOSSES[name]()
    value = loss(Z.astype(dtype), T, w)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(value, _reference(name, Z.astype(dtype).astype(float), T, w),
                               rtol=tol)
    if dtype == np.float32:
        return
    grad = loss.backward()
    numeric = np.zeros_like(Z)
    for i in np.ndindex(Z.shape):
        up, down = Z.copy(), Z.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        numeric[i] = (_reference(name, up, T, w) - _reference(name, down, T, w)) / 2e-6
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    assert not grad[4].any()  # a row of weight 0 has no gradient at all


TORCH = {
    "mse_mean": lambda F, z, t: F.mse_loss(z, t, reduction="none").sum(1),
    "xent_labels": lambda F, z, t: F.cross_entropy(z, t, reduction="none"),
    "poisson": lambda F, z, t: F.poisson_nll_loss(z, t, log_input=True, full=False,
                                                  reduction="none").sum(1),
}


@pytest.mark.parametrize("name", list(TORCH))
def test_weighted_loss_and_gradient_match_torch(name):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    rng = np.random.default_rng(2)
    Z, T, w = rng.uniform(-2, 2, (12, 3)), _target(name, rng, 12), rng.uniform(0, 2, 12)
    loss = LOSSES[name]()
    value = loss(Z, T, w)
    z = torch.tensor(Z, requires_grad=True)
    per = 3 if name != "xent_labels" else 1
    ref = (torch.tensor(w) * TORCH[name](F, z, torch.tensor(T))).sum() / (w.sum() * per)
    ref.backward()
    np.testing.assert_allclose(value, ref.item(), rtol=1e-12)
    np.testing.assert_allclose(loss.backward(), z.grad.numpy(), rtol=1e-12, atol=1e-15)


def _net(dtype="float64", seed=3):
    return bpcore.MLP([6, 16, 3], activation="tanh", dtype=dtype, seed=seed)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(LOSSES))
@pytest.mark.parametrize("n", [1, 8, 300])  # fused, row-split and batch-split steps
@pytest.mark.parametrize("threads", [1, 2])
def test_all_ones_weights_are_bit_for_bit_the_unweighted_step(name, n, dtype, threads):
    rng = np.random.default_rng(4)
    X, T = rng.uniform(-1, 1, (n, 6)).astype(dtype), _target(name, rng, n)
    a, b = _net(dtype), _net(dtype)
    oa, ob = bpcore.Adam(a, lr=1e-2), bpcore.Adam(b, lr=1e-2)
    loss = LOSSES[name]()
    for _ in range(2):
        with bpcore.num_threads(threads):
            la = a.train_step(X, T, loss, oa, sample_weight=np.ones(n))
            lb = b.train_step(X, T, loss, ob)
        assert la == lb
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert a.evaluate(X, T, loss, np.ones(n)) == b.evaluate(X, T, loss)


@pytest.mark.parametrize("name", ["mse_mean", "xent_labels", "bce", "poisson"])
@pytest.mark.parametrize("n", [1, 8, 300])
@pytest.mark.parametrize("threads", [1, 2])
def test_integer_weights_equal_repeated_rows_and_zeros_remove_rows(name, n, threads):
    rng = np.random.default_rng(5)
    X, T = rng.uniform(-1, 1, (n, 6)), _target(name, rng, n)
    w = rng.integers(0, 3, n).astype(float)
    w[0] = 1
    keep = np.repeat(np.arange(n), w.astype(int))
    a, b = _net(), _net()
    oa, ob = bpcore.SGD(a, lr=0.1, momentum=0.9), bpcore.SGD(b, lr=0.1, momentum=0.9)
    loss = LOSSES[name]()
    for _ in range(3):
        with bpcore.num_threads(threads):
            np.testing.assert_allclose(a.train_step(X, T, loss, oa, sample_weight=w),
                                       b.train_step(X[keep], T[keep], loss, ob), rtol=1e-12)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-11, atol=1e-13)


def test_weights_travel_with_their_rows_through_fits_shuffle():
    rng = np.random.default_rng(6)
    X, y = rng.uniform(-1, 1, (100, 6)), rng.integers(0, 3, 100)
    w = rng.uniform(0.1, 2, 100)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    a, b = _net(), _net()
    oa, ob = bpcore.SGD(a, lr=0.1), bpcore.SGD(b, lr=0.1)
    history = a.fit(X, y, loss=loss, optimizer=oa, epochs=2, batch_size=16, seed=9,
                    sample_weight=w)
    gen, order, totals = as_generator(9), np.arange(100, dtype=np.intp), []
    for _ in range(2):
        gen.shuffle(order)
        total = 0.0
        for start in range(0, 100, 16):
            rows = order[start:start + 16]
            total += b.train_step(X[rows], y[rows], loss, ob, sample_weight=w[rows]) * w[rows].sum()
        totals.append(total / w.sum())
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    np.testing.assert_allclose(history["loss"], totals, rtol=1e-12)


def test_evaluate_and_lbfgs_are_weighted():
    rng = np.random.default_rng(7)
    X, y = rng.uniform(-1, 1, (40, 6)), rng.integers(0, 3, 40)
    w = rng.integers(0, 4, 40).astype(float)
    keep = np.repeat(np.arange(40), w.astype(int))
    loss = bpcore.SoftmaxCrossEntropyLoss()
    m = _net()
    got, want = m.evaluate(X, y, loss, w), m.evaluate(X[keep], y[keep], loss)
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-12)
    np.testing.assert_allclose(got["accuracy"], want["accuracy"], rtol=1e-12)
    from bpcore.training import loss_and_gradient
    (va, ga), (vb, gb) = loss_and_gradient(m, X, y, loss, w), loss_and_gradient(m, X[keep],
                                                                               y[keep], loss)
    np.testing.assert_allclose(va, vb, rtol=1e-12)
    np.testing.assert_allclose(ga, gb, rtol=1e-10, atol=1e-14)
    a, b = _net(), _net()
    a.fit(X, y, loss=loss, optimizer=bpcore.LBFGS(max_iter=20), sample_weight=w)
    b.fit(X[keep], y[keep], loss=loss, optimizer=bpcore.LBFGS(max_iter=20))
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-6, atol=1e-8)


def test_class_weight_is_a_weight_per_row_as_scikit_learn_computes_it():
    from sklearn.utils.class_weight import compute_class_weight
    rng = np.random.default_rng(8)
    X, y = rng.uniform(-1, 1, (60, 6)), rng.choice(3, 60, p=[0.6, 0.3, 0.1])
    balanced = compute_class_weight("balanced", classes=np.arange(3), y=y)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    for class_weight, per_class in (("balanced", balanced), ({2: 5.0}, np.array([1, 1, 5.0]))):
        a, b = _net(), _net()
        a.fit(X, y, loss=loss, optimizer=bpcore.SGD(a, lr=0.1), epochs=2, batch_size=8, seed=1,
              class_weight=class_weight, sample_weight=np.full(60, 0.5))
        b.fit(X, y, loss=loss, optimizer=bpcore.SGD(b, lr=0.1), epochs=2, batch_size=8, seed=1,
              sample_weight=0.5 * per_class[y])
        np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)
    # one-hot rows weigh as their labels; a binary logistic output by its 0/1 target
    a, b = _net(), _net()
    a.fit(X, bpcore.one_hot(y, 3, "float64"), loss=loss, optimizer=bpcore.SGD(a, lr=0.1),
          class_weight="balanced", seed=1)
    b.fit(X, y, loss=loss, optimizer=bpcore.SGD(b, lr=0.1), class_weight="balanced", seed=1)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)
    t = (y == 2).astype(float)
    a = bpcore.MLP([6, 8, 1], dtype="float64", seed=0)
    b = bpcore.MLP([6, 8, 1], dtype="float64", seed=0)
    bce = bpcore.BCEWithLogitsLoss()
    a.fit(X, t, loss=bce, optimizer=bpcore.SGD(a, lr=0.1), class_weight="balanced", seed=2)
    b.fit(X, t, loss=bce, optimizer=bpcore.SGD(b, lr=0.1), seed=2,
          sample_weight=compute_class_weight("balanced", classes=np.arange(2), y=t.astype(int))[
              t.astype(int)])
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kw,exc,pattern", [
    (dict(sample_weight=[1.0] * 9), ValueError, r"sample_weight: expected shape \(10,\)"),
    (dict(sample_weight=[1.0] * 9 + [-1.0]), ValueError,
     r"sample_weight: expected finite weights >= 0 \(in float64\), got -1\.0 at index 9"),
    (dict(sample_weight=[1.0] * 9 + [np.nan]), ValueError, r"got nan at index 9"),
    (dict(sample_weight=[np.inf] + [1.0] * 9), ValueError, r"got inf at index 0"),
    (dict(sample_weight=[0.0] * 10), ValueError,
     r"sample_weight: expected at least one positive weight, got only zeros"),
    (dict(sample_weight=["a"] * 10), TypeError, r"sample_weight: expected a real numeric array"),
    (dict(class_weight="auto"), ValueError, r"class_weight: expected one of 'balanced'"),
    (dict(class_weight={3: 1.0}), ValueError, r"class_weight: expected classes in \[0, 3\)"),
    (dict(class_weight={0: -1.0}), ValueError, r"class_weight\[0\]: expected a finite number"),
    (dict(class_weight=[1, 2, 3]), TypeError, r"class_weight: expected None, a dict"),
])
def test_bad_weights_are_refused(kw, exc, pattern):
    X, y = np.ones((10, 6)), np.arange(10) % 3
    m = _net()
    with pytest.raises(exc, match=pattern):
        m.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=bpcore.SGD(m, lr=0.1), **kw)
    if "sample_weight" in kw:
        with pytest.raises(exc, match=pattern):
            m.train_step(X, y, bpcore.SoftmaxCrossEntropyLoss(), bpcore.SGD(m, lr=0.1), **kw)


def test_class_weight_needs_a_classification_loss_and_every_class_for_balanced():
    m = _net()
    with pytest.raises(ValueError, match=r"class_weight: expected None for MSELoss"):
        m.fit(np.ones((4, 6)), np.ones((4, 3)), loss=bpcore.MSELoss(),
              optimizer=bpcore.SGD(m, lr=0.1), class_weight="balanced")
    with pytest.raises(ValueError, match=r"'balanced' needs rows of every class, got none of "
                                         r"class 2"):
        m.fit(np.ones((4, 6)), np.array([0, 1, 0, 1]), loss=bpcore.SoftmaxCrossEntropyLoss(),
              optimizer=bpcore.SGD(m, lr=0.1), class_weight="balanced")
    with pytest.raises(ValueError, match=r"class_weight: expected one output column"):
        m.fit(np.ones((4, 6)), np.ones((4, 3)), loss=bpcore.BCEWithLogitsLoss(),
              optimizer=bpcore.SGD(m, lr=0.1), class_weight={1: 2.0})


def test_a_batch_of_zero_weights_steps_with_a_zero_gradient():
    m = _net()
    before = m.flat_params.copy()
    loss = bpcore.SoftmaxCrossEntropyLoss()
    X, y = np.ones((8, 6)), np.zeros(8, int)
    w = np.zeros(16)
    w[8:] = 1
    # the first batch of fit (no shuffle) weighs nothing: a step of zero gradient
    history = m.fit(np.vstack([X, X]), np.concatenate([y, y]), loss=loss,
                    optimizer=bpcore.SGD(m, lr=0.1), batch_size=8, shuffle=False,
                    sample_weight=w, epochs=1)
    assert np.isfinite(history["loss"][0])
    assert not np.array_equal(m.flat_params, before)
