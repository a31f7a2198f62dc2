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


cdef void sgd_update_outer(int n, int fi, int fo, const floating *X, const floating *D,
                           floating *W, floating *b, floating *VW, floating *vb,
                           const floating *mask, floating lr, floating momentum,
                           bint nesterov, floating weight_decay, floating decay) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating keep = 1 - decay
    cdef floating one = 1
    cdef bint has_v = momentum != 0
    # row fi is the bias: its input is 1 in every row of the batch (stride 0 over one)
    for i in prange(fi + 1, num_threads=threads_for(<Py_ssize_t>(fi + 1) * fo * (n + 2)),
                    schedule="static"):
        if i < fi:
            outer_row_update(n, fi, &X[i], D, fo, fo, &W[i * fo], &VW[i * fo] if has_v else NULL,
                       &mask[i * fo] if mask != NULL else NULL,
                       lr, momentum, nesterov, weight_decay, keep)
        else:
            outer_row_update(n, 0, &one, D, fo, fo, b, vb if has_v else NULL, NULL,
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


def py_sgd_update_outer(const floating[:, ::1] X, const floating[:, ::1] D, floating[:, ::1] W,
                        floating[::1] b, floating[:, ::1] VW, floating[::1] vb, mask,
                        double lr, double momentum, bint nesterov, double weight_decay,
                        double decay):
    """The fused update of a Dense layer (W, b) with gradient X.T @ D, D.sum(0), in place."""
    cdef int n = X.shape[0], fi = X.shape[1], fo = D.shape[1]
    cdef const floating[:, ::1] m
    cdef const floating *pm = NULL
    if (D.shape[0] != n or W.shape[0] != fi or W.shape[1] != fo or VW.shape[0] != fi
            or VW.shape[1] != fo or b.shape[0] != fo or vb.shape[0] != fo):
        raise ValueError(f"expected X (n, fi), D (n, fo), W and VW ({fi}, {fo}), b and vb ({fo},)")
    if mask is not None:
        m = mask
        if m.shape[0] != fi or m.shape[1] != fo:
            raise ValueError(f"mask: expected shape ({fi}, {fo})")
        pm = &m[0, 0]
    if n == 0 or fi == 0 or fo == 0:
        return
    with nogil:
        sgd_update_outer(n, fi, fo, &X[0, 0], &D[0, 0], &W[0, 0], &b[0], &VW[0, 0], &vb[0], pm,
                         <floating>lr, <floating>momentum, nesterov, <floating>weight_decay,
                         <floating>decay)

