# bpcore's one thread pool: the OpenMP threads that run every loop and every part of a GEMM.

cdef enum:
    # Elementwise work below this many elements runs serially: waking a thread team costs
    # microseconds, more than a few thousand multiply-adds take.
    PARALLEL_MIN_WORK = 32768
    # A GEMM below this many multiply-adds runs as one part.
    PARALLEL_MIN_GEMM = 262144

# threads for `work` elements of elementwise work
cdef int threads_for(Py_ssize_t work) noexcept nogil

# threads that may each call BLAS at once: bpcore's count while BLAS can be pinned, else 1
cdef int pool_threads() noexcept nogil

# parts to split an (m, n, k) GEMM into: one per thread while BLAS is pinned to one thread,
# else 1 (BLAS then threads the whole product itself)
cdef int gemm_parts(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil

# Pin scipy's BLAS to one thread for a native call (bpcore's OpenMP threads then run the GEMM
# parts); returns what blas_unpin takes. Counted: the last of overlapping calls restores it.
cdef int blas_pin() noexcept nogil
cdef void blas_unpin(int pinned) noexcept nogil

cdef extern from "bp_omp.h":
    # threads in the current team (what a parallel region got: it can be fewer than asked for),
    # and a barrier for all of them; partitioned work is always split by the team size
    int bp_omp_team_size() noexcept nogil
    void bp_omp_barrier() noexcept nogil

# part `part` of nparts even shares of `total` items: [lo, hi)
cdef inline void even_share(int total, int part, int nparts, int *lo, int *hi) noexcept nogil:
    lo[0] = <int>(<Py_ssize_t>total * part // nparts)
    hi[0] = <int>(<Py_ssize_t>total * (part + 1) // nparts)
