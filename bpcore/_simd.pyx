# cython: language_level=3
"""The vector width of bpcore's elementwise loops: the widest this CPU runs, chosen at import.

Levels: 0 portable (the wheel's SSE2 baseline on x86-64), 1 AVX2+FMA, 2 AVX-512. Every native
module reaches the loops through the one table here, so ``set_level`` switches them all (the
tests run each level the machine supports and compare).
"""

cdef extern from "bp_simd.h":
    int bp_simd_best_level() noexcept nogil
    int bp_simd_fill(bp_simd_table *table, int level) noexcept nogil

cdef bp_simd_table TABLE
bp_simd_fill(&TABLE, bp_simd_best_level())


cdef bp_simd_table *simd() noexcept nogil:
    return &TABLE


LEVEL_NAMES = {0: "portable", 1: "AVX2+FMA", 2: "AVX-512"}


def level():
    """The level in use: 0 portable, 1 AVX2+FMA, 2 AVX-512."""
    return TABLE.level


def best_level():
    """The widest level this CPU runs."""
    return bp_simd_best_level()


def set_level(int level):
    """Use `level` (clamped to what the CPU runs); returns the level now in use."""
    return bp_simd_fill(&TABLE, level)


# ---- the small-batch GEMMs (csrc/bp_gemm.c) at a chosen level, for the tests ----

from cython cimport floating
from libc.limits cimport INT_MAX

cdef enum:
    N_ACTIVATIONS = 11  # bp_simd.h's BP_N_ACTIVATIONS


cdef int _dim(Py_ssize_t v, str name) except -1:
    if v > INT_MAX:
        raise ValueError(f"{name}: expected at most {INT_MAX}, got {v}")
    return <int>v


def small_gemm(str op, int level, const floating[:, ::1] A, const floating[:, ::1] B,
               floating[:, ::1] C, bint accumulate=False, bias=None, keep=None, int act=0,
               double p0=0, double p1=0):
    """C = op's product (+ C if accumulate) with bpcore's small-batch kernels of `level`:
    "nn" A @ B, "nt" A @ B.T, "tn" A.T @ B; then C = act(C + bias), C + bias into `keep`
    ((m, n), or None), as the engine's epilogue. In place; returns the level used."""
    cdef bp_simd_table table
    cdef bp_gemm_epilogue epi
    cdef bp_act spec
    cdef const floating[::1] bview
    cdef floating[:, ::1] kview
    cdef Py_ssize_t m, n, k, kb, nb
    cdef int im, in_, ik
    if not 0 <= level <= bp_simd_best_level():
        raise ValueError(f"level: this CPU runs levels 0 to {bp_simd_best_level()}, got {level}")
    if op == "nn" or op == "nt":
        m, k = A.shape[0], A.shape[1]
    elif op == "tn":
        m, k = A.shape[1], A.shape[0]
    else:
        raise ValueError(f"op: expected 'nn', 'nt' or 'tn', got {op!r}")
    kb, n = (B.shape[1], B.shape[0]) if op == "nt" else (B.shape[0], B.shape[1])
    if kb != k:
        raise ValueError(f"B: expected {k} for the summed dimension, got {kb}")
    if C.shape[0] != m or C.shape[1] != n:
        raise ValueError(f"C: expected shape ({m}, {n}), got ({C.shape[0]}, {C.shape[1]})")
    if not 0 <= act < N_ACTIVATIONS:
        raise ValueError(f"act: expected 0 to {N_ACTIVATIONS - 1}, got {act}")
    im, in_, ik = _dim(m, "m"), _dim(n, "n"), _dim(k, "k")
    spec.kind, spec.p0, spec.p1 = act, p0, p1
    epi.bias, epi.keep, epi.act = NULL, NULL, &spec
    if bias is not None:
        bview = bias
        if bview.shape[0] != n:
            raise ValueError(f"bias: expected shape ({n},), got ({bview.shape[0]},)")
        if n:
            epi.bias = &bview[0]
    if keep is not None:
        kview = keep
        if kview.shape[0] != m or kview.shape[1] != n:
            raise ValueError(f"keep: expected shape ({m}, {n}), "
                             f"got ({kview.shape[0]}, {kview.shape[1]})")
        if m and n:
            epi.keep = &kview[0, 0]
    used = bp_simd_fill(&table, level)
    if m == 0 or n == 0:
        return used
    cdef const floating *pA = &A[0, 0] if A.shape[0] and A.shape[1] else NULL
    cdef const floating *pB = &B[0, 0] if B.shape[0] and B.shape[1] else NULL
    cdef floating *pC = &C[0, 0]
    cdef Py_ssize_t lda = max(A.shape[1], 1), ldb = max(B.shape[1], 1), ldc = n
    cdef int which = ("nn", "nt", "tn").index(op)
    with nogil:
        if floating is float:
            if which == 0:
                table.gemm_nn_f32(im, in_, ik, pA, lda, pB, ldb, accumulate, pC, ldc, &epi)
            elif which == 1:
                table.gemm_nt_f32(im, in_, ik, pA, lda, pB, ldb, accumulate, pC, ldc, &epi)
            else:
                table.gemm_tn_f32(im, in_, ik, pA, lda, pB, ldb, accumulate, pC, ldc, &epi)
        else:
            if which == 0:
                table.gemm_nn_f64(im, in_, ik, pA, lda, pB, ldb, accumulate, pC, ldc, &epi)
            elif which == 1:
                table.gemm_nt_f64(im, in_, ik, pA, lda, pB, ldb, accumulate, pC, ldc, &epi)
            else:
                table.gemm_tn_f64(im, in_, ik, pA, lda, pB, ldb, accumulate, pC, ldc, &epi)
    return used
