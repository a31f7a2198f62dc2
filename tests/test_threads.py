"""Thread control, and results that do not depend on it beyond round-off."""
import multiprocessing
import os
import subprocess
import sys

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


def test_default_respects_omp_num_threads(tmp_path):
    code = "import bpcore; print(bpcore.get_num_threads())"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # from a directory outside the source tree, so the installed bpcore is the one imported
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
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


def _engine_run(dtype, n=64, steps=4):
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (n, 300)).astype(dtype)
    y = bpcore.one_hot(rng.integers(0, 10, n), 10, dtype)
    model = bpcore.MLP([300, 256, 128, 10], dtype=dtype, seed=2)
    opt = bpcore.SGD(model, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
    losses = [model.train_step(X, y, bpcore.MSELoss(), opt) for _ in range(steps)]
    return np.array(losses), model.flat_params.copy()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 64])  # the fused small-batch update and the GEMM path
def test_every_simd_level_gives_the_same_training(dtype, n):
    from bpcore import _simd
    best = _simd.best_level()
    runs = {}
    try:
        for level in range(best + 1):
            assert _simd.set_level(level) == level
            runs[level] = _engine_run(dtype, n)
    finally:
        _simd.set_level(best)
    tol = dict(rtol=1e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-13)
    for level in range(1, best + 1):
        np.testing.assert_allclose(runs[level][0], runs[0][0], **tol)
        np.testing.assert_allclose(runs[level][1], runs[0][1], **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_simd_level_finds_nan_and_inf(dtype):
    from bpcore import _simd
    model = bpcore.MLP([5, 3], dtype=dtype, seed=0)
    opt, loss = bpcore.SGD(model, lr=0.1), bpcore.MSELoss()
    best = _simd.best_level()
    try:
        for level in range(best + 1):
            _simd.set_level(level)
            for bad in (np.nan, np.inf, -np.inf):
                for where in (0, 17, 39):  # first, inside a vector, last
                    X = np.ones((8, 5), dtype)
                    X.flat[where] = bad
                    with pytest.raises(ValueError, match="X: expected finite"):
                        model.train_step(X, np.zeros((8, 3), dtype), loss, opt)
            tiny = np.full((8, 5), np.finfo(dtype).tiny / 4, dtype)  # subnormal, but finite
            model.train_step(tiny, np.zeros((8, 3), dtype), loss, opt)
    finally:
        _simd.set_level(best)


def test_without_blas_thread_control_results_are_the_same():
    """A BLAS bpcore cannot pin: GEMMs run whole (BLAS-threaded), loops on one thread."""
    with_control = _engine_run(np.float64)
    _threads.set_blas_thread_control(0, 0)
    try:
        assert not _threads.has_blas_thread_control()
        without = _engine_run(np.float64)
    finally:
        bpcore.threads.find_blas_thread_control()
    assert _threads.has_blas_thread_control()
    np.testing.assert_allclose(without[0], with_control[0], rtol=1e-10)
    np.testing.assert_allclose(without[1], with_control[1], rtol=1e-10, atol=1e-13)


def test_blas_setting_is_restored_after_native_calls():
    old = bpcore.get_num_threads()
    try:
        bpcore.set_num_threads(2)
        _engine_run(np.float32, n=128, steps=1)
        assert set(_blas_threads().values()) == {2}
    finally:
        bpcore.set_num_threads(old)


_TEAM_CHILD = """
import sys, numpy as np, bpcore
bpcore.set_num_threads(2)  # asks for 2; OMP_THREAD_LIMIT=1 grants every region only 1
rng = np.random.default_rng(4)
model = bpcore.MLP([300, 256, 128, 10], dtype="float64", seed=6)
opt = bpcore.SGD(model, lr=0.05, momentum=0.9)
for n in (1, 32, 300):  # every path of the step
    X = rng.uniform(-1, 1, (n, 300))
    model.train_step(X, rng.integers(0, 10, n), bpcore.SoftmaxCrossEntropyLoss(), opt)
np.save(sys.argv[1], model.flat_params)
"""


def test_regions_granted_fewer_threads_still_do_all_the_work(tmp_path):
    """Inside another OpenMP region, or under OMP_THREAD_LIMIT, a parallel region gets fewer
    threads than it asks for; the work is split by the team it got, so nothing is skipped."""
    out = tmp_path / "params.npy"
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    run = subprocess.run([sys.executable, "-c", _TEAM_CHILD, str(out)], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    rng = np.random.default_rng(4)
    model = bpcore.MLP([300, 256, 128, 10], dtype="float64", seed=6)
    opt = bpcore.SGD(model, lr=0.05, momentum=0.9)
    with bpcore.num_threads(2):
        for n in (1, 32, 300):
            X = rng.uniform(-1, 1, (n, 300))
            model.train_step(X, rng.integers(0, 10, n), bpcore.SoftmaxCrossEntropyLoss(), opt)
    np.testing.assert_allclose(np.load(out), model.flat_params, rtol=1e-10, atol=1e-13)

