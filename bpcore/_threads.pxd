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
# (the parts a small-batch step splits its weights into)
cdef int pool_threads() noexcept nogil

# parts to split an (m, n, k) GEMM into: one per thread of bpcore's count while BLAS is pinned
# to one thread, else 1 (BLAS then threads the whole product itself). The parts, and so the
# rounding, do not depend on the team that runs them (team_for).
cdef int gemm_parts(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil

# threads to run `parts` parts now: fewer when the OpenMP runtime's setting (threadpoolctl,
# pacing) caps the calling thread; each thread then takes parts tid, tid + team, ...
cdef int team_for(int parts) noexcept nogil

# Pin scipy's BLAS to one thread for a native call (bpcore's OpenMP threads then run the GEMM
# parts); returns what blas_unpin takes. Counted: the last of overlapping calls restores it.
cdef int blas_pin() noexcept nogil
cdef void blas_unpin(int pinned) noexcept nogil

# Pacing: on a busy machine a thread of the team can be descheduled, and every barrier then
# waits for it (a 2-thread step took 55 times the 1-thread step under load). The engine times
# each step. Team steps are judged by windows of WINDOW steps against the last one-thread step
# of the same batch size: once a window's team steps have cost a quarter more than one thread
# would have for the whole window (or one team step more than ten), the next `backoff` steps run
# on one thread (backoff doubling while that lasts, back to BACKOFF_MIN after a good window).
# Hiccups (a preempted step costs a few) fit in a window's budget; a collapse does not. A
# one-thread step every PROBE_EVERY team steps keeps the comparison current: on an idle machine
# that probe is the whole cost.
cdef enum:
    WINDOW = 16
    PROBE_EVERY = 128
    BACKOFF_MIN = 8
    BACKOFF_MAX = 4096

ctypedef struct Pace:
    int full               # the team of an unpaced step (0 or 1: no pacing)
    int rows               # the batch size the timings are of
    int odd                # consecutive steps of another batch size (an epoch's last batch)
    double solo            # the last one-thread step, seconds (0: not measured yet)
    double spent           # seconds of the team steps of the window so far
    int used               # team steps of the window so far
    int since              # team steps since the last one-thread step
    int left               # one-thread steps still to take
    int backoff            # how many the next bad window sends to one thread
    int measured           # whether the step in flight updates the timings

# the threads for the next step of `rows` rows (0: leave the count alone), and what it took
cdef int pace_begin(Pace *p, int rows) noexcept nogil
cdef void pace_end(Pace *p, int team, double seconds) noexcept nogil

cdef extern from "bp_omp.h":
    # set the calling thread's threads for the regions it starts; a wall clock in seconds
    void bp_omp_set_threads(int n) noexcept nogil
    double bp_omp_wtime() noexcept nogil
    int bp_omp_max_threads() noexcept nogil
    # threads in the current team (what a parallel region got: it can be fewer than asked for),
    # and a barrier for all of them; partitioned work is always split by the team size
    int bp_omp_team_size() noexcept nogil
    void bp_omp_barrier() noexcept nogil

# part `part` of nparts even shares of `total` items: [lo, hi)
cdef inline void even_share(int total, int part, int nparts, int *lo, int *hi) noexcept nogil:
    lo[0] = <int>(<Py_ssize_t>total * part // nparts)
    hi[0] = <int>(<Py_ssize_t>total * (part + 1) // nparts)
