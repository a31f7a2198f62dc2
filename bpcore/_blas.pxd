# Row-major BLAS over scipy.linalg.cython_blas (which is column-major Fortran), and the products
# the engine calls: bpcore's own kernels (csrc/bp_gemm.c) for a few rows, BLAS above.
#
# A C-contiguous matrix read column-major is its own transpose, so each row-major call below is
# the column-major call with the operands, the dimensions and the transpose flags swapped.
# Leading dimensions are stored row lengths. All wrappers skip the call when an output dimension
# is zero (BLAS rejects a leading dimension of 0) and never run inside an OpenMP region.
from cython cimport floating

from bpcore._simd cimport bp_act

cpdef enum BLAS_Trans:
    NoTrans = 110  # 'n'
    Trans = 116    # 't'

# C (m, n) = alpha * op(A) @ op(B) + beta * C;  op(A) is (m, k), op(B) is (k, n)
cdef void gemm(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
               floating alpha, const floating *A, int lda,
               const floating *B, int ldb,
               floating beta, floating *C, int ldc) noexcept nogil

# One part of a GEMM split among nparts threads: the rows of C when it has enough of them, else
# its columns. Returns the block of C the part wrote, so the caller can work on it next.
ctypedef struct Block:
    int r0
    int r1
    int c0
    int c1

cdef Block gemm_part(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                     floating alpha, const floating *A, int lda,
                     const floating *B, int ldb,
                     floating beta, floating *C, int ldc, int part, int nparts) noexcept nogil

# The same products, by bpcore's own small-batch kernels (the SIMD table's gemm_nn/nt/tn) where
# the rows of the batch are few enough (C's rows for op(A) = A, the summed dimension for
# op(A) = A.T: see the crossover in _blas.pyx), alpha is 1 and beta 0 or 1; by gemm otherwise.
cdef void matmul(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                 floating alpha, const floating *A, int lda,
                 const floating *B, int ldb,
                 floating beta, floating *C, int ldc) noexcept nogil

cdef Block matmul_part(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                       floating alpha, const floating *A, int lda,
                       const floating *B, int ldb,
                       floating beta, floating *C, int ldc, int part, int nparts) noexcept nogil

# C (m, n) = act(A (m, k) @ B (k, n) + bias) in one pass, A @ B + bias into keep (rows ldc
# apart; NULL: not kept), bias NULL for none, when m is at most the crossover; returns whether
# it ran (else the caller forms the product and its epilogue itself)
cdef bint matmul_act(int m, int n, int k, const floating *A, int lda, const floating *B, int ldb,
                     floating *C, int ldc, const floating *bias, floating *keep,
                     const bp_act *act) noexcept nogil

# whether a batch of this many rows is at most tn's crossover (the weights' gradient on
# bpcore's kernels)
cdef bint small_batch(int rows, int itemsize) noexcept nogil
