"""Type stubs for bpcore._threads (compiled from _threads.pyx): bpcore's one thread pool."""

MIN_PARALLEL_WORK: int

def set_blas_thread_control(set_address: int, get_address: int) -> None:
    """Give bpcore the BLAS's set/get-num-threads functions (addresses; 0, 0 to forget them)."""

def has_blas_thread_control() -> bool: ...
def openmp_enabled() -> bool:
    """True if the native modules were compiled with OpenMP."""

def openmp_version() -> int:
    """The _OPENMP date macro the modules were compiled with (0 without OpenMP)."""

def default_num_threads() -> int:
    """What the OpenMP runtime would use: OMP_NUM_THREADS if set, else the number of cores."""

def num_procs() -> int: ...
def loaded_objects() -> int:
    """How many shared objects the process has loaded (-1 where the platform does not say)."""

def get_omp_threads() -> int: ...
def set_omp_threads(n: int) -> None: ...

def pins() -> int:
    """Native calls running now with the BLAS pinned (for tests)."""

class blas_pinned:
    """``with blas_pinned():`` keeps scipy's BLAS on one thread for the block (counted)."""

    def __enter__(self) -> blas_pinned: ...
    def __exit__(self, *exc_info: object) -> bool: ...

def py_blas_pin() -> int:
    """blas_pin, callable from Python (for tests)."""
def py_blas_unpin(pinned: int) -> None:
    """blas_unpin, callable from Python (for tests)."""
def get_own_threads() -> int:
    """bpcore's own setting, before the runtime's cap."""

class PaceTwin:
    """pace_begin/pace_end on a Pace of their own, callable from Python (for tests)."""
    def __init__(self, full: int) -> None: ...
    def begin(self, rows: int) -> int: ...
    def end(self, team: int, seconds: float) -> None: ...
def set_pacing(mode: str) -> None:
    """The busy-machine pacing: "on" (the default), "off" or "solo" (for tests)."""
