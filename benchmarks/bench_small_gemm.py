"""Measure the crossovers of bpcore's small-batch kernels (csrc/bp_gemm.c): full training steps
(model.train_step, MLP 784-256-128-10, MSE, SGD with momentum, as python -m bpcore.bench) with
every product on the kernels ("own": _blas._set_small_rows(large)), on BLAS ("blas":
_set_small_rows(0)) and as shipped ("auto": the crossovers in _blas.pyx), interleaved block by
block in one process; medians of the blocks' microseconds per step; with --ops the three
products of each layer alone on either path (the per-product crossovers).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_small_gemm.py \
        --threads 1 --batches 1,8,32,64,128 --dtype float32
"""
import argparse
import statistics
import time

import numpy as np

import bpcore
from bpcore import _blas, _simd
from bpcore.bench import BpcoreImpl, build_model

DEFAULT_SIZES = (784, 256, 128, 10)


def _block(impl, steps):
    impl.reset()
    for i in range(3):  # untimed: the pool awake, the weights in cache
        impl.step(i % len(impl.batches))
    impl.reset()
    t = time.perf_counter()
    for i in range(steps):
        impl.step(i % len(impl.batches))
    return (time.perf_counter() - t) / steps * 1e6


def step_times(sizes, n, dtype, rounds, block_s, shipped):
    """Median microseconds per step of each path: {"own": ..., "blas": ..., "auto": ...}."""
    rng = np.random.default_rng(n)
    batches = []
    for _ in range(4):
        X = rng.uniform(-1, 1, (n, sizes[0])).astype(dtype)
        Y = bpcore.one_hot(rng.integers(0, sizes[-1], n), sizes[-1], dtype)
        batches.append((X, Y))
    rows = {"own": 1 << 20, "blas": 0, "auto": shipped}
    impls = {name: BpcoreImpl(build_model(sizes, dtype=dtype), batches) for name in rows}
    probe = {}
    for name, impl in impls.items():
        _blas._set_small_rows(rows[name])
        probe[name] = _block(impl, 10)
    steps = {k: max(1, min(256, int(block_s * 1e6 / v))) for k, v in probe.items()}
    samples = {k: [] for k in impls}
    for r in range(rounds):
        order = list(impls)[r % 3:] + list(impls)[:r % 3]
        for name in order:
            _blas._set_small_rows(rows[name])
            samples[name].append(_block(impls[name], steps[name]))
    return {k: statistics.median(v) for k, v in samples.items()}


def op_times(sizes, n, dtype, reps=7):
    """Per layer, the median of reps calls (each a loop of calls lasting ~5 ms) of each product
    on each path, through the engine's entry point (_blas.py_matmul)."""
    rng = np.random.default_rng(0)
    out = []
    for fi, fo in zip(sizes, sizes[1:]):
        X = rng.standard_normal((n, fi)).astype(dtype)
        W = rng.standard_normal((fi, fo)).astype(dtype)
        dZ = rng.standard_normal((n, fo)).astype(dtype)
        calls = {"nn": ("n", "n", X, W, np.empty((n, fo), dtype)),
                 "nt": ("n", "t", dZ, W, np.empty((n, fi), dtype)),
                 "tn": ("t", "n", X, dZ, np.empty((fi, fo), dtype))}
        row = {}
        for op, (ta, tb, A, B, C) in calls.items():
            res = {}
            for name, rows in (("own", 1 << 20), ("blas", 0)):
                _blas._set_small_rows(rows)
                t = time.perf_counter()
                _blas.py_matmul(ta, tb, 1.0, A, B, 0.0, C)
                one = max(time.perf_counter() - t, 1e-6)
                k = max(1, int(0.005 / one))
                ts = []
                for _ in range(reps):
                    t = time.perf_counter()
                    for _ in range(k):
                        _blas.py_matmul(ta, tb, 1.0, A, B, 0.0, C)
                    ts.append((time.perf_counter() - t) / k * 1e6)
                res[name] = statistics.median(ts)
            row[op] = res
        out.append(((fi, fo), row))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batches", default="1,8,32,64,128")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--block-s", type=float, default=0.03)
    ap.add_argument("--ops", action="store_true", help="also time each product alone")
    ap.add_argument("--auto", default=None,
                    help="nn,nt,tn: crossovers of --dtype to try as 'auto' instead of the "
                         "shipped ones")
    args = ap.parse_args(argv)
    sizes = tuple(int(v) for v in args.sizes.split(","))
    bpcore.set_num_threads(args.threads)
    dtype = np.dtype(args.dtype).type
    previous = _blas._set_small_rows(0)
    _blas._set_small_rows(previous)
    print(f"SIMD level {_simd.level()} ({_simd.LEVEL_NAMES[_simd.level()]}), threads "
          f"{args.threads}, {args.dtype}, MLP {'-'.join(map(str, sizes))}, MSE, SGD momentum")
    auto = dict(previous)
    if args.auto:
        auto[np.dtype(dtype).name] = tuple(int(v) for v in args.auto.split(","))
    print(f"crossovers (nn, nt, tn) for {args.dtype}: shipped {previous[np.dtype(dtype).name]}, "
          f"'auto' runs {auto[np.dtype(dtype).name]}")
    print(f"{'batch':>5} {'own µs':>9} {'blas µs':>9} {'auto µs':>9} {'own/blas':>9} "
          f"{'auto/blas':>9}")
    try:
        for n in map(int, args.batches.split(",")):
            t = step_times(sizes, n, dtype, args.rounds, args.block_s, auto)
            print(f"{n:>5} {t['own']:>9.1f} {t['blas']:>9.1f} {t['auto']:>9.1f} "
                  f"{t['own'] / t['blas']:>9.3f} {t['auto'] / t['blas']:>9.3f}", flush=True)
        if args.ops:
            for n in map(int, args.batches.split(",")):
                for (fi, fo), row in op_times(sizes, n, dtype):
                    cells = "  ".join(f"{op} {r['own']:7.1f}/{r['blas']:7.1f}"
                                      for op, r in row.items())
                    print(f"n={n:<4} {fi}x{fo:<4} own/blas µs: {cells}", flush=True)
    finally:
        _blas._set_small_rows(previous)


if __name__ == "__main__":
    main()
