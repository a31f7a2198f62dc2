"""One knob for bpcore's threads: the OpenMP loops and the BLAS pool together.

The default is the OpenMP runtime's: OMP_NUM_THREADS if set, else the number of cores.
``set_num_threads(n)`` sets bpcore's OpenMP loops and every BLAS library loaded in the process
(through threadpoolctl) to n threads; ``num_threads(n)`` does the same for a ``with`` block and
then restores both.

After ``os.fork()`` GNU libgomp's thread pool is not usable in the child if the parent had
started it: a child that runs bpcore can hang. Use the "spawn" or "forkserver" start method of
multiprocessing (or ``set_num_threads(1)`` in the parent before forking).
"""
import contextlib

from bpcore import _threads
from bpcore._validation import check_int

__all__ = ["set_num_threads", "get_num_threads", "num_threads"]


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
