# cython: language_level=3
"""Benchmark instrumentation, apart from the production path: the GEMMs of one training step
and nothing else, on the engine's own buffers (python -m bpcore.bench's floor)."""
from cython cimport floating
from cython.parallel cimport parallel, threadid
from libc.string cimport memset

import numpy as np

from bpcore._blas cimport BLAS_Trans, gemm, gemm_part, NoTrans, Trans
from bpcore._engine cimport Engine, Net, Workspace
from bpcore._threads cimport blas_pin, blas_unpin, bp_omp_team_size, gemm_parts


cdef void gemm_in_parts(BLAS_Trans ta, BLAS_Trans tb, int m, int n, int k,
                        floating alpha, const floating *A, int lda,
                        const floating *B, int ldb,
                        floating beta, floating *C, int ldc, bint parts) noexcept nogil:
    """The whole GEMM as one BLAS call, or split among bpcore's threads (BLAS pinned) as the
    large-batch step splits it."""
    cdef int nt = gemm_parts(m, n, k) if parts else 1
    if nt == 1:
        gemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc)
        return
    with parallel(num_threads=nt):
        gemm_part(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, threadid(),
                  bp_omp_team_size())


cdef void step_gemms(const Net *net, const Workspace *ws, const floating *X,
                     bint parts) noexcept nogil:
    """Forward products, dX and dW of one step of ws.rows rows, on the engine's buffers."""
    cdef int l, fi, fo, n = ws.rows
    cdef const floating *inp = X
    cdef floating *P = <floating *>net.P
    cdef floating *G = <floating *>net.G
    cdef floating *d = <floating *>ws.d0
    cdef floating *dn = <floating *>ws.d1
    cdef floating *tmp
    for l in range(net.L):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        gemm_in_parts(NoTrans, NoTrans, n, fo, fi, <floating>1, inp, fi, P + net.woff[l], fo,
                      <floating>0, <floating *>ws.acts + ws.aoff[l], fo, parts)
        inp = <floating *>ws.acts + ws.aoff[l]
    for l in range(net.L - 1, -1, -1):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        if l > 0:
            gemm_in_parts(NoTrans, Trans, n, fi, fo, <floating>1, d, fo, P + net.woff[l], fo,
                          <floating>0, dn, fi, parts)
        gemm_in_parts(Trans, NoTrans, fi, fo, n, <floating>1,
                      X if l == 0 else <floating *>ws.acts + ws.aoff[l - 1], fi, d, fo,
                      <floating>0, G + net.woff[l], fo, parts)
        tmp = d
        d = dn
        dn = tmp


def gemm_floor(Engine engine, X, bint parts=False):
    """Run only the GEMMs of a train_step on X: forward products, dW and dX, on the engine's
    workspaces, with the BLAS's own threading (or, with parts, split among bpcore's threads
    with the BLAS pinned, as a large-batch step runs them). Changes no weights; the gradient
    buffer is left holding the products."""
    Xa = engine.checked_X(X, False)
    if not isinstance(Xa, np.ndarray):
        raise TypeError(f"X: expected a dense array (the GEMM floor of a dense step), got "
                        f"{type(Xa).__name__}")
    cdef Py_ssize_t n = Xa.shape[0]
    cdef size_t pX = Xa.ctypes.data
    cdef int pinned = 0
    engine.enter(n)
    try:
        engine.ws.rows = <int>n
        deltas = engine.workspaces()["deltas"]
        deltas[...] = 0  # no step has written the deltas yet: read zeros, not garbage
        with nogil:
            if parts:
                pinned = blas_pin()
            if engine.f64:
                step_gemms(&engine.net, &engine.ws, <const double *>pX, parts)
            else:
                step_gemms(&engine.net, &engine.ws, <const float *>pX, parts)
            if parts:
                blas_unpin(pinned)
    finally:
        engine.leave()
