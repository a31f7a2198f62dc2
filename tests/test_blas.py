"""The row-major BLAS wrappers against NumPy, on odd shapes, in both dtypes."""
import itertools

import numpy as np
import pytest

from bpcore import _blas

DTYPES = [np.float32, np.float64]
SIZES = [1, 3, 17, 1000]
TOL = {np.float32: 2e-6, np.float64: 1e-14}


def _rand(rng, shape, dtype):
    return rng.uniform(-1, 1, shape).astype(dtype)


def _close(got, want, dtype, k):
    # the error of a length-k dot product grows like k * eps in the worst case
    np.testing.assert_allclose(got, want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * max(k, 1) * 4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,n,k", list(itertools.product(SIZES, repeat=3)))
def test_gemm_three_mlp_products(rng, dtype, m, n, k):
    A = _rand(rng, (m, k), dtype)
    B = _rand(rng, (k, n), dtype)
    C0 = _rand(rng, (m, n), dtype)
    want = 0.5 * (A.astype(np.float64) @ B) + 2.0 * C0
    # C = A @ B  (forward: Z = X @ W)
    C = C0.copy()
    _blas.py_gemm("n", "n", 0.5, A, B, 2.0, C)
    _close(C, want, dtype, k)
    # C = A.T @ B with A stored (k, m)  (dW = X.T @ dZ)
    C = C0.copy()
    _blas.py_gemm("t", "n", 0.5, np.ascontiguousarray(A.T), B, 2.0, C)
    _close(C, want, dtype, k)
    # C = A @ B.T with B stored (n, k)  (dX = dZ @ W.T)
    C = C0.copy()
    _blas.py_gemm("n", "t", 0.5, A, np.ascontiguousarray(B.T), 2.0, C)
    _close(C, want, dtype, k)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_beta_zero_ignores_garbage_in_c(rng, dtype):
    A, B = _rand(rng, (3, 17), dtype), _rand(rng, (17, 5), dtype)
    C = np.full((3, 5), np.nan, dtype)
    _blas.py_gemm("n", "n", 1.0, A, B, 0.0, C)
    _close(C, A.astype(np.float64) @ B, dtype, 17)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_empty_inner_dimension_scales_c(rng, dtype):
    C = _rand(rng, (3, 4), dtype)
    want = 3.0 * C
    _blas.py_gemm("n", "n", 1.0, np.zeros((3, 0), dtype), np.zeros((0, 4), dtype), 3.0, C)
    np.testing.assert_array_equal(C, want)


def test_gemm_rejects_mismatched_shapes():
    A = np.zeros((3, 4))
    with pytest.raises(ValueError, match="B: expected 4 rows"):
        _blas.py_gemm("n", "n", 1.0, A, np.zeros((5, 2)), 0.0, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"C: expected shape \(3, 2\)"):
        _blas.py_gemm("n", "n", 1.0, A, np.zeros((4, 2)), 0.0, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="ta: expected 'n' or 't'"):
        _blas.py_gemm("x", "n", 1.0, A, np.zeros((4, 2)), 0.0, np.zeros((3, 2)))
