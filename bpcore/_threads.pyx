# cython: language_level=3
"""bpcore's threads: one OpenMP pool for everything, BLAS included.

scipy's OpenBLAS has its own pthread pool, and two pools on the same cores fight: libgomp's
workers spin after a loop while OpenBLAS's workers need the core for the next GEMM, and a
2-core step went from 0.3 ms to 20 ms. So while a native call runs, scipy's OpenBLAS is pinned
to one thread and each OpenMP thread computes its own part of every GEMM, then the elementwise
work on that part while it is in cache; the user's BLAS setting is restored when the call
returns. Where bpcore cannot set the BLAS's thread count (another BLAS vendor), GEMMs run as
one part threaded by the BLAS itself and elementwise loops run on one thread, so the pools
never overlap (slower, never oversubscribed).

The count is bpcore's own (every parallel loop names it through ``num_threads=``), capped by
the OpenMP runtime's setting for the calling thread, so that threadpoolctl's
``threadpool_limits(1)`` (which sets the runtime's) limits bpcore too. Work whose rounding
depends on how it is split (the parts of a GEMM, the split-K sums of a small batch) is split
into as many parts as bpcore's own count, whatever the team that runs them: a capped or paced
team runs several parts each, and the results do not change.

Pinning is counted: two Python threads each running a native call pin once between them; the
first pin saves the BLAS's count, the last unpin restores it, so no call ever runs its GEMM parts
while another has given the BLAS its threads back.

Between calls the team's threads must not keep a core: GNU libgomp's idle threads spin
GOMP_SPINCOUNT times before they sleep, 300,000 PAUSEs by default (9 ms on the AMD EPYC of the
README's numbers), after every parallel region. A Python loop of short calls (L-BFGS, whose
scipy code runs between evaluations; NumPy work between steps; another process on the same
cores) then has a spinning thread on the core its own code, or the BLAS's threads, need:
scipy.optimize.minimize around ``loss_and_gradient`` on a 450 x 20 regression took 2.2 s
instead of 0.35 s, two such processes on 2 cores 5.7 s instead of 0.5 s. The wait cannot be
changed once libgomp has loaded (it reads the environment then), so bpcore._spin sets
GOMP_SPINCOUNT for the import that loads it: as many steps of libgomp's wait loop as take
BUDGET_SECONDS (150 us) on this CPU, timed there (PAUSE takes a few to fifty nanoseconds
depending on the CPU, so a fixed count would be a different time on each). 150 us covers the
Python between two back-to-back calls (about 20 us for a ``train_step``), so a loop of steps
finds its threads awake and the barriers inside a call stay spins (steps at batch 1, 32 and 128
measured as fast as before); a thread idle longer sleeps after 150 us. Measured alternatives:
OMP_WAIT_POLICY=passive (no spin) makes every barrier inside a step a sleep and a wake (a
2-thread batch-1 step 1.8 times slower); ``omp_pause_resource_all`` after each call ends the
threads and the next call starts new ones (100 us more a call: a batch-1 step 157 -> 258 us);
1,000 steps (30 us here) let threads fall asleep between back-to-back steps (batch-1 steps 3.8
times slower). The environment is put back after the import, so children, and other libraries'
copies of the runtime loaded later, see the user's; a user's GOMP_SPINCOUNT or OMP_WAIT_POLICY
is left as it is and wins. A runtime another library loaded first (PyTorch's ``libgomp.so.1``,
when bpcore is built against the system's) keeps its own wait: ``show_config`` says which
applies. The wheel's vendored libgomp has a hashed name of its own, so PyTorch's never stands
in for it (a scikit-learn wheel's vendored copy could, if it is the very same file).

After ``fork()``, GNU libgomp cannot start threads in the child if the parent had started them
(the child hangs): bpcore.threads registers an at-fork handler that puts the child on one
thread, and refuses more there.
"""
from cpython.pythread cimport (PyThread_acquire_lock, PyThread_allocate_lock,
                               PyThread_release_lock, PyThread_type_lock, WAIT_LOCK)

cdef extern from "bp_omp.h":
    int BP_HAVE_OPENMP
    int bp_omp_num_procs() noexcept nogil
    int bp_omp_version() noexcept nogil

# the number of shared objects the process has loaded, or -1 where this is not known
cdef extern from *:
    """
    #if defined(__linux__) || defined(__FreeBSD__)
    #include <link.h>
    static int bp_count_object(struct dl_phdr_info *info, size_t size, void *count) {
        (void)info; (void)size;
        ++*(long *)count;
        return 0;
    }
    static long bp_loaded_objects(void) {
        long count = 0;
        dl_iterate_phdr(bp_count_object, &count);
        return count;
    }
    #elif defined(__APPLE__)
    #include <mach-o/dyld.h>
    static long bp_loaded_objects(void) { return (long)_dyld_image_count(); }
    #else
    static long bp_loaded_objects(void) { return -1; }
    #endif
    """
    long bp_loaded_objects() noexcept nogil

ctypedef void (*blas_set_fn)(int) noexcept nogil
ctypedef int (*blas_get_fn)() noexcept nogil

MIN_PARALLEL_WORK = PARALLEL_MIN_WORK  # for show_config and tests

cdef double _margin = 1.25     # a window of team steps may cost this many times one thread's
cdef double COLLAPSE = 10.0    # ... and one team step this many (a preempted step costs a few)
cdef bint _solo = False        # set_pacing("solo")
cdef int _num_threads = bp_omp_max_threads()  # bpcore.threads sets the default at import
cdef blas_set_fn _blas_set = NULL
cdef blas_get_fn _blas_get = NULL
cdef PyThread_type_lock _pin_lock = PyThread_allocate_lock()
cdef int _pins = 0             # native calls running with the BLAS pinned
cdef int _blas_saved = 1       # the BLAS's count before the first of them


cdef inline int _threads() noexcept nogil:
    cdef int limit = bp_omp_max_threads()
    return _num_threads if _num_threads <= limit else limit


cdef int threads_for(Py_ssize_t work) noexcept nogil:
    if work < PARALLEL_MIN_WORK or _blas_set == NULL:
        return 1
    return _threads()


cdef int pool_threads() noexcept nogil:
    return _num_threads if _blas_set != NULL else 1


cdef int gemm_parts(Py_ssize_t m, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    if _blas_set == NULL or m * n * k < PARALLEL_MIN_GEMM:
        return 1
    return _num_threads


cdef int team_for(int parts) noexcept nogil:
    cdef int team = _threads()
    return parts if parts <= team else team


cdef int blas_pin() noexcept nogil:
    global _pins, _blas_saved
    if _blas_set == NULL:
        return 0
    PyThread_acquire_lock(_pin_lock, WAIT_LOCK)
    if _pins == 0:
        _blas_saved = _blas_get()
        if _blas_saved != 1:
            _blas_set(1)
    _pins += 1
    PyThread_release_lock(_pin_lock)
    return 1


cdef void blas_unpin(int pinned) noexcept nogil:
    global _pins
    if _blas_set == NULL or not pinned:
        return
    PyThread_acquire_lock(_pin_lock, WAIT_LOCK)
    _pins -= 1
    if _pins == 0 and _blas_saved != 1:
        _blas_set(_blas_saved)
    PyThread_release_lock(_pin_lock)


cdef int pace_begin(Pace *p, int rows) noexcept nogil:
    p.measured = 0
    if p.full <= 1:
        return 0
    if rows != p.rows:
        p.odd += 1
        if p.odd < 2 and p.rows != 0:  # one odd batch (an epoch's last): no new timings
            return 1 if p.left > 0 else p.full
        p.rows, p.solo, p.since, p.left, p.backoff = rows, 0, 0, 0, BACKOFF_MIN
        p.spent, p.used = 0, 0
    p.odd = 0
    p.measured = 1
    if p.left > 0 or _solo:
        p.left = max(p.left - 1, 0)
        return 1
    if p.solo == 0 or p.since >= PROBE_EVERY:
        return 1
    return p.full


cdef void pace_end(Pace *p, int team, double seconds) noexcept nogil:
    if not p.measured:
        return
    if team == 1:
        p.solo, p.since = seconds, 0
        return
    p.spent += seconds
    p.used += 1
    p.since += 1
    # the window is lost, or one step took as long as several one-thread steps (a collapse,
    # not a hiccup): one thread for a while
    if p.spent > _margin * WINDOW * p.solo or seconds > _margin * COLLAPSE * p.solo:
        p.left = p.backoff
        p.backoff = min(2 * p.backoff, <int>BACKOFF_MAX)
        p.spent, p.used = 0, 0
    elif p.used == WINDOW:
        p.backoff = BACKOFF_MIN
        p.spent, p.used = 0, 0


cdef class PaceTwin:
    """pace_begin/pace_end on a Pace of their own, callable from Python (for tests)."""
    cdef Pace p

    def __init__(self, int full):
        self.p.full = full

    def begin(self, int rows):
        return pace_begin(&self.p, rows)

    def end(self, int team, double seconds):
        pace_end(&self.p, team, seconds)


def set_pacing(str mode):
    """The busy-machine pacing: "on" (the default), "off" (for the benchmarks' comparison) or
    "solo" (every paced step on one thread, for tests)."""
    global _margin, _solo
    if mode not in ("on", "off", "solo"):
        raise ValueError(f"mode: expected 'on', 'off' or 'solo', got {mode!r}")
    _margin = 1e300 if mode == "off" else 1.25
    _solo = mode == "solo"


def pins():
    """Native calls running now with the BLAS pinned (for tests)."""
    return _pins


class blas_pinned:
    """``with blas_pinned():`` keeps scipy's BLAS on one thread for the whole block, as a native
    call does (counted with theirs). For a Python loop around native calls whose own work calls
    that BLAS (scipy's L-BFGS-B: its matrix-vector products are threaded from about 10,000
    elements): its pool's workers would otherwise spin on, after each product, on the core the
    next call's OpenMP team needs."""

    def __enter__(self):
        self.pinned = blas_pin()
        return self

    def __exit__(self, *exc_info):
        blas_unpin(self.pinned)
        return False


def py_blas_pin():
    """blas_pin, callable from Python (for tests)."""
    return blas_pin()


def py_blas_unpin(int pinned):
    """blas_unpin, callable from Python (for tests)."""
    blas_unpin(pinned)


def set_blas_thread_control(size_t set_address, size_t get_address):
    """Give bpcore the BLAS's set/get-num-threads functions (addresses; 0, 0 to forget them)."""
    global _blas_set, _blas_get
    if set_address == 0 or get_address == 0:
        _blas_set, _blas_get = NULL, NULL
    else:
        _blas_set = <blas_set_fn><void *>set_address
        _blas_get = <blas_get_fn><void *>get_address


def has_blas_thread_control():
    return _blas_set != NULL


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


def loaded_objects():
    """How many shared objects the process has loaded (-1 where the platform does not say): a
    BLAS loaded since threadpoolctl's last scan changes it."""
    return bp_loaded_objects()


def get_omp_threads():
    """bpcore's thread count, as capped by the OpenMP runtime for the calling thread."""
    return _threads()


def get_own_threads():
    """bpcore's own setting, before the runtime's cap."""
    return _num_threads


def set_omp_threads(int n):
    global _num_threads
    if n < 1:
        raise ValueError(f"n: expected a positive number of threads, got {n}")
    _num_threads = n if BP_HAVE_OPENMP else 1
