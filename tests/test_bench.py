"""Smoke tests of the benchmark code (bpcore.bench and benchmarks/*.py) on tiny networks:
they run, write the numbers they promise, and their NumPy comparator computes the same step
as bpcore. Timings are not judged (too short to mean anything)."""
import importlib.util
import json
import math
import pathlib

import numpy as np
import pytest

import bpcore
from bpcore import bench

try:
    import torch
except ImportError:
    torch = None

BENCHMARKS = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def load_script(name):
    """Import benchmarks/<name>.py (a folder of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def test_bench_main_quick(tmp_path, capsys):
    path = tmp_path / "b.json"
    threads_before = bpcore.get_num_threads()
    res = bench.main(["--quick", "--batches", "1,32", "--threads", "1", "--sizes", "64,32,10",
                      "--json", str(path)])
    assert bpcore.get_num_threads() == threads_before  # the run restores the setting
    saved = json.loads(path.read_text())
    assert saved["cells"] == json.loads(json.dumps(res["cells"]))

    cfg = saved["config"]
    for key in ("bpcore", "numpy", "torch", "cpu", "simd", "simd_level", "threads", "sizes",
                "dtype", "batches"):
        assert key in cfg
    assert cfg["threads"] == [1] and cfg["sizes"] == [64, 32, 10]
    assert (cfg["torch"] is not None) == (torch is not None)
    assert positive(saved["peak_gflops"]["1"])

    impls = {"bpcore", "floor", "numpy"} | ({"torch"} if torch is not None else set())
    assert [(c["threads"], c["batch"]) for c in saved["cells"]] == [(1, 1), (1, 32)]
    for c in saved["cells"]:
        assert set(c["median_us"]) == impls and set(c["samples_us"]) == impls
        for name in impls:
            assert positive(c["median_us"][name])
            assert len(c["samples_us"][name]) >= 2
            assert all(positive(s) for s in c["samples_us"][name])
        for key in ("us_per_step", "samples_per_s", "gflops", "pct_peak", "floor_ratio",
                    "numpy_ratio"):
            assert positive(c[key]), key
        assert ("torch_ratio" in c) == (torch is not None)
        if torch is not None:
            assert positive(c["torch_ratio"])
        assert c["flops_per_step"] == bench.step_flops([64, 32, 10], c["batch"])
        assert c["numpy_subnormal_velocities"] == 0

    out = capsys.readouterr().out
    assert "| threads | batch | µs/step |" in out and "× floor" in out
    assert ("torch/bpcore" in out) == (torch is not None)


def test_bench_without_comparators():
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--no-torch", "--no-numpy"])
    (cell,) = res["cells"]
    assert set(cell["median_us"]) == {"bpcore", "floor"}
    assert "torch_ratio" not in cell and "numpy_ratio" not in cell


def test_step_flops():
    # forward and dW over all three layers, dX over the last two
    fwd = 784 * 256 + 256 * 128 + 128 * 10
    assert bench.step_flops([784, 256, 128, 10], 32) == 2 * 32 * (2 * fwd + 256 * 128 + 128 * 10)


def test_thread_list():
    from bpcore import _threads
    assert bench.thread_list("1,all,1") == list(dict.fromkeys([1, _threads.default_num_threads()]))


def test_numpy_comparator_matches_bpcore(rng):
    """The NumPy step in the table is the same computation as bpcore's (float64, 3 steps)."""
    sizes = [7, 5, 4, 3]
    model = bpcore.MLP(sizes, dtype="float64", seed=1)
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    ref = bench.NumpyMLP([d.W for d in dense], [d.b for d in dense])
    opt = bpcore.SGD(model, lr=bench.LR, momentum=bench.MOMENTUM)
    loss = bpcore.MSELoss()
    for _ in range(3):
        X = rng.random((6, sizes[0]))
        Y = bpcore.one_hot(rng.integers(0, 3, 6), 3, "float64")
        assert model.train_step(X, Y, loss, opt) == pytest.approx(ref.train_step(X, Y), rel=1e-12)
    for d, W, b in zip(dense, ref.W, ref.b):
        np.testing.assert_allclose(d.W, W, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(d.b, b, rtol=1e-10, atol=1e-13)


def test_bench_epoch_small(tmp_path):
    path = tmp_path / "e.json"
    res = load_script("bench_epoch").main(["--n", "300", "--sizes", "16,8,3", "--repeats", "2",
                                           "--threads", "1", "--json", str(path)])
    saved = json.loads(path.read_text())
    names = ["bpcore"] + (["torch"] if torch is not None else [])
    assert list(saved["median_s"]) == names
    for name in names:
        assert len(saved["seconds"][name]) == 2 and positive(saved["median_s"][name])
        assert math.isfinite(saved["last_loss"][name])
    assert ("torch_over_bpcore" in res) == (torch is not None)


def test_bench_memory_small(tmp_path):
    path = tmp_path / "m.json"
    res = load_script("bench_memory").main(["--n", "2000", "--sizes", "64,32,10",
                                            "--json", str(path)])
    saved = json.loads(path.read_text())
    assert saved["data_bytes"] == 2000 * (64 * 4 + 10 * 4 + 8)
    assert saved["peak_kib"] >= saved["baseline_kib"] > 0
    # tiny data, 40 MB of slack: a fit that needs more has a real memory problem
    assert res["within_budget"], res
