# cython: language_level=3
"""SGD with momentum (the 1986 paper's eq. 9), Nesterov, L2 and decoupled weight decay."""
from cython.parallel cimport prange

from bpcore._threads cimport threads_for


cdef void sgd_update(Py_ssize_t size, floating *w, const floating *g, floating *v,
                     floating lr, floating momentum, bint nesterov,
                     floating weight_decay, floating decay) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating gi, vi
    cdef floating keep = 1 - decay
    cdef int nt = threads_for(size)
    # one loop per mode keeps each loop branch-free, so the compiler vectorises it
    if momentum == 0:
        for i in prange(size, num_threads=nt, schedule="static"):
            gi = g[i] + weight_decay * w[i]
            w[i] = (w[i] - lr * gi) * keep
    elif nesterov:
        for i in prange(size, num_threads=nt, schedule="static"):
            gi = g[i] + weight_decay * w[i]
            vi = momentum * v[i] - lr * gi
            v[i] = vi
            w[i] = (w[i] + momentum * vi - lr * gi) * keep
    else:
        for i in prange(size, num_threads=nt, schedule="static"):
            gi = g[i] + weight_decay * w[i]
            vi = momentum * v[i] - lr * gi
            v[i] = vi
            w[i] = (w[i] + vi) * keep


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
