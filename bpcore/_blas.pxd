# Row-major BLAS over scipy.linalg.cython_blas (which is column-major Fortran).
#
# A C-contiguous matrix read column-major is its own transpose, so each row-major call below is
# the column-major call with the operands, the dimensions and the transpose flags swapped.
# Leading dimensions are stored row lengths. All wrappers skip the call when an output dimension
# is zero (BLAS rejects a leading dimension of 0) and never run inside an OpenMP region.
from cython cimport floating

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
