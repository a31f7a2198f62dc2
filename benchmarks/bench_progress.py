"""What fit's in-epoch progress display costs: 20-epoch fits of MLP([64, 100, 10]) on 1,797 x 64
rows (the size of scikit-learn's digits; random values, batch 32, SGD), timed interleaved.

In one process, round after round, one fit of each setting in turn (order rotating):
  quiet      verbose=0 (no display object: the engine's hook is one pointer test per 16 batches)
  verbose    verbose=1 with the progress hook (epochs this short show no bar: a clock reading
             per return of the engine)
  lines-only verbose=1 without the hook (the epoch lines alone, as before the display existed)
  every      verbose=1, the display drawn at every return (INTERVAL 0): the worst case
Printing goes to os.devnull. Reported: median seconds per fit and ratios to the baseline.

``--baseline DIR`` also compares verbose=0 across two builds: DIR is another source tree with
its extensions built in place (e.g. the commit before the hook); the fits alternate between a
child process on each tree, since one process cannot hold two builds of bpcore.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_progress.py
"""
import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

ROWS, FEATURES, SIZES, EPOCHS, BATCH = 1797, 64, [64, 100, 10], 20, 32


def _problem():
    import numpy as np
    import bpcore
    threads = os.environ.get("BENCH_PROGRESS_THREADS")
    if threads:
        bpcore.set_num_threads(int(threads))
    r = np.random.default_rng(0)
    X = r.random((ROWS, FEATURES)).astype(np.float32)
    y = r.integers(0, 10, ROWS)
    return bpcore, X, y


def _one_fit(bpcore, X, y, verbose):
    model = bpcore.MLP(SIZES, seed=0)
    opt = bpcore.SGD(model, lr=0.01, momentum=0.9)
    t0 = time.perf_counter()
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=EPOCHS,
              batch_size=BATCH, seed=0, verbose=verbose)
    return time.perf_counter() - t0


def in_process(rounds):
    bpcore, X, y = _problem()
    from bpcore import _progress, training
    with_hook = training.EpochProgress

    def setting(name):
        training.EpochProgress = with_hook if name != "lines-only" else (lambda epochs: None)
        _progress.INTERVAL = 0.0 if name == "every" else 1.0
        return 0 if name == "quiet" else 1

    names = ["quiet", "verbose", "lines-only", "every"]
    times = {n: [] for n in names}
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        for name in names:  # warm-up
            _one_fit(bpcore, X, y, setting(name))
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                times[name].append(_one_fit(bpcore, X, y, setting(name)))
    training.EpochProgress, _progress.INTERVAL = with_hook, 1.0
    return {n: statistics.median(t) for n, t in times.items()}


def _child(rounds):
    bpcore, X, y = _problem()
    _one_fit(bpcore, X, y, 0)
    print(json.dumps([_one_fit(bpcore, X, y, 0) for _ in range(rounds)]))


def across_builds(baseline, rounds, per_child):
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this tree": here, "baseline": os.path.abspath(baseline)}
    times = {k: [] for k in trees}
    for r in range(rounds):
        for name in (list(trees) if r % 2 == 0 else list(trees)[::-1]):
            env = dict(os.environ, PYTHONPATH=trees[name])
            out = subprocess.run([sys.executable, __file__, "--child", str(per_child)], env=env,
                                 cwd=trees[name], check=True, capture_output=True, text=True)
            times[name].append(statistics.median(json.loads(out.stdout)))
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--baseline", help="another built source tree: verbose=0 across builds")
    parser.add_argument("--threads", type=int, help="bpcore's thread count (default: its own)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:  # children inherit it
        os.environ["BENCH_PROGRESS_THREADS"] = str(args.threads)
    if args.child:
        return _child(args.child)
    med = in_process(args.rounds)
    import bpcore
    print(f"20-epoch fit of MLP{SIZES}, {ROWS} x {FEATURES}, batch {BATCH}, "
          f"{bpcore.get_num_threads()} thread(s); medians of {args.rounds} interleaved "
          f"rounds\n")
    print("| setting | ms per fit | vs lines-only | vs quiet |\n|---|---|---|---|")
    for name, t in med.items():
        print(f"| {name} | {t * 1e3:.2f} | {t / med['lines-only']:.4f} | "
              f"{t / med['quiet']:.4f} |")
    if args.baseline:
        cross = across_builds(args.baseline, args.rounds, 5)
        print(f"\nverbose=0 across builds ({args.rounds} rounds of alternating child "
              f"processes, each the median of 5 fits; medians):\n")
        print("| build | ms per fit |\n|---|---|")
        for name, t in cross.items():
            print(f"| {name} | {t * 1e3:.2f} |")
        print(f"\nthis tree / baseline: {cross['this tree'] / cross['baseline']:.4f}")


if __name__ == "__main__":
    main()
