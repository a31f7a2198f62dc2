"""One knob for bpcore's threads: the OpenMP loops and the BLAS pool together.

The default is OMP_NUM_THREADS if set, else the CPUs this process may use: its CPU affinity
(``os.sched_getaffinity``) within its cgroup's CPU quota (``cpu.max``), not just the machine's
core count. ``set_num_threads(n)`` sets bpcore's OpenMP loops and every BLAS library loaded in
the process (through threadpoolctl) to n threads, n from 1 to ``max_threads()``;
``num_threads(n)`` does the same for a ``with`` block and then restores both. The OpenMP
runtime's own setting caps bpcore's (threadpoolctl's ``threadpool_limits(1)`` limits bpcore too,
and so does the OMP_NUM_THREADS=1 that joblib's workers get).

Inside bpcore's native calls there is one pool: scipy's OpenBLAS is pinned to one thread and
bpcore's OpenMP threads each compute a part of every GEMM (see bpcore._threads for why). For
that bpcore needs the BLAS's own set/get-num-threads functions; ``find_blas_thread_control``
looks them up once, at import. Without them (a BLAS other than OpenBLAS), bpcore still works:
GEMMs are threaded by the BLAS and elementwise loops run on one thread.

After ``os.fork()`` GNU libgomp cannot start threads in the child if the parent had started
them (a child that ran OpenMP loops would hang): a fork child of bpcore runs on one thread, and
``set_num_threads(n > 1)`` there raises. Use multiprocessing's "spawn" or "forkserver" start
method for children that should use several threads.
"""
import contextlib
import os

from bpcore import _threads
from bpcore._validation import check_int

__all__ = ["set_num_threads", "get_num_threads", "num_threads", "max_threads", "usable_cpus",
           "blas_pinned"]

# ``with blas_pinned():`` around a Python loop of native calls whose own work calls scipy's
# BLAS (an L-BFGS-B driver): that BLAS stays on one thread, as during a native call
blas_pinned = _threads.blas_pinned

# symbol names of OpenBLAS's thread control, with the prefixes and suffixes builds add
_OPENBLAS_PREFIXES = ("scipy_openblas_", "openblas_", "scipy_openblas64_", "openblas64_")
_OPENBLAS_SUFFIXES = ("", "64_")


def find_blas_thread_control():
    """Find the OpenBLAS that scipy's cython_blas calls and hand its set/get-num-threads
    functions to the native code. Returns the library's path, or None if not found."""
    import ctypes

    import scipy.linalg.cython_blas  # noqa: F401  (loads the BLAS scipy uses)
    from threadpoolctl import ThreadpoolController

    libs = [lib for lib in ThreadpoolController().lib_controllers
            if lib.internal_api == "openblas"]
    # scipy's own OpenBLAS sits in a folder named after scipy; with one OpenBLAS, it is that one
    ours = [lib for lib in libs if "scipy" in os.path.basename(os.path.dirname(lib.filepath))]
    if not ours and len(libs) == 1:
        ours = libs
    if len(ours) != 1:
        _threads.set_blas_thread_control(0, 0)
        return None
    dll = ctypes.CDLL(ours[0].filepath)
    for prefix in _OPENBLAS_PREFIXES:
        for suffix in _OPENBLAS_SUFFIXES:
            try:
                setter = getattr(dll, f"{prefix}set_num_threads{suffix}")
                getter = getattr(dll, f"{prefix}get_num_threads{suffix}")
            except AttributeError:
                continue
            _threads.set_blas_thread_control(ctypes.cast(setter, ctypes.c_void_p).value,
                                             ctypes.cast(getter, ctypes.c_void_p).value)
            return ours[0].filepath
    _threads.set_blas_thread_control(0, 0)
    return None


def cgroup_cpu_limit(root="/sys/fs/cgroup"):
    """The cgroup's CPU quota in whole CPUs (rounded up), or None without one. cgroup v2's
    cpu.max is "quota period" or "max period"; v1 splits them into two files."""
    try:
        with open(os.path.join(root, "cpu.max")) as fh:
            quota, period = fh.read().split()[:2]
        if quota == "max":
            return None
        return max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open(os.path.join(root, "cpu", "cpu.cfs_quota_us")) as fh:
            quota = int(fh.read())
        with open(os.path.join(root, "cpu", "cpu.cfs_period_us")) as fh:
            period = int(fh.read())
        return max(1, -(-quota // period)) if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus():
    """The CPUs this process may run on: its affinity mask, within its cgroup's quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity (macOS, Windows)
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_limit()
    return min(cpus, quota) if quota else cpus


def max_threads():
    """The most threads set_num_threads accepts: 4 per logical CPU of the machine (at least
    8). More only adds per-thread workspace; a mistyped huge count would allocate it."""
    return max(8, 4 * (os.cpu_count() or 1))


def default_threads():
    """OMP_NUM_THREADS if set (the OpenMP runtime's reading of it), else usable_cpus()."""
    if os.environ.get("OMP_NUM_THREADS"):
        return _threads.default_num_threads()
    return usable_cpus()


def _check_threads(n):
    n = check_int(n, "n", low=1)
    if n > max_threads():
        raise ValueError(f"n: expected at most {max_threads()} threads (4 per CPU), got {n}")
    if n > 1 and _FORKED:
        raise RuntimeError(f"n: this process was forked from one whose OpenMP threads may have "
                           f"started, and GNU libgomp cannot start threads in a fork child (it "
                           f"hangs): got {n}, only 1 works here. Start the child with "
                           f"multiprocessing's 'spawn' or 'forkserver' method instead.")
    return n


# threadpoolctl finds the BLAS libraries by scanning every library the process has loaded (about
# 2 ms with NumPy, SciPy and scikit-learn), which an estimator's `with num_threads(n)` paid on
# every fit and predict. The scan is kept, and redone when the process has loaded or unloaded a
# shared object since (a BLAS may have come with it) or where that count is not known.
_scan = {"controller": None, "objects": -1}


def _blas_controller():
    objects = _threads.loaded_objects()
    if _scan["controller"] is None or objects < 0 or objects != _scan["objects"]:
        from threadpoolctl import ThreadpoolController
        _scan["controller"] = ThreadpoolController()
        _scan["objects"] = _threads.loaded_objects()  # after the scan: it may load one itself
    return _scan["controller"]


def _blas_limit(n):
    return _blas_controller().limit(limits=n, user_api="blas")


def get_num_threads():
    """The number of threads bpcore's OpenMP loops use (from the calling thread)."""
    return _threads.get_omp_threads()


def set_num_threads(n):
    """Use n threads in bpcore's OpenMP loops and in the BLAS pool, from now on."""
    n = _check_threads(n)
    _threads.set_omp_threads(n)
    _blas_limit(n)


@contextlib.contextmanager
def num_threads(n):
    """``with bpcore.num_threads(1): ...`` runs the block with n threads, then restores."""
    n = _check_threads(n)
    old = _threads.get_own_threads()
    limiter = _blas_limit(n)
    _threads.set_omp_threads(n)
    try:
        yield n
    finally:
        _threads.set_omp_threads(old)
        limiter.restore_original_limits()


_FORKED = False


def _after_fork_in_child():
    global _FORKED
    _FORKED = True
    _threads.set_omp_threads(1)


BLAS_LIBRARY = find_blas_thread_control()
_threads.set_omp_threads(default_threads())
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
