# cython: language_level=3
"""Seeded uniform fills and permutations; the same stream on every platform."""
import numpy as np


cdef void fill_uniform(bp_rng *r, Py_ssize_t size, floating *out, double low,
                       double high) noexcept nogil:
    cdef Py_ssize_t i
    cdef double width = high - low
    for i in range(size):
        out[i] = <floating>(low + width * bp_rng_uniform(r))


cdef void shuffle(bp_rng *r, Py_ssize_t n, Py_ssize_t *idx) noexcept nogil:
    cdef Py_ssize_t i, j, t
    for i in range(n - 1, 0, -1):
        j = <Py_ssize_t>bp_rng_below(r, <uint64_t>(i + 1))
        t = idx[i]
        idx[i] = idx[j]
        idx[j] = t


cdef class Generator:
    """A seeded stream: ``uniform`` fills arrays in place, ``permutation`` shuffles indices."""
    cdef bp_rng state

    def __init__(self, uint64_t seed):
        bp_rng_seed(&self.state, seed)

    def uniform(self, floating[::1] out, double low, double high):
        if out.shape[0]:
            fill_uniform(&self.state, out.shape[0], &out[0], low, high)

    def permutation(self, Py_ssize_t n):
        idx = np.arange(n, dtype=np.intp)
        cdef Py_ssize_t[::1] v = idx
        if n > 1:
            shuffle(&self.state, n, &v[0])
        return idx

    def shuffle(self, Py_ssize_t[::1] idx):
        """Permute idx in place (the next permutation of an epoch loop)."""
        if idx.shape[0] > 1:
            shuffle(&self.state, idx.shape[0], &idx[0])
