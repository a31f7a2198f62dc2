# cython: language_level=3
"""SGD with momentum (the 1986 paper's eq. 9), Nesterov, L2 and decoupled weight decay."""
from cython.parallel cimport prange
from libc.float cimport DBL_MIN, FLT_MIN
from libc.math cimport fabs, fabsf

from bpcore._threads cimport threads_for

cdef enum:
    BLOCK = 256  # elements per task: fits the stack and L1, long enough to vectorise


cdef inline floating _flush(floating x) noexcept nogil:
    """x, or 0 if x is subnormal. A weight whose gradient stays 0 (a pixel that is always
    blank) has its velocity decay geometrically into subnormal numbers, which x86 CPUs
    process about a hundred times slower; flushing them keeps the update at full speed.
    Branch-free, so the loops still vectorise."""
    if floating is float:
        return x if fabsf(x) >= FLT_MIN else 0
    else:
        return x if fabs(x) >= DBL_MIN else 0


cdef inline void _sgd_block(Py_ssize_t n, floating *w, const floating *g, floating *v,
                            floating lr, floating momentum, bint nesterov,
                            floating weight_decay, floating keep) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, vi
    # one loop per mode keeps each loop branch-free, so the compiler vectorises it
    if momentum == 0:
        for i in range(n):
            gi = g[i] + weight_decay * w[i]
            w[i] = _flush((w[i] - lr * gi) * keep)
    elif nesterov:
        for i in range(n):
            gi = g[i] + weight_decay * w[i]
            vi = _flush(momentum * v[i] - lr * gi)
            v[i] = vi
            w[i] = _flush((w[i] + momentum * vi - lr * gi) * keep)
    else:
        for i in range(n):
            gi = g[i] + weight_decay * w[i]
            vi = _flush(momentum * v[i] - lr * gi)
            v[i] = vi
            w[i] = _flush((w[i] + vi) * keep)


cdef void sgd_update(Py_ssize_t size, floating *w, const floating *g, floating *v,
                     floating lr, floating momentum, bint nesterov,
                     floating weight_decay, floating decay) noexcept nogil:
    cdef Py_ssize_t blk, start
    cdef Py_ssize_t nblk = (size + BLOCK - 1) // BLOCK
    cdef floating keep = 1 - decay
    for blk in prange(nblk, num_threads=threads_for(size), schedule="static"):
        start = blk * BLOCK
        _sgd_block(min(<Py_ssize_t>BLOCK, size - start), &w[start], &g[start],
                   &v[start] if v != NULL else NULL, lr, momentum, nesterov, weight_decay, keep)


cdef inline void _outer_row(int n, int stride, const floating *x, const floating *D, int fo,
                            floating *w, floating *v, const floating *mask, floating lr,
                            floating momentum, bint nesterov, floating weight_decay,
                            floating keep) noexcept nogil:
    """Update one row w (fo) of weights whose gradient row is sum_k x[k * stride] * D[k, :]."""
    cdef floating g[BLOCK]
    cdef floating xk
    cdef int j0, jj, bw, k
    j0 = 0
    while j0 < fo:
        bw = min(<int>BLOCK, fo - j0)
        for jj in range(bw):
            g[jj] = 0
        for k in range(n):
            xk = x[k * stride] if x != NULL else 1  # x NULL: the bias row, input 1
            for jj in range(bw):
                g[jj] = g[jj] + xk * D[k * fo + j0 + jj]
        if mask != NULL:
            for jj in range(bw):
                g[jj] = g[jj] * mask[j0 + jj]
        _sgd_block(bw, &w[j0], g, &v[j0] if v != NULL else NULL, lr, momentum, nesterov,
                   weight_decay, keep)
        j0 += BLOCK


cdef void sgd_update_outer(int n, int fi, int fo, const floating *X, const floating *D,
                           floating *W, floating *b, floating *VW, floating *vb,
                           const floating *mask, floating lr, floating momentum,
                           bint nesterov, floating weight_decay, floating decay) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating keep = 1 - decay
    cdef bint has_v = momentum != 0
    # row fi is the bias: its "input" is 1
    for i in prange(fi + 1, num_threads=threads_for(<Py_ssize_t>(fi + 1) * fo * (n + 2)),
                    schedule="static"):
        if i < fi:
            _outer_row(n, fi, &X[i], D, fo, &W[i * fo], &VW[i * fo] if has_v else NULL,
                       &mask[i * fo] if mask != NULL else NULL,
                       lr, momentum, nesterov, weight_decay, keep)
        else:
            _outer_row(n, 0, NULL, D, fo, b, vb if has_v else NULL, NULL,
                       lr, momentum, nesterov, weight_decay, keep)


def py_sgd_update(floating[::1] w, const floating[::1] g, floating[::1] v,
                  double lr, double momentum, bint nesterov, double weight_decay, double decay):
    """One SGD step over flat w, g and velocity v, all of one length, in place."""
    cdef Py_ssize_t n = w.shape[0]
    if g.shape[0] != n or v.shape[0] != n:
        raise ValueError(f"g, v: expected length {n}, got {g.shape[0]} and {v.shape[0]}")
    if n == 0:
        return
    with nogil:
        sgd_update(n, &w[0], &g[0], &v[0], <floating>lr, <floating>momentum, nesterov,
                   <floating>weight_decay, <floating>decay)
