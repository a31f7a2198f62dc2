# cython: language_level=3
"""Row-major BLAS wrappers, the products the engine calls (bpcore's own kernels for a few rows,
BLAS above), and Python-callable twins that the tests compare with NumPy."""
from libc.limits cimport INT_MAX

from scipy.linalg.cython_blas cimport sgemm, dgemm

from bpcore._simd cimport bp_gemm_epilogue, bp_simd_table, simd

cdef bp_simd_table *K = simd()

# The crossovers: products whose batch has at most this many rows run on bpcore's kernels
# (csrc/bp_gemm.c), larger ones on BLAS; per product, as the batch is C's rows in nn (forward)
# and nt (the delta below), the summed dimension in tn (the weights' gradient).
#
# CROSSOVER, measured (benchmarks/bench_small_gemm.py, full train_step of the MLP
# 784-256-128-10, MSE, SGD momentum, 1 thread, kernels on / off / these values interleaved in
# one process, medians of 21-41 blocks; AMD EPYC, AVX2+FMA (no AVX-512), scipy's OpenBLAS
# 0.3.31 on its Haswell kernels; load average 0.7-1.2, the benchmark's own core).
# float32, step time with every product on the kernels over every product on BLAS, two runs:
#   batch 1: 0.39, 0.39; 8: 0.59, 0.61; 32: 0.79, 0.80; 48: 0.90, 0.88; 64: 0.93, 0.90;
#   80: 1.04, 1.00; 96: 1.01, 0.99; 128: 1.07, 1.02
#   with the values below, over BLAS: 1: 0.42; 8: 0.59; 32: 0.86; 48: 0.87; 64: 0.98;
#   80: 0.94; 96: 0.97; 112: 1.00; 128: 1.00 (both on BLAS). On 2 threads: 1: 0.41; 8: 0.62;
#   32: 0.79; 64: 0.87; 96: 0.93; 128: 0.99.
#   Each product alone (--ops): nn and nt win on the 256x128 layer up to 128 rows and on
#   784x256 up to 96; tn loses on 784x256 from 48 rows as a bare product (-6 % at 48, -20 % at
#   64) but not in the step up to 64, where the row-split step updates its gradient rows a
#   chunk at a time while they are in L1.
# float64, every product on the kernels over BLAS: batch 1: 0.72; 8: 0.85, 0.86; 16: 0.90;
#   24: 1.01; 32: 1.05-1.14; 64: 1.21 (OpenBLAS's dgemm runs these shapes at 73 % of the peak,
#   the register tiles at about 55 %, as in float32, where sgemm is slower at small batch).
# So float32: nn and nt up to 96 rows, tn up to 64; float64: every product up to 16. These are
# also the portable level's (never measured apart).
#
# At the AVX-512 level (the tiles inlined, nt's dot products on 32-byte vectors; AMD EPYC Zen 4,
# scipy's OpenBLAS 0.3.30 on its SkylakeX kernels, 2026-12-06), every product on the kernels
# over every product on BLAS, float32, 1 thread: batch 64: 0.83; 96: 0.87; 128: 0.87; 160:
# 0.88; 192: 0.89; 256: 0.89, 0.90; 384: 0.91; 512: 0.91; 2 threads: 64: 0.80; 96: 0.82; 128:
# 0.79; 192: 0.83; 256: 0.82. float64, 1 thread: 8: 0.82; 16: 0.85; 24: 0.90; 32: 0.88; 48:
# 0.90; 64: 0.91; 96: 0.94; 128: 0.95; a second run, float32: 1 thread 384: 0.88; 512: 0.89;
# 768: 0.90; 2 threads 384: 0.90; 512: 0.88; 768: 0.89. So there: float32 every product up to
# 512 rows, float64 up to 64 (an Intel Xeon's AVX-512, with two 512-bit multiply-add units
# where Zen 4 splits each into two halves, was not measured).
cdef enum:
    PRODUCT_NN = 0
    PRODUCT_NT = 1
    PRODUCT_TN = 2

# [SIMD level: portable, AVX2+FMA, AVX-512][dtype: float32, float64][product]
cdef int small_rows[3][2][3]
small_rows[0][0] = [96, 96, 64]
small_rows[0][1] = [16, 16, 16]
small_rows[1][0] = [96, 96, 64]
small_rows[1][1] = [16, 16, 16]
small_rows[2][0] = [512, 512, 512]
small_rows[2][1] = [64, 64, 64]


cdef inline int _rows_of(int product, bint wide) noexcept nogil:
    return small_rows[K.level][1 if wide else 0][product]


cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
               floating alpha, const floating *A, int lda,
               const floating *B, int ldb,
               floating beta, floating *C, int ldc) noexcept nogil:
    cdef char cta = <char>ta, ctb = <char>tb
    cdef Py_ssize_t i, j
    if m == 0 or n == 0:
        return
    if k == 0:  # empty product: BLAS may reject lda = 0, and C = beta * C is all that is left
        for i in range(m):
            for j in range(n):
                C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        return
    # row-major C = op(A) op(B)  <=>  column-major C^T = op(B)^T op(A)^T
    if floating is float:
        sgemm(&ctb, &cta, &n, &m, &k, &alpha, <float *>B, &ldb, <float *>A, &lda,
              &beta, C, &ldc)
    else:
        dgemm(&ctb, &cta, &n, &m, &k, &alpha, <double *>B, &ldb, <double *>A, &lda,
              &beta, C, &ldc)


cdef enum:
    SPLIT_ALIGN = 16  # column blocks start on 64-byte boundaries (16 floats)


cdef inline void _split(int total, int part, int nparts, int align, int *lo, int *hi) noexcept nogil:
    cdef int step = (total + nparts - 1) // nparts
    step = ((step + align - 1) // align) * align
    lo[0] = min(part * step, total)
    hi[0] = min(lo[0] + step, total)


cdef bint small_batch(int rows, int itemsize) noexcept nogil:
    return rows <= _rows_of(PRODUCT_TN, itemsize == 8)


cdef inline bint _small(BLAS_Trans ta, BLAS_Trans tb, int m, int k, floating alpha,
                       floating beta) noexcept nogil:
    """Whether bpcore's kernels take this product (they do alpha = 1, beta = 0 or 1)."""
    if alpha != 1 or (beta != 0 and beta != 1):
        return False
    cdef bint wide = sizeof(floating) == 8
    if ta == NoTrans:
        return m <= _rows_of(PRODUCT_NT if tb == Trans else PRODUCT_NN, wide)
    return tb == NoTrans and k <= _rows_of(PRODUCT_TN, wide)


cdef void matmul(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                 floating alpha, const floating *A, int lda,
                 const floating *B, int ldb,
                 floating beta, floating *C, int ldc) noexcept nogil:
    cdef int acc = beta != 0
    if m == 0 or n == 0:
        return
    if not _small(ta, tb, m, k, alpha, beta):
        gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
    elif floating is float:
        if ta == Trans:
            K.gemm_tn_f32(m, n, k, A, lda, B, ldb, acc, C, ldc, NULL)
        elif tb == Trans:
            K.gemm_nt_f32(m, n, k, A, lda, B, ldb, acc, C, ldc, NULL)
        else:
            K.gemm_nn_f32(m, n, k, A, lda, B, ldb, acc, C, ldc, NULL)
    else:
        if ta == Trans:
            K.gemm_tn_f64(m, n, k, A, lda, B, ldb, acc, C, ldc, NULL)
        elif tb == Trans:
            K.gemm_nt_f64(m, n, k, A, lda, B, ldb, acc, C, ldc, NULL)
        else:
            K.gemm_nn_f64(m, n, k, A, lda, B, ldb, acc, C, ldc, NULL)


cdef bint matmul_act(int m, int n, int k, const floating *A, int lda, const floating *B, int ldb,
                     floating *C, int ldc, const floating *bias, floating *keep,
                     const bp_act *act) noexcept nogil:
    cdef bp_gemm_epilogue epi
    if m > _rows_of(PRODUCT_NN, sizeof(floating) == 8):
        return False
    if m == 0 or n == 0:
        return True
    epi.bias, epi.keep, epi.act = bias, keep, act
    if floating is float:
        K.gemm_nn_f32(m, n, k, A, lda, B, ldb, 0, C, ldc, &epi)
    else:
        K.gemm_nn_f64(m, n, k, A, lda, B, ldb, 0, C, ldc, &epi)
    return True


cdef inline Block _part(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                        floating alpha, const floating *A, int lda,
                        const floating *B, int ldb,
                        floating beta, floating *C, int ldc, int part, int nparts,
                        bint own) noexcept nogil:
    cdef Block blk
    blk.r0, blk.r1, blk.c0, blk.c1 = 0, m, 0, n
    if nparts > 1 and (m >= 16 * nparts or m >= n):
        _split(m, part, nparts, 1, &blk.r0, &blk.r1)
        # rows r0:r1 of op(A): A's rows if untransposed, else its columns
        A = A + (<Py_ssize_t>blk.r0 * lda if ta == NoTrans else blk.r0)
        C = C + <Py_ssize_t>blk.r0 * ldc
    elif nparts > 1:
        _split(n, part, nparts, SPLIT_ALIGN, &blk.c0, &blk.c1)
        # columns c0:c1 of op(B): B's columns if untransposed, else its rows
        B = B + (blk.c0 if tb == NoTrans else <Py_ssize_t>blk.c0 * ldb)
        C = C + blk.c0
    if blk.r1 > blk.r0 and blk.c1 > blk.c0:
        if own:
            matmul(ta, tb, blk.r1 - blk.r0, blk.c1 - blk.c0, k, alpha, A, lda, B, ldb, beta, C,
                   ldc)
        else:
            gemm(ta, tb, blk.r1 - blk.r0, blk.c1 - blk.c0, k, alpha, A, lda, B, ldb, beta, C, ldc)
    return blk


cdef Block gemm_part(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                     floating alpha, const floating *A, int lda,
                     const floating *B, int ldb,
                     floating beta, floating *C, int ldc, int part, int nparts) noexcept nogil:
    return _part(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, part, nparts, False)


cdef Block matmul_part(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                       floating alpha, const floating *A, int lda,
                       const floating *B, int ldb,
                       floating beta, floating *C, int ldc, int part, int nparts) noexcept nogil:
    return _part(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, part, nparts, True)


# ---- Python-callable twins: same arguments as the cdef wrappers, shapes read off the arrays ----

cdef int _as_int(Py_ssize_t v, str name) except -1:
    if v > INT_MAX:
        raise ValueError(f"{name}: BLAS dimensions are 32-bit; expected at most {INT_MAX}, got {v}")
    return <int>v


cdef inline const floating *_cp2(const floating[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] and a.shape[1] else NULL


cdef inline floating *_p2(floating[:, ::1] a) noexcept:
    return &a[0, 0] if a.shape[0] and a.shape[1] else NULL


cdef BLAS_Trans _trans(str flag, str name) except *:
    if flag in ("n", "N"):
        return NoTrans
    if flag in ("t", "T"):
        return Trans
    raise ValueError(f"{name}: expected 'n' or 't', got {flag!r}")


cdef int _product_dims(BLAS_Trans a, BLAS_Trans b, const Py_ssize_t *A, const Py_ssize_t *B,
                       const Py_ssize_t *C, int *dims) except -1:
    """dims = (m, n, k, lda, ldb, ldc) of C = op(A) @ op(B) for row-major A, B, C of these
    shapes; ValueError naming B or C when they do not fit."""
    cdef Py_ssize_t m = A[1] if a == Trans else A[0]
    cdef Py_ssize_t k = A[0] if a == Trans else A[1]
    cdef Py_ssize_t kb = B[1] if b == Trans else B[0]
    cdef Py_ssize_t n = B[0] if b == Trans else B[1]
    if kb != k:
        raise ValueError(f"B: expected {k} rows in op(B) to match op(A), got {kb}")
    if C[0] != m or C[1] != n:
        raise ValueError(f"C: expected shape ({m}, {n}), got ({C[0]}, {C[1]})")
    dims[0], dims[1], dims[2] = _as_int(m, "m"), _as_int(n, "n"), _as_int(k, "k")
    dims[3], dims[4] = _as_int(max(A[1], 1), "lda"), _as_int(max(B[1], 1), "ldb")
    dims[5] = _as_int(max(n, 1), "ldc")
    return 0


cdef _py_product(str ta, str tb, double alpha, const floating[:, ::1] A,
                 const floating[:, ::1] B, double beta, floating[:, ::1] C, bint blas):
    cdef BLAS_Trans a = _trans(ta, "ta"), b = _trans(tb, "tb")
    cdef int d[6]
    _product_dims(a, b, &A.shape[0], &B.shape[0], &C.shape[0], d)
    cdef const floating *pA = _cp2(A)
    cdef const floating *pB = _cp2(B)
    cdef floating *pC = _p2(C)
    with nogil:
        if blas:
            gemm(a, b, d[0], d[1], d[2], <floating>alpha, pA, d[3], pB, d[4], <floating>beta,
                 pC, d[5])
        else:
            matmul(a, b, d[0], d[1], d[2], <floating>alpha, pA, d[3], pB, d[4], <floating>beta,
                   pC, d[5])


def py_gemm(str ta, str tb, double alpha, const floating[:, ::1] A, const floating[:, ::1] B,
            double beta, floating[:, ::1] C):
    """C = alpha * op(A) @ op(B) + beta * C, in place, row-major."""
    _py_product(ta, tb, alpha, A, B, beta, C, True)


def py_matmul(str ta, str tb, double alpha, const floating[:, ::1] A, const floating[:, ::1] B,
              double beta, floating[:, ::1] C):
    """The engine's product: C = alpha * op(A) @ op(B) + beta * C, in place, row-major, by
    bpcore's kernels below the crossover and BLAS above (as py_gemm)."""
    _py_product(ta, tb, alpha, A, B, beta, C, False)


def _set_small_rows(rows):
    """Move the current SIMD level's crossovers: one count for every product and dtype (0 puts
    every product on BLAS, a large count on the kernels), or {"float32": (nn, nt, tn),
    "float64": (...)}, as returned (the previous values). For the benchmark that measures them
    and for the tests, not an option: set it between steps only."""
    cdef int level = K.level
    previous = {"float32": tuple(small_rows[level][0]), "float64": tuple(small_rows[level][1])}
    if isinstance(rows, int):
        rows = {"float32": (rows,) * 3, "float64": (rows,) * 3}
    for name, values in rows.items():
        d = ("float32", "float64").index(name)
        for p in range(3):
            small_rows[level][d][p] = max(int(values[p]), 0)
    return previous
