"""Thread control, and results that do not depend on it beyond round-off."""
import multiprocessing
import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

import bpcore
from bpcore import _threads


def _blas_threads():
    import scipy.linalg.cython_blas  # noqa: F401
    return {lib["filepath"]: lib["num_threads"] for lib in threadpool_info()
            if lib["user_api"] == "blas"}


def _train(dtype, steps=5):
    """A net wide enough (256x256 batch work) that the OpenMP loops really split."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (256, 200)).astype(dtype)
    y = rng.integers(0, 10, 256)
    model = bpcore.MLP([200, 256, 256, 10], dtype=dtype, seed=1)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    opt = bpcore.SGD(model, lr=0.1, momentum=0.9, weight_decay=1e-4)
    losses = []
    for _ in range(steps):
        model.zero_grad()
        losses.append(loss(model.forward(X), y))
        model.backward(loss.backward())
        opt.step()
    return np.array(losses), model.flat_params.copy()


def test_work_is_large_enough_to_run_in_parallel():
    assert 256 * 256 >= _threads.MIN_PARALLEL_WORK


@pytest.mark.skipif(not bpcore._threads.openmp_enabled(), reason="built without OpenMP")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_and_two_threads_agree(dtype):
    with bpcore.num_threads(1):
        l1, w1 = _train(dtype)
    with bpcore.num_threads(2):
        l2, w2 = _train(dtype)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(l1, l2, **tol)
    np.testing.assert_allclose(w1, w2, **tol)


def test_fixed_thread_count_is_bitwise_reproducible():
    with bpcore.num_threads(2):
        l1, w1 = _train(np.float32)
        l2, w2 = _train(np.float32)
    np.testing.assert_array_equal(l1, l2)
    np.testing.assert_array_equal(w1, w2)


def test_set_and_get_num_threads_reach_openmp_and_blas():
    old = bpcore.get_num_threads()
    try:
        bpcore.set_num_threads(1)
        assert bpcore.get_num_threads() == 1
        assert set(_blas_threads().values()) == {1}
    finally:
        bpcore.set_num_threads(old)
    assert bpcore.get_num_threads() == old


def test_context_manager_restores():
    before_omp, before_blas = bpcore.get_num_threads(), _blas_threads()
    with bpcore.num_threads(1) as n:
        assert n == 1
        assert bpcore.get_num_threads() == 1
        assert set(_blas_threads().values()) == {1}
    assert bpcore.get_num_threads() == before_omp
    assert _blas_threads() == before_blas


def test_default_respects_omp_num_threads():
    code = "import bpcore; print(bpcore.get_num_threads())"
    import subprocess
    import sys
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def _child_step(q):
    losses, _ = _train(np.float32, steps=2)
    q.put(losses.tolist())


def test_spawned_child_trains_after_parent_used_threads():
    """The documented remedy for libgomp after fork(): the spawn start method."""
    _train(np.float32, steps=1)  # parent's OpenMP pool now exists
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child_step, args=(q,))
    p.start()
    p.join(timeout=120)
    assert p.exitcode == 0
    child = q.get(timeout=5)
    np.testing.assert_allclose(child, _train(np.float32, steps=2)[0], rtol=1e-4)
