"""python -m bpcore.bench: time bpcore's fused training step against its BLAS floor, PyTorch,
plain NumPy and JAX, over batch sizes and thread counts.

Every implementation trains the same MLP (ReLU hidden layers, linear outputs) from the same
initial weights with MSE on one-hot targets and SGD with momentum (--activation, --loss,
--dropout and --optimizer change these; the NumPy step is written for ReLU, MSE and
cross-entropy without dropout only, the JAX step for every activation and loss but without
dropout; each is left out otherwise, with a note in the header). Per (threads, batch) cell the
implementations are timed *interleaved*: round after round, a block of k steps of each in
turn, so that drift in the machine's speed (turbo, other processes) hits them all alike. A
block's time / k is one sample; the table shows medians over the samples.

Columns: microseconds per step and samples/s of bpcore; GFLOP/s of its step (GEMM flops only)
and that as a share of the peak GEMM rate measured on the spot for the thread count; "× floor":
bpcore's step time over the time of the step's GEMMs alone (bpcore._bench.gemm_floor, on the
engine's own buffers: everything bpcore adds around BLAS); "× FLOP floor": over the step's
GEMM flops at that peak rate; "× bytes floor": over the bytes a step must move (step_bytes:
the parameters, the gradient and the optimizer's state each read and written once, and the
batch) at the memory bandwidth measured on the spot for the thread count (a NumPy copy of a
buffer much larger than the last-level cache; a network whose parameters and state fit in that
cache can beat this floor); "torch/bpcore", "numpy/bpcore", "jax/bpcore": their step times over
bpcore's (above 1: bpcore is faster); "best peer" and "bpcore/best": the fastest of them and
bpcore's time over its (below 1: bpcore is faster).

JAX runs in a process of its own per thread count. XLA's CPU client sizes its thread pools
when it starts and offers no way to change them later, and the XLA_FLAGS recipe for one thread
(--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1) no longer limits it: with
jaxlib 0.10.2 a jitted 1536² matmul under those flags still kept both cores of a 2-core machine
busy (CPU time / wall time 1.98). XLA does size its pools from the process's CPU affinity, so
the worker for t threads is confined to t cores (the first t this process may use; all of them,
unconfined, when t covers them) before JAX is imported: the same 1536² matmul then ran at CPU
time / wall time 1.00 on one core. The worker is a fresh interpreter (jax_enable_x64 set there
only for --dtype float64, before any array exists) that times its blocks itself when the
parent's interleaved rounds ask, so JAX stays in the same rounds as the others and the pipe's
round trip is never timed. The JAX step is one jax.jit-compiled function
(params, opt_state, X, Y) -> (params, opt_state, loss) with params and opt_state donated, on
batches already on the device; each step waits for its loss.

    python -m bpcore.bench                              # the README's table
    python -m bpcore.bench --threads 1,2,all --batches 32,512 --json out.json
    python -m bpcore.bench --activation gelu --loss xent --threads 1 --batches 1,32,128
    python -m bpcore.bench --loss bce --dropout 0.2 --threads 1 --batches 1,32,128
"""
import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import traceback
from multiprocessing.connection import Connection

import numpy as np

import bpcore
from bpcore import _blas, _simd, _threads
from bpcore._bench import gemm_floor
from bpcore.training import engine_for

__all__ = ["main", "step_flops", "step_bytes", "NumpyMLP", "make_jax_step"]

DEFAULT_SIZES = (784, 256, 128, 10)
DEFAULT_BATCHES = (1, 8, 32, 128, 512, 2048)
LR, MOMENTUM = 0.01, 0.9
ADAM_LR = 0.001
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch's and bpcore's defaults

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
PEERS = ("torch", "numpy", "jax")  # the other implementations of the step, in table order


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
# two warm-up calls; the memory bandwidth the median of copy_reps copies of copy_mib MiB.
TIMING = {
    "full": dict(seconds=2.0, block_s=0.04, warmup_s=0.1, min_rounds=3,
                 peak_size=2048, peak_reps=7, pause=0.15, copy_mib=256, copy_reps=5),
    "quick": dict(seconds=0.08, block_s=0.002, warmup_s=0.005, min_rounds=2,
                  peak_size=256, peak_reps=3, pause=0.0, copy_mib=128, copy_reps=3),
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


# the arrays beside the parameters that a step reads and writes whole, per optimizer: the
# gradient and the optimizer's buffers (SGD's velocity; Adam's two moments)
STATE_ARRAYS = {"sgd": 2, "adam": 3}


def step_bytes(n_params, itemsize, optimizer, batch_bytes):
    """The bytes floor's traffic of one step: the parameters and the STATE_ARRAYS beside them
    each read and written once, itemsize * n_params * (2 + 2 * state_arrays), plus the batch
    (inputs and targets) read once. Activations are left out (a floor)."""
    return itemsize * n_params * (2 + 2 * STATE_ARRAYS[optimizer]) + batch_bytes


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
        (b1, b2), eps = ADAM_BETAS, ADAM_EPS
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
# JAX: the step as one jitted function, run in a worker process per thread count (see the
# module docstring for why a process)

def jax_activation(jax, name):
    """jax's function for bpcore's hidden activation `name`, with bpcore's (torch's) settings."""
    jnp, nn = jax.numpy, jax.nn
    return {
        "relu": nn.relu,  # its derivative at 0 is 0, as bpcore's and torch's
        "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),
        "elu": nn.elu,  # alpha 1
        "gelu": lambda z: nn.gelu(z, approximate=False),
        "gelu_tanh": lambda z: nn.gelu(z, approximate=True),
        "silu": nn.silu,
        # beta 1, linear above threshold 20; the minimum keeps the branch not taken finite,
        # so its zero weight in the gradient stays zero (0 * inf would be NaN)
        "softplus": lambda z: jnp.where(z > 20, z, jnp.log1p(jnp.exp(jnp.minimum(z, 20)))),
        "sigmoid": nn.sigmoid,
        "tanh": jnp.tanh,
    }[name]


def jax_loss(jax, name):
    """The loss `name` (LOSSES) of outputs and targets, as a jax function (means, as bpcore's)."""
    jnp = jax.numpy
    if name == "xent":  # integer labels
        def loss(out, labels):
            logp = jax.nn.log_softmax(out, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))
    elif name == "bce":  # on logits, the stable form
        def loss(out, y):
            return jnp.mean(jnp.maximum(out, 0) - out * y + jnp.log1p(jnp.exp(-jnp.abs(out))))
    elif name == "poisson":  # log-rate outputs, without the Stirling term (full=False)
        def loss(out, y):
            return jnp.mean(jnp.exp(out) - y * out)
    else:
        def loss(out, y):
            return jnp.mean(jnp.square(out - y))
    return loss


def make_jax_step(jax, activation="relu", loss="mse", optimizer="sgd"):
    """The whole training step as one jax.jit-compiled function (params, opt_state, X, Y) ->
    (params, opt_state, loss), params and opt_state donated so that XLA may update their
    buffers in place. params: [(W, b), ...] with W (fan_in, fan_out) as bpcore's; opt_state:
    the velocities (SGD with momentum in torch's form, v = m v + g; w -= lr v) or
    {"t", "m", "v"} (Adam in torch's form: eps after the bias correction)."""
    jnp = jax.numpy
    act, loss_of = jax_activation(jax, activation), jax_loss(jax, loss)

    def objective(params, X, Y):
        a = X
        for l, (W, b) in enumerate(params):
            a = a @ W + b
            if l < len(params) - 1:
                a = act(a)
        return loss_of(a, Y)

    value_and_grad = jax.value_and_grad(objective)

    def sgd(params, velocity, X, Y):
        value, grads = value_and_grad(params, X, Y)
        velocity = jax.tree.map(lambda v, g: MOMENTUM * v + g, velocity, grads)
        params = jax.tree.map(lambda p, v: p - LR * v, params, velocity)
        return params, velocity, value

    def adam(params, state, X, Y):
        (b1, b2), eps = ADAM_BETAS, ADAM_EPS
        value, grads = value_and_grad(params, X, Y)
        t = state["t"] + 1
        m = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state["m"], grads)
        v = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * g * g, state["v"], grads)
        step_size = ADAM_LR / (1 - b1 ** t)
        root_correction = jnp.sqrt(1 - b2 ** t)
        params = jax.tree.map(
            lambda p, m, v: p - step_size * m / (jnp.sqrt(v) / root_correction + eps),
            params, m, v)
        return params, {"t": t, "m": m, "v": v}, value

    return jax.jit(adam if optimizer == "adam" else sgd, donate_argnums=(0, 1))


class JaxImpl:
    """The JAX step (make_jax_step) from given initial weights, on device copies of the pool
    of batches; runs inside the worker process. Each step waits for its loss: XLA's CPU client
    completes every output of an execution together, so the new weights are then in place too
    (a step is timed whole, as torch's and bpcore's synchronous steps are)."""
    max_block = MAX_BLOCK_STEPS

    def __init__(self, jax, weights, biases, batches, optimizer="sgd", activation="relu",
                 loss="mse"):
        self.jax, self.optimizer = jax, optimizer
        jnp = jax.numpy
        self.p0 = [(np.array(W), np.array(b)) for W, b in zip(weights, biases)]
        # integer labels as int32: jax's default integers without x64, and enough for classes
        self.batches = [(jnp.asarray(X), jnp.asarray(Y.astype(np.int32) if loss == "xent" else Y))
                        for X, Y in batches]
        self.step_fn = make_jax_step(jax, activation, loss, optimizer)
        self.reset()

    def reset(self):
        jnp = self.jax.numpy
        # fresh buffers every time: the step donates (consumes) the ones it is given
        self.params = [(jnp.array(W, copy=True), jnp.array(b, copy=True)) for W, b in self.p0]
        zeros = [(jnp.zeros_like(W), jnp.zeros_like(b)) for W, b in self.params]
        if self.optimizer == "adam":
            self.state = {"t": jnp.zeros((), self.p0[0][0].dtype), "m": zeros,
                          "v": [(jnp.zeros_like(W), jnp.zeros_like(b)) for W, b in self.params]}
        else:
            self.state = zeros
        self.jax.block_until_ready((self.params, self.state))

    def step(self, i):
        X, Y = self.batches[i]
        self.params, self.state, loss = self.step_fn(self.params, self.state, X, Y)
        return loss.block_until_ready()

    def numpy_params(self):
        return [(np.array(W), np.array(b)) for W, b in self.params]


def jax_cores(threads):
    """The cores the JAX worker for `threads` threads is confined to: the first `threads` of
    this process's allowed cores; None (no confinement) when that is all of them, or when the
    platform cannot confine a process (then only the all-cores count can be honoured)."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    return None if threads >= len(allowed) else allowed[:threads]


def jax_can_honour(threads):
    """Whether a JAX worker can be limited to `threads` cores here."""
    return hasattr(os, "sched_setaffinity") or threads >= (os.cpu_count() or 1)


def _jax_worker(fd, cores, dtype):
    """The worker process's loop: confine the process to `cores` and start JAX (x64 only for
    float64, before any array exists), then answer the parent's requests on the socket `fd`
    with ("ok", value) or ("error", text)."""
    conn = Connection(fd)
    try:
        if cores is not None:
            os.sched_setaffinity(0, cores)  # before XLA starts: it sizes its pools from this
        os.environ["JAX_PLATFORMS"] = "cpu"  # no probing for accelerators
        import jax
        if dtype == "float64":
            jax.config.update("jax_enable_x64", True)
        from importlib.metadata import version
        info = {"jax": jax.__version__, "jaxlib": version("jaxlib"),
                "device": str(jax.devices()[0]),
                "cores": (sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                          else None),
                "x64": bool(jax.config.jax_enable_x64)}
    except Exception as e:  # reported to the parent, which leaves JAX out with this note
        conn.send(("error", f"{type(e).__name__}: {e}"))
        conn.close()
        return
    conn.send(("ok", info))
    impl = None
    while True:
        try:
            op, args = conn.recv()
        except EOFError:  # the parent is gone
            return
        if op == "close":
            conn.close()
            return
        try:
            if op == "setup":
                impl = None  # the previous cell's buffers go first
                impl = JaxImpl(jax, *args)
                value = None
            elif op == "reset":
                value = impl.reset()
            elif op == "block_time":
                value = block_time(impl, *args)
            elif op == "block_samples":
                value = block_samples(impl, *args)
            elif op == "steps":
                value = [float(impl.step(i)) for i in args[0]]
            elif op == "params":
                value = impl.numpy_params()
            else:
                raise ValueError(f"op: expected a request of the JAX worker, got {op!r}")
        except Exception:
            conn.send(("error", traceback.format_exc()))
            continue
        conn.send(("ok", value))


# the worker's command: this bpcore (its folder first on the path), then _jax_worker
_WORKER_CODE = ("import json, sys; sys.path.insert(0, sys.argv[1]); "
                "from bpcore.bench import _jax_worker; "
                "_jax_worker(int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4])")


class JaxWorkerError(RuntimeError):
    """The JAX worker could not start or failed a request (its message says why)."""


class JaxWorker:
    """A process running the JAX step for one thread count, confined to that many cores
    (jax_cores) before JAX starts; a context manager that ends it. A fresh interpreter
    (subprocess, talking over a socket pair), neither a fork (a fork of a process whose OpenMP
    runtime has run can hang) nor multiprocessing's spawn (which re-runs the caller's main
    script: a script without a __main__ guard would start the benchmark again)."""

    def __init__(self, threads, dtype):
        self.threads, self.cores = threads, jax_cores(threads)
        ours, theirs = socket.socketpair()
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(bpcore.__file__)))
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _WORKER_CODE, package_parent, str(theirs.fileno()),
                 json.dumps(self.cores), dtype], pass_fds=(theirs.fileno(),))
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        try:
            self.info = self.reply()
        except JaxWorkerError:
            self.close()
            raise

    def reply(self):
        try:
            status, value = self.conn.recv()
        except (EOFError, OSError):
            try:
                code = self.process.wait(5)
            except subprocess.TimeoutExpired:
                code = None
            raise JaxWorkerError(f"the JAX worker process ended (exit code {code})") from None
        if status == "error":
            raise JaxWorkerError(value)
        return value

    def call(self, op, *args):
        self.conn.send((op, args))
        return self.reply()

    def close(self):
        if self.process.poll() is None:
            try:
                self.conn.send(("close", ()))
            except OSError:
                pass
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class JaxRemote:
    """The parent's stand-in for the worker's JaxImpl in the timing loops: blocks are timed in
    the worker (block_time, block_samples there), so the pipe's round trip is never timed."""
    max_block = MAX_BLOCK_STEPS

    def __init__(self, worker, model, batches, optimizer="sgd", activation="relu", loss="mse"):
        dense = [m for m in model.layers if isinstance(m, bpcore.Dense)]
        self.worker, self.batches = worker, batches
        worker.call("setup", [d.W for d in dense], [d.b for d in dense], batches, optimizer,
                    activation, loss)

    def reset(self):
        self.worker.call("reset")

    def step(self, i):
        """One step on batch i (not timed): its loss."""
        return self.worker.call("steps", [i])[0]

    def block_time(self, k, start):
        return self.worker.call("block_time", k, start)

    def block_samples(self, k, start, warm):
        return self.worker.call("block_samples", k, start, warm)

    def params(self):
        """[(W, b), ...] as NumPy arrays, W (fan_in, fan_out)."""
        return self.worker.call("params")


# ---------------------------------------------------------------------------------------------
# timing

def block_time(impl, k, start):
    """Seconds for k steps of impl, cycling through the pool from batch `start`."""
    if isinstance(impl, JaxRemote):
        return impl.block_time(k, start)
    nb = len(impl.batches)
    t0 = time.perf_counter()
    for j in range(k):
        impl.step((start + j) % nb)
    return time.perf_counter() - t0


def block_samples(impl, k, start, warm):
    """Per-step seconds of k steps of impl, after `warm` untimed steps (which wake its pool)."""
    if isinstance(impl, JaxRemote):
        return impl.block_samples(k, start, warm)
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


def copy_bandwidth_gbs(threads, mib, reps):
    """GB/s of a NumPy copy of a float64 buffer of `mib` MiB (much larger than the last-level
    cache), counting the bytes read and the bytes written, with `threads` Python threads each
    copying one slice (np.copyto releases the GIL): the median of reps copies after one
    untimed copy (which also maps the destination's pages)."""
    from concurrent.futures import ThreadPoolExecutor
    src = np.ones(mib * 2 ** 20 // 8)  # np.ones writes, so every source page is mapped
    dst = np.empty_like(src)
    bounds = np.linspace(0, src.size, threads + 1).astype(int)
    slices = [slice(a, b) for a, b in zip(bounds, bounds[1:])]

    def copy(part):
        np.copyto(dst[part], src[part])

    times = []
    with ThreadPoolExecutor(threads) as pool:
        for i in range(reps + 1):
            t0 = time.perf_counter()
            list(pool.map(copy, slices))
            if i:
                times.append(time.perf_counter() - t0)
    return 2 * src.nbytes / statistics.median(times) / 1e9


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


def run_cell(args, timing, threads, n, torch, jax_worker=None):
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
    if jax_worker is not None:
        impls["jax"] = JaxRemote(jax_worker, model, batches, args.optimizer, args.activation,
                                 args.loss)
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
    cell["flop_floor_us"] = flops / (args.peak[threads] * 1e9) * 1e6
    cell["flop_floor_ratio"] = t * 1e6 / cell["flop_floor_us"]
    X, Y = batches[0]
    cell["bytes_per_step"] = step_bytes(model.flat_params.size, model.dtype.itemsize,
                                        args.optimizer, X.nbytes + Y.nbytes)
    cell["bytes_floor_us"] = cell["bytes_per_step"] / (args.bandwidth[threads] * 1e9) * 1e6
    cell["bytes_floor_ratio"] = t * 1e6 / cell["bytes_floor_us"]
    for name in PEERS:
        if name in med:
            cell[f"{name}_ratio"] = med[name] / t
    peers = [name for name in PEERS if name in med]
    if peers:
        best = min(peers, key=med.get)
        cell["best_peer"], cell["best_peer_ratio"] = best, t / med[best]
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
    ap.add_argument("--no-jax", action="store_true", help="leave the JAX step out")
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


def jax_version(args):
    """The installed jax's version, or None with args.jax_skipped saying why (not asked for,
    not installed). jax itself is imported only in the worker processes."""
    from importlib.metadata import PackageNotFoundError, version
    from importlib.util import find_spec
    if args.no_jax:
        return None
    if find_spec("jax") is None or find_spec("jaxlib") is None:
        args.jax_skipped = "jax and jaxlib are not both installed"
        return None
    try:
        return version("jax")
    except PackageNotFoundError:  # importable without metadata: a source tree on the path
        return "unknown version"


def start_jax_workers(args):
    """{threads: JaxWorker} for the run's thread counts, or {} with args.jax_skipped saying
    why (a thread count its cores cannot be limited to, or a worker that failed to start)."""
    cannot = [t for t in args.threads if not jax_can_honour(t)]
    if cannot:
        args.jax_skipped = ("its thread count cannot be limited here (no CPU affinity) for "
                            + ", ".join(map(str, cannot)) + " thread(s)")
        return {}
    workers = {}
    try:
        for t in args.threads:
            workers[t] = JaxWorker(t, args.dtype)
    except JaxWorkerError as e:
        for w in workers.values():
            w.close()
        args.jax_skipped = f"its worker failed to start: {str(e).strip().splitlines()[-1]}"
        return {}
    return workers


def jax_threads_note(workers):
    """How each thread count's JAX worker ran, for the header and the JSON."""
    parts = []
    for t, w in workers.items():
        cores = w.info["cores"]
        where = "all cores" if w.cores is None else "cores " + ",".join(map(str, cores))
        parts.append(f"{t} → {where}")
    return "; ".join(parts)


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
        "jax": getattr(args, "jax_version", None),
        "jax_skipped": getattr(args, "jax_skipped", None),
        "state_arrays": STATE_ARRAYS[args.optimizer],
    }


def header(cfg, peak, peak_size, bandwidth=None, copy_mib=None):
    blas = cfg["blas"][0] if cfg["blas"] else {}
    lines = [
        f"bpcore {cfg['bpcore']} · SIMD {cfg['simd']} · threads "
        f"{', '.join(map(str, cfg['threads']))} (all = {cfg['default_num_threads']}) · "
        f"numpy {cfg['numpy']} · torch {cfg['torch'] or 'not used'} · "
        f"jax {cfg.get('jax') or 'not used'}",
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
    if bandwidth:
        lines.append(
            f"memory bandwidth (NumPy copy of {copy_mib} MiB, read + written): " + ", ".join(
                f"{t} thread{'s' if t > 1 else ''} {g:.1f} GB/s" for t, g in bandwidth.items()))
        lines.append(
            "× FLOP floor: the step over its GEMM flops at the peak GEMM rate; × bytes floor: "
            f"over {2 + 2 * cfg['state_arrays']} × the parameters' bytes (them, the gradient "
            "and the optimizer's state read and written once) plus the batch at that "
            "bandwidth; bpcore/best: over the fastest peer (below 1: bpcore is faster)")
    if cfg.get("numpy_skipped"):
        lines.append(f"numpy: left out ({cfg['numpy_skipped']})")
    if cfg.get("jax_skipped"):
        lines.append(f"jax: left out ({cfg['jax_skipped']})")
    elif cfg.get("jax_threads"):
        lines.append(
            "jax: one jitted step (donated params and state), in its own process per thread "
            f"count confined to that many cores ({cfg['jax_threads']}): XLA sizes its pools "
            "from the CPU affinity at start")
    return "\n".join(lines)


def table_columns(with_torch, with_numpy, with_sgd=False, with_jax=False):
    cols = ["threads", "batch", "µs/step", "samples/s", "GFLOP/s", "% peak", "× floor",
            "× FLOP floor", "× bytes floor"]
    peers = (["torch/bpcore"] * with_torch + ["numpy/bpcore"] * with_numpy
             + ["jax/bpcore"] * with_jax)
    return cols + ["adam/sgd"] * with_sgd + peers + ["best peer", "bpcore/best"] * bool(peers)


def table_head(cols):
    return "| " + " | ".join(cols) + " |\n|" + "---:|" * len(cols)


def table_row(c, cols):
    vals = [str(c["threads"]), str(c["batch"]), f"{c['us_per_step']:,.1f}",
            f"{c['samples_per_s']:,.0f}", f"{c['gflops']:.1f}", f"{c['pct_peak']:.0f}%",
            f"{c['floor_ratio']:.2f}", f"{c['flop_floor_ratio']:.2f}",
            f"{c['bytes_floor_ratio']:.2f}"]
    if "adam/sgd" in cols:
        vals.append(f"{c['over_sgd']:.3f}")
    for name in PEERS:
        if f"{name}/bpcore" in cols:
            vals.append(f"{c[name + '_ratio']:.2f}" if name + "_ratio" in c else "–")
    if "best peer" in cols:
        vals += [c.get("best_peer", "–"),
                 f"{c['best_peer_ratio']:.2f}" if "best_peer_ratio" in c else "–"]
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


def jax_unable(args):
    """Why the JAX step cannot run the configuration faithfully (one line), or None."""
    if args.dropout:
        return "its step has no dropout"
    return None


def main(argv=None):
    args = parse_args(argv)
    args.numpy_skipped = None
    if not args.no_numpy:
        why = numpy_unable(args)
        if why:
            args.numpy_skipped = why
            args.no_numpy = True
    args.jax_skipped = None
    if not args.no_jax:
        why = jax_unable(args)
        if why:
            args.jax_skipped = why
            args.no_jax = True
    timing = dict(TIMING["quick" if args.quick else "full"])
    if args.seconds is None:
        args.seconds = timing["seconds"]
    torch = import_torch(args)
    args.jax_version = jax_version(args)
    # started (each importing jax, a few seconds) before anything is measured
    jax_workers = start_jax_workers(args) if args.jax_version else {}
    if not jax_workers:
        args.jax_version = None
    cfg = config(args, timing, torch)
    cfg["jax_threads"] = jax_threads_note(jax_workers) if jax_workers else None
    cfg["jax_cores"] = {str(t): w.info["cores"] for t, w in jax_workers.items()} or None

    old_threads = bpcore.get_num_threads()
    old_torch_threads = torch.get_num_threads() if torch is not None else None
    try:
        args.peak, args.bandwidth = {}, {}
        for t in args.threads:
            bpcore.set_num_threads(t)
            args.peak[t] = peak_gemm_gflops(timing["peak_size"], timing["peak_reps"], args.dtype)
            args.bandwidth[t] = copy_bandwidth_gbs(t, timing["copy_mib"], timing["copy_reps"])
        print(header(cfg, args.peak, timing["peak_size"], args.bandwidth, timing["copy_mib"]),
              end="\n\n")
        cols = table_columns(torch is not None, not args.no_numpy, args.optimizer != "sgd",
                             bool(jax_workers))
        print(table_head(cols), flush=True)
        cells = []
        for t in args.threads:
            for n in args.batches:  # a row as soon as it is measured: long runs show progress
                cells.append(run_cell(args, timing, t, n, torch, jax_workers.get(t)))
                print(table_row(cells[-1], cols), flush=True)
    finally:
        bpcore.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch_threads)
        for w in jax_workers.values():
            w.close()

    results = {"config": cfg,
               "peak_gflops": {str(t): g for t, g in args.peak.items()},
               "bandwidth_gbs": {str(t): g for t, g in args.bandwidth.items()},
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
