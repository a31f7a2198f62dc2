# The seeded RNG of csrc/bp_rng.h, for initialisation and shuffling.
from libc.stdint cimport uint64_t
from cython cimport floating

cdef extern from "bp_rng.h":
    ctypedef struct bp_rng:
        uint64_t s[4]
    void bp_rng_seed(bp_rng *r, uint64_t seed) noexcept nogil
    uint64_t bp_rng_next(bp_rng *r) noexcept nogil
    double bp_rng_uniform(bp_rng *r) noexcept nogil
    uint64_t bp_rng_below(bp_rng *r, uint64_t n) noexcept nogil

# out (size) ~ U[low, high)
cdef void fill_uniform(bp_rng *r, Py_ssize_t size, floating *out, double low,
                       double high) noexcept nogil

# idx (n) is permuted in place (Fisher-Yates)
cdef void shuffle(bp_rng *r, Py_ssize_t n, Py_ssize_t *idx) noexcept nogil
