"""Memory measured the way the tests need it: through tracemalloc, which NumPy reports to."""
import tracemalloc


def peak_bytes(call, repeats=1):
    """Most bytes held at once above the starting point, over `repeats` calls of call()."""
    tracemalloc.start()
    try:
        start, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        for _ in range(repeats):
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - start
