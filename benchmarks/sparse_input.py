"""Sparse (CSR) input: one epoch of fit on text-like data.

  large: 20,000 x 50,000 CSR at 0.2% density (2M entries), MLP([50000, 64, 2]), float64,
         SGD (momentum 0.9, Nesterov), batch 200 -- against scikit-learn's
         MLPClassifier(solver="sgd", max_iter=1) on the same sparse matrix (a dense X would
         take 8 GB);
  small: 2,000 x 5,000 at 1% density, MLP([5000, 64, 2]): bpcore's sparse path against its
         dense path on X.toarray().

Runs alternate A/B in one process; the medians are printed. python benchmarks/sparse_input.py
[--repeats N]
"""
import argparse
import statistics
import time
import warnings

import numpy as np
import scipy.sparse as sp

import bpcore


def random_csr(n, m, density, seed):
    """A random CSR matrix (positions drawn directly: sp.random draws from all n * m)."""
    rng = np.random.default_rng(seed)
    nnz = int(n * m * density)
    X = sp.csr_matrix((rng.random(nnz), (rng.integers(0, n, nnz), rng.integers(0, m, nnz))),
                      shape=(n, m))
    X.sum_duplicates()
    return X, rng.integers(0, 2, n)


def bpcore_epoch(X, y, hidden=64):
    model = bpcore.MLP([X.shape[1], hidden, 2], dtype=np.float64, seed=0)
    opt = bpcore.SGD(model, lr=0.001, momentum=0.9, nesterov=True, weight_decay=1e-4)
    t0 = time.perf_counter()
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=1,
              batch_size=200, seed=0)
    return time.perf_counter() - t0


def sklearn_epoch(X, y, hidden=64):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(hidden,), solver="sgd", max_iter=1, batch_size=200,
                        learning_rate_init=0.001, random_state=0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return time.perf_counter() - t0


def compare(name, a, b, repeats):
    times = {a[0]: [], b[0]: []}
    for _ in range(repeats):
        for label, run in (a, b):
            times[label].append(run())
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"{name}: " + ", ".join(f"{k} {v:.3f} s" for k, v in medians.items())
          + f"  ({b[0]} / {a[0]} = {medians[b[0]] / medians[a[0]]:.2f}x; {repeats} runs each)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"bpcore threads: {bpcore.get_num_threads()}")
    X, y = random_csr(20_000, 50_000, 0.002, 0)
    print(f"large: {X.shape}, {X.nnz:,} entries")
    bpcore_epoch(X, y)  # warm-up
    compare("large, 1 epoch", ("bpcore sparse", lambda: bpcore_epoch(X, y)),
            ("sklearn sparse", lambda: sklearn_epoch(X, y)), args.repeats)
    X, y = random_csr(2_000, 5_000, 0.01, 1)
    Xd = X.toarray()
    print(f"small: {X.shape}, {X.nnz:,} entries")
    bpcore_epoch(X, y)
    bpcore_epoch(Xd, y)
    compare("small, 1 epoch", ("bpcore sparse", lambda: bpcore_epoch(X, y)),
            ("bpcore dense", lambda: bpcore_epoch(Xd, y)), args.repeats * 2)


if __name__ == "__main__":
    main()
