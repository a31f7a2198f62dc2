"""PyTorch parity: bpcore and torch, started from the same weights and fed the same data, must
produce the same losses at every step and the same weights after 20 SGD steps.

The torch network is built independently from the layer sizes and activation names (not by
walking ``model.layers``), so a bpcore MLP with a wrong structure fails here too. Only the
initial weights are copied across (torch.nn.Linear.weight is (out, in), bpcore's W is
(in, out), so the torch weight is W.T).

Losses, forward outputs and gradients are compared at every step, weights and biases at the
end. Tolerances: float64 runs agree to about 1e-13 relative, float32 runs to a few 1e-6; the
asserted bounds (TOL below) leave a margin of 10x or more over what is observed.
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

import bpcore  # noqa: E402

N_STEPS = 20

# (rtol, atol) per dtype for losses, weights and gradients
# (checked elementwise as |actual - expected| <= rtol * (|expected| + max|expected|) + atol,
# see assert_close). Worst observed over this file: float64 6e-14 (relative to the array's
# scale), float32 4e-6, plus float32 cross-entropy losses near 1e-3 that are off by 7e-8
# absolute (the log-sum-exp minus the logit cancels; torch does the same).
TOL = {
    "float64": (1e-11, 1e-13),
    "float32": (5e-5, 1e-6),
}

TORCH_DTYPE = {"float32": torch.float32, "float64": torch.float64}

TORCH_ACT = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}

# optimiser configurations: bpcore SGD keyword arguments; "decay" is emulated in torch
OPTIMS = {
    "momentum": dict(momentum=0.9),
    "nesterov": dict(momentum=0.9, nesterov=True),
    "momentum_wd": dict(momentum=0.9, weight_decay=1e-3),
    "plain": dict(momentum=0.0),
    "decay": dict(momentum=0.9, decay=0.002),
}

LOSSES = ("mse_mean", "mse_sum", "xent_labels", "xent_onehot")
DTYPES = ("float32", "float64")
ACTIVATIONS = ("relu", "sigmoid", "tanh")


# ---------------------------------------------------------------------------------------------
# helpers

def torch_net(sizes, activation, output_activation, dtype):
    """nn.Sequential mirroring bpcore.MLP(sizes, activation, output_activation)."""
    mods = []
    for i, (fi, fo) in enumerate(zip(sizes, sizes[1:])):
        mods.append(nn.Linear(fi, fo, dtype=TORCH_DTYPE[dtype]))
        last = i == len(sizes) - 2
        act = output_activation if last else activation
        if act is not None and act != "identity":
            mods.append(TORCH_ACT[act]())
    return nn.Sequential(*mods)


def copy_weights(model, tnet):
    """Copy the bpcore model's weights into the torch network (W -> weight = W.T)."""
    dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
    linear = [m for m in tnet if isinstance(m, nn.Linear)]
    assert len(dense) == len(linear)
    with torch.no_grad():
        for d, lin in zip(dense, linear):
            assert lin.weight.shape == (d.fan_out, d.fan_in)
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(d.W.T)))
            lin.bias.copy_(torch.from_numpy(d.b.copy()))
    return dense, linear


def make_losses(kind):
    """(bpcore loss, torch loss fn(out, target))."""
    if kind == "mse_mean":
        return bpcore.MSELoss("mean"), nn.MSELoss(reduction="mean")
    if kind == "mse_sum":
        return bpcore.MSELoss("sum"), nn.MSELoss(reduction="sum")
    if kind == "mse_half_sum":
        f = nn.MSELoss(reduction="sum")
        return bpcore.MSELoss("half_sum"), lambda out, t: 0.5 * f(out, t)
    if kind in ("xent_labels", "xent_onehot", "xent_probs"):
        return bpcore.SoftmaxCrossEntropyLoss("mean"), nn.CrossEntropyLoss(reduction="mean")
    if kind in ("xent_labels_sum", "xent_onehot_sum"):
        return bpcore.SoftmaxCrossEntropyLoss("sum"), nn.CrossEntropyLoss(reduction="sum")
    raise AssertionError(kind)


def make_batches(kind, n_in, n_out, batch, dtype, seed, n_steps=N_STEPS):
    """n_steps (X, target) minibatches, each a fresh seeded draw of inputs.

    Targets come from a fixed random "teacher" (a linear map, then tanh for regression or an
    argmax for classes), so there is something to learn and the losses trend downwards.
    """
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
    batches = []
    for _ in range(n_steps):
        X = rng.standard_normal((batch, n_in))
        S = X @ A
        if kind.startswith("mse"):
            T = np.tanh(S).astype(dtype)
        elif kind.startswith("xent_labels"):
            T = S.argmax(1)
        elif kind.startswith("xent_onehot"):
            T = bpcore.one_hot(S.argmax(1), n_out, dtype)
            np.testing.assert_array_equal(T.argmax(1), S.argmax(1))
            assert T.sum() == batch
        elif kind == "xent_probs":
            P = np.exp(2 * S)
            T = (P / P.sum(1, keepdims=True)).astype(dtype)
        else:
            raise AssertionError(kind)
        batches.append((X.astype(dtype), T))
    return batches


def torch_target(T, dtype):
    if T.dtype.kind in "iu":
        return torch.from_numpy(T.astype(np.int64))
    return torch.from_numpy(T).to(TORCH_DTYPE[dtype])


_STATS = None  # set to a dict to record the worst error per dtype (tuning aid)


def assert_close(actual, expected, dtype, what):
    """Elementwise |actual - expected| <= rtol * (|expected| + max|expected|) + atol.

    The max|expected| term scales the absolute tolerance to the array: an entry that is a sum
    of large terms cancelling to a small value (common in a gradient) carries the rounding
    error of those large terms, not of its own size.
    """
    rtol, atol = TOL[dtype]
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    scale = float(np.abs(expected).max()) if expected.size else 0.0
    if _STATS is not None:
        err = np.abs(actual - expected) / (np.abs(expected) + scale + 1e-300)
        _STATS[dtype] = max(_STATS.get(dtype, 0.0), float(err.max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale + atol,
                               err_msg=what)


def run_parity(sizes, activation, output_activation, dtype, loss_kind, lr, opt_kw,
               batch=11, seed=0, batches=None, init="auto", threads=None):
    """Train the same net in bpcore and torch for N_STEPS steps; compare as we go.

    Returns (bpcore losses, torch losses, max relative weight change) for extra checks.
    """
    torch.manual_seed(seed)
    model = bpcore.MLP(sizes, activation=activation, output_activation=output_activation,
                       dtype=dtype, seed=seed + 1234, init=init)
    assert model.dtype == np.dtype(dtype)
    tnet = torch_net(sizes, activation, output_activation, dtype)
    dense, linear = copy_weights(model, tnet)
    init_W = [d.W.copy() for d in dense]

    b_loss, t_loss_fn = make_losses(loss_kind)
    opt_kw = dict(opt_kw)
    decay = opt_kw.pop("decay", 0.0)
    opt = bpcore.SGD(model, lr=lr, decay=decay, **opt_kw)
    topt = torch.optim.SGD(tnet.parameters(), lr=lr, momentum=opt_kw.get("momentum", 0.0),
                           nesterov=opt_kw.get("nesterov", False),
                           weight_decay=opt_kw.get("weight_decay", 0.0))
    if batches is None:
        batches = make_batches(loss_kind, sizes[0], sizes[-1], batch, dtype, seed + 99)

    b_losses, t_losses = [], []
    for step, (X, T) in enumerate(batches):
        # bpcore
        def b_step():
            model.zero_grad()
            out = model.forward(X)
            L = b_loss(out, T)
            model.backward(b_loss.backward())
            return out, L

        if threads is None:
            out, L = b_step()
        else:
            with bpcore.num_threads(threads):
                out, L = b_step()
        assert isinstance(L, float)
        assert out.dtype == np.dtype(dtype)
        # torch
        topt.zero_grad()
        tout = tnet(torch.from_numpy(X))
        tL = t_loss_fn(tout, torch_target(T, dtype))
        tL.backward()

        assert_close(out, tout.detach().numpy(), dtype, f"step {step}: forward output")
        assert_close(L, tL.item(), dtype, f"step {step}: loss")
        for i, (d, lin) in enumerate(zip(dense, linear)):
            assert_close(d.dW, lin.weight.grad.numpy().T, dtype, f"step {step}: dW[{i}]")
            assert_close(d.db, lin.bias.grad.numpy(), dtype, f"step {step}: db[{i}]")
        b_losses.append(L)
        t_losses.append(tL.item())

        # update
        if threads is None:
            opt.step()
        else:
            with bpcore.num_threads(threads):
                opt.step()
        topt.step()
        if decay:
            with torch.no_grad():
                for p in tnet.parameters():
                    p.mul_(1 - decay)

    for i, (d, lin) in enumerate(zip(dense, linear)):
        assert d.W.dtype == np.dtype(dtype) and d.b.dtype == np.dtype(dtype)
        assert_close(d.W, lin.weight.detach().numpy().T, dtype, f"final W[{i}]")
        assert_close(d.b, lin.bias.detach().numpy(), dtype, f"final b[{i}]")
    assert np.all(np.isfinite(b_losses))
    moved = max(float(np.abs(d.W - w0).max() / np.abs(w0).max()) for d, w0 in zip(dense, init_W))
    # the comparison is only meaningful if training actually changed the weights
    assert moved > 1e-3, f"weights barely moved ({moved:.2e}); the test would prove nothing"
    return b_losses, t_losses, moved


# learning rates: large enough to move the weights visibly in 20 steps, small enough to stay
# stable with momentum 0.9 (sum reductions scale the gradient by the batch size)
LR = {"mse_mean": 0.02, "mse_sum": 0.0005, "mse_half_sum": 0.001,
      "xent_labels": 0.05, "xent_onehot": 0.05, "xent_probs": 0.05,
      "xent_labels_sum": 0.005, "xent_onehot_sum": 0.005}


# ---------------------------------------------------------------------------------------------
# the main cross product: dtype x loss x activation x optimiser

@pytest.mark.parametrize("optim", list(OPTIMS))
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss_kind", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_cross_product(dtype, loss_kind, activation, optim):
    run_parity([7, 13, 5, 4], activation, None, dtype, loss_kind, LR[loss_kind], OPTIMS[optim])


# ---------------------------------------------------------------------------------------------
# odd shapes

@pytest.mark.parametrize("loss_kind", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_batch_of_one(dtype, loss_kind):
    run_parity([7, 13, 5, 4], "tanh", None, dtype, loss_kind, LR[loss_kind],
               OPTIMS["nesterov"], batch=1, seed=3)


@pytest.mark.parametrize("sizes,activation", [
    ([6, 3], "relu"),                 # a single Dense layer, no hidden activation
    ([5, 1], "sigmoid"),              # one output unit
    ([4, 9, 8, 7, 3], "relu"),        # deeper
    ([3, 17, 2], "sigmoid"),          # wide hidden layer, two outputs
])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_odd_shapes_mse(dtype, sizes, activation):
    run_parity(sizes, activation, None, dtype, "mse_mean", 0.05, OPTIMS["momentum_wd"],
               batch=5, seed=7)


@pytest.mark.parametrize("sizes", [[4, 9, 8, 7, 3], [6, 2], [3, 17, 2]])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_odd_shapes_xent(dtype, sizes):
    run_parity(sizes, "tanh", None, dtype, "xent_labels", 0.1, OPTIMS["decay"], batch=3, seed=8)


# ---------------------------------------------------------------------------------------------
# other reductions and targets

@pytest.mark.parametrize("loss_kind", ["xent_probs", "xent_labels_sum", "xent_onehot_sum",
                                       "mse_half_sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_other_losses(dtype, loss_kind):
    run_parity([7, 13, 5, 4], "sigmoid", None, dtype, loss_kind, LR[loss_kind],
               OPTIMS["momentum"], seed=11)


# ---------------------------------------------------------------------------------------------
# the 1986-style network: sigmoid hidden and output units, squared error

@pytest.mark.parametrize("reduction", ["mean", "half_sum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_sigmoid_output_mse_encoder(dtype, reduction):
    # the 8-3-8 encoder: identity patterns in, the same patterns out; weights uniform in
    # [-0.3, 0.3] as in the paper, lr and momentum as printed for the half-sum error
    X = np.eye(8, dtype=dtype)
    batches = [(X, X.copy())] * N_STEPS
    lr = 0.5 if reduction == "half_sum" else 5.0
    kind = "mse_half_sum" if reduction == "half_sum" else "mse_mean"
    b_losses, _, _ = run_parity([8, 3, 8], "sigmoid", "sigmoid", dtype, kind, lr,
                                OPTIMS["momentum"], batches=batches, init=0.3)
    assert b_losses[-1] < b_losses[0]


@pytest.mark.parametrize("optim", list(OPTIMS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_sigmoid_output_mse_random(dtype, optim):
    # sigmoid outputs against targets in (0, 1)
    rng = np.random.default_rng(21)
    batches = [(rng.standard_normal((11, 7)).astype(dtype),
                rng.random((11, 4)).astype(dtype)) for _ in range(N_STEPS)]
    run_parity([7, 13, 5, 4], "tanh", "sigmoid", dtype, "mse_mean", 1.0, OPTIMS[optim],
               batches=batches)


# ---------------------------------------------------------------------------------------------
# thread counts: one thread and several give the torch result

@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", DTYPES)
def test_parity_thread_counts(dtype, threads):
    # big enough that the OpenMP loops and BLAS could split the work
    run_parity([64, 256, 128, 10], "relu", None, dtype, "xent_labels", 0.05,
               OPTIMS["nesterov"], batch=257, seed=5, threads=threads)


# ---------------------------------------------------------------------------------------------
# the harness itself must be able to fail

def test_harness_detects_a_wrong_optimizer():
    # torch with a different momentum than bpcore: the comparison must fail
    with pytest.raises(AssertionError):
        sizes = [7, 13, 5, 4]
        model = bpcore.MLP(sizes, activation="tanh", dtype="float64", seed=1)
        tnet = torch_net(sizes, "tanh", None, "float64")
        dense, linear = copy_weights(model, tnet)
        opt = bpcore.SGD(model, lr=0.05, momentum=0.9)
        topt = torch.optim.SGD(tnet.parameters(), lr=0.05, momentum=0.8)
        loss, tloss = make_losses("mse_mean")
        for X, T in make_batches("mse_mean", 7, 4, 11, "float64", 0, n_steps=5):
            model.zero_grad()
            loss(model.forward(X), T)
            model.backward(loss.backward())
            opt.step()
            topt.zero_grad()
            tloss(tnet(torch.from_numpy(X)), torch.from_numpy(T)).backward()
            topt.step()
        for d, lin in zip(dense, linear):
            assert_close(d.W, lin.weight.detach().numpy().T, "float64", "W")
