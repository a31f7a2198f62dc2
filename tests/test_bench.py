"""Smoke tests of the benchmark code (bpcore.bench and benchmarks/*.py) on tiny networks:
they run, write the numbers they promise, and their NumPy comparator computes the same step
as bpcore. Timings are not judged (too short to mean anything)."""
import importlib.util
import json
import math
import os
import pathlib
import re
import shutil
import statistics
import subprocess

import numpy as np
import pytest

import bpcore
from bpcore import bench

try:
    import torch
except ImportError:
    torch = None

# jax is looked up, not imported: the benchmark imports it only in its worker processes
JAX = all(importlib.util.find_spec(name) is not None for name in ("jax", "jaxlib"))

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

    assert (cfg["jax"] is not None) == JAX and cfg["jax_skipped"] == (
        None if JAX else "jax and jaxlib are not both installed")
    assert positive(saved["bandwidth_gbs"]["1"])
    peers = ({"numpy"} | ({"torch"} if torch is not None else set())
             | ({"jax"} if JAX else set()))
    impls = {"bpcore", "floor"} | peers
    assert [(c["threads"], c["batch"]) for c in saved["cells"]] == [(1, 1), (1, 32)]
    n_params = 64 * 32 + 32 + 32 * 10 + 10
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
        # the floors: flops at the peak rate, bytes at the copy bandwidth (float32, SGD: the
        # parameters, gradient and velocity read and written, the batch's X and Y read)
        t = c["median_us"]["bpcore"]
        assert math.isclose(c["flop_floor_us"],
                            c["flops_per_step"] / (saved["peak_gflops"]["1"] * 1e3))
        assert c["bytes_per_step"] == 4 * n_params * 6 + 4 * c["batch"] * (64 + 10)
        assert math.isclose(c["bytes_floor_us"],
                            c["bytes_per_step"] / (saved["bandwidth_gbs"]["1"] * 1e3))
        assert math.isclose(c["flop_floor_ratio"], t / c["flop_floor_us"])
        assert math.isclose(c["bytes_floor_ratio"], t / c["bytes_floor_us"])
        best = min(peers, key=c["median_us"].get)
        assert c["best_peer"] == best
        assert math.isclose(c["best_peer_ratio"], t / c["median_us"][best])
        for name in peers:
            assert math.isclose(c[f"{name}_ratio"], c["median_us"][name] / t)
        assert ("jax_ratio" in c) == JAX

    assert cfg["activation"] == "relu" and cfg["loss_name"] == "mse"
    assert cfg["dropout"] == 0 and cfg["poisson_rate"] is None
    assert cfg["numpy_step"] and cfg["numpy_skipped"] is None

    if JAX and hasattr(os, "sched_getaffinity"):  # one worker, confined to one core
        assert cfg["jax_cores"] == {"1": sorted(os.sched_getaffinity(0))[:1]}

    out = capsys.readouterr().out
    assert "| threads | batch | µs/step |" in out and "× floor" in out
    assert "| × FLOP floor | × bytes floor |" in out and "| best peer | bpcore/best |" in out
    assert "memory bandwidth (NumPy copy of" in out
    assert ("torch/bpcore" in out) == (torch is not None)
    assert ("jax/bpcore" in out) == JAX and ("jax: left out" in out) != JAX
    assert "ReLU hidden layers, MSE on one-hot targets, SGD" in out
    assert "numpy: left out" not in out and "dropout" not in out


def test_bench_without_comparators():
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--no-torch", "--no-numpy", "--no-jax"])
    (cell,) = res["cells"]
    assert set(cell["median_us"]) == {"bpcore", "floor"}
    for key in ("torch_ratio", "numpy_ratio", "jax_ratio", "best_peer", "best_peer_ratio"):
        assert key not in cell
    assert positive(cell["flop_floor_ratio"]) and positive(cell["bytes_floor_ratio"])
    # asked to leave jax out: no note, as for torch
    assert res["config"]["jax"] is None and res["config"]["jax_skipped"] is None


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
    assert set(bench.LOSSES) == set(bench.LOSS_CONFIG) == {"mse", "xent", "bce", "poisson"}
    for loss in ("bce", "poisson"):
        assert bench.parse_args(["--loss", loss]).loss == loss


def test_dropout_option(capsys):
    assert bench.parse_args([]).dropout == 0
    assert bench.parse_args(["--dropout", "0.2"]).dropout == 0.2
    assert bench.parse_args(["--dropout=0"]).dropout == 0
    for bad in ("1", "-0.1", "1.5", "nan", "half"):
        with pytest.raises(SystemExit) as e:
            bench.parse_args([f"--dropout={bad}"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert (f"argument --dropout: expected a dropout probability in [0, 1), got '{bad}'"
                in err), err
    for bad in ("1", "-0.1"):  # as two words too: -0.1 is read as the value, not an option
        with pytest.raises(SystemExit):
            bench.parse_args(["--dropout", bad])
        assert "expected a dropout probability in [0, 1)" in capsys.readouterr().err


@pytest.mark.parametrize("options, label, skipped", [
    (["--loss", "bce"], "ReLU hidden layers, BCE-with-logits on 0/1 targets, SGD",
     "it computes MSE and softmax cross-entropy only, not bce"),
    (["--loss", "poisson"],
     "ReLU hidden layers, Poisson NLL (log-rate outputs) on count targets, SGD",
     "it computes MSE and softmax cross-entropy only, not poisson"),
    (["--dropout", "0.3"], "ReLU hidden layers, MSE on one-hot targets, dropout 0.3, SGD",
     "it has no dropout"),
    (["--loss", "bce", "--dropout", "0.2", "--activation", "gelu"],
     "GELU hidden layers, BCE-with-logits on 0/1 targets, dropout 0.2, SGD",
     "its step is written for ReLU only, not gelu; it computes MSE and softmax "
     "cross-entropy only, not bce; it has no dropout"),
])
def test_bench_new_losses_and_dropout(options, label, skipped, tmp_path, capsys):
    """bpcore and torch run BCE, Poisson and dropout; the NumPy step is left out with a note
    and the header and the JSON name the loss and the dropout."""
    path = tmp_path / "b.json"
    res = bench.main(["--quick", "--batches", "1,8", "--threads", "1", "--sizes", "16,8,4,3",
                      "--json", str(path)] + options)
    with_jax = JAX and "--dropout" not in options
    _assert_rows_without_numpy(res, torch, with_jax)
    cfg = json.loads(path.read_text())["config"]
    args = bench.parse_args(options)
    assert cfg["loss_name"] == args.loss and cfg["loss"] == bench.LOSS_CONFIG[args.loss]
    assert cfg["dropout"] == args.dropout
    assert cfg["poisson_rate"] == (bench.POISSON_RATE if args.loss == "poisson" else None)
    assert not cfg["numpy_step"] and cfg["numpy_skipped"] == skipped
    out = capsys.readouterr().out
    assert label in out, out
    assert f"numpy: left out ({skipped})" in out
    assert ("torch/bpcore" in out) == (torch is not None) and "numpy/bpcore" not in out
    if "--dropout" in options:  # the JAX step has no dropout: left out with a note
        assert cfg["jax"] is None and cfg["jax_skipped"] == "its step has no dropout"
        assert "jax: left out (its step has no dropout)" in out
    assert ("jax/bpcore" in out) == with_jax


def test_make_batches_targets():
    """The targets of each loss: 0/1 multi-label rows for bce, non-negative integer counts
    for poisson, in the weights' dtype; the same pool for the same seed."""
    sizes = [5, 4, 6]
    for loss in ("bce", "poisson"):
        pool = bench.make_batches(sizes, 50, "float32", loss=loss)
        for X, Y in pool:
            assert X.shape == (50, 5) and Y.shape == (50, 6) and Y.dtype == np.float32
            assert (Y >= 0).all() and (Y == np.round(Y)).all()
        Y = np.concatenate([Y for _, Y in pool])
        if loss == "bce":
            assert set(np.unique(Y)) == {0, 1}
            assert 1 < Y.sum(axis=1).max()  # multi-label: rows with several ones
        else:
            assert Y.max() >= 2 and abs(Y.mean() - bench.POISSON_RATE) < 0.2
        again = bench.make_batches(sizes, 50, "float32", loss=loss)
        assert all(np.array_equal(a[1], b[1]) for a, b in zip(pool, again))
    # the default pool is the one drawn before these losses existed
    rng = np.random.default_rng(0)
    X, Y = bench.make_batches(sizes, 50, "float32")[0]
    np.testing.assert_array_equal(X, rng.random((50, 5)).astype(np.float32))
    np.testing.assert_array_equal(Y, bpcore.one_hot(rng.integers(0, 6, 50), 6, "float32"))


def test_build_model_dropout():
    """With dropout the network is Dense, act, Dropout, ..., Dense with the MLP's initial
    weights; without, it is the MLP itself."""
    sizes = [7, 5, 4, 3]
    plain = bench.build_model(sizes, "elu", "float64")
    assert type(plain) is bpcore.MLP
    np.testing.assert_array_equal(plain.flat_params, bpcore.MLP(sizes, activation="elu",
                                                                dtype="float64",
                                                                seed=0).flat_params)
    net = bench.build_model(sizes, "elu", "float64", dropout=0.25)
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Dense", "ELU", "Dropout", "Dense", "ELU", "Dropout", "Dense"]
    drops = [m for m in net.layers if isinstance(m, bpcore.Dropout)]
    assert [d.p for d in drops] == [0.25, 0.25] and drops[0].seed != drops[1].seed
    np.testing.assert_array_equal(net.flat_params, plain.flat_params)
    assert net.dtype == np.float64


def test_bench_gelu_xent(capsys):
    """bpcore and torch both run another activation and loss; the NumPy step (ReLU only) is
    left out with a note."""
    res = bench.main(["--quick", "--batches", "1,8", "--threads", "1", "--sizes", "16,8,3",
                      "--activation", "gelu", "--loss", "xent"])
    _assert_rows_without_numpy(res, torch, JAX)
    cfg = res["config"]
    assert cfg["activation"] == "gelu" and cfg["loss_name"] == "xent"
    assert not cfg["numpy_step"] and "ReLU only" in cfg["numpy_skipped"]
    out = capsys.readouterr().out
    assert "GELU hidden layers, softmax cross-entropy on integer labels" in out
    assert "numpy: left out (its step is written for ReLU only, not gelu)" in out
    assert ("torch/bpcore" in out) == (torch is not None) and "numpy/bpcore" not in out


def test_bench_xent_keeps_numpy():
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--loss", "xent", "--no-torch", "--no-jax"])
    (cell,) = res["cells"]
    assert set(cell["median_us"]) == {"bpcore", "floor", "numpy"}
    assert positive(cell["numpy_ratio"])


@pytest.mark.skipif(torch is None, reason="needs torch")
@pytest.mark.parametrize("loss", ["mse", "xent", "bce", "poisson"])
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


@pytest.mark.skipif(torch is None, reason="needs torch")
@pytest.mark.parametrize("loss", ["mse", "bce", "poisson"])
def test_torch_comparator_dropout(loss):
    """With dropout the masks differ between the libraries: both nets start from the same
    weights, have their dropout at the same places, and train to finite, changed weights and
    finite losses; bpcore's steps are repeatable after reset (the same masks)."""
    sizes = [7, 5, 4, 3]
    model = bench.build_model(sizes, "relu", "float64", dropout=0.3)
    batches = bench.make_batches(sizes, 6, "float64", loss=loss)
    ours = bench.BpcoreImpl(model, batches, loss=loss)
    ref = bench.TorchImpl(model, batches, torch, loss=loss, dropout=0.3)
    assert ref.net.training
    kinds = [type(m).__name__ for m in ref.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert all(m.p == 0.3 for m in ref.net if isinstance(m, torch.nn.Dropout))
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    for l, d in enumerate(dense):
        np.testing.assert_array_equal(d.W, ref.params[2 * l].detach().numpy().T)
    p0 = model.flat_params.copy()
    for i in range(3):
        ours.step(i % len(batches))
        ref.step(i % len(batches))
    after = model.flat_params.copy()
    assert np.isfinite(after).all() and not np.array_equal(after, p0)
    for p in ref.params:
        assert torch.isfinite(p).all()
    assert not torch.equal(ref.params[0], ref.p0[0])
    X, Y = batches[0]
    assert math.isfinite(model.evaluate(X, Y, bench.bpcore_loss(loss))["loss"])
    with torch.no_grad():
        assert math.isfinite(ref.loss(ref.net(ref.batches[0][0]), ref.batches[0][1]).item())
    ours.reset()
    np.testing.assert_array_equal(model.flat_params, p0)
    for i in range(3):
        ours.step(i % len(batches))
    np.testing.assert_array_equal(model.flat_params, after)


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


def test_step_bytes():
    """The bytes floor's count: parameters and the arrays beside them (gradient, velocity;
    gradient, two moments) read and written once, plus the batch."""
    assert bench.STATE_ARRAYS == {"sgd": 2, "adam": 3}
    assert bench.step_bytes(1000, 4, "sgd", 123) == 4 * 1000 * 6 + 123
    assert bench.step_bytes(1000, 8, "adam", 0) == 8 * 1000 * 8


def test_copy_bandwidth():
    for threads in (1, 2):
        assert positive(bench.copy_bandwidth_gbs(threads, 8, 1))


def test_no_jax_option():
    assert not bench.parse_args([]).no_jax and bench.parse_args(["--no-jax"]).no_jax


def test_table_row_missing_peer():
    """A peer absent from one cell (its thread count could not be honoured) shows a dash."""
    cols = bench.table_columns(False, False, with_jax=True)
    assert cols[-3:] == ["jax/bpcore", "best peer", "bpcore/best"]
    cell = {"threads": 3, "batch": 8, "us_per_step": 10.0, "samples_per_s": 8e5, "gflops": 1.0,
            "pct_peak": 10.0, "floor_ratio": 1.5, "flop_floor_ratio": 2.0,
            "bytes_floor_ratio": 3.0}
    assert bench.table_row(cell, cols).endswith("| 2.00 | 3.00 | – | – | – |")
    cell.update(jax_ratio=0.5, best_peer="jax", best_peer_ratio=2.0)
    assert bench.table_row(cell, cols).endswith("| 0.50 | jax | 2.00 |")


def test_bench_without_jax_installed(monkeypatch, capsys):
    """Without jax (find_spec finds neither package) the column is left out with a note."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("jax", "jaxlib") else real(name, *a))
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--no-torch"])
    (cell,) = res["cells"]
    assert set(cell["median_us"]) == {"bpcore", "floor", "numpy"} and "jax_ratio" not in cell
    assert cell["best_peer"] == "numpy"
    cfg = res["config"]
    assert cfg["jax"] is None and cfg["jax_skipped"] == "jax and jaxlib are not both installed"
    out = capsys.readouterr().out
    assert "jax not used" in out
    assert "jax: left out (jax and jaxlib are not both installed)" in out
    assert "jax/bpcore" not in out


def test_bench_jax_worker_fails_to_start(monkeypatch, capsys):
    """A worker that cannot start (a broken jax install) leaves JAX out with its reason."""
    class Broken:
        def __init__(self, threads, dtype):
            raise bench.JaxWorkerError("Traceback ...\nImportError: jaxlib is broken\n")

    monkeypatch.setattr(bench, "jax_version", lambda args: "0.0")
    monkeypatch.setattr(bench, "JaxWorker", Broken)
    res = bench.main(["--quick", "--batches", "4", "--threads", "1", "--sizes", "8,4,3",
                      "--no-torch", "--no-numpy"])
    assert set(res["cells"][0]["median_us"]) == {"bpcore", "floor"}
    why = "its worker failed to start: ImportError: jaxlib is broken"
    assert res["config"]["jax"] is None and res["config"]["jax_skipped"] == why
    assert f"jax: left out ({why})" in capsys.readouterr().out


@pytest.fixture(scope="module")
def jax_worker64():
    """One float64 JAX worker (1 thread) for the comparator tests: starting one takes seconds."""
    pytest.importorskip("jax")
    with bench.JaxWorker(1, "float64") as worker:
        yield worker


def test_jax_worker_setup(jax_worker64):
    """x64 on for float64, the process confined to one core (where there are more)."""
    info = jax_worker64.info
    assert info["x64"] and info["device"].startswith("cpu")
    if hasattr(os, "sched_getaffinity") and len(os.sched_getaffinity(0)) > 1:
        assert info["cores"] == sorted(os.sched_getaffinity(0))[:1]
    with pytest.raises(bench.JaxWorkerError, match="op: expected a request"):
        jax_worker64.call("frobnicate")
    assert jax_worker64.call("steps", []) == []  # still answering after a failed request


def _relative_error(a, b):
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.mark.parametrize("optimizer, loss, activation",
                         [(opt, loss, "relu") for opt in ("sgd", "adam")
                          for loss in ("mse", "xent", "bce", "poisson")]
                         + [("adam", "mse", act) for act in sorted(bench.ACTIVATIONS)
                            if act != "relu"])
def test_jax_comparator_matches_bpcore(jax_worker64, optimizer, loss, activation):
    """The JAX step in the table (one jitted function in the worker) is the same computation
    as bpcore's and torch's: float64, 4 steps from the same weights, relative error <= 1e-10
    in every weight, bias and loss."""
    sizes = [7, 5, 4, 3]
    model = bpcore.MLP(sizes, activation=activation, dtype="float64", seed=1)
    batches = bench.make_batches(sizes, 6, "float64", loss=loss)
    theirs = bench.JaxRemote(jax_worker64, model, batches, optimizer, activation, loss)
    ref = (bench.TorchImpl(model, batches, torch, optimizer, activation, loss)
           if torch is not None else None)
    opt, objective = bench.bpcore_optimizer(optimizer, model), bench.bpcore_loss(loss)
    order = [0, 1, 0, 1]
    ours = [model.train_step(*batches[i], objective, opt) for i in order]
    assert jax_worker64.call("steps", order) == pytest.approx(ours, rel=1e-10)
    if ref is not None:
        for i in order:
            ref.step(i)
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    for l, (d, (W, b)) in enumerate(zip(dense, theirs.params())):
        assert not np.array_equal(d.W, model_w0(sizes, activation)[l])  # it did train
        assert _relative_error(W, d.W) <= 1e-10 and _relative_error(b, d.b) <= 1e-10
        if ref is not None:
            tW, tb = ref.params[2 * l].detach().numpy().T, ref.params[2 * l + 1].detach().numpy()
            assert _relative_error(W, tW) <= 1e-10 and _relative_error(b, tb) <= 1e-10
    # reset: back to the initial weights, and the same steps give the same weights again
    theirs.reset()
    np.testing.assert_array_equal(theirs.params()[0][0], model_w0(sizes, activation)[0])
    assert jax_worker64.call("steps", order) == pytest.approx(ours, rel=1e-10)


def model_w0(sizes, activation):
    """The initial weights of the comparator tests' network."""
    net = bpcore.MLP(sizes, activation=activation, dtype="float64", seed=1)
    return [m.W.copy() for m in net.layers if isinstance(m, bpcore.Dense)]


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


def _assert_rows_without_numpy(res, torch, with_jax):
    """Cells of batch 1 and 8 timing bpcore, the floor, torch (where installed) and JAX (where
    with_jax), and no NumPy peer."""
    impls = ({"bpcore", "floor"} | ({"torch"} if torch is not None else set())
             | ({"jax"} if with_jax else set()))
    assert [c["batch"] for c in res["cells"]] == [1, 8]
    for c in res["cells"]:
        assert set(c["median_us"]) == impls
        assert all(positive(c["median_us"][name]) for name in impls)
        assert "numpy_ratio" not in c
        assert ("torch_ratio" in c) == (torch is not None)
        assert ("jax_ratio" in c) == with_jax


def test_bench_sklearn_quick(tmp_path, capsys):
    pytest.importorskip("sklearn")
    mod = load_script("bench_sklearn")
    path = tmp_path / "s.json"
    threads_before = bpcore.get_num_threads()
    res = mod.main(["--quick", "--threads", "1", "--dtypes", "float32,float64", "--cases",
                    "large-adam,digits-adam-es,digits-lbfgs-reg", "--json", str(path)])
    assert bpcore.get_num_threads() == threads_before  # the run restores the setting
    saved = json.loads(path.read_text())
    assert saved["cells"] == json.loads(json.dumps(res["cells"]))
    cfg = saved["config"]
    assert cfg["threads"] == [1] and cfg["quick"]
    assert (cfg["torch"] is not None) == (torch is not None)
    assert cfg["cpu"] and cfg["blas"] and all("architecture" in b for b in cfg["blas"])
    assert "skorch" in saved["notes"]

    # the float64 data trained in float32 is a row exactly when the estimator has `dtype`
    from bpcore.sklearn import MLPClassifier
    has_dtype = "dtype" in MLPClassifier().get_params()
    assert cfg["estimator_dtype_parameter"] == has_dtype
    assert ("no dtype" in saved["notes"]) != has_dtype
    expected = [("large-adam", "float32", "float32"), ("large-adam", "float64", "float64")]
    expected += [("large-adam", "float64", "float32")] * has_dtype
    expected += [(case, d, d) for case in ("digits-adam-es", "digits-lbfgs-reg")
                 for d in ("float32", "float64")]
    assert [(c["case"], c["dtype"], c["train_dtype"]) for c in saved["cells"]] == expected

    impls = {"bpcore", "sklearn", "bare"} | ({"torch"} if torch is not None else set())
    settings = cfg["settings"]
    for c in saved["cells"]:
        assert set(c["median_s"]) == set(c["samples_s"]) == set(c["info"]) == impls
        for name in impls:
            assert len(c["samples_s"][name]) == settings["repeats"]
            assert all(positive(s) for s in c["samples_s"][name])
            assert math.isfinite(c["info"][name]["loss"])
        assert c["estimator"] == ("MLPRegressor" if c["case"].endswith("-reg")
                                  else "MLPClassifier")
        sizes, n = c["sizes"], c["rows"]
        if c["solver"] == "lbfgs":
            assert c["max_iter"] == settings["lbfgs_iter"]
            nfev = c["info"]["bare"]["nfev"]
            assert nfev >= c["info"]["bare"]["iters"] >= 1
            assert c["gemm_flops"] == nfev * bench.step_flops(sizes, n)
        else:  # tol=0 and a huge n_iter_no_change: every implementation runs every epoch
            assert {c["info"][name]["iters"] for name in impls} == {c["max_iter"]}
            n_val = math.ceil(0.1 * n) if c["early_stopping"] else 0
            forward = 2 * n_val * sum(a * b for a, b in zip(sizes, sizes[1:]))
            assert c["gemm_flops"] == c["iters"] * (bench.step_flops(sizes, n - n_val) + forward)
        assert c["peak_gflops"] == max(c["peak_samples_gflops"]) and positive(c["peak_gflops"])
        assert math.isclose(c["floor_s"], c["gemm_flops"] / (c["peak_gflops"] * 1e9))
        med = c["median_s"]
        assert math.isclose(c["floor_ratio"], med["bpcore"] / c["floor_s"])
        assert math.isclose(c["sklearn_ratio"], med["sklearn"] / med["bpcore"])
        ratios = [a / b for a, b in zip(c["samples_s"]["bpcore"], c["samples_s"]["bare"])]
        assert math.isclose(c["bare_ratio"], statistics.median(ratios))
        assert (c["torch_ratio"] is None) == (torch is None)
        bounds = {t["what"]: (t["op"], t["bound"]) for t in c["targets"]}
        assert bounds["bare_ratio"] == ("<=", 1.05)
        assert ("torch_ratio" in bounds) == (torch is not None)
        if c["solver"] == "lbfgs":
            assert bounds["sklearn_ratio"] == (">=", 3.0)
        elif c["case"] == "large-adam":
            assert bounds["sklearn_ratio"] == ((">=", 5.0) if c["dtype"] != c["train_dtype"]
                                               else (">=", 2.4))
        else:
            assert bounds["sklearn_ratio"] == (">=", 10.0)
        for t in c["targets"]:
            assert t["value"] == c[t["what"]]
            assert t["met"] == {"<=": t["value"] <= t["bound"], ">=": t["value"] >= t["bound"],
                                ">": t["value"] > t["bound"]}[t["op"]]
    out = capsys.readouterr().out
    assert "| case | estimator | solver | dtype | threads |" in out and "sklearn/bpcore" in out
    assert "OpenBLAS core type" in out and "targets missed" not in out  # quick: not judged


def test_bench_sklearn_options(capsys):
    pytest.importorskip("sklearn")
    mod = load_script("bench_sklearn")
    args = mod.parse_args(["--cases", "digits-sgd", "--repeats", "5", "--threads", "1"])
    assert args.cases == ["digits-sgd"] and args.settings["repeats"] == 5
    assert args.settings["large_n"] == 60000 and args.settings["large_hidden"] == (256, 128)
    for argv, message in ((["--cases", "mnist"], "--cases: expected names from"),
                          (["--dtypes", "float16"], "--dtypes: expected float32"),
                          (["--repeats", "0"], "--repeats: expected a positive value")):
        with pytest.raises(SystemExit) as e:
            mod.parse_args(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err


def test_bench_sklearn_times_the_estimator_beside_the_bare_fit():
    """Each round holds every implementation once, the estimator ("bpcore") and the bare fit
    next to each other in alternating order (their per-round ratio is the overhead), the
    others rotating."""
    mod = load_script("bench_sklearn")
    names = ["bpcore", "sklearn", "torch", "bare"]
    orders = [mod.round_order(names, r) for r in range(6)]
    for r, order in enumerate(orders):
        assert sorted(order) == sorted(names)
        i = order.index("bpcore")
        assert order[i + 1 if r % 2 == 0 else i - 1] == "bare"
    assert {order[0] for order in orders} == {"bpcore", "bare", "sklearn", "torch"}
    assert mod.round_order(["bpcore", "sklearn"], 1) == ["sklearn", "bpcore"]


def test_bench_idle_pieces():
    idle = load_script("bench_idle")
    assert idle.parse_settings("a=GOMP_SPINCOUNT=5,OMP_WAIT_POLICY=passive;b=") == {
        "a": {"GOMP_SPINCOUNT": "5", "OMP_WAIT_POLICY": "passive"}, "b": {}}
    env = idle.env_for({"GOMP_SPINCOUNT": "7"})
    assert env["GOMP_SPINCOUNT"] == "7" and "OMP_WAIT_POLICY" not in env
    wall, others, nfev = idle.lbfgs_seconds()
    assert positive(wall) and others >= 0 and nfev > 1
    assert positive(idle.user_lbfgs_seconds())
    assert positive(idle.step_us(1, 4, steps=3))


# ---------------------------------------------------------------------------------------------
# benchmarks/bench_mpi.py: the scaling model's arithmetic, and a tiny run under mpiexec

def test_ring_allreduce_model():
    mpi = load_script("bench_mpi")
    # 2(p-1)/p · bytes/bandwidth + 2(p-1) · latency, by hand
    assert mpi.ring_allreduce_seconds(1e6, 1, 1e9, 1e-5) == 0.0
    assert mpi.ring_allreduce_seconds(1e6, 2, 1e9, 1e-5) == pytest.approx(1e-3 + 2e-5)
    assert mpi.ring_allreduce_seconds(1e6, 4, 1e9, 1e-5) == pytest.approx(1.5e-3 + 6e-5)
    assert mpi.ring_allreduce_seconds(4e6, 64, 25e9, 1e-6) == pytest.approx(
        2 * 63 / 64 * 4e6 / 25e9 + 126e-6)


def test_smallest_batch_at_target_efficiency():
    mpi = load_script("bench_mpi")
    steps = {b: 1e-4 + 1e-6 * b for b in (16, 64, 256, 512)}  # affine: exact interpolation
    # efficiency 0.8 needs step >= 4 × allreduce: 1e-4 + 1e-6 b >= 4e-4 at b = 300
    assert mpi.smallest_batch(steps, 1e-4) == (300, "interpolated")
    assert mpi.smallest_batch(steps, 1e-6) == (16, "measured")
    # past the largest batch, along the last segment: 1e-4 + 1e-6 b >= 4e-3 at b = 3900
    assert mpi.smallest_batch(steps, 1e-3) == (3900, "extrapolated")
    assert mpi.smallest_batch({16: 2e-4, 64: 2e-4}, 1e-3) == (None, "never")
    # with the data-parallel path 100 µs dearer: step >= 0.8 (step + 1e-4 + allreduce), i.e.
    # 0.2 step >= 0.8e-4 + 0.8e-4: step >= 8e-4 at b = 700
    path = {b: s + 1e-4 for b, s in steps.items()}
    assert mpi.smallest_batch(steps, 1e-4, 0.8, path) == (700, "extrapolated")
    # the threshold batch does reach the target, one batch less does not
    for allreduce in (3e-5, 1e-4, 2e-4):
        b, _ = mpi.smallest_batch(steps, allreduce)
        if b > 16:
            assert mpi.efficiency(1e-4 + 1e-6 * b, allreduce) >= 0.8 - 1e-12
            assert mpi.efficiency(1e-4 + 1e-6 * (b - 1), allreduce) < 0.8


def test_scaling_model_cells():
    mpi = load_script("bench_mpi")
    steps = {16: 3e-4, 64: 6e-4, 1024: 1e-2}
    path = {b: 1.5 * s for b, s in steps.items()}
    model = mpi.scaling_model(steps, 940_584, path_steps=path)
    assert len(model["allreduce"]) == len(mpi.NETWORKS) * len(mpi.MACHINES)
    assert len(model["cells"]) == len(model["allreduce"]) * len(steps)
    nets = {name: (bw, lat) for name, bw, lat in mpi.NETWORKS}
    for c in model["cells"]:
        reduce_s = mpi.ring_allreduce_seconds(940_584, c["machines"], *nets[c["network"]])
        assert c["allreduce_s"] == reduce_s
        step, p, b = steps[c["batch"]], c["machines"], c["batch"]
        assert c["efficiency"] == pytest.approx(step / (step + reduce_s))
        assert c["samples_per_s"] == pytest.approx(p * b / (step + reduce_s))
        assert c["speedup"] == pytest.approx(p * c["efficiency"])
        assert c["efficiency_path"] == pytest.approx(step / (1.5 * step + reduce_s))
        assert c["efficiency_path"] < c["efficiency"]
    for t in model["threshold"]:
        reduce_s = mpi.ring_allreduce_seconds(940_584, t["machines"], *nets[t["network"]])
        assert (t["batch"], t["how"]) == mpi.smallest_batch(steps, reduce_s)
        assert (t["batch_path"], t["how_path"]) == mpi.smallest_batch(steps, reduce_s, 0.8, path)


def test_bench_mpi_driver_tiny(tmp_path, capsys):
    pytest.importorskip("mpi4py.MPI")
    mpi = load_script("bench_mpi")
    try:
        mpi.find_mpiexec()
    except SystemExit:
        pytest.skip("no mpiexec (pip install 'bpcore[mpi]' brings one)")
    path = tmp_path / "mpi.json"
    mpi.main(["--ranks", "1,2", "--rounds", "2", "--batches", "256", "--epochs", "1",
              "--step-seconds", "0.02",
              "--allreduce-reps", "3", "--model-batches", "256,512", "--model-rounds", "1",
              "--json", str(path)])
    out = capsys.readouterr().out
    saved = json.loads(path.read_text())
    assert sorted(saved["runs"]) == ["1", "2"]
    for run in saved["runs"].values():  # two runs per rank count, their epochs pooled
        assert len(run["rounds"]) == 2
        assert [len(c["epoch_s_all"]) for c in run["cells"]] == [2] * len(run["cells"])
    one = {c["batch"]: c for c in saved["cells"] if c["ranks"] == 1}
    two = [c for c in saved["cells"] if c["ranks"] == 2]
    assert sorted(one) == [256, 512]  # the 1-rank run covers the 2-rank run's global batch
    assert [(c["batch"], c["global_batch"]) for c in two] == [(256, 512)]
    for c in saved["cells"]:
        assert all(positive(c[k]) for k in ("samples_per_s", "step_s", "epoch_s"))
        assert c["steps_per_epoch"] == -(-8192 // c["ranks"] // c["batch"])
    c = two[0]
    assert c["speedup_same_batch"] == pytest.approx(c["samples_per_s"] / one[256]["samples_per_s"])
    assert c["speedup_same_global_batch"] == pytest.approx(
        c["samples_per_s"] / one[512]["samples_per_s"])
    assert positive(c["allreduce_s"])
    steps = saved["runs"]["1"]["model_steps"]["batches"]
    assert sorted(steps) == ["256", "512"]
    assert all(positive(m[k]) for m in steps.values() for k in ("fit_s", "path_s", "train_step_s"))
    assert len(saved["scaling_model"]["threshold"]) == len(mpi.NETWORKS) * len(mpi.MACHINES)
    assert "| 2 | 1 | 256 | 512 |" in out and "smallest batch per machine" in out


CSRC = BENCHMARKS.parent / "csrc"


@pytest.mark.skipif(not (CSRC / "bp_simd.c").is_file(),
                    reason="benchmarks/update_loop.c builds against csrc/, not beside these tests")
@pytest.mark.skipif(os.name != "posix" or shutil.which("cc") is None, reason="no C compiler (cc)")
def test_update_loop_builds_and_times_every_level(tmp_path):
    """benchmarks/update_loop.c, built with its own command line (at -O1: a smoke test, 5 s of
    compiling instead of 13), prints SGD's and Adam's ns per weight at each SIMD level this CPU
    runs, for the L1 block and the whole network, the traffic floors, and what each update adds
    to the first layer's gradient products at batch 32, chunk by chunk."""
    from bpcore import _simd
    exe = tmp_path / "update_loop"
    subprocess.run(["cc", "-O1", "-fno-math-errno", "-fno-trapping-math", f"-I{CSRC}",
                    str(BENCHMARKS / "update_loop.c"), str(CSRC / "bp_gemm.c"), "-lm", "-o",
                    str(exe)], check=True, capture_output=True, timeout=300)
    out = subprocess.run([str(exe), "0.01"], check=True, capture_output=True, text=True,
                         timeout=120)
    assert out.stderr == ""  # no update wrote a non-finite weight
    table, floors, after = out.stdout.split("\n\n")
    rows = [line.split() for line in table.splitlines()[1:]]
    levels = ["portable", "AVX2+FMA", "AVX-512"][:_simd.best_level() + 1]
    assert [(r[0], r[1]) for r in rows] == [(lv, n) for lv in levels for n in ("6144", "235146")]
    assert all(positive(float(x)) for r in rows for x in r[2:])
    read, two, three, sgd, adam = map(float, re.findall(r"[0-9]+\.[0-9]", floors))
    assert all(positive(x) for x in (read, two, three))
    assert (sgd, adam) == (pytest.approx(read + two, abs=0.11), pytest.approx(read + three, abs=0.11))
    chunks = [re.fullmatch(r"chunk +([0-9]+) rows: +([0-9.]+) +\+ +(-?[0-9.]+) +\+ +(-?[0-9.]+)",
                           line) for line in after.splitlines()[1:]]
    assert [c and int(c[1]) for c in chunks] == [8, 24, 96, 784]
    assert all(positive(float(c[2])) for c in chunks)  # the products; an update's cost may be
    # below the timer's noise at 0.01 of the calls
