"""End-to-end epochs: bpcore's native ``fit`` against the equivalent PyTorch training loop.

The data: 60,000 rows x 784 float32, uniform in [0, 1) (seeded), labels 0..9 as one-hot MSE
targets: MNIST's shape, synthetic values (the timing does not depend on them). Both train the
same MLP (784-256-128-10 ReLU, the same initial weights) with SGD (lr 0.01, momentum 0.9) in
shuffled batches of 64 for one epoch at a time:

- bpcore: ``model.fit(X, Y, epochs=1, batch_size=64, shuffle=True)`` (one native call);
- PyTorch: per epoch ``torch.randperm``, then per batch index the rows, zero_grad, forward,
  MSE, backward, step.

Both run on the same number of threads. After one warm-up epoch each on a slice of the data,
bpcore and PyTorch epochs alternate (which goes first alternates too), ``--repeats`` times;
the report gives median seconds per epoch and the ratio.

    python benchmarks/bench_epoch.py                      # all threads, 5 repeats
    python benchmarks/bench_epoch.py --threads 1 --json benchmarks/results/epoch.json
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

import bpcore
from bpcore import _threads
from bpcore.bench import cpu_model, int_list, thread_list

LR, MOMENTUM = 0.01, 0.9
WARMUP_ROWS = 4096  # the warm-up epoch's rows: enough to start every thread pool and buffer


def make_data(n, sizes, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0])).astype(dtype)
    Y = bpcore.one_hot(rng.integers(0, sizes[-1], n), sizes[-1], dtype)
    return X, Y


class BpcoreEpochs:
    def __init__(self, model, X, Y, batch_size):
        self.model, self.X, self.Y, self.batch_size = model, X, Y, batch_size
        self.loss = bpcore.MSELoss()
        self.opt = bpcore.SGD(model, lr=LR, momentum=MOMENTUM)
        self.epochs = 0

    def epoch(self, rows=None):
        """Seconds for one epoch (over the first `rows` rows if given); a new shuffle each."""
        X, Y = (self.X, self.Y) if rows is None else (self.X[:rows], self.Y[:rows])
        self.epochs += 1
        t0 = time.perf_counter()
        hist = self.model.fit(X, Y, loss=self.loss, optimizer=self.opt, epochs=1,
                              batch_size=self.batch_size, shuffle=True, seed=self.epochs)
        seconds = time.perf_counter() - t0
        self.last_loss = hist["loss"][-1]
        return seconds


class TorchEpochs:
    def __init__(self, model, X, Y, batch_size, torch):
        nn = torch.nn
        dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
        tdtype = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
        mods = []
        for i, d in enumerate(dense):
            lin = nn.Linear(d.fan_in, d.fan_out, dtype=tdtype[model.dtype])
            with torch.no_grad():  # the same initial weights (torch's weight is W.T)
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(d.W.T)))
                lin.bias.copy_(torch.from_numpy(d.b.copy()))
            mods += [lin, nn.ReLU()] if i < len(dense) - 1 else [lin]
        self.net = nn.Sequential(*mods)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=LR, momentum=MOMENTUM)
        self.loss = nn.MSELoss()
        self.X, self.Y = torch.from_numpy(X), torch.from_numpy(Y)
        self.batch_size = batch_size
        self.gen = torch.Generator().manual_seed(0)
        self.torch = torch

    def epoch(self, rows=None):
        X, Y = (self.X, self.Y) if rows is None else (self.X[:rows], self.Y[:rows])
        n, bs = X.shape[0], self.batch_size
        t0 = time.perf_counter()
        perm = self.torch.randperm(n, generator=self.gen)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            self.opt.zero_grad()
            out = self.loss(self.net(X[idx]), Y[idx])
            out.backward()
            self.opt.step()
        seconds = time.perf_counter() - t0
        self.last_loss = out.detach().item()  # the last batch's loss, outside the timing
        return seconds


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60000, help="rows of data (default 60000)")
    ap.add_argument("--sizes", type=int_list, default=[784, 256, 128, 10])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--threads", default="all", help='a thread count or "all" (default all)')
    ap.add_argument("--repeats", type=int, default=5, help="timed epochs of each (default 5)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    args = ap.parse_args(argv)
    args.threads = thread_list(args.threads)[0]
    return args


def main(argv=None):
    args = parse_args(argv)
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            pass
    X, Y = make_data(args.n, args.sizes, args.dtype)
    old = bpcore.get_num_threads()
    bpcore.set_num_threads(args.threads)
    if torch is not None:
        old_torch = torch.get_num_threads()
        torch.set_num_threads(args.threads)
    try:
        model = bpcore.MLP(args.sizes, dtype=args.dtype, seed=0)
        runners = {"bpcore": BpcoreEpochs(model, X, Y, args.batch_size)}
        if torch is not None:  # built before bpcore trains: the same initial weights
            runners["torch"] = TorchEpochs(model, X, Y, args.batch_size, torch)
        for r in runners.values():
            r.epoch(rows=min(WARMUP_ROWS, args.n))
        seconds = {name: [] for name in runners}
        names = list(runners)
        for rep in range(args.repeats):
            # alternate which goes first, so neither always follows the other
            for name in (names if rep % 2 == 0 else names[::-1]):
                seconds[name].append(runners[name].epoch())
    finally:
        bpcore.set_num_threads(old)
        if torch is not None:
            torch.set_num_threads(old_torch)

    med = {name: statistics.median(s) for name, s in seconds.items()}
    results = {
        "config": {"bpcore": bpcore.__version__, "numpy": np.__version__,
                   "torch": torch.__version__ if torch is not None else None,
                   "cpu": cpu_model(), "cpu_count": os.cpu_count(),
                   "default_num_threads": _threads.default_num_threads(),
                   "threads": args.threads, "n": args.n, "sizes": args.sizes,
                   "batch_size": args.batch_size, "dtype": args.dtype,
                   "repeats": args.repeats, "lr": LR, "momentum": MOMENTUM},
        "seconds": seconds,
        "median_s": med,
        "samples_per_s": {name: args.n / s for name, s in med.items()},
        "last_loss": {name: r.last_loss for name, r in runners.items()},
    }
    if "torch" in med:
        results["torch_over_bpcore"] = med["torch"] / med["bpcore"]
    print(report(results))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


def report(res):
    c = res["config"]
    lines = [f"one epoch: {c['n']:,} x {c['sizes'][0]} {c['dtype']}, MLP "
             f"{'-'.join(map(str, c['sizes']))}, MSE one-hot, SGD momentum {MOMENTUM}, batch "
             f"{c['batch_size']}, shuffled; {c['threads']} thread(s); median of "
             f"{c['repeats']} alternating epochs",
             "", "| | s/epoch | samples/s | epochs (s) |", "|---|---:|---:|---|"]
    for name, s in res["median_s"].items():
        runs = ", ".join(f"{x:.3f}" for x in res["seconds"][name])
        lines.append(f"| {name} | {s:.3f} | {res['samples_per_s'][name]:,.0f} | {runs} |")
    if "torch_over_bpcore" in res:
        lines.append(f"\ntorch / bpcore: {res['torch_over_bpcore']:.2f}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
