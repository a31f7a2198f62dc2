# cython: language_level=3
"""SGD with momentum (the 1986 paper's eq. 9), Nesterov, L2 and decoupled weight decay."""
from cython.parallel cimport prange

from bpcore._simd cimport bp_simd_table, simd
from bpcore._threads cimport threads_for

cdef bp_simd_table *K = simd()  # the loops, at this CPU's vector width

cdef enum:
    BLOCK = 256          # gradient elements formed at once by the fused update: stack and L1
    FLAT_BLOCK = 4096    # elements per task of the flat update


cdef void sgd_block(Py_ssize_t n, floating *w, const floating *g, floating *v, floating lr,
                    floating momentum, bint nesterov, floating weight_decay,
                    floating keep) noexcept nogil:
    if floating is float:
        K.sgd_f32(n, w, g, v, lr, momentum, nesterov, weight_decay, keep)
    else:
        K.sgd_f64(n, w, g, v, lr, momentum, nesterov, weight_decay, keep)


cdef void sgd_update(Py_ssize_t size, floating *w, const floating *g, floating *v,
                     floating lr, floating momentum, bint nesterov,
                     floating weight_decay, floating decay) noexcept nogil:
    cdef Py_ssize_t blk, start
    cdef Py_ssize_t nblk = (size + FLAT_BLOCK - 1) // FLAT_BLOCK
    cdef floating keep = 1 - decay
    for blk in prange(nblk, num_threads=threads_for(size), schedule="static"):
        start = blk * FLAT_BLOCK
        sgd_block(min(<Py_ssize_t>FLAT_BLOCK, size - start), &w[start], &g[start],
                   &v[start] if v != NULL else NULL, lr, momentum, nesterov, weight_decay, keep)


cdef void outer_row_update(int n, Py_ssize_t stride, const floating *x, const floating *D,
                           Py_ssize_t ld, int cols, floating *w, floating *v,
                           const floating *mask, floating lr, floating momentum, bint nesterov,
                           floating weight_decay, floating keep) noexcept nogil:
    cdef floating g[BLOCK]
    cdef int j0 = 0, jj, bw
    if n == 1 and mask == NULL:  # a batch of one: the gradient row x[0] * D never stored
        if floating is float:
            K.sgd1_f32(cols, w, x[0], D, v, lr, momentum, nesterov, weight_decay, keep)
        else:
            K.sgd1_f64(cols, w, x[0], D, v, lr, momentum, nesterov, weight_decay, keep)
        return
    while j0 < cols:
        bw = min(<int>BLOCK, cols - j0)
        for jj in range(bw):
            g[jj] = 0
        if floating is float:
            K.outer_f32(bw, n, stride, x, D + j0, ld, g)
        else:
            K.outer_f64(bw, n, stride, x, D + j0, ld, g)
        if mask != NULL:
            for jj in range(bw):
                g[jj] *= mask[j0 + jj]
        sgd_block(bw, w + j0, g, v + j0 if v != NULL else NULL, lr, momentum, nesterov,
                  weight_decay, keep)
        j0 += BLOCK


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
