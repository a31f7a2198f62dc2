"""show_config(): what bpcore was built with and what it runs on."""
import os
import sys

from bpcore import _simd, _spin, _threads
from bpcore._version import __version__


def config_info():
    """The facts show_config prints, as a dict."""
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    # scipy's cython_blas is the BLAS bpcore calls; list it first, then any other loaded BLAS
    import scipy.linalg.cython_blas  # noqa: F401  (make sure it is loaded)
    blas = [
        {k: lib.get(k) for k in ("internal_api", "version", "num_threads", "threading_layer",
                                  "architecture", "filepath")}
        for lib in threadpool_info() if lib.get("user_api") == "blas"
    ]
    # scipy's OpenBLAS sits in a folder named after scipy (scipy.libs, scipy/.dylibs)
    blas.sort(key=lambda lib: "scipy" not in os.path.dirname(lib["filepath"] or ""))
    return {
        "bpcore": __version__,
        "python": sys.version.split()[0],
        "platform": sys.platform,
        "openmp": _threads.openmp_enabled(),
        "openmp_version": _threads.openmp_version(),
        "num_threads": _threads.get_omp_threads(),
        "parallel_min_work": _threads.MIN_PARALLEL_WORK,
        "blas_thread_control": _threads.has_blas_thread_control(),
        "idle_spin": _spin.setting(),
        "simd": _simd.LEVEL_NAMES[_simd.level()],
        "simd_best": _simd.LEVEL_NAMES[_simd.best_level()],
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas": blas,
    }


def _spin_text(spin):
    if spin["source"] == "bpcore":
        return (f"spin {spin['GOMP_SPINCOUNT']} steps (about "
                f"{spin['budget_seconds'] * 1e6:.0f} us) after a region, then sleep")
    if spin["source"] == "user":
        chosen = ", ".join(f"{k}={v}" for k, v in spin.items() if k != "source")
        return f"as the environment says ({chosen})"
    if spin["source"] == "loaded before bpcore":
        return ("the runtime was loaded before bpcore (by another library): its own spin "
                "(libgomp: 300,000 steps); import bpcore first or set GOMP_SPINCOUNT")
    if spin["source"] == "not GNU libgomp":
        return "the OpenMP runtime's own wait (not GNU libgomp: GOMP_SPINCOUNT does not apply)"
    return spin["source"]


def show_config(file=None):
    """Print bpcore's version, OpenMP and BLAS setup and thread counts, numpy and scipy versions."""
    info = config_info()
    out = file or sys.stdout
    w = lambda s="": print(s, file=out)  # noqa: E731
    w(f"bpcore {info['bpcore']} (Python {info['python']}, {info['platform']})")
    if info["openmp"]:
        w(f"  OpenMP: yes (_OPENMP {info['openmp_version']}), {info['num_threads']} threads "
          f"for loops over >= {info['parallel_min_work']} elements")
    else:
        w("  OpenMP: no (built without it: elementwise loops run on one thread)")
    if info["openmp"]:
        w(f"  idle OpenMP threads: {_spin_text(info['idle_spin'])}")
    w(f"  SIMD loops: {info['simd']} (best this CPU runs: {info['simd_best']})")
    if info["blas_thread_control"]:
        w("  one thread pool: BLAS pinned to 1 thread inside bpcore's calls, GEMMs split "
          "among bpcore's threads")
    else:
        w("  BLAS threads not controllable: GEMMs threaded by the BLAS, loops on one thread")
    for i, lib in enumerate(info["blas"]):
        role = "BLAS (used by bpcore, via scipy)" if i == 0 else "other BLAS loaded"
        w(f"  {role}: {lib['internal_api']} {lib['version']}, {lib['num_threads']} threads, "
          f"{lib['threading_layer']}, {lib['architecture']}")
        w(f"      {lib['filepath']}")
    w(f"  numpy {info['numpy']}, scipy {info['scipy']}")
