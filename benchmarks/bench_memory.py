"""Peak memory of ``fit``: does training one epoch cost more than the data and a few copies of
the parameters?

In a fresh subprocess (a peak resident set size only ever grows, so each measurement needs a
process of its own): import bpcore and take the resident set size as the baseline; build the
data (60,000 x 784 float32 uniform in [0, 1), labels 0..9, one-hot MSE targets); ``fit`` one
epoch in shuffled batches of 64; read the peak resident set size (VmHWM on Linux, else
getrusage's ru_maxrss: see peak_rss_kib). The budget for peak - baseline is

    the data set (X, targets, labels: building them with NumPy is part of "the data")
    + 4 x the parameter bytes (weights, gradients, velocity, one spare)
    + one batch's activations and its inputs and targets
    + 40 MB (allocator slack, thread stacks, the shuffle order, code pages touched by fit).

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --n 120000 --json benchmarks/results/memory.json
"""
import argparse
import json
import os
import subprocess
import sys

SLACK_BYTES = 40_000_000
MB = 1e6


def proc_status_kib(field):
    """A VmRSS/VmHWM figure of /proc/self/status in KiB (Linux), else None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_now_kib():
    return proc_status_kib("VmRSS")


def maxrss_kib():
    import resource
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak  # bytes on macOS, KiB on Linux


def peak_rss_kib():
    """The process's peak resident set size in KiB. On Linux ru_maxrss survives execve: a child
    started (vfork + exec) by a big parent, e.g. pytest with torch loaded, reports the parent's
    peak. VmHWM is the peak of this process's own address space, so it is used where it exists."""
    return proc_status_kib("VmHWM") or maxrss_kib()


def child(args):
    """The measurement itself; runs in the fresh process and prints one JSON line."""
    import numpy as np

    import bpcore
    baseline = rss_now_kib() or peak_rss_kib()  # without /proc: the peak so far

    sizes, dtype = args.sizes, np.dtype(args.dtype)
    rng = np.random.default_rng(0)
    # drawn straight in the target dtype: no float64 temporary twice the data's size
    X = rng.random((args.n, sizes[0]), dtype=dtype)
    labels = rng.integers(0, sizes[-1], args.n)
    Y = bpcore.one_hot(labels, sizes[-1], dtype)
    after_data = rss_now_kib()

    model = bpcore.MLP(sizes, dtype=dtype, seed=0)
    opt = bpcore.SGD(model, lr=0.01, momentum=0.9)
    model.fit(X, Y, loss=bpcore.MSELoss(), optimizer=opt, epochs=1,
              batch_size=args.batch_size, shuffle=True, seed=0)
    bs = min(args.batch_size, args.n)
    print(json.dumps({
        "baseline_kib": baseline, "after_data_kib": after_data, "after_fit_kib": rss_now_kib(),
        "peak_kib": peak_rss_kib(), "ru_maxrss_kib": maxrss_kib(),
        "data_bytes": X.nbytes + Y.nbytes + labels.nbytes,
        "param_bytes": model.flat_params.nbytes,
        # hidden and output activations, the batch's inputs and targets
        "batch_bytes": bs * (sum(sizes[1:]) + sizes[0] + sizes[-1]) * dtype.itemsize,
        "num_threads": bpcore.get_num_threads(),
    }))


def measure(args):
    """Run child() in a fresh interpreter and add the budget to its numbers."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--n", str(args.n),
           "--sizes", ",".join(map(str, args.sizes)), "--batch-size", str(args.batch_size),
           "--dtype", args.dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the measuring process failed ({proc.returncode}):\n{proc.stderr}")
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["peak_over_baseline_bytes"] = (res["peak_kib"] - res["baseline_kib"]) * 1024
    res["budget_bytes"] = (res["data_bytes"] + 4 * res["param_bytes"] + res["batch_bytes"]
                           + SLACK_BYTES)
    res["margin_bytes"] = res["budget_bytes"] - res["peak_over_baseline_bytes"]
    res["within_budget"] = res["margin_bytes"] >= 0
    res["config"] = {"n": args.n, "sizes": args.sizes, "batch_size": args.batch_size,
                     "dtype": args.dtype, "epochs": 1, "slack_bytes": SLACK_BYTES}
    return res


def report(res):
    c = res["config"]
    after_data = ("" if res["after_data_kib"] is None else
                  f" (RSS grew {(res['after_data_kib'] - res['baseline_kib']) * 1024 / MB:.1f} "
                  f"MB building it)")
    return "\n".join([
        f"fit, 1 epoch: {c['n']:,} x {c['sizes'][0]} {c['dtype']}, MLP "
        f"{'-'.join(map(str, c['sizes']))}, MSE one-hot, batch {c['batch_size']}, "
        f"{res['num_threads']} thread(s)",
        f"  baseline RSS after import bpcore: {res['baseline_kib'] * 1024 / MB:.1f} MB",
        f"  data set (X, targets, labels):    {res['data_bytes'] / MB:.1f} MB{after_data}",
        f"  peak RSS - baseline:              {res['peak_over_baseline_bytes'] / MB:.1f} MB",
        f"  budget: data {res['data_bytes'] / MB:.1f} + 4 x params "
        f"{4 * res['param_bytes'] / MB:.1f} + batch {res['batch_bytes'] / MB:.2f} + slack "
        f"{SLACK_BYTES / MB:.0f} = {res['budget_bytes'] / MB:.1f} MB",
        f"  within budget: {'yes' if res['within_budget'] else 'NO'}, margin "
        f"{res['margin_bytes'] / MB:+.1f} MB",
    ])


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60000, help="rows of data (default 60000)")
    ap.add_argument("--sizes", default="784,256,128,10",
                    type=lambda s: [int(v) for v in s.split(",")])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--json", metavar="PATH", help="write the numbers to PATH")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.child:
        return child(args)
    res = measure(args)
    print(report(res))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
