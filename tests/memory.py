"""Memory measured the way the tests need it: through tracemalloc, which NumPy reports to."""
import gc
import tracemalloc


def peak_bytes(call, repeats=1, warmup=0):
    """Most bytes held at once above the starting point, over `repeats` calls of call().
    `warmup` calls are made first, traced but not counted: an object freed onto one of
    CPython's free lists (floats, tuples) stays counted as held, so the calls that refill
    those lists count up to a few kilobytes (measured for a train_step, depending on what ran
    before) that the calls after them, which reuse the listed objects, do not. The cyclic
    garbage collector is run first and paused while measuring: otherwise the garbage of
    earlier tests (and the finalizers it runs) is freed, and allocated for, inside the
    measurement (seen: 1.8 KB after an interrupted fit)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    tracemalloc.start()
    try:
        for _ in range(warmup):
            call()
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(repeats):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        if was_enabled:
            gc.enable()
    return peak - start


# A training step's own Python objects (its float result, argument tuples) measured up to 1.8 KB
# in some test orders; 4 KB still catches any array of a batch of 200 (its outputs alone are
# 8 KB) and a workspace re-grown at any batch (tens of KB), not a fixed tiny array.
STEP_BYTES_BOUND = 4096


def steady_step_bytes(step):
    """peak_bytes over 50 calls of step() after 50 traced warm-up calls: enough to refill the
    free lists that the tests before drained (with 3, a batch-of-one step measured 4,208 bytes
    in one full run, 0.8-3.1 KB in others)."""
    return peak_bytes(step, 50, warmup=50)
