"""python -m bpcore.bench: time bpcore's fused training step against its BLAS floor, PyTorch
and plain NumPy, over batch sizes and thread counts.

Every implementation trains the same MLP (ReLU hidden layers, linear outputs) from the same
initial weights with MSE on one-hot targets and SGD with momentum (--activation, --loss,
--dropout and --optimizer change these; the NumPy step is written for ReLU, MSE and
cross-entropy without dropout only and is left out otherwise, with a note in the header). Per
(threads, batch) cell the
implementations are timed *interleaved* in one process: round after round, a block of k steps
of each in turn, so that drift in the machine's speed (turbo, other processes) hits them all
alike. A block's time / k is one sample; the table shows medians over the samples.

Columns: microseconds per step and samples/s of bpcore; GFLOP/s of its step (GEMM flops only)
and that as a share of the peak GEMM rate measured on the spot for the thread count; "× floor":
bpcore's step time over the time of the step's GEMMs alone (bpcore._bench.gemm_floor, on the engine's
own buffers: everything bpcore adds around BLAS); "torch/bpcore" and "numpy/bpcore": their step
times over bpcore's (above 1: bpcore is faster).

    python -m bpcore.bench                              # the README's table
    python -m bpcore.bench --threads 1,2,all --batches 32,512 --json out.json
    python -m bpcore.bench --activation gelu --loss xent --threads 1 --batches 1,32,128
    python -m bpcore.bench --loss bce --dropout 0.2 --threads 1 --batches 1,32,128
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

import bpcore
from bpcore import _blas, _simd, _threads
from bpcore._bench import gemm_floor
from bpcore.training import engine_for

__all__ = ["main", "step_flops", "NumpyMLP"]

DEFAULT_SIZES = (784, 256, 128, 10)
DEFAULT_BATCHES = (1, 8, 32, 128, 512, 2048)
LR, MOMENTUM = 0.01, 0.9
ADAM_LR = 0.001

# the hidden activations (bpcore.MLP's names) and torch's module for each, with bpcore's
# settings (torch's defaults); the label the header shows
ACTIVATIONS = {
    "relu": ("ReLU", lambda nn: nn.ReLU()),
    "leaky_relu": ("LeakyReLU(0.01)", lambda nn: nn.LeakyReLU(0.01)),
    "elu": ("ELU", lambda nn: nn.ELU()),
    "gelu": ("GELU", lambda nn: nn.GELU()),
    "gelu_tanh": ("GELU(tanh)", lambda nn: nn.GELU(approximate="tanh")),
    "silu": ("SiLU", lambda nn: nn.SiLU()),
    "softplus": ("Softplus", lambda nn: nn.Softplus()),
    "sigmoid": ("Sigmoid", lambda nn: nn.Sigmoid()),
    "tanh": ("Tanh", lambda nn: nn.Tanh()),
}
# the losses, as the header and the JSON describe them: "mse" (MSE, mean, on one-hot targets),
# "xent" (softmax cross-entropy, mean, on integer labels: bpcore.SoftmaxCrossEntropyLoss,
# torch.nn.CrossEntropyLoss), "bce" (sigmoid + binary cross-entropy, mean over all outputs, on
# 0/1 multi-label targets: bpcore.BCEWithLogitsLoss, torch.nn.BCEWithLogitsLoss) and "poisson"
# (Poisson NLL of the outputs as log-rates, mean, on counts drawn from Poisson(POISSON_RATE):
# bpcore.PoissonLoss, torch.nn.PoissonNLLLoss(log_input=True, full=False))
LOSSES = {"mse": "MSE on one-hot targets",
          "xent": "softmax cross-entropy on integer labels",
          "bce": "BCE-with-logits on 0/1 targets",
          "poisson": "Poisson NLL (log-rate outputs) on count targets"}
LOSS_CONFIG = {"mse": "MSE mean, one-hot targets",
               "xent": "softmax cross-entropy mean, integer labels",
               "bce": "BCE-with-logits mean, 0/1 multi-label targets",
               "poisson": "Poisson NLL mean, log-rate outputs, Poisson(1) count targets"}
POISSON_RATE = 1.0  # the mean of the count targets of --loss poisson
NUMPY_LOSSES = ("mse", "xent")  # the losses the NumPy step computes


def bpcore_loss(name):
    return {"mse": bpcore.MSELoss, "xent": bpcore.SoftmaxCrossEntropyLoss,
            "bce": bpcore.BCEWithLogitsLoss, "poisson": bpcore.PoissonLoss}[name]()


def torch_loss(nn, name):
    """torch's module computing the same loss as bpcore_loss(name)."""
    if name == "xent":
        return nn.CrossEntropyLoss()
    if name == "bce":
        return nn.BCEWithLogitsLoss()
    if name == "poisson":
        return nn.PoissonNLLLoss(log_input=True, full=False)
    return nn.MSELoss()


def build_model(sizes, activation="relu", dtype="float32", dropout=0.0, seed=0):
    """The benchmark's bpcore network: bpcore.MLP(sizes, activation, dtype, seed); with
    dropout > 0 the same layers, with the same initial weights, as a Sequential with a
    Dropout(dropout) after each hidden activation (each Dropout with its own seed)."""
    mlp = bpcore.MLP(sizes, activation=activation, dtype=dtype, seed=seed)
    if not dropout:
        return mlp
    layers, k = [], 0
    for m in mlp.layers:  # Dense, act, Dense, act, ..., Dense: a layer joins one network only
        if isinstance(m, bpcore.Dense):
            d = bpcore.Dense(m.fan_in, m.fan_out, dtype=dtype)
            d.W, d.b = m.W, m.b
            layers.append(d)
        else:
            layers.append(type(m)(**m.settings()))
            k += 1
            layers.append(bpcore.Dropout(dropout, seed=seed + k))
    return bpcore.Sequential(*layers)


def bpcore_optimizer(name, model):
    """A fresh optimizer (zero state) of the benchmark's settings."""
    if name == "adam":
        return bpcore.Adam(model, lr=ADAM_LR)
    return bpcore.SGD(model, lr=LR, momentum=MOMENTUM)

# Timing knobs: (full run, --quick). A block lasts about block_s (at least one step, at most
# MAX_BLOCK_STEPS steps of an implementation that trains: see below); a cell runs rounds until
# seconds_per_cell is spent and at least min_rounds are done; each implementation is first
# warmed up for warmup_s. The peak GEMM is the median of peak_reps calls on peak_size^3 after
# two warm-up calls.
TIMING = {
    "full": dict(seconds=2.0, block_s=0.04, warmup_s=0.1, min_rounds=3,
                 peak_size=2048, peak_reps=7, pause=0.15),
    "quick": dict(seconds=0.08, block_s=0.002, warmup_s=0.005, min_rounds=2,
                  peak_size=256, peak_reps=3, pause=0.0),
}

# Why blocks start with a pause and a few untimed steps: the implementations live in different
# thread pools (bpcore's OpenMP threads, OpenBLAS's pthreads behind the floor and NumPy,
# PyTorch's OpenMP threads). A pool's workers keep spinning for a while after their last job
# (OpenBLAS about 2^28 cycles, some 0.1 s; libgomp some milliseconds) and take the cores from
# whatever runs next: back to back, any of them runs up to 6x slower right after another. Each
# block therefore sleeps until the previous pool is idle (PAUSE_S), wakes its own pool with a
# few untimed steps, then times its steps one by one: each implementation is measured in its
# own steady state, as it runs in a program that uses it alone.
BLOCK_WARM_STEPS = 3

# Why the state is restored every round and blocks are capped at MAX_BLOCK_STEPS:
# training a few small batches for thousands of steps fits them exactly; gradients then shrink
# towards zero and momentum buffers decay by 0.9 a step into subnormal floats, which make
# PyTorch's and NumPy's updates much slower (bpcore flushes them). With 784-256-128-10 they
# appeared within 1,000 steps of the start (torch's batch-1 step 40% slower), never within 256.
# That regime is an artefact of the benchmark, not of training, so every implementation cycles
# through a pool of batches and restarts from the initial weights (zero velocity) before each
# block, outside the timing.
MAX_BLOCK_STEPS = 256
POOL_ROWS = 8192  # rows of data per cell (at most 8 batches, at least 2)


# ---------------------------------------------------------------------------------------------
# what one step costs

def step_flops(sizes, n):
    """GEMM flops of one training step on n rows: forward (X @ W), dW (A.T @ dZ) for every
    layer, dX (dZ @ W.T) for every layer but the first (the input needs no gradient)."""
    pairs = list(zip(sizes, sizes[1:]))
    fwd = sum(fi * fo for fi, fo in pairs)
    dx = sum(fi * fo for fi, fo in pairs[1:])
    return 2 * n * (fwd + fwd + dx)


# ---------------------------------------------------------------------------------------------
# the implementations: each is an object with reset() (untimed: back to the initial state)
# and step(i) (one training step on batch i of the pool)

class BpcoreImpl:
    """bpcore's fused native step: model.train_step."""
    max_block = MAX_BLOCK_STEPS

    def __init__(self, model, batches, optimizer="sgd", loss="mse"):
        self.model, self.batches, self.optimizer = model, batches, optimizer
        self.loss = bpcore_loss(loss)
        self.p0 = model.flat_params.copy()
        self.dropouts = [m for m in model.layers if isinstance(m, bpcore.Dropout)]
        self.reset()

    def reset(self):
        self.model.flat_params[...] = self.p0
        self.opt = bpcore_optimizer(self.optimizer, self.model)  # fresh zero state
        for m in self.dropouts:  # draw the same masks again (the engine reads this state)
            m.state[1] = 0

    def step(self, i):
        X, Y = self.batches[i]
        self.model.train_step(X, Y, self.loss, self.opt)


class FloorImpl:
    """The GEMMs of bpcore's step alone, on the same model's engine buffers (changes no
    weights, so there is nothing to reset)."""
    max_block = None  # no state that could drift: blocks of any length

    def __init__(self, model, batches):
        self.engine, self.batches = engine_for(model), batches

    def reset(self):
        pass

    def step(self, i):
        gemm_floor(self.engine, self.batches[i][0])


class NumpyMLP:
    """A plain NumPy MLP step, written the textbook way: ReLU hidden layers, linear outputs,
    MSE (mean) on one-hot targets or, with loss="xent", softmax cross-entropy (mean) on integer
    labels, SGD with momentum in torch's form (v = m v + g; w -= lr v), all in the dtype of the
    weights given."""

    def __init__(self, weights, biases, lr=LR, momentum=MOMENTUM, adam=False, loss="mse"):
        self.adam, self.t, self.loss = adam, 0, loss
        self.W0 = [np.array(w) for w in weights]
        self.b0 = [np.array(b) for b in biases]
        self.lr, self.momentum = lr, momentum
        self.W = [w.copy() for w in self.W0]
        self.b = [b.copy() for b in self.b0]
        self.vW = [np.zeros_like(w) for w in self.W]
        self.vb = [np.zeros_like(b) for b in self.b]
        self.sW = [np.zeros_like(w) for w in self.W]  # Adam's second moments
        self.sb = [np.zeros_like(b) for b in self.b]

    def reset(self):
        for dst, src in zip(self.W + self.b, self.W0 + self.b0):
            dst[...] = src
        for v in self.vW + self.vb + self.sW + self.sb:
            v[...] = 0
        self.t = 0

    def update(self, p, v, s, g):
        """SGD with momentum in torch's form, or Adam in torch's form."""
        if not self.adam:
            v *= self.momentum
            v += g
            p -= self.lr * v
            return
        b1, b2, eps = 0.9, 0.999, 1e-8
        v *= b1
        v += (1 - b1) * g
        s *= b2
        s += (1 - b2) * g * g
        denom = np.sqrt(s) / np.sqrt(1 - b2 ** self.t) + eps
        p -= (self.lr / (1 - b1 ** self.t)) * v / denom

    def train_step(self, X, Y):
        L = len(self.W)
        acts = [X]
        for l in range(L):
            z = acts[-1] @ self.W[l] + self.b[l]
            if l < L - 1:
                np.maximum(z, 0, out=z)
            acts.append(z)
        if self.loss == "xent":  # Y: integer labels
            loss, grad = self.softmax_xent(acts[-1], Y)
        else:
            diff = acts[-1] - Y
            loss = float(np.vdot(diff, diff)) / diff.size
            grad = diff * (2 / diff.size)  # d mean((out - Y)^2) / d out
        self.t += 1
        for l in range(L - 1, -1, -1):
            dW = acts[l].T @ grad
            db = grad.sum(axis=0)
            if l > 0:  # the input gradient, with the weights before this step's update
                grad = (grad @ self.W[l].T) * (acts[l] > 0)
            self.update(self.W[l], self.vW[l], self.sW[l], dW)
            self.update(self.b[l], self.vb[l], self.sb[l], db)
        return loss

    @staticmethod
    def softmax_xent(Z, labels):
        """Mean cross-entropy of softmax(Z) against integer labels, and its gradient
        (softmax - one_hot) / n."""
        n = Z.shape[0]
        rows = np.arange(n)
        Z = Z - Z.max(axis=1, keepdims=True)
        P = np.exp(Z)
        total = P.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0]) - Z[rows, labels]))
        P /= total
        P[rows, labels] -= 1
        P /= n
        return loss, P


class NumpyImpl:
    max_block = MAX_BLOCK_STEPS
    def __init__(self, model, batches, optimizer="sgd", loss="mse"):
        dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
        adam = optimizer == "adam"
        self.net = NumpyMLP([d.W for d in dense], [d.b for d in dense],
                            lr=ADAM_LR if adam else LR, adam=adam, loss=loss)
        self.batches = batches

    def reset(self):
        self.net.reset()

    def step(self, i):
        self.net.train_step(*self.batches[i])


class TorchImpl:
    """PyTorch eager: nn.Sequential(Linear, ReLU, ..., Linear) (or another activation, with
    nn.Dropout(dropout) after each hidden activation when dropout > 0; train mode), MSELoss (or
    CrossEntropyLoss, BCEWithLogitsLoss, PoissonNLLLoss), optim.SGD (or Adam); per step
    zero_grad, forward, loss, backward, step."""
    max_block = MAX_BLOCK_STEPS

    def __init__(self, model, batches, torch, optimizer="sgd", activation="relu", loss="mse",
                 dropout=0.0):
        nn = torch.nn
        dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
        tdtype = {np.dtype(np.float32): torch.float32,
                  np.dtype(np.float64): torch.float64}[model.dtype]
        mods = []
        for i, d in enumerate(dense):
            mods.append(nn.Linear(d.fan_in, d.fan_out, dtype=tdtype))
            if i < len(dense) - 1:
                mods.append(ACTIVATIONS[activation][1](nn))
                if dropout:
                    mods.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*mods)
        self.net.train()
        self.params = list(self.net.parameters())
        # torch's Linear.weight is (out, in), bpcore's W is (in, out)
        self.p0 = []
        for d in dense:
            self.p0 += [torch.from_numpy(np.ascontiguousarray(d.W.T)),
                        torch.from_numpy(d.b.copy())]
        self.torch = torch
        self.optimizer = optimizer
        self.opt = self.new_optimizer()
        self.loss = torch_loss(nn, loss)
        if loss == "xent":  # integer labels: torch wants int64
            self.batches = [(torch.from_numpy(X), torch.from_numpy(Y.astype(np.int64)))
                            for X, Y in batches]
        else:  # targets of the weights' dtype
            self.batches = [(torch.from_numpy(X), torch.from_numpy(Y)) for X, Y in batches]
        self.reset()

    def new_optimizer(self):
        if self.optimizer == "adam":
            return self.torch.optim.Adam(self.params, lr=ADAM_LR)
        return self.torch.optim.SGD(self.params, lr=LR, momentum=MOMENTUM)

    def reset(self):
        with self.torch.no_grad():
            for p, p0 in zip(self.params, self.p0):
                p.copy_(p0)
        if self.optimizer == "adam":
            self.opt = self.new_optimizer()  # zero moments and step count
            return
        for p in self.params:
            # a zero buffer gives the same first update as torch's fresh one (buf = grad)
            buf = self.opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.zero_()

    def step(self, i):
        X, Y = self.batches[i]
        self.opt.zero_grad()
        out = self.loss(self.net(X), Y)
        out.backward()
        self.opt.step()


# ---------------------------------------------------------------------------------------------
# timing

def block_time(impl, k, start):
    """Seconds for k steps of impl, cycling through the pool from batch `start`."""
    nb = len(impl.batches)
    t0 = time.perf_counter()
    for j in range(k):
        impl.step((start + j) % nb)
    return time.perf_counter() - t0


def block_samples(impl, k, start, warm):
    """Per-step seconds of k steps of impl, after `warm` untimed steps (which wake its pool)."""
    nb = len(impl.batches)
    for j in range(warm):
        impl.step((start + j) % nb)
    out = []
    for j in range(warm, warm + k):
        t0 = time.perf_counter()
        impl.step((start + j) % nb)
        out.append(time.perf_counter() - t0)
    return out


def warm_up_and_calibrate(impl, warmup_s, block_s):
    """Warm impl up (at least 3 steps and warmup_s), then find the steps per block that take
    about block_s (at most impl.max_block), by doubling: its blocks count as more warm-up."""
    cap = impl.max_block or 10 ** 9
    t0 = time.perf_counter()
    steps = 0
    while steps < 3 or time.perf_counter() - t0 < warmup_s:
        if steps % MAX_BLOCK_STEPS == 0:
            impl.reset()  # as in the timed rounds: never train long from one start
        block_time(impl, 1, steps)
        steps += 1
    k = 1
    while True:
        impl.reset()
        dt = block_time(impl, k, 0)
        if dt >= block_s / 2 or k >= cap:
            break
        k *= 2
    impl.reset()
    return int(min(cap, max(1, round(k * block_s / max(dt, 1e-9)))))


def time_cell(impls, seconds, block_s, warmup_s, min_rounds, pause=0.0):
    """Interleaved timing of {name: impl}: returns {name: {"k": steps per block,
    "samples_s": the seconds of every timed step}}. Before each block, ``pause`` seconds of
    sleep let the previous block's thread pool go idle (see BLOCK_WARM_STEPS)."""
    ks = {name: warm_up_and_calibrate(impl, warmup_s, block_s) for name, impl in impls.items()}
    warm = {name: min(BLOCK_WARM_STEPS, max(0, (impls[name].max_block or 10 ** 9) - ks[name]))
            for name in impls}
    samples = {name: [] for name in impls}
    names = list(impls)
    t0 = time.perf_counter()
    rounds = 0
    while rounds < min_rounds or time.perf_counter() - t0 < seconds:
        # rotate the order so no implementation always runs right after the same other one
        order = names[rounds % len(names):] + names[:rounds % len(names)]
        for name in order:
            impls[name].reset()
            if pause:
                time.sleep(pause)
            samples[name].extend(block_samples(impls[name], ks[name], rounds, warm[name]))
        rounds += 1
    return {name: {"k": ks[name], "samples_s": samples[name]} for name in names}


def peak_gemm_gflops(size, reps, dtype):
    """GFLOP/s of a size^3 GEMM through bpcore's BLAS (under the current thread setting):
    the median of reps calls after two warm-up calls."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((size, size)).astype(dtype)
    B = rng.standard_normal((size, size)).astype(dtype)
    C = np.empty((size, size), dtype)
    times = []
    for i in range(reps + 2):
        t0 = time.perf_counter()
        _blas.py_gemm("n", "n", 1.0, A, B, 0.0, C)
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return 2 * size ** 3 / statistics.median(times) / 1e9


# ---------------------------------------------------------------------------------------------
# one cell

def make_batches(sizes, n, dtype, seed=0, loss="mse"):
    """A pool of batches, the same for every implementation: X uniform in [0, 1) like image
    pixels, random targets: one-hot rows of random labels for "mse", the labels themselves
    (intp) for "xent", independent 0/1 entries (probability 1/2) for "bce", counts drawn from
    Poisson(POISSON_RATE) for "poisson" (both of the weights' dtype)."""
    rng = np.random.default_rng(seed)
    count = max(2, min(8, POOL_ROWS // n))
    batches = []
    for _ in range(count):
        X = rng.random((n, sizes[0])).astype(dtype)
        if loss == "bce":
            batches.append((X, rng.integers(0, 2, (n, sizes[-1])).astype(dtype)))
            continue
        if loss == "poisson":
            batches.append((X, rng.poisson(POISSON_RATE, (n, sizes[-1])).astype(dtype)))
            continue
        labels = rng.integers(0, sizes[-1], n)
        if loss == "xent":
            batches.append((X, labels.astype(np.intp)))
        else:
            batches.append((X, bpcore.one_hot(labels, sizes[-1], dtype)))
    return batches


def count_subnormal(arrays):
    """Nonzero entries below the dtype's smallest normal number: with these in its momentum
    buffers the NumPy step slows down, so the JSON records how many the last block left."""
    return sum(int(np.count_nonzero((np.abs(a) < np.finfo(a.dtype).tiny) & (a != 0)))
               for a in arrays)


def run_cell(args, timing, threads, n, torch):
    sizes = args.sizes
    bpcore.set_num_threads(threads)
    if torch is not None:
        torch.set_num_threads(threads)
    model = build_model(sizes, args.activation, args.dtype, args.dropout)
    batches = make_batches(sizes, n, args.dtype, loss=args.loss)
    impls = {"bpcore": BpcoreImpl(model, batches, args.optimizer, args.loss),
             "floor": FloorImpl(model, batches)}
    if args.optimizer != "sgd":  # the same step with SGD, timed in the same rounds
        impls["bpcore_sgd"] = BpcoreImpl(model, batches, "sgd", args.loss)
    if torch is not None:
        impls["torch"] = TorchImpl(model, batches, torch, args.optimizer, args.activation,
                                   args.loss, args.dropout)
    if not args.no_numpy:
        impls["numpy"] = NumpyImpl(model, batches, args.optimizer, args.loss)
    # every implementation copied the initial weights above; now training may start
    pause = timing["pause"] if args.pause is None else args.pause
    raw = time_cell(impls, args.seconds, timing["block_s"], timing["warmup_s"],
                    timing["min_rounds"], pause)

    med = {name: statistics.median(r["samples_s"]) for name, r in raw.items()}
    flops = step_flops(sizes, n)
    t = med["bpcore"]
    cell = {
        "threads": threads, "batch": n, "flops_per_step": flops,
        "batches_in_pool": len(batches),
        "median_us": {name: s * 1e6 for name, s in med.items()},
        "block_steps": {name: r["k"] for name, r in raw.items()},
        "samples_us": {name: [s * 1e6 for s in r["samples_s"]] for name, r in raw.items()},
        "rounds": len(raw["bpcore"]["samples_s"]),
        "us_per_step": t * 1e6,
        "samples_per_s": n / t,
        "gflops": flops / t / 1e9,
        "floor_ratio": t / med["floor"],
    }
    cell["pct_peak"] = 100 * cell["gflops"] / args.peak[threads]
    for name in ("torch", "numpy"):
        if name in med:
            cell[f"{name}_ratio"] = med[name] / t
    if "bpcore_sgd" in med:
        cell["over_sgd"] = t / med["bpcore_sgd"]
    if "numpy" in impls:
        net = impls["numpy"].net
        cell["numpy_subnormal_velocities"] = count_subnormal(net.vW + net.vb)
    return cell


# ---------------------------------------------------------------------------------------------
# options, header, table

def int_list(text):
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def probability(text):
    """A dropout probability: a number in [0, 1)."""
    try:
        p = float(text)
    except ValueError:
        p = None
    if p is None or not 0 <= p < 1:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"expected a dropout probability in [0, 1), got {text!r}")
    return p


def thread_list(text):
    """"1,2,all" -> [1, 2, default_num_threads()], without repeats, in order."""
    out = []
    for v in text.split(","):
        v = v.strip()
        n = _threads.default_num_threads() if v == "all" else int_list(v)[0]
        if n not in out:
            out.append(n)
    return out


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python -m bpcore.bench",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int_list, default=list(DEFAULT_SIZES),
                    help="layer sizes (default 784,256,128,10)")
    ap.add_argument("--batches", type=int_list, default=list(DEFAULT_BATCHES),
                    help="batch sizes (default 1,8,32,128,512,2048)")
    ap.add_argument("--threads", type=thread_list, default=thread_list("1,all"),
                    help='thread counts, integers or "all" (default 1,all)')
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--activation", choices=tuple(ACTIVATIONS), default="relu",
                    help="the hidden layers' activation, of bpcore and torch alike (default "
                         "relu); the NumPy step is left out for any but relu")
    ap.add_argument("--loss", choices=tuple(LOSSES), default="mse",
                    help="mse: MSE on one-hot targets (default); xent: softmax cross-entropy "
                         "on integer labels (bpcore.SoftmaxCrossEntropyLoss, "
                         "torch.nn.CrossEntropyLoss); bce: sigmoid + binary cross-entropy on "
                         "0/1 multi-label targets (bpcore.BCEWithLogitsLoss, "
                         "torch.nn.BCEWithLogitsLoss); poisson: Poisson NLL of log-rate "
                         "outputs on Poisson(1) counts (bpcore.PoissonLoss, "
                         "torch.nn.PoissonNLLLoss(log_input=True, full=False)); the NumPy "
                         "step is left out for bce and poisson")
    ap.add_argument("--dropout", type=probability, default=0.0, metavar="P",
                    help="dropout probability in [0, 1) after each hidden activation: "
                         "bpcore.Dropout(P) and torch.nn.Dropout(P) (train mode); default 0, "
                         "no dropout layers; the NumPy step is left out for P > 0")
    ap.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                    help="the optimizer of every implementation (default sgd); with adam, "
                         "bpcore's SGD step is timed too and the table shows adam/sgd")
    ap.add_argument("--seconds", type=float, default=None,
                    help="time budget per cell, all implementations together (default 2, "
                         "0.08 with --quick)")
    ap.add_argument("--pause", type=float, default=None, metavar="SECONDS",
                    help="sleep before each timed block, untimed (default 0.15, 0 with "
                         "--quick): lets the previous implementation's spinning worker "
                         "threads park before the next runs")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--no-numpy", action="store_true", help="leave the NumPy step out")
    ap.add_argument("--quick", action="store_true",
                    help="tiny budgets and a small peak GEMM: a smoke test, not a measurement")
    ap.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    args = ap.parse_args(argv)
    if len(args.sizes) < 2:
        ap.error("--sizes: expected at least two layer sizes")
    return args


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def import_torch(args):
    if args.no_torch:
        return None
    try:
        import torch
    except ImportError:
        return None
    return torch


def config(args, timing, torch):
    import scipy
    import threadpoolctl

    from bpcore._config import config_info
    return {
        "bpcore": bpcore.__version__, "python": platform.python_version(),
        "numpy": np.__version__, "scipy": scipy.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "blas": config_info()["blas"],  # bpcore's (scipy's) first
        "simd_level": _simd.level(), "simd": _simd.LEVEL_NAMES.get(_simd.level()),
        "default_num_threads": _threads.default_num_threads(),
        "sizes": args.sizes, "dtype": args.dtype, "batches": args.batches,
        "threads": args.threads, "seconds_per_cell": args.seconds, "quick": args.quick,
        "pause_s": timing["pause"] if args.pause is None else args.pause,
        "optimizer": args.optimizer, "lr": ADAM_LR if args.optimizer == "adam" else LR,
        "momentum": MOMENTUM, "activation": args.activation,
        "loss": LOSS_CONFIG[args.loss], "loss_name": args.loss,
        "poisson_rate": POISSON_RATE if args.loss == "poisson" else None,
        "dropout": args.dropout,
        "timing": timing, "max_block_steps": MAX_BLOCK_STEPS,
        "numpy_step": not args.no_numpy,
        "numpy_skipped": getattr(args, "numpy_skipped", None),
    }


def header(cfg, peak, peak_size):
    blas = cfg["blas"][0] if cfg["blas"] else {}
    lines = [
        f"bpcore {cfg['bpcore']} · SIMD {cfg['simd']} · threads "
        f"{', '.join(map(str, cfg['threads']))} (all = {cfg['default_num_threads']}) · "
        f"numpy {cfg['numpy']} · torch {cfg['torch'] or 'not used'}",
        f"CPU: {cfg['cpu']} ({cfg['cpu_count']} logical cores), Python {cfg['python']}, "
        f"BLAS {blas.get('internal_api')} {blas.get('version')} ({blas.get('architecture')})",
        f"MLP {'-'.join(map(str, cfg['sizes']))} {cfg['dtype']}, "
        f"{ACTIVATIONS[cfg['activation']][0]} hidden layers, {LOSSES[cfg['loss_name']]}, "
        + (f"dropout {cfg['dropout']:g}, " if cfg.get("dropout") else "")
        + (f"Adam lr {ADAM_LR}" if cfg["optimizer"] == "adam" else
         f"SGD lr {LR} momentum {MOMENTUM}") + "; medians of interleaved blocks, "
        f"{cfg['seconds_per_cell']:g} s per cell",
        f"peak GEMM ({peak_size}³ {cfg['dtype']}): " + ", ".join(
            f"{t} thread{'s' if t > 1 else ''} {g:.1f} GFLOP/s" for t, g in peak.items()),
    ]
    if cfg.get("numpy_skipped"):
        lines.append(f"numpy: left out ({cfg['numpy_skipped']})")
    return "\n".join(lines)


def table_columns(with_torch, with_numpy, with_sgd=False):
    cols = ["threads", "batch", "µs/step", "samples/s", "GFLOP/s", "% peak", "× floor"]
    return (cols + ["adam/sgd"] * with_sgd + ["torch/bpcore"] * with_torch
            + ["numpy/bpcore"] * with_numpy)


def table_head(cols):
    return "| " + " | ".join(cols) + " |\n|" + "---:|" * len(cols)


def table_row(c, cols):
    vals = [str(c["threads"]), str(c["batch"]), f"{c['us_per_step']:,.1f}",
            f"{c['samples_per_s']:,.0f}", f"{c['gflops']:.1f}", f"{c['pct_peak']:.0f}%",
            f"{c['floor_ratio']:.2f}"]
    if "adam/sgd" in cols:
        vals.append(f"{c['over_sgd']:.3f}")
    if "torch/bpcore" in cols:
        vals.append(f"{c['torch_ratio']:.2f}")
    if "numpy/bpcore" in cols:
        vals.append(f"{c['numpy_ratio']:.2f}")
    return "| " + " | ".join(vals) + " |"


# ---------------------------------------------------------------------------------------------

def numpy_unable(args):
    """Why the NumPy step cannot run the configuration (one line), or None."""
    why = []
    if args.activation != "relu":
        why.append(f"its step is written for ReLU only, not {args.activation}")
    if args.loss not in NUMPY_LOSSES:
        why.append(f"it computes MSE and softmax cross-entropy only, not {args.loss}")
    if args.dropout:
        why.append("it has no dropout")
    return "; ".join(why) or None


def main(argv=None):
    args = parse_args(argv)
    args.numpy_skipped = None
    if not args.no_numpy:
        why = numpy_unable(args)
        if why:
            args.numpy_skipped = why
            args.no_numpy = True
    timing = dict(TIMING["quick" if args.quick else "full"])
    if args.seconds is None:
        args.seconds = timing["seconds"]
    torch = import_torch(args)
    cfg = config(args, timing, torch)

    old_threads = bpcore.get_num_threads()
    old_torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        args.peak = {}
        for t in args.threads:
            bpcore.set_num_threads(t)
            args.peak[t] = peak_gemm_gflops(timing["peak_size"], timing["peak_reps"], args.dtype)
        print(header(cfg, args.peak, timing["peak_size"]), end="\n\n")
        cols = table_columns(torch is not None, not args.no_numpy, args.optimizer != "sgd")
        print(table_head(cols), flush=True)
        cells = []
        for t in args.threads:
            for n in args.batches:  # a row as soon as it is measured: long runs show progress
                cells.append(run_cell(args, timing, t, n, torch))
                print(table_row(cells[-1], cols), flush=True)
    finally:
        bpcore.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch_threads)

    results = {"config": cfg,
               "peak_gflops": {str(t): g for t, g in args.peak.items()},
               "cells": cells}
    if args.json:
        write_json(args.json, results)
    return results


def write_json(path, results):
    """A benchmark's raw numbers to path (its folder made if missing), and where they went."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"\nraw numbers: {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
