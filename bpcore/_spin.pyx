# cython: language_level=3
"""How long bpcore's idle OpenMP threads spin: a time budget, turned into GOMP_SPINCOUNT for the
OpenMP runtime before it loads (see bpcore._threads for why and what was measured).

GNU libgomp reads GOMP_SPINCOUNT and OMP_WAIT_POLICY once, when it is loaded, and its idle
threads then repeat a load and a PAUSE that many times before they sleep; PAUSE takes from a
few to about fifty nanoseconds depending on the CPU, so the count that keeps a thread awake
for BUDGET_SECONDS is measured here, with the same loop. This module is compiled without OpenMP
so that it runs before the runtime is loaded; bpcore/__init__.py loads the runtime inside
``sized_wait()``.
"""
import contextlib
import os
import time

cdef extern from "bp_spin.h":
    long long bp_spin_steps(long long n, const int *flag) noexcept nogil

# what an idle thread may spin after a parallel region before it sleeps: longer than the Python
# between two train_step calls (so back-to-back steps find their threads awake), far shorter
# than libgomp's default (300,000 steps: 9 ms on the README's machine)
BUDGET_SECONDS = 150e-6
MIN_COUNT = 1000        # never fewer steps, whatever the clock says
MAX_COUNT = 300000      # libgomp's own default: never more
WAIT_VARS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")

cdef int _never = 0     # the flag the timed loop waits on: nobody sets it
_setting = {"source": "not loaded yet"}


def step_seconds(int trials=5, long long steps=4000):
    """Seconds of one step of the wait, the fastest of `trials` runs of `steps` steps (a run
    the operating system interrupted is slower, never faster)."""
    cdef long long done = 0
    best = float("inf")
    for _ in range(trials):
        t0 = time.perf_counter()
        with nogil:
            done = bp_spin_steps(steps, &_never)
        best = min(best, (time.perf_counter() - t0) / max(done, 1))
    return best


def spin_count(budget=BUDGET_SECONDS):
    """The GOMP_SPINCOUNT that spins for about `budget` seconds on this CPU."""
    return int(min(MAX_COUNT, max(MIN_COUNT, round(budget / step_seconds()))))


def _loaded_openmp_runtimes():
    """The paths of the GNU OpenMP runtimes mapped into this process (Linux), else None."""
    try:
        with open("/proc/self/maps") as fh:
            return {line.split(None, 5)[5].strip() for line in fh
                    if "libgomp" in line and len(line.split(None, 5)) == 6}
    except OSError:
        return None


@contextlib.contextmanager
def sized_wait():
    """Load the OpenMP runtime inside this block: unless the user chose the wait (GOMP_SPINCOUNT
    or OMP_WAIT_POLICY in the environment), GOMP_SPINCOUNT is set to spin_count() for the
    block, then the environment is put back as it was (children and libraries loaded later
    see the user's environment, not bpcore's)."""
    global _setting
    user = {var: os.environ[var] for var in WAIT_VARS if var in os.environ}
    if user:
        _setting = {"source": "user", **user}
        yield
        return
    before = _loaded_openmp_runtimes()
    count = spin_count()
    os.environ["GOMP_SPINCOUNT"] = str(count)
    try:
        yield
    finally:
        del os.environ["GOMP_SPINCOUNT"]
    after = _loaded_openmp_runtimes()
    _setting = {"source": "bpcore", "GOMP_SPINCOUNT": count,
                "budget_seconds": BUDGET_SECONDS}
    if before is None or after is None:
        _setting["checked"] = False  # no /proc/self/maps: which runtime read it is not known
    elif not after - before:
        # bpcore's modules found a runtime already loaded (by PyTorch, say): its spin stands;
        # or they use none of GNU's (LLVM's libomp reads KMP_BLOCKTIME instead)
        _setting = ({"source": "loaded before bpcore", "runtimes": sorted(before)} if before
                    else {"source": "not GNU libgomp"})


def setting():
    """What sets the idle threads' spin: {"source": "bpcore", "GOMP_SPINCOUNT": n, ...},
    {"source": "user", <the user's variables>}, {"source": "loaded before bpcore", ...}, or
    {"source": "not GNU libgomp"} (the runtime's own wait)."""
    return dict(_setting)
