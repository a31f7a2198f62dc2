# cython: language_level=3
"""Dense and activation kernels (fused float32/float64), and the Python-callable entry points
that the layer API uses. The entry points check shapes themselves, so a wrong call raises
instead of writing out of bounds; the user-facing messages come from bpcore.layers."""
from cython.parallel cimport prange
from libc.math cimport exp, expf, tanh, tanhf
from libc.string cimport memcpy

from bpcore._blas cimport gemm, NoTrans, Trans
from bpcore._threads cimport threads_for

# columns per task when summing dZ over rows for db: a task owns whole columns, so the sum
# order, and with it the result, does not depend on the thread count
cdef enum:
    DB_BLOCK = 64


cdef void dense_forward(int n, int fi, int fo, const floating *X, const floating *W,
                        const floating *b, floating *Z) noexcept nogil:
    cdef Py_ssize_t i
    cdef int nt = threads_for(<Py_ssize_t>n * fo)
    # bias first, then the GEMM accumulates onto it (beta = 1): no second pass over Z
    for i in prange(n, num_threads=nt, schedule="static"):
        memcpy(&Z[i * fo], b, fo * sizeof(floating))
    gemm(NoTrans, NoTrans, n, fo, fi, <floating>1, X, fi, W, fo, <floating>1, Z, fo)


cdef void dense_backward(int n, int fi, int fo, const floating *X, const floating *W,
                         const floating *dZ, floating *dW, floating *db, floating *dX,
                         const floating *mask) noexcept nogil:
    cdef Py_ssize_t i, j, blk, j0, j1
    cdef Py_ssize_t nblk = (fo + DB_BLOCK - 1) // DB_BLOCK
    cdef Py_ssize_t wsize = <Py_ssize_t>fi * fo
    cdef int nt
    gemm(Trans, NoTrans, fi, fo, n, <floating>1, X, fi, dZ, fo, <floating>1, dW, fo)
    if mask != NULL:
        nt = threads_for(wsize)
        for i in prange(wsize, num_threads=nt, schedule="static"):
            dW[i] = dW[i] * mask[i]
    nt = threads_for(<Py_ssize_t>n * fo)
    for blk in prange(nblk, num_threads=nt, schedule="static"):
        j0 = blk * DB_BLOCK
        j1 = min(j0 + DB_BLOCK, fo)
        for i in range(n):
            for j in range(j0, j1):
                db[j] = db[j] + dZ[i * fo + j]
    if dX != NULL:
        gemm(NoTrans, Trans, n, fi, fo, <floating>1, dZ, fo, W, fo, <floating>0, dX, fi)


cdef inline floating _sigmoid(floating z) noexcept nogil:
    if floating is float:
        return 1.0 / (1.0 + expf(-z))
    else:
        return 1.0 / (1.0 + exp(-z))


cdef inline floating _tanh(floating z) noexcept nogil:
    if floating is float:
        return tanhf(z)
    else:
        return tanh(z)


cdef void activation_forward(Activation act, Py_ssize_t size, const floating *Z,
                             floating *A) noexcept nogil:
    cdef Py_ssize_t i
    cdef int nt = threads_for(size)
    if act == RELU:
        for i in prange(size, num_threads=nt, schedule="static"):
            A[i] = Z[i] if Z[i] > 0 else 0
    elif act == SIGMOID:
        for i in prange(size, num_threads=nt, schedule="static"):
            A[i] = _sigmoid(Z[i])
    elif act == TANH:
        for i in prange(size, num_threads=nt, schedule="static"):
            A[i] = _tanh(Z[i])
    elif A != Z:
        memcpy(A, Z, size * sizeof(floating))


cdef void activation_backward(Activation act, Py_ssize_t size, const floating *A,
                              const floating *dA, floating *dZ) noexcept nogil:
    cdef Py_ssize_t i
    cdef int nt = threads_for(size)
    if act == RELU:
        for i in prange(size, num_threads=nt, schedule="static"):
            dZ[i] = dA[i] if A[i] > 0 else 0
    elif act == SIGMOID:
        for i in prange(size, num_threads=nt, schedule="static"):
            dZ[i] = dA[i] * A[i] * (1 - A[i])
    elif act == TANH:
        for i in prange(size, num_threads=nt, schedule="static"):
            dZ[i] = dA[i] * (1 - A[i] * A[i])
    elif dZ != dA:
        memcpy(dZ, dA, size * sizeof(floating))


# ---- Python-callable entry points ----

cdef inline void _require(bint ok, str what) except *:
    if not ok:
        raise ValueError(what)


def py_dense_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                     const floating[::1] b, floating[:, ::1] Z):
    """Z = X @ W + b, written into Z."""
    cdef int n = X.shape[0], fi = X.shape[1], fo = W.shape[1]
    _require(W.shape[0] == fi, f"W: expected {fi} rows, got {W.shape[0]}")
    _require(b.shape[0] == fo, f"b: expected length {fo}, got {b.shape[0]}")
    _require(Z.shape[0] == n and Z.shape[1] == fo, f"Z: expected shape ({n}, {fo})")
    if n == 0 or fo == 0:
        return
    with nogil:
        dense_forward(n, fi, fo, &X[0, 0] if fi else NULL, &W[0, 0] if fi else NULL,
                      &b[0], &Z[0, 0])


def py_dense_backward(const floating[:, ::1] X, const floating[:, ::1] W,
                      const floating[:, ::1] dZ, floating[:, ::1] dW, floating[::1] db,
                      floating[:, ::1] dX=None, const floating[:, ::1] mask=None):
    """Accumulate dW and db; write dX unless it is None; apply mask to dW if given."""
    cdef int n = X.shape[0], fi = X.shape[1], fo = W.shape[1]
    _require(W.shape[0] == fi, f"W: expected {fi} rows, got {W.shape[0]}")
    _require(dZ.shape[0] == n and dZ.shape[1] == fo, f"dZ: expected shape ({n}, {fo})")
    _require(dW.shape[0] == fi and dW.shape[1] == fo, f"dW: expected shape ({fi}, {fo})")
    _require(db.shape[0] == fo, f"db: expected length {fo}")
    _require(dX is None or (dX.shape[0] == n and dX.shape[1] == fi),
             f"dX: expected shape ({n}, {fi})")
    _require(mask is None or (mask.shape[0] == fi and mask.shape[1] == fo),
             f"mask: expected shape ({fi}, {fo})")
    if fo == 0 or (n == 0 and mask is None):
        return
    cdef floating *pdX = NULL
    cdef const floating *pmask = NULL
    if dX is not None and n and fi:
        pdX = &dX[0, 0]
    if mask is not None and fi:
        pmask = &mask[0, 0]
    with nogil:
        dense_backward(n, fi, fo, &X[0, 0] if n and fi else NULL, &W[0, 0] if fi else NULL,
                       &dZ[0, 0] if n else NULL, &dW[0, 0] if fi else NULL, &db[0], pdX, pmask)


def py_activation_forward(int act, const floating[::1] Z, floating[::1] A):
    """A = act(Z) over flat arrays."""
    _require(A.shape[0] == Z.shape[0], f"A: expected length {Z.shape[0]}")
    _require(0 <= act <= 3, f"act: expected 0..3, got {act}")
    if Z.shape[0] == 0:
        return
    with nogil:
        activation_forward(<Activation>act, Z.shape[0], &Z[0], &A[0])


def py_activation_backward(int act, const floating[::1] A, const floating[::1] dA,
                           floating[::1] dZ):
    """dZ = dA * act'(.) from the forward output A, over flat arrays."""
    _require(dA.shape[0] == A.shape[0] and dZ.shape[0] == A.shape[0],
             f"dA, dZ: expected length {A.shape[0]}")
    _require(0 <= act <= 3, f"act: expected 0..3, got {act}")
    if A.shape[0] == 0:
        return
    with nogil:
        activation_backward(<Activation>act, A.shape[0], &A[0], &dA[0], &dZ[0])
