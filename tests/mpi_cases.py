"""Cases of data-parallel training, run under mpiexec by tests/test_distributed.py:

    mpiexec -n 2 python tests/mpi_cases.py exact

Each case runs on every rank; rank 0 prints "PASS <case>" when it holds. A failed check
raises, and the abort hook that fit installs ends the job with a non-zero status.
"""
import os
import signal
import sys
import tempfile
import time

import numpy as np
from mpi4py import MPI

import bpcore
from bpcore import distributed
from bpcore.distributed import DistributedError, check_replicas, shard, shard_range  # noqa: F401

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
BOUND = {"float64": 1e-12, "float32": 1e-5}


def rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def data(n, inputs=7, outputs=3, seed=5, dtype="float64"):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, inputs)).astype(dtype)
    labels = rng.integers(0, outputs, n)
    weights = rng.uniform(0.2, 2.0, n).astype(dtype)
    return X, labels, weights


def model_for(dtype, dropout=0.0, seed=3):
    if not dropout:
        return bpcore.MLP([7, 16, 12, 3], activation="tanh", dtype=dtype, seed=seed)
    return bpcore.Sequential(
        bpcore.Dense(7, 16, dtype=dtype, seed=seed), bpcore.Tanh(),
        bpcore.Dropout(dropout, seed=seed + 1),
        bpcore.Dense(16, 12, dtype=dtype, seed=seed + 2), bpcore.Tanh(),
        bpcore.Dropout(dropout, seed=seed + 3),
        bpcore.Dense(12, 3, dtype=dtype, seed=seed + 4))


def optimizer_for(name, model):
    if name == "sgd":
        return bpcore.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3)
    if name == "adam":
        return bpcore.Adam(model.parameters(), lr=0.01, weight_decay=1e-3)
    return bpcore.AdamW(model.parameters(), lr=0.01, weight_decay=0.05, amsgrad=True)


def global_batches(counts, batch, epochs, seed, shuffle):
    """The global rows of each step (global_orders cut into steps of the ranks' batches)."""
    steps = -(-max(counts) // batch)
    out = []
    for order in distributed.global_orders(counts, batch, seed, epochs, shuffle):
        taken = [int(np.clip(n - k * batch, 0, batch)) for k in range(steps) for n in counts]
        ends = np.cumsum(taken)
        per_step = ends.reshape(steps, len(counts))[:, -1]
        out += np.split(order, per_step[:-1])
    return out


def case_exact():
    """N ranks with batch b == one process stepping on the union of their batches."""
    for dtype in ("float64", "float32"):
        for opt in ("sgd", "adam", "adamw"):
            for n, weighted, dropout, clip, shuffle in ((8 * SIZE * 5, False, 0.0, None, False),
                                                        (8 * SIZE * 5 + 3, True, 0.2, 0.5, True),
                                                        (8 * SIZE * 5 + SIZE - 1, False, 0.0,
                                                         None, True)):
                X, labels, weights = data(n, dtype=dtype)
                loss = bpcore.SoftmaxCrossEntropyLoss()
                start, stop = shard_range(n, COMM)
                counts = COMM.allgather(stop - start)
                m = model_for(dtype, dropout)
                o = optimizer_for(opt, m)
                sw = weights[start:stop] if weighted else None
                hist = m.fit(X[start:stop], labels[start:stop], loss=loss, optimizer=o,
                             epochs=4, batch_size=8, seed=11, shuffle=shuffle,
                             sample_weight=sw, max_grad_norm=clip, comm=COMM)
                check_replicas(m, COMM)
                ref = model_for(dtype, dropout)
                ro = optimizer_for(opt, ref)
                ref_losses, ref_w = [], []
                batches = global_batches(counts, 8, 4, 11, shuffle)
                per_epoch = len(batches) // 4
                for i, rows in enumerate(batches):
                    value = ref.train_step(X[rows], labels[rows], loss, ro, max_grad_norm=clip,
                                           sample_weight=weights[rows] if weighted else None)
                    w = weights[rows].sum() if weighted else len(rows)
                    ref_losses.append(value * w)
                    ref_w.append(w)
                epoch_loss = [sum(ref_losses[e * per_epoch:(e + 1) * per_epoch]) /
                              sum(ref_w[e * per_epoch:(e + 1) * per_epoch]) for e in range(4)]
                err = rel(m.flat_params, ref.flat_params)
                where = f"{dtype} {opt} n={n} weighted={weighted} dropout={dropout} clip={clip}"
                assert len(batches) >= 20, len(batches)
                assert err <= BOUND[dtype], f"{where}: weights differ by {err:.3g}"
                assert o.steps == ro.steps, f"{where}: steps {o.steps} != {ro.steps}"
                lerr = rel(np.array(hist["loss"]), np.array(epoch_loss))
                assert lerr <= 10 * BOUND[dtype], f"{where}: losses differ by {lerr:.3g}"
                if RANK == 0:
                    print(f"  {where}: weights rel {err:.2g}, losses rel {lerr:.2g}")


def case_train_step():
    """train_step(comm=) == train_step on the concatenated batch; the loss on every rank."""
    for dtype in ("float64", "float32"):
        X, labels, weights = data(50, dtype=dtype)
        Y = np.eye(3, dtype=dtype)[labels]
        start, stop = shard_range(50, COMM)
        for loss in (bpcore.MSELoss(), bpcore.MSELoss(reduction="sum")):
            m, ref = model_for(dtype), model_for(dtype)
            o, ro = optimizer_for("adam", m), optimizer_for("adam", ref)
            for _ in range(20):
                value = m.train_step(X[start:stop], Y[start:stop], loss, o,
                                     sample_weight=weights[start:stop], comm=COMM)
                expect = ref.train_step(X, Y, loss, ro, sample_weight=weights)
                assert abs(value - expect) <= 1e3 * BOUND[dtype] * abs(expect), (value, expect)
            err = rel(m.flat_params, ref.flat_params)
            assert err <= BOUND[dtype], f"train_step {dtype}: weights differ by {err:.3g}"
            values = COMM.allgather(value)
            assert len(set(values)) == 1, values
            check_replicas(m, COMM)


def case_broadcast():
    """Rank 0's weights and optimizer state win; the others' are replaced."""
    m = model_for("float64", seed=100 + RANK)
    o = optimizer_for("adam", m)
    if RANK == 0:  # rank 0 has taken steps: its state and step count travel
        X, labels, _ = data(16)
        m.train_step(X, labels, bpcore.SoftmaxCrossEntropyLoss(), o)
    expected = COMM.bcast(m.flat_params.copy() if RANK == 0 else None)
    X, labels, _ = data(40, seed=RANK)
    m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=0, comm=COMM)
    assert np.array_equal(m.flat_params, expected)
    assert o.steps == 1, o.steps
    check_replicas(m, COMM)


def case_refuse():
    """An argument refused on one rank is refused on every rank: no hang."""
    X, labels, _ = data(40)
    m = model_for("float64")
    o = optimizer_for("sgd", m)
    batch = 0 if RANK == SIZE - 1 else 8
    try:
        m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=1,
              batch_size=batch, comm=COMM)
    except ValueError as exc:
        assert RANK == SIZE - 1 and "batch_size" in str(exc), exc
    except DistributedError as exc:
        assert RANK != SIZE - 1 and f"rank {SIZE - 1}" in str(exc), exc
    else:
        raise AssertionError("fit accepted batch_size=0 on one rank")
    bad = X.copy()
    if RANK == 0:
        bad[3, 2] = np.nan
    try:
        m.train_step(bad, labels, bpcore.SoftmaxCrossEntropyLoss(), o, comm=COMM)
    except (ValueError, DistributedError) as exc:
        assert ("X" in str(exc)) if RANK == 0 else "rank 0" in str(exc), exc
    else:
        raise AssertionError("train_step accepted a NaN in X on rank 0")
    COMM.Barrier()


def case_nonfinite():
    """A step whose loss is not finite on one rank fails on every rank, in the same step."""
    X, labels, _ = data(64)
    Y = np.eye(3)[labels] * (1e200 if RANK == SIZE - 1 else 1.0)
    m = model_for("float64")
    o = optimizer_for("sgd", m)
    before = m.flat_params.copy()
    h = m.fit(X, Y, loss=bpcore.MSELoss(), optimizer=o, epochs=2, batch_size=8, comm=COMM,
              on_nonfinite="stop")
    assert h["stopped"] == (1, 1), h
    assert np.array_equal(m.flat_params, before)
    check_replicas(m, COMM)


def case_outputs():
    """Only rank 0 prints and saves; validation figures cover every rank's rows."""
    X, labels, _ = data(64, seed=RANK)
    Xv, lv, _ = data(30, seed=50 + RANK)
    m = model_for("float64")
    o = optimizer_for("sgd", m)
    folder = COMM.bcast(tempfile.mkdtemp() if RANK == 0 else None)
    if RANK != 0:  # a folder of its own, which must stay empty
        folder = tempfile.mkdtemp()
    ckpt = bpcore.callbacks.Checkpoint(os.path.join(folder, "m-{epoch}.safetensors"))
    h = m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=2,
              batch_size=8, validation_data=(Xv, lv), callbacks=[ckpt], comm=COMM,
              verbose=1)
    files = sorted(os.listdir(folder))
    assert files == (["m-1.safetensors", "m-2.safetensors"] if RANK == 0 else []), files
    every = COMM.allgather(h)
    assert all(e == every[0] for e in every), every
    Xa = np.concatenate(COMM.allgather(Xv))
    la = np.concatenate(COMM.allgather(lv))
    whole = m.evaluate(Xa, la, bpcore.SoftmaxCrossEntropyLoss())
    assert abs(whole["loss"] - h["val_loss"][-1]) <= 1e-12 * whole["loss"], (whole, h)
    assert abs(whole["accuracy"] - h["val_accuracy"][-1]) <= 1e-12, (whole, h)


def case_shard():
    """shard() of an array and of a memory-mapped .npy file: each rank its contiguous rows."""
    X, labels, weights = data(23)
    Xs, ls, ws = shard(X, labels, COMM, sample_weight=weights)
    start, stop = shard_range(23, COMM)
    assert np.array_equal(Xs, X[start:stop]) and np.array_equal(ls, labels[start:stop])
    assert np.array_equal(ws, weights[start:stop])
    sizes = COMM.allgather(stop - start)
    assert sum(sizes) == 23 and max(sizes) - min(sizes) <= 1, sizes
    path = COMM.bcast(os.path.join(tempfile.mkdtemp(), "X.npy") if RANK == 0 else None)
    if RANK == 0:
        np.save(path, X)
    COMM.Barrier()
    Xm = shard(path, comm=COMM)
    assert isinstance(Xm, np.memmap) and np.array_equal(Xm, X[start:stop])


def case_threads():
    """Each rank takes its share of the machine's cores by default."""
    expected = max(1, bpcore.threads.usable_cpus() // SIZE)
    X, labels, _ = data(16)
    m = model_for("float64")
    m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=optimizer_for("sgd", m),
          epochs=1, comm=COMM)
    assert bpcore.get_num_threads() == expected, (bpcore.get_num_threads(), expected)


def case_raise():
    """An exception nobody catches on one rank ends the whole job (the abort hook)."""
    X, labels, _ = data(64)
    m = model_for("float64")
    o = optimizer_for("sgd", m)
    m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=1, comm=COMM)
    if RANK == SIZE - 1:
        raise RuntimeError("rank failed on purpose")
    m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=10 ** 6,
          comm=COMM)  # would wait for the failed rank for ever


def case_kill():
    """A rank killed with SIGKILL ends the whole job."""
    X, labels, _ = data(64)
    m = model_for("float64")
    o = optimizer_for("sgd", m)
    m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=1, comm=COMM)
    COMM.Barrier()
    if RANK == SIZE - 1:
        print(f"KILL {time.time():.3f}", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    m.fit(X, labels, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=10 ** 6,
          comm=COMM)


CASES = {name[5:]: f for name, f in globals().items() if name.startswith("case_")}

if __name__ == "__main__":
    distributed.install_abort_hook()
    for name in sys.argv[1:]:
        CASES[name]()
        COMM.Barrier()
        if RANK == 0:
            print(f"PASS {name}", flush=True)
