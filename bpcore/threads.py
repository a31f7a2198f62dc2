"""One knob for bpcore's threads: the OpenMP loops and the BLAS pool together.

The default is the OpenMP runtime's: OMP_NUM_THREADS if set, else the number of cores.
``set_num_threads(n)`` sets bpcore's OpenMP loops and every BLAS library loaded in the process
(through threadpoolctl) to n threads; ``num_threads(n)`` does the same for a ``with`` block and
then restores both.

Inside bpcore's native calls there is one pool: scipy's OpenBLAS is pinned to one thread and
bpcore's OpenMP threads each compute a part of every GEMM (see bpcore._threads for why). For
that bpcore needs the BLAS's own set/get-num-threads functions; ``find_blas_thread_control``
looks them up once, at import. Without them (a BLAS other than OpenBLAS), bpcore still works:
GEMMs are threaded by the BLAS and elementwise loops run on one thread.

After ``os.fork()`` GNU libgomp's thread pool is not usable in the child if the parent had
started it: a child that runs bpcore can hang. Use the "spawn" or "forkserver" start method of
multiprocessing (or ``set_num_threads(1)`` in the parent before forking).
"""
import contextlib
import os

from bpcore import _threads
from bpcore._validation import check_int

__all__ = ["set_num_threads", "get_num_threads", "num_threads"]

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


def _blas_limit(n):
    from threadpoolctl import threadpool_limits
    return threadpool_limits(limits=n, user_api="blas")


def get_num_threads():
    """The number of threads bpcore's OpenMP loops use."""
    return _threads.get_omp_threads()


def set_num_threads(n):
    """Use n threads in bpcore's OpenMP loops and in the BLAS pool, from now on."""
    n = check_int(n, "n", low=1)
    _threads.set_omp_threads(n)
    _blas_limit(n)


@contextlib.contextmanager
def num_threads(n):
    """``with bpcore.num_threads(1): ...`` runs the block with n threads, then restores."""
    n = check_int(n, "n", low=1)
    old = _threads.get_omp_threads()
    limiter = _blas_limit(n)
    _threads.set_omp_threads(n)
    try:
        yield n
    finally:
        _threads.set_omp_threads(old)
        limiter.restore_original_limits()


BLAS_LIBRARY = find_blas_thread_control()
