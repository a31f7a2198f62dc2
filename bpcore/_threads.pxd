# The one thread count every OpenMP loop in bpcore uses (set by bpcore.set_num_threads).

cdef enum:
    # Elementwise work below this many elements runs serially: waking a thread team costs
    # microseconds, more than a few thousand multiply-adds take.
    PARALLEL_MIN_WORK = 32768

cdef int threads_for(Py_ssize_t work) noexcept nogil
