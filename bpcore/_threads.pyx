# cython: language_level=3
"""OpenMP thread count for bpcore's elementwise loops.

The count is bpcore's own, not the OpenMP runtime's global ICV: every prange names it through
``num_threads=``, so other libraries' OpenMP settings neither change ours nor are changed by us.
"""

cdef extern from "bp_omp.h":
    int BP_HAVE_OPENMP
    int bp_omp_max_threads() noexcept nogil
    int bp_omp_num_procs() noexcept nogil
    int bp_omp_version() noexcept nogil

MIN_PARALLEL_WORK = PARALLEL_MIN_WORK  # for show_config and tests

cdef int _num_threads = bp_omp_max_threads()  # respects OMP_NUM_THREADS


cdef int threads_for(Py_ssize_t work) noexcept nogil:
    if work < PARALLEL_MIN_WORK:
        return 1
    return _num_threads


def openmp_enabled():
    """True if the native modules were compiled with OpenMP."""
    return bool(BP_HAVE_OPENMP)


def openmp_version():
    """The _OPENMP date macro the modules were compiled with (0 without OpenMP)."""
    return bp_omp_version()


def default_num_threads():
    """What the OpenMP runtime would use: OMP_NUM_THREADS if set, else the number of cores."""
    return bp_omp_max_threads()


def num_procs():
    return bp_omp_num_procs()


def get_omp_threads():
    return _num_threads


def set_omp_threads(int n):
    global _num_threads
    if n < 1:
        raise ValueError(f"n: expected a positive number of threads, got {n}")
    _num_threads = n if BP_HAVE_OPENMP else 1
