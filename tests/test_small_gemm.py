"""bpcore's own small-batch GEMMs (csrc/bp_gemm.c) at every SIMD level this CPU runs: against a
float64 NumPy reference and against the BLAS path on odd shapes, with round-off bounds that grow
with the summed dimension; the activation epilogue; the crossover that routes the engine's
products between them; a training step on either path."""
import numpy as np
import pytest
import scipy.special

import bpcore
from bpcore import _blas, _layers, _simd

LEVELS = list(range(_simd.best_level() + 1))
DTYPES = [np.float32, np.float64]
# 8, 12, 13: split into two balanced tiles, MR-row tiles, B copied contiguously (AVX2, MR 6)
ROWS = [1, 3, 8, 12, 13, 17, 31, 33, 65]
# (summed, other) dimension pairs: fan-in and fan-out of a layer, odd and around vector widths
WIDTHS = [(1, 1), (3, 17), (17, 3), (31, 33), (33, 257), (257, 31), (1000, 17), (17, 1000),
          (257, 10), (1000, 3)]


def _operands(rng, op, m, k, n, dtype):
    """A and B of op's layout, and their float64 product's operands (as nn)."""
    a = rng.standard_normal((m, k))
    b = rng.standard_normal((k, n))
    A = a.T if op == "tn" else a
    B = b.T if op == "nt" else b
    A, B = np.ascontiguousarray(A, dtype), np.ascontiguousarray(B, dtype)
    # the reference multiplies the values the kernels see (rounded to dtype), in float64
    a = (A.T if op == "tn" else A).astype(np.float64)
    b = (B.T if op == "nt" else B).astype(np.float64)
    return A, B, a, b


def _bound(a, b, dtype):
    """Elementwise round-off bound of a computed a @ b: (k + 2) eps |a| @ |b| (the sums in any
    order, with or without fused multiply-adds), and the result's own rounding."""
    k = a.shape[1]
    return (k + 2) * np.finfo(dtype).eps * (np.abs(a) @ np.abs(b))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("op", ["nn", "nt", "tn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_each_kernel_matches_numpy_and_blas(level, op, dtype):
    rng = np.random.default_rng([level, "nn nt tn".split().index(op), DTYPES.index(dtype)])
    ta, tb = ("t" if op == "tn" else "n"), ("t" if op == "nt" else "n")
    for m in ROWS:
        for k, n in WIDTHS + [(n, k) for k, n in WIDTHS]:
            A, B, a, b = _operands(rng, op, m, k, n, dtype)
            ref, bound = a @ b, _bound(a, b, dtype)
            C = np.full((m, n), np.nan, dtype)  # not read without accumulate
            assert _simd.small_gemm(op, level, A, B, C) == level
            err = np.abs(C - ref)
            assert (err <= bound).all(), (op, m, k, n, (err / (bound + 1e-300)).max())
            blas = np.zeros((m, n), dtype)
            _blas.py_gemm(ta, tb, 1.0, A, B, 0.0, blas)
            assert (np.abs(C - blas) <= 2 * bound).all(), (op, m, k, n)
            # accumulate: C += product, over what was there
            C0 = rng.standard_normal((m, n)).astype(dtype)
            C = C0.copy()
            _simd.small_gemm(op, level, A, B, C, accumulate=True)
            exact = ref + C0.astype(np.float64)
            slack = bound + 2 * np.finfo(dtype).eps * np.abs(exact)
            assert (np.abs(C - exact) <= slack).all(), (op, m, k, n)


@pytest.mark.parametrize("op", ["nn", "nt", "tn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_every_level_gives_the_same_products_to_round_off(op, dtype):
    rng = np.random.default_rng(7)
    A, B, a, b = _operands(rng, op, 33, 257, 31, dtype)
    runs = []
    for level in LEVELS:
        C = np.empty((33, 31), dtype)
        _simd.small_gemm(op, level, A, B, C)
        runs.append(C)
    bound = _bound(a, b, dtype)
    for C in runs[1:]:
        assert (np.abs(C - runs[0]) <= 2 * bound).all()


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("op", ["nn", "nt", "tn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_empty_sums_and_empty_outputs(level, op, dtype):
    A, B, _, _ = _operands(np.random.default_rng(1), op, 5, 0, 7, dtype)
    C = np.full((5, 7), np.nan, dtype)
    _simd.small_gemm(op, level, A, B, C)
    assert (C == 0).all()
    C = np.ones((5, 7), dtype)
    _simd.small_gemm(op, level, A, B, C, accumulate=True)
    assert (C == 1).all()
    A, B, _, _ = _operands(np.random.default_rng(1), op, 0, 9, 7, dtype)
    _simd.small_gemm(op, level, A, B, np.empty((0, 7), dtype))


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_reach_their_outputs(level, dtype):
    rng = np.random.default_rng(2)
    for op in ("nn", "nt", "tn"):
        A, B, _, _ = _operands(rng, op, 9, 40, 21, dtype)
        if op == "tn":
            A[3, 4] = np.nan  # row 3 of the summed dimension, column 4 of C's rows: C row 4
        else:
            A[4, 3] = np.nan
        C = np.empty((9, 21), dtype)
        _simd.small_gemm(op, level, A, B, C)
        assert np.isnan(C[4]).all() and np.isfinite(np.delete(C, 4, axis=0)).all(), op
        # ReLU keeps NaN (z < 0 ? 0 : z)
        _simd.small_gemm(op, level, A, B, C, act=_layers.Activation.RELU)
        assert np.isnan(C[4]).all(), op


def _act_reference(kind, z, p0, p1):
    if kind == _layers.Activation.IDENTITY:
        return z
    if kind == _layers.Activation.RELU:
        return np.maximum(z, 0)
    if kind == _layers.Activation.SIGMOID:
        return scipy.special.expit(z)
    if kind == _layers.Activation.TANH:
        return np.tanh(z)
    if kind == _layers.Activation.LEAKY_RELU:
        return np.where(z > 0, z, p0 * z)
    if kind == _layers.Activation.ELU:
        return np.where(z > 0, z, p0 * np.expm1(z))
    if kind == _layers.Activation.GELU:
        return 0.5 * z * (1 + scipy.special.erf(z / np.sqrt(2)))
    if kind == _layers.Activation.SOFTPLUS:
        return np.where(z * p0 > p1, z, np.log1p(np.exp(z * p0)) / p0)
    raise AssertionError(kind)


ACTS = [(_layers.Activation.IDENTITY, 0, 0), (_layers.Activation.RELU, 0, 0), (_layers.Activation.SIGMOID, 0, 0),
        (_layers.Activation.TANH, 0, 0), (_layers.Activation.LEAKY_RELU, 0.1, 0), (_layers.Activation.ELU, 1.3, 0),
        (_layers.Activation.GELU, 0, 0), (_layers.Activation.SOFTPLUS, 2.0, 20.0)]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("op", ["nn", "nt", "tn"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_the_epilogue_adds_the_bias_keeps_the_input_and_activates(level, op, dtype):
    rng = np.random.default_rng(3)
    eps = np.finfo(dtype).eps
    for m, k, n in [(1, 31, 17), (17, 257, 33), (31, 3, 1000), (33, 1000, 10)]:
        A, B, a, b = _operands(rng, op, m, k, n, dtype)
        A *= dtype(1 / np.sqrt(k))  # pre-activations of order 1, where the activations bend
        a = a / np.sqrt(k)
        bias = rng.standard_normal(n).astype(dtype)
        z = (A.T if op == "tn" else A).astype(np.float64) @ b + bias
        bound = _bound((A.T if op == "tn" else A).astype(np.float64), b, dtype) + eps * np.abs(z)
        for kind, p0, p1 in ACTS:
            C = np.empty((m, n), dtype)
            keep = np.empty((m, n), dtype)
            _simd.small_gemm(op, level, A, B, C, bias=bias, keep=keep, act=kind, p0=p0, p1=p1)
            assert (np.abs(keep - z) <= bound).all(), (kind, m, k, n)
            # the activation of what was kept, to a few ulps of its value
            want = _act_reference(kind, keep.astype(np.float64), p0, p1)
            np.testing.assert_allclose(C, want, rtol=8 * eps, atol=8 * eps, err_msg=str(kind))
            # without keep: the same outputs
            C2 = np.empty((m, n), dtype)
            _simd.small_gemm(op, level, A, B, C2, bias=bias, act=kind, p0=p0, p1=p1)
            np.testing.assert_array_equal(C2, C)


def test_bad_arguments_name_what_is_wrong():
    A = np.ones((3, 4))
    with pytest.raises(ValueError, match="level"):
        _simd.small_gemm("nn", _simd.best_level() + 1, A, np.ones((4, 5)), np.empty((3, 5)))
    with pytest.raises(ValueError, match="op"):
        _simd.small_gemm("tt", 0, A, np.ones((4, 5)), np.empty((3, 5)))
    with pytest.raises(ValueError, match="B"):
        _simd.small_gemm("nn", 0, A, np.ones((5, 5)), np.empty((3, 5)))
    with pytest.raises(ValueError, match="C"):
        _simd.small_gemm("nt", 0, A, np.ones((5, 4)), np.empty((3, 4)))
    with pytest.raises(ValueError, match="bias"):
        _simd.small_gemm("nn", 0, A, np.ones((4, 5)), np.empty((3, 5)), bias=np.ones(4))
    with pytest.raises(ValueError, match="keep"):
        _simd.small_gemm("nn", 0, A, np.ones((4, 5)), np.empty((3, 5)), keep=np.ones((5, 3)))
    with pytest.raises(ValueError, match="act"):
        _simd.small_gemm("nn", 0, A, np.ones((4, 5)), np.empty((3, 5)), act=99)


@pytest.fixture
def crossover():
    """The crossovers ({dtype name: (nn, nt, tn)}), restored after the test moves them."""
    previous = _blas._set_small_rows(0)
    _blas._set_small_rows(previous)
    yield previous
    _blas._set_small_rows(previous)


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_engine_products_take_blas_above_the_crossover_and_the_kernels_below(crossover,
                                                                                  dtype):
    rng = np.random.default_rng(4)
    shipped = crossover[np.dtype(dtype).name]
    assert min(shipped) > 0
    for (ta, tb, op), rows in zip([("n", "n", "nn"), ("n", "t", "nt"), ("t", "n", "tn")],
                                  shipped):
        for batch in (rows, rows + 1):
            # the batch is C's rows in nn (forward) and nt (the delta below), the summed
            # dimension in tn (the weights' gradient)
            m, k = (257, batch) if op == "tn" else (batch, 257)
            A, B, a, b = _operands(rng, op, m, k, 33, dtype)
            got, blas, own = (np.empty((m, 33), dtype) for _ in range(3))
            _blas.py_matmul(ta, tb, 1.0, A, B, 0.0, got)
            _blas.py_gemm(ta, tb, 1.0, A, B, 0.0, blas)
            _simd.small_gemm(op, _simd.level(), A, B, own)
            np.testing.assert_array_equal(got, own if batch <= rows else blas)
            assert (np.abs(got - a @ b) <= _bound(a, b, dtype)).all()
        # an alpha other than 1 always goes to BLAS
        A, B, _, _ = _operands(rng, op, 3, 17, 5, dtype)
        got, want = np.empty((3, 5), dtype), np.empty((3, 5), dtype)
        _blas.py_matmul(ta, tb, 2.0, A, B, 0.0, got)
        _blas.py_gemm(ta, tb, 2.0, A, B, 0.0, want)
        np.testing.assert_array_equal(got, want)
    assert _blas._set_small_rows(0) == crossover
    A, B, _, _ = _operands(rng, "nn", 3, 17, 5, dtype)
    got, blas = np.empty((3, 5), dtype), np.empty((3, 5), dtype)
    _blas.py_matmul("n", "n", 1.0, A, B, 0.0, got)
    _blas.py_gemm("n", "n", 1.0, A, B, 0.0, blas)
    np.testing.assert_array_equal(got, blas)
    moved = {"float32": (1, 2, 3), "float64": (4, 5, 6)}
    assert _blas._set_small_rows(moved) == {"float32": (0, 0, 0), "float64": (0, 0, 0)}
    assert _blas._set_small_rows(crossover) == moved


def test_each_simd_level_has_its_own_crossovers(crossover, simd_levels):
    # measured per level (bpcore/_blas.pyx): moving one level's leaves the others' alone, and
    # the engine's products follow the level that is set
    shipped = {}
    for level in simd_levels():
        shipped[level] = _blas._set_small_rows(0)
        _blas._set_small_rows(shipped[level])
    assert shipped[0] == {"float32": (96, 96, 64), "float64": (16, 16, 16)}
    if 1 in shipped:
        assert shipped[1] == shipped[0]
    if 2 in shipped:
        assert shipped[2] == {"float32": (512, 512, 512), "float64": (64, 64, 64)}
    rng = np.random.default_rng(6)
    A, B, _, _ = _operands(rng, "nn", 200, 40, 33, np.float32)
    kept = {}
    try:
        for level in simd_levels():
            _blas._set_small_rows(0 if level == 0 else 1 << 20)
            got, blas, own = (np.empty((200, 33), np.float32) for _ in range(3))
            _blas.py_matmul("n", "n", 1.0, A, B, 0.0, got)
            _blas.py_gemm("n", "n", 1.0, A, B, 0.0, blas)
            _simd.small_gemm("nn", level, A, B, own)
            np.testing.assert_array_equal(got, blas if level == 0 else own)
    finally:
        for level in simd_levels():
            kept[level] = _blas._set_small_rows(shipped[level])
    for level, moved in kept.items():  # each level kept what was set for it
        assert moved["float32"] == ((0,) * 3 if level == 0 else (1 << 20,) * 3)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch", [1, 3, 17, 33, 130])
def test_training_steps_on_either_path_agree(crossover, dtype, batch):
    """The row-split step (fused forward epilogue, dX and dW on the kernels) against the same
    steps with BLAS for every product."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((batch, 31)).astype(dtype)
    Y = rng.standard_normal((batch, 3)).astype(dtype)
    results = []
    for rows in (1 << 20, 0):  # every product on the kernels, then on BLAS
        _blas._set_small_rows(rows)
        model = bpcore.MLP([31, 17, 33, 3], activation="tanh", dtype=dtype, seed=0)
        opt = bpcore.SGD(model.parameters(), lr=0.05, momentum=0.9)
        losses = [model.train_step(X, Y, bpcore.MSELoss(), opt) for _ in range(5)]
        results.append((np.array(losses), model.flat_params.copy()))
    rtol = 1e-4 if dtype == np.float32 else 1e-11
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=rtol)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=rtol, atol=rtol)


def test_the_crossover_benchmark_runs_and_restores_the_crossover(crossover, capsys):
    import importlib.util
    import pathlib
    path = pathlib.Path(__file__).resolve().parent.parent / "benchmarks" / "bench_small_gemm.py"
    spec = importlib.util.spec_from_file_location("bench_small_gemm", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = bpcore.get_num_threads()
    try:
        bench.main(["--sizes", "7,5,3", "--batches", "1,4", "--rounds", "2", "--block-s",
                    "0.001", "--ops"])
    finally:
        bpcore.set_num_threads(threads)
    out = capsys.readouterr().out
    assert "own/blas" in out and "n=4" in out
    assert _blas._set_small_rows(crossover) == crossover
