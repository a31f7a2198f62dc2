"""One training step on 1 and on 2 threads, on an idle machine and under three kinds of load.

A thread of bpcore's team can be descheduled by the operating system when other work wants the
cores, and every barrier of the step then waits for it: without pacing a 2-thread step took up
to 55 times the 1-thread step under load. bpcore's pacing (bpcore._threads) times each step and
falls back to one thread while the team is slower than one thread would be. This script
measures, per load and batch size, the median step on 1 and on 2 threads in the same process
(turns of 16 steps interleaved, each step timed, so both see the same load), with pacing on and, for comparison,
off.

Loads (each started in other processes, then measured under):
  idle      nothing else (the machine's other tenants aside: say which machine)
  pinned    one CPU-bound process pinned to CPU 0
  unpinned  as many CPU-bound processes as usable CPUs, unpinned
  bpcore    another process training with bpcore on every CPU

    python benchmarks/bench_loaded.py                  # every load, batches 1 8 32 128 512
    python benchmarks/bench_loaded.py --loads idle,unpinned --seconds 4 --no-unpaced
    python benchmarks/bench_loaded.py --loads idle --batches 32 --joblib

The target: under load the 2-thread median at most 1.5 times the 1-thread median at every batch
size; idle, pacing no more than 5% slower than no pacing.
"""
import argparse
import json
import multiprocessing
import os
import statistics
import sys
import time

import numpy as np

LOADS = ("idle", "pinned", "unpinned", "bpcore")


def _spin(cpu):
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    x = 0
    while True:
        x += 1


def _train_forever():
    import bpcore
    rng = np.random.default_rng(1)
    X = rng.standard_normal((128, 784)).astype(np.float32)
    y = rng.integers(0, 10, 128)
    m = bpcore.MLP([784, 256, 128, 10], seed=1)
    opt = bpcore.SGD(m, lr=1e-3)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    while True:
        for b in (1, 8, 32, 128):
            m.train_step(X[:b], y[:b], loss, opt)


def start_load(kind, cpus):
    ctx = multiprocessing.get_context("spawn")
    if kind == "idle":
        procs = []
    elif kind == "pinned":
        procs = [ctx.Process(target=_spin, args=(min(os.sched_getaffinity(0)),), daemon=True)]
    elif kind == "unpinned":
        procs = [ctx.Process(target=_spin, args=(None,), daemon=True) for _ in range(cpus)]
    elif kind == "bpcore":
        procs = [ctx.Process(target=_train_forever, daemon=True)]
    else:
        raise ValueError(f"--loads: expected some of {', '.join(LOADS)}, got {kind!r}")
    for p in procs:
        p.start()
    time.sleep(1.0 if procs else 0)
    return procs


def stop_load(procs):
    for p in procs:
        p.kill()
        p.join()


def measure(batch, seconds, paced):
    """Median µs per step on 1 and on 2 threads, turns of 16 steps interleaved."""
    import bpcore
    from bpcore import _threads
    _threads.set_pacing("on" if paced else "off")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    runs = {}
    for n in (1, 2):
        m = bpcore.MLP([784, 256, 128, 10], seed=0)
        runs[n] = (m, bpcore.SGD(m, lr=1e-4))
    samples = {1: [], 2: []}
    block = 16  # steps per turn; each step timed on its own (the median is of steps)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or min(len(s) for s in samples.values()) < 5 * block:
        for n in (1, 2):
            m, opt = runs[n]
            with bpcore.num_threads(n):
                for _ in range(block):
                    t0 = time.perf_counter()
                    m.train_step(X, y, loss, opt)
                    samples[n].append((time.perf_counter() - t0) * 1e6)
    _threads.set_pacing("on")
    return {n: statistics.median(s) for n, s in samples.items()}


def _one_training(seed):
    import bpcore
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((8192, 784)).astype(np.float32)
    y = rng.integers(0, 10, 8192)
    m = bpcore.MLP([784, 256, 128, 10], seed=seed)
    m.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=bpcore.Adam(m, lr=1e-3),
          epochs=3, batch_size=64, seed=seed)
    return bpcore.get_num_threads()


def joblib_pair():
    """Two trainings one after the other (bpcore's threads each), against
    joblib.Parallel(n_jobs=2) (loky workers, OMP_NUM_THREADS=1 each): seconds, and the threads
    the workers used."""
    from joblib import Parallel, delayed
    t0 = time.perf_counter()
    for seed in (1, 2):
        _one_training(seed)
    serial = time.perf_counter() - t0
    Parallel(n_jobs=2)(delayed(_one_training)(s) for s in (1, 2))  # start the workers
    t0 = time.perf_counter()
    threads = Parallel(n_jobs=2)(delayed(_one_training)(s) for s in (1, 2))
    return serial, time.perf_counter() - t0, threads


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loads", default=",".join(LOADS))
    ap.add_argument("--batches", default="1,8,32,128,512")
    ap.add_argument("--seconds", type=float, default=3.0, help="per cell")
    ap.add_argument("--no-unpaced", action="store_true", help="skip the pacing-off columns")
    ap.add_argument("--joblib", action="store_true",
                    help="also time two trainings one after the other against joblib.Parallel")
    ap.add_argument("--json", help="write the numbers here")
    args = ap.parse_args(argv)
    import bpcore
    from threadpoolctl import threadpool_info
    cpus = bpcore.threads.usable_cpus()
    kernels = sorted({lib.get("architecture") or "?" for lib in threadpool_info()
                      if lib["internal_api"] == "openblas"})
    print(f"bpcore {bpcore.__version__}; usable CPUs {cpus}; OpenBLAS kernels "
          f"{', '.join(kernels)}; {args.seconds:g} s per cell; medians of interleaved blocks")
    print()
    head = "| load | batch | 1 thread µs | 2 threads µs | 2/1 |"
    rule = "|---|---:|---:|---:|---:|"
    if not args.no_unpaced:
        head += " 2 threads unpaced µs | unpaced 2/1 |"
        rule += "---:|---:|"
    print(head)
    print(rule)
    results = []
    for kind in args.loads.split(","):
        procs = start_load(kind, cpus)
        try:
            for batch in (int(b) for b in args.batches.split(",")):
                paced = measure(batch, args.seconds, True)
                row = {"load": kind, "batch": batch, "one": paced[1], "two": paced[2]}
                line = (f"| {kind} | {batch} | {paced[1]:,.1f} | {paced[2]:,.1f} | "
                        f"{paced[2] / paced[1]:.2f} |")
                if not args.no_unpaced:
                    unpaced = measure(batch, args.seconds, False)
                    row.update(unpaced_one=unpaced[1], unpaced_two=unpaced[2])
                    line += f" {unpaced[2]:,.1f} | {unpaced[2] / unpaced[1]:.2f} |"
                print(line, flush=True)
                results.append(row)
        finally:
            stop_load(procs)
    if args.joblib:
        serial, parallel, threads = joblib_pair()
        print(f"\nTwo trainings (784-256-128-10, 8,192 rows, 3 epochs, Adam): one after the "
              f"other {serial:.2f} s, joblib.Parallel(n_jobs=2) {parallel:.2f} s (workers on "
              f"{threads} threads)")
        results.append({"joblib_serial_s": serial, "joblib_parallel_s": parallel})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
