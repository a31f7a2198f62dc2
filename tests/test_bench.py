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

    assert cfg["activation"] == "relu" and cfg["loss_name"] == "mse"
    assert cfg["numpy_step"] and cfg["numpy_skipped"] is None

    out = capsys.readouterr().out
    assert "| threads | batch | µs/step |" in out and "× floor" in out
    assert ("torch/bpcore" in out) == (torch is not None)
    assert "ReLU hidden layers, MSE on one-hot targets" in out and "numpy: left out" not in out


def test_bench_without_comparators():
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--no-torch", "--no-numpy"])
    (cell,) = res["cells"]
    assert set(cell["median_us"]) == {"bpcore", "floor"}
    assert "torch_ratio" not in cell and "numpy_ratio" not in cell


def test_activation_and_loss_options(capsys):
    args = bench.parse_args([])
    assert args.activation == "relu" and args.loss == "mse"
    args = bench.parse_args(["--activation", "gelu_tanh", "--loss", "xent"])
    assert args.activation == "gelu_tanh" and args.loss == "xent"
    assert set(bench.ACTIVATIONS) == {"relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu",
                                      "softplus", "sigmoid", "tanh"}
    for option, bad in (("--activation", "swish"), ("--loss", "hinge")):
        with pytest.raises(SystemExit) as e:
            bench.parse_args([option, bad])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert f"argument {option}: invalid choice: '{bad}'" in err, err


def test_bench_gelu_xent(capsys):
    """bpcore and torch both run another activation and loss; the NumPy step (ReLU only) is
    left out with a note."""
    res = bench.main(["--quick", "--batches", "1,8", "--threads", "1", "--sizes", "16,8,3",
                      "--activation", "gelu", "--loss", "xent"])
    impls = {"bpcore", "floor"} | ({"torch"} if torch is not None else set())
    assert [c["batch"] for c in res["cells"]] == [1, 8]
    for c in res["cells"]:
        assert set(c["median_us"]) == impls
        assert all(positive(c["median_us"][name]) for name in impls)
        assert "numpy_ratio" not in c
        assert ("torch_ratio" in c) == (torch is not None)
    cfg = res["config"]
    assert cfg["activation"] == "gelu" and cfg["loss_name"] == "xent"
    assert not cfg["numpy_step"] and "ReLU only" in cfg["numpy_skipped"]
    out = capsys.readouterr().out
    assert "GELU hidden layers, softmax cross-entropy on integer labels" in out
    assert "numpy: left out (its step is written for ReLU only, not gelu)" in out
    assert ("torch/bpcore" in out) == (torch is not None) and "numpy/bpcore" not in out


def test_bench_xent_keeps_numpy():
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--loss", "xent", "--no-torch"])
    (cell,) = res["cells"]
    assert set(cell["median_us"]) == {"bpcore", "floor", "numpy"}
    assert positive(cell["numpy_ratio"])


@pytest.mark.skipif(torch is None, reason="needs torch")
@pytest.mark.parametrize("loss", ["mse", "xent"])
@pytest.mark.parametrize("activation", sorted(bench.ACTIVATIONS))
def test_torch_comparator_matches_bpcore(activation, loss):
    """The torch step in the table is the same computation as bpcore's (float64, 3 steps)."""
    sizes = [7, 5, 4, 3]
    model = bpcore.MLP(sizes, activation=activation, dtype="float64", seed=1)
    batches = bench.make_batches(sizes, 6, "float64", loss=loss)
    ours = bench.BpcoreImpl(model, batches, loss=loss)
    ref = bench.TorchImpl(model, batches, torch, activation=activation, loss=loss)
    for i in range(3):
        ours.step(i % len(batches))
        ref.step(i % len(batches))
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    for l, d in enumerate(dense):
        W, b = ref.params[2 * l].detach().numpy(), ref.params[2 * l + 1].detach().numpy()
        np.testing.assert_allclose(d.W, W.T, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(d.b, b, rtol=1e-9, atol=1e-12)


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


def test_numpy_comparator_matches_bpcore_xent(rng):
    """With loss="xent" the NumPy step is bpcore's step with SoftmaxCrossEntropyLoss on
    integer labels (float64, 3 steps)."""
    sizes = [7, 5, 4, 3]
    model = bpcore.MLP(sizes, dtype="float64", seed=1)
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    ref = bench.NumpyMLP([d.W for d in dense], [d.b for d in dense], loss="xent")
    opt = bpcore.SGD(model, lr=bench.LR, momentum=bench.MOMENTUM)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    for _ in range(3):
        X = rng.random((6, sizes[0]))
        y = rng.integers(0, 3, 6).astype(np.intp)
        assert model.train_step(X, y, loss, opt) == pytest.approx(ref.train_step(X, y), rel=1e-12)
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
