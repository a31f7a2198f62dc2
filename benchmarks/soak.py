"""Soak test: bpcore under minutes of changing work, looking for errors, memory growth and
slow-down.

    python benchmarks/soak.py --minutes 10 [--seed 0] [--json PATH]

Until the time is up it runs phases chosen at random, each with a random network (2-4 layers,
up to 784-256-128-10), dtype (float32/float64), activation, loss (cross-entropy on labels or on
one-hot rows, MSE), optimizer (SGD plain, with momentum, Nesterov with weight decay; Adam,
AdamW, AMSGrad), thread count (1 to --max-threads, set with bpcore.set_num_threads or
bpcore.num_threads) and batch sizes (1 to 512):

  steps       train_step loops; batch sizes and thread counts change between steps, inputs
              come as float64, Fortran-ordered or strided views now and then, a step is
              sometimes clipped (max_grad_norm) or done through the layer API
  fit         fit with validation_data (shuffled or not, a schedule now and then)
  predict     predict and evaluate, evaluate checked against the loss computed from predict
  checkpoint  save with the optimizer, load, load_optimizer: the same predictions bitwise, the
              next step's loss to round-off; a truncated copy must raise CheckpointError
  concurrent  2 Python threads training 2 separate models at once (train_step or fit), and a
              third call on a model that is busy (must work or raise "already ... in another
              thread")
  bad_input   a call that must raise (ValueError/TypeError for bad input or settings,
              bpcore.NonFiniteError for a NaN weight or an overflowing update) and leave the
              weights as they were; the model trains normally afterwards

Every unexpected exception (or an expected one that did not come, or a failed check) is an
error: counted, printed with its phase's settings, and the run goes on. The resident set size
(VmRSS) is read at the start, after the warm-up (a tour of every phase at the largest sizes,
then random phases for --warmup seconds), at every reference measurement and at the end, each
after gc.collect(), and read again after glibc's malloc_trim(0); growth is judged on that
second figure, and also reported over the second half of the run (a leak keeps growing, an
allocator's high-water mark does not).

On glibc the soak first fixes malloc's mmap threshold at 256 KiB (mallopt(M_MMAP_THRESHOLD)),
so that blocks above it (data sets, weights, workspaces) are mapped on allocation and unmapped
on free. With glibc's default, the threshold rises to the largest block freed (up to 32 MB);
the phases' data sets (up to 19 MB) then come from the heap, whose free space fragments: here
the RSS went up and down between 60 and 134 MB, and even after malloc_trim it rose in steps of
2-7 MB during the first minutes of concurrent phases (tracemalloc flat meanwhile: no array was
held), 66 to 87 MB in an 8-minute run. With the fixed threshold the same phases stayed within
2 MB. ``--default-malloc`` keeps glibc's default; ``--no-trim`` judges the raw RSS.

Throughput drift: a fixed reference workload (784-256-128-10 float32, MSE, SGD momentum 0.9,
batch 64, one thread, fresh weights each time; median of --ref-steps steps timed one by one)
runs at the start and every --ref-every seconds; the report compares the first and the last.
On a machine shared with other work it moves with the load (the report prints every sample).

Exit status 1 if there was an error or the RSS grew more than --max-rss-growth-mb (default 20)
from after the warm-up to the end; 130 on Ctrl-C (after the report).
"""
import argparse
import gc
import json
import math
import os
import platform
import random
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter

import numpy as np

import bpcore

PHASES = {"steps": 30, "fit": 15, "predict": 10, "checkpoint": 10, "concurrent": 20,
          "bad_input": 15}
OPTIMIZERS = ("sgd", "sgd_momentum", "sgd_nesterov", "adam", "adamw", "adam_amsgrad",
              "adamw_amsgrad")
MB = 1024.0  # VmRSS is in kB


def rss_kb():
    """VmRSS of /proc/self/status (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _find_malloc_trim():
    import ctypes
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


MALLOC_TRIM = _find_malloc_trim()
M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def fix_mmap_threshold(nbytes=256 * 1024):
    """glibc: blocks of nbytes or more are mmapped and unmapped when freed (a fixed threshold
    also turns off glibc's dynamic one). Returns whether it was set."""
    import ctypes
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, nbytes) == 1


def blas_threads():
    """{library: threads} of the BLAS pools threadpoolctl sees."""
    from threadpoolctl import threadpool_info
    return {os.path.basename(os.path.dirname(i["filepath"])) + ":" + i["internal_api"]:
            i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}


class Failed(Exception):
    """A check of the soak itself failed (counted as an error)."""


# ---------------------------------------------------------------------------------------------
# random settings


class Config(dict):
    def __str__(self):
        return " ".join(f"{k}={v}" for k, v in self.items())


def random_config(rng, max_threads, large=False):
    dtype = "float64" if rng.random() < 0.3 else "float32"
    if large:
        sizes = [784, 256, 128, 10]
    else:
        n_in = rng.choice([3, 8, 20, 64, 100, 784])
        hidden = [rng.choice([4, 16, 32, 64, 128, 256]) for _ in range(rng.choice([1, 1, 2]))]
        sizes = [n_in] + hidden + [rng.choice([2, 3, 10])]
    return Config(sizes=sizes, dtype=dtype,
                  activation=rng.choice(["relu", "relu", "tanh", "sigmoid"]),
                  loss=rng.choice(["ce", "ce", "ce_probs", "mse"]),
                  optimizer="adamw_amsgrad" if large else rng.choice(OPTIMIZERS),
                  threads=max_threads if large else rng.randint(1, max_threads),
                  batch=512 if large else random_batch(rng))


def random_batch(rng):
    """1..512, log-uniform, with 1 and 512 themselves now and then."""
    r = rng.random()
    if r < 0.1:
        return 1
    if r < 0.2:
        return 512
    return max(1, min(512, int(math.exp(rng.uniform(0, math.log(512))))))


def make_loss(cfg):
    return bpcore.MSELoss() if cfg["loss"] == "mse" else bpcore.SoftmaxCrossEntropyLoss()


def make_optimizer(name, model):
    if name == "sgd":
        return bpcore.SGD(model, lr=0.01)
    if name == "sgd_momentum":
        return bpcore.SGD(model, lr=0.01, momentum=0.9)
    if name == "sgd_nesterov":
        return bpcore.SGD(model, lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    if name == "adam":
        return bpcore.Adam(model, lr=1e-3)
    if name == "adamw":
        return bpcore.AdamW(model, lr=1e-3, weight_decay=1e-2)
    if name == "adam_amsgrad":
        return bpcore.Adam(model, lr=1e-3, amsgrad=True)
    if name == "adamw_amsgrad":
        return bpcore.AdamW(model, lr=1e-3, weight_decay=1e-2, amsgrad=True)
    raise ValueError(name)


def make_model(cfg, seed):
    model = bpcore.MLP(cfg["sizes"], activation=cfg["activation"], dtype=cfg["dtype"],
                       seed=seed)
    return model, make_optimizer(cfg["optimizer"], model), make_loss(cfg)


def make_data(nprng, cfg, rows):
    """X (rows, n_in) and the loss's targets: labels, one-hot rows or MSE targets. Rows of X
    have norm about 1: with unit-variance features (norm² = n_in) SGD at lr 0.01 with momentum
    diverges within a few steps on a few rows for some of these networks (a NonFiniteError
    that is the data's fault, not bpcore's); scaled, 150 random settings trained 600 steps
    each without one."""
    n_in, n_out = cfg["sizes"][0], cfg["sizes"][-1]
    X = (nprng.standard_normal((rows, n_in)) / math.sqrt(n_in)).astype(cfg["dtype"])
    labels = nprng.integers(0, n_out, rows)
    if cfg["loss"] == "ce":
        return X, labels
    return X, np.eye(n_out, dtype=cfg["dtype"])[labels]


def odd_layout(rng, X):
    """X, or the same values as float64, Fortran-ordered or a strided view (converted at the
    API boundary to exactly X: the results must be bitwise those of X)."""
    r = rng.random()
    if r < 0.08:
        return X.astype(np.float64)
    if r < 0.16:
        return np.asfortranarray(X)
    if r < 0.24:
        wide = np.repeat(X, 2, axis=1)
        return wide[:, ::2]
    return X


# ---------------------------------------------------------------------------------------------
# the soak


class Soak:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.nprng = np.random.default_rng(args.seed)
        self.tmp = tempfile.mkdtemp(prefix="bpcore-soak-")
        self.errors = []                 # (seconds, phase, config, message)
        self.phases = Counter()
        self.phase_seconds = Counter()
        self.expected = Counter()        # the expected exceptions that came, by type
        self.notes = Counter()           # things worth a line that are not errors
        self.steps = 0
        self.samples = 0
        self.ref = []                    # (seconds, median µs)
        self.rss = []                    # (seconds, raw kB, trimmed kB or None)
        self.t0 = time.perf_counter()
        self.threads0 = bpcore.get_num_threads()
        self.blas0 = blas_threads()
        self._lock = threading.Lock()
        # the reference workload's batches, built once (before the first RSS reading)
        ref_rng = np.random.default_rng(1234)
        self.ref_batches = [(ref_rng.random((64, 784), dtype=np.float32),
                             np.eye(10, dtype=np.float32)[ref_rng.integers(0, 10, 64)])
                            for _ in range(8)]

    def now(self):
        return time.perf_counter() - self.t0

    # -- bookkeeping ------------------------------------------------------------------------

    def error(self, phase, cfg, message):
        with self._lock:
            self.errors.append((round(self.now(), 1), phase, str(cfg), message))
            n = len(self.errors)
        if n <= self.args.max_printed_errors:
            print(f"ERROR #{n} at {self.now():.1f} s in phase {phase} [{cfg}]:\n{message}",
                  file=sys.stderr, flush=True)
        elif n == self.args.max_printed_errors + 1:
            print("(further errors are counted, not printed)", file=sys.stderr, flush=True)

    def count_steps(self, n, rows):
        with self._lock:
            self.steps += n
            self.samples += n * rows

    def read_rss(self):
        """(seconds, raw kB, kB after malloc_trim or None), after gc.collect(); None without
        /proc."""
        gc.collect()
        raw = rss_kb()
        if raw is None:
            return None
        trimmed = None
        if MALLOC_TRIM is not None and not self.args.no_trim:
            MALLOC_TRIM(0)
            trimmed = rss_kb()
        self.rss.append((round(self.now(), 2), raw, trimmed))
        return self.rss[-1]

    # -- the reference workload ---------------------------------------------------------------

    def reference(self, record=True):
        """Median µs of a train_step of 784-256-128-10 float32, batch 64, one thread."""
        model = bpcore.MLP([784, 256, 128, 10], activation="relu", seed=0)
        opt = bpcore.SGD(model, lr=0.01, momentum=0.9)
        loss = bpcore.MSELoss()
        times = []
        with bpcore.num_threads(1):
            for i in range(10):
                model.train_step(*self.ref_batches[i % 8], loss, opt)
            for i in range(self.args.ref_steps):
                X, T = self.ref_batches[i % 8]
                t = time.perf_counter()
                model.train_step(X, T, loss, opt)
                times.append(time.perf_counter() - t)
        us = float(np.median(times) * 1e6)
        if record:
            self.ref.append((round(self.now(), 1), round(us, 1)))
        return us

    # -- phases --------------------------------------------------------------------------------

    def run_phase(self, name, cfg):
        t = time.perf_counter()
        try:
            getattr(self, "phase_" + name)(cfg)
            if bpcore.get_num_threads() != self.threads0:
                raise Failed(f"bpcore.get_num_threads() is {bpcore.get_num_threads()} after "
                             f"the phase, expected {self.threads0}")
        except Exception:
            self.error(name, cfg, traceback.format_exc())
            bpcore.set_num_threads(self.threads0)
        finally:
            self.phases[name] += 1
            self.phase_seconds[name] += time.perf_counter() - t

    def phase_steps(self, cfg, budget=None):
        rng, nprng = self.rng, self.nprng
        model, opt, loss = make_model(cfg, rng.randrange(2**32))
        batches = sorted({cfg["batch"], random_batch(rng), random_batch(rng)})
        data = {b: make_data(nprng, cfg, b) for b in batches}
        threads = cfg["threads"]
        budget = budget or rng.uniform(0.2, 1.5)
        n_steps, end = rng.randint(20, 400), time.perf_counter() + budget
        bpcore.set_num_threads(threads)
        try:
            for i in range(n_steps):
                if time.perf_counter() > end:
                    break
                if rng.random() < 0.05:
                    threads = rng.randint(1, self.args.max_threads)
                    bpcore.set_num_threads(threads)
                b = rng.choice(batches) if rng.random() < 0.3 else cfg["batch"]
                X, y = data[b]
                r = rng.random()
                if r < 0.03:  # the layer API: the same step, in parts
                    model.zero_grad()
                    value = loss(model.forward(X), y)
                    model.backward(loss.backward())
                    opt.step()
                elif r < 0.10:
                    value = model.train_step(X, y, loss, opt, max_grad_norm=1.0)
                else:
                    value = model.train_step(odd_layout(rng, X), y, loss, opt)
                if not np.isfinite(value):
                    raise Failed(f"step {i}: loss {value}")
                self.count_steps(1, b)
        finally:
            bpcore.set_num_threads(self.threads0)
        if not np.isfinite(model.flat_params).all():
            raise Failed("non-finite weights after the steps")

    def phase_fit(self, cfg):
        rng = self.rng
        model, opt, loss = make_model(cfg, rng.randrange(2**32))
        rows = rng.randint(cfg["batch"], max(cfg["batch"], min(2048, 4 * cfg["batch"])))
        X, y = make_data(self.nprng, cfg, rows)
        Xv, yv = make_data(self.nprng, cfg, rng.randint(1, 300))
        epochs = rng.randint(1, 3)
        kw = dict(loss=loss, optimizer=opt, epochs=epochs, batch_size=cfg["batch"],
                  shuffle=rng.random() < 0.7, seed=rng.randrange(2**32),
                  validation_data=(Xv, yv))
        if rng.random() < 0.3:
            kw["schedule"] = bpcore.schedules.CosineAnnealingLR(T_max=epochs)
        if rng.random() < 0.2:
            kw["max_grad_norm"] = 1.0
        with bpcore.num_threads(cfg["threads"]):
            history = model.fit(X, y, **kw)
        for key in ("loss", "val_loss", "val_accuracy"):
            values = history[key]
            if len(values) != epochs or not np.isfinite(values).all():
                raise Failed(f"history[{key!r}] = {values} for {epochs} epochs")
        self.count_steps(epochs * -(-rows // cfg["batch"]), min(rows, cfg["batch"]))

    def phase_predict(self, cfg):
        rng = self.rng
        model, opt, loss = make_model(cfg, rng.randrange(2**32))
        X, y = make_data(self.nprng, cfg, rng.randint(1, 3000))
        with bpcore.num_threads(cfg["threads"]):
            model.train_step(X[:cfg["batch"]], y[:cfg["batch"]], loss, opt)
            out = model.predict(odd_layout(rng, X))
            again = model.predict(X)
            result = model.evaluate(X, y, loss)
        n_out = cfg["sizes"][-1]
        if out.shape != (X.shape[0], n_out) or out.dtype != np.dtype(cfg["dtype"]):
            raise Failed(f"predict gave {out.shape} {out.dtype}")
        if not np.isfinite(out).all():
            raise Failed("predict gave non-finite values")
        if not np.array_equal(out, again):
            raise Failed("predict of the same values in another layout differs")
        # evaluate against the loss computed here from predict's output (float64)
        p = again.astype(np.float64)
        if cfg["loss"] == "mse":
            expect = np.mean((p - y) ** 2)
            labels = y.argmax(1)
        else:
            z = p - p.max(1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(1, keepdims=True))
            if cfg["loss"] == "ce":
                expect, labels = -logp[np.arange(len(y)), y].mean(), y
            else:
                expect, labels = -(y * logp).sum(1).mean(), y.argmax(1)
        tol = 1e-3 if cfg["dtype"] == "float32" else 1e-9
        if not math.isclose(result["loss"], expect, rel_tol=tol, abs_tol=tol):
            raise Failed(f"evaluate loss {result['loss']!r}, from predict {expect!r}")
        acc = np.mean(p.argmax(1) == labels)
        if result["accuracy"] is not None and abs(result["accuracy"] - acc) > 2.0 / len(y):
            raise Failed(f"evaluate accuracy {result['accuracy']!r}, from predict {acc!r}")

    def phase_checkpoint(self, cfg):
        rng = self.rng
        model, opt, loss = make_model(cfg, rng.randrange(2**32))
        X, y = make_data(self.nprng, cfg, cfg["batch"])
        path = os.path.join(self.tmp, "soak.safetensors")
        with bpcore.num_threads(cfg["threads"]):
            for _ in range(rng.randint(1, 5)):
                model.train_step(X, y, loss, opt)
            model.save(path, optimizer=opt)
            loaded = bpcore.load(path)
            opt2 = bpcore.load_optimizer(path, make_optimizer(cfg["optimizer"], loaded))
            if not np.array_equal(loaded.flat_params, model.flat_params):
                raise Failed("loaded weights differ from the saved ones")
            if not np.array_equal(loaded.predict(X), model.predict(X)):
                raise Failed("the loaded model predicts differently")
            a = model.train_step(X, y, loss, opt)
            b = loaded.train_step(X, y, loss, opt2)
        self.count_steps(2, cfg["batch"])
        tol = 1e-4 if cfg["dtype"] == "float32" else 1e-10
        if not math.isclose(a, b, rel_tol=tol, abs_tol=tol):
            raise Failed(f"the resumed step's loss {b!r}, the original's {a!r}")
        if not np.array_equal(model.flat_params, loaded.flat_params):
            self.notes["resumed step not bitwise equal to the uninterrupted one"] += 1
        if rng.random() < 0.3:  # a damaged copy must be refused
            damaged = os.path.join(self.tmp, "damaged.safetensors")
            with open(path, "rb") as fh:
                blob = fh.read()
            with open(damaged, "wb") as fh:
                fh.write(blob[:rng.randint(0, len(blob) - 1)])
            try:
                bpcore.load(damaged)
            except bpcore.CheckpointError:
                self.expected["CheckpointError"] += 1
            else:
                raise Failed("a truncated checkpoint loaded")
            os.remove(damaged)
        os.remove(path)

    def phase_concurrent(self, cfg):
        """Two Python threads, two models, at once; then a call on a busy model."""
        rng = self.rng
        cfg2 = random_config(rng, self.args.max_threads)
        jobs = []
        for c in (cfg, cfg2):
            model, opt, loss = make_model(c, rng.randrange(2**32))
            rows = c["batch"] * rng.randint(1, 4)
            jobs.append((c, model, opt, loss, make_data(self.nprng, c, rows),
                         rng.random() < 0.5, rng.uniform(0.2, 0.8)))
        failures = []

        def work(c, model, opt, loss, data, use_fit, budget):
            try:
                X, y = data
                end = time.perf_counter() + budget
                while time.perf_counter() < end:
                    try:
                        if use_fit:
                            model.fit(X, y, loss=loss, optimizer=opt, epochs=1,
                                      batch_size=c["batch"], seed=0)
                            self.count_steps(-(-len(X) // c["batch"]), c["batch"])
                        else:
                            b = c["batch"]
                            for i in range(0, len(X), b):
                                model.train_step(X[i:i + b], y[i:i + b], loss, opt)
                            self.count_steps(-(-len(X) // b), b)
                    except RuntimeError as exc:  # the main thread's predict has it just now
                        if "another thread" not in str(exc):
                            raise
                        with self._lock:
                            self.expected["RuntimeError (busy model)"] += 1
                        time.sleep(0.001)
                if not np.isfinite(model.flat_params).all():
                    raise Failed("non-finite weights")
            except Exception:
                failures.append(f"[{c}]\n{traceback.format_exc()}")

        with bpcore.num_threads(cfg["threads"]):
            threads = [threading.Thread(target=work, args=job) for job in jobs]
            for t in threads:
                t.start()
            # meanwhile: a call on the first model, busy in its thread (or already done)
            time.sleep(rng.uniform(0, 0.2))
            busy_model = jobs[0][1]
            try:
                busy_model.predict(jobs[0][4][0][:5])
            except RuntimeError as exc:
                if "another thread" not in str(exc):
                    failures.append(f"predict on a busy model: {exc!r}")
                else:
                    self.expected["RuntimeError (busy model)"] += 1
            for t in threads:
                t.join()
        for f in failures:
            self.error("concurrent", cfg, f)
        blas = blas_threads()
        if blas != self.blas0:
            raise Failed(f"BLAS threads after the phase: {blas}, before: {self.blas0}")

    def phase_bad_input(self, cfg):
        rng = self.rng
        model, opt, loss = make_model(cfg, rng.randrange(2**32))
        X, y = make_data(self.nprng, cfg, cfg["batch"])
        n_in, n_out = cfg["sizes"][0], cfg["sizes"][-1]
        with bpcore.num_threads(cfg["threads"]):
            model.train_step(X, y, loss, opt)
        before = model.flat_params.copy()

        def nan_x():
            Xb = X.copy()
            Xb[rng.randrange(len(Xb)), rng.randrange(n_in)] = rng.choice([np.nan, np.inf])
            return model.train_step(Xb, y, loss, opt)

        def bad_labels():
            if cfg["loss"] != "ce":
                yb = y.copy()
                yb[0, 0] = np.nan
            else:
                yb = y.copy()
                yb[rng.randrange(len(yb))] = rng.choice([n_out, -1, 10**6])
            return model.train_step(X, yb, loss, opt)

        def nan_weight():
            keep = model.flat_params.copy()
            model.flat_params[rng.randrange(model.flat_params.size)] = np.nan
            try:
                model.train_step(X, y, loss, opt)
            finally:
                model.flat_params[...] = keep

        def overflow():  # as in tests/test_nonfinite.py: an update that overflows float32
            small = bpcore.MLP([3, 4, 2], activation="relu", seed=rng.randrange(100))
            Xs = self.nprng.standard_normal((8, 3)) * 1e3
            return small.train_step(Xs, np.eye(2)[np.arange(8) % 2], bpcore.MSELoss(),
                                    bpcore.SGD(small, lr=3e38))

        def missing_file():
            return bpcore.load(os.path.join(self.tmp, "no-such-file.safetensors"))

        cases = [
            ("wrong columns", ValueError, lambda: model.train_step(X[:, :-1], y, loss, opt)),
            ("NaN/inf in X", ValueError, nan_x),
            ("bad target", ValueError, bad_labels),
            ("rows differ", ValueError, lambda: model.train_step(X, np.concatenate([y, y]),
                                                                 loss, opt)),
            ("empty batch", ValueError, lambda: model.train_step(X[:0], y[:0], loss, opt)),
            ("1-D X", ValueError, lambda: model.train_step(X[0], y[:1], loss, opt)),
            ("text X", (ValueError, TypeError),
             lambda: model.train_step(np.full((len(X), n_in), "a"), y, loss, opt)),
            ("predict wrong columns", ValueError, lambda: model.predict(np.ones((3, n_in + 1)))),
            ("evaluate NaN", ValueError, lambda: model.evaluate(X * np.nan, y, loss)),
            ("fit batch_size 0", ValueError,
             lambda: model.fit(X, y, loss=loss, optimizer=opt, batch_size=0)),
            ("fit epochs -1", ValueError,
             lambda: model.fit(X, y, loss=loss, optimizer=opt, epochs=-1)),
            ("fit bad validation", ValueError,
             lambda: model.fit(X, y, loss=loss, optimizer=opt,
                               validation_data=(np.ones((2, n_in + 3)), y[:2]))),
            ("SGD lr -1", ValueError, lambda: bpcore.SGD(model, lr=-1.0)),
            ("Adam betas", ValueError, lambda: bpcore.Adam(model, betas=(1.5, 0.9))),
            ("threads 0", ValueError, lambda: bpcore.set_num_threads(0)),
            ("NaN weight", bpcore.NonFiniteError, nan_weight),
            ("overflowing update", bpcore.NonFiniteError, overflow),
            ("missing checkpoint", bpcore.CheckpointError, missing_file),
        ]
        for _ in range(rng.randint(1, 6)):
            what, expect, call = rng.choice(cases)
            with bpcore.num_threads(cfg["threads"]):
                try:
                    call()
                except expect as exc:
                    self.expected[type(exc).__name__] += 1
                else:
                    raise Failed(f"{what}: no {expect} raised")
            if not np.array_equal(model.flat_params, before, equal_nan=True):
                raise Failed(f"{what}: the failed call changed the weights")
        with bpcore.num_threads(cfg["threads"]):
            value = model.train_step(X, y, loss, opt)  # still trains
        if not np.isfinite(value) or not np.isfinite(model.flat_params).all():
            raise Failed(f"after the bad calls a good step gave loss {value}")
        self.count_steps(2, len(X))

    # -- the run -------------------------------------------------------------------------------

    def random_phase(self):
        names, weights = zip(*PHASES.items())
        name = self.rng.choices(names, weights)[0]
        self.run_phase(name, random_config(self.rng, self.args.max_threads))

    @staticmethod
    def rss_text(reading):
        if reading is None:
            return "n/a"
        _, raw, trimmed = reading
        return f"{raw / MB:.1f} MB" + ("" if trimmed is None else
                                       f" ({trimmed / MB:.1f} trimmed)")

    def progress(self):
        reading = self.rss[-1] if self.rss else None
        print(f"[{self.now():6.0f} s] phases {sum(self.phases.values()):5,}  "
              f"steps {self.steps:9,}  errors {len(self.errors)}  "
              f"RSS {self.rss_text(reading)}  reference {self.ref[-1][1]:8,.1f} µs", flush=True)

    def run(self):
        a = self.args
        end = self.t0 + a.minutes * 60
        interrupted = False
        self.rss_start = self.read_rss()
        self.reference(record=False)  # the first pass after the import runs cold: not counted
        self.reference()
        self.read_rss()
        self.progress()
        next_ref = time.perf_counter() + a.ref_every
        try:
            # warm-up: every phase once at the largest sizes, then random phases
            for name in PHASES:
                cfg = random_config(self.rng, a.max_threads, large=True)
                self.run_phase(name, cfg)
            warm_end = time.perf_counter() + a.warmup
            while time.perf_counter() < min(warm_end, end):
                self.random_phase()
            self.rss_warm = self.read_rss()
            self.t_warm = self.now()
            print(f"[{self.now():6.0f} s] warm-up done: RSS {self.rss_text(self.rss_warm)}",
                  flush=True)
            while time.perf_counter() < end:
                self.random_phase()
                if time.perf_counter() >= next_ref:
                    self.reference()
                    self.read_rss()
                    self.progress()
                    next_ref = time.perf_counter() + a.ref_every
        except KeyboardInterrupt:
            interrupted = True
            print("interrupted: reporting what ran", file=sys.stderr)
        if not hasattr(self, "rss_warm"):
            self.rss_warm, self.t_warm = self.read_rss(), self.now()
        self.reference()
        self.rss_end = self.read_rss()
        self.progress()
        return interrupted

    # -- the report ----------------------------------------------------------------------------

    def summary(self):
        a = self.args
        first_us, last_us = self.ref[0][1], self.ref[-1][1]
        rss = {}
        if self.rss_end is not None:
            after = [r for r in self.rss if r[0] >= self.t_warm]
            # the reading nearest the middle of the measured part of the run
            middle = min(after, key=lambda r: abs(r[0] - (self.t_warm + self.rss_end[0]) / 2))
            for i, kind in ((1, "raw"), (2, "trimmed")):
                if self.rss_end[i] is None:
                    continue
                rss[kind] = {
                    "start": round(self.rss_start[i] / MB, 1),
                    "after_warmup": round(self.rss_warm[i] / MB, 1),
                    "end": round(self.rss_end[i] / MB, 1),
                    "max_after_warmup": round(max(r[i] for r in after) / MB, 1),
                    "growth": round((self.rss_end[i] - self.rss_warm[i]) / MB, 1),
                    "growth_second_half": round((self.rss_end[i] - middle[i]) / MB, 1)}
        judged = "trimmed" if "trimmed" in rss else "raw" if rss else None
        return {
            "seconds": round(self.now(), 1),
            "seed": a.seed,
            "max_threads": a.max_threads,
            "phases": dict(self.phases),
            "phase_seconds": {k: round(v, 1) for k, v in self.phase_seconds.items()},
            "train_steps": self.steps,
            "samples": self.samples,
            "errors": len(self.errors),
            "error_list": self.errors,
            "expected_exceptions": dict(self.expected),
            "notes": dict(self.notes),
            "rss_mb": rss,
            "rss_judged": judged,
            "rss_growth_mb": rss[judged]["growth"] if judged else None,
            "rss_limit_mb": a.max_rss_growth_mb,
            "rss_samples_kb": self.rss,
            "warmup_seconds": round(self.t_warm, 1),
            "mmap_threshold_fixed": self.args.mmap_fixed,
            "reference_us": self.ref,
            "reference_first_us": first_us,
            "reference_last_us": last_us,
            "drift_ratio": round(last_us / first_us, 3),
            "versions": {"bpcore": bpcore.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
        }


def print_report(s):
    refs = [us for _, us in s["reference_us"]]
    rows = [
        ("duration", f"{s['seconds']:,} s (seed {s['seed']}, threads 1..{s['max_threads']})"),
        ("phases run", f"{sum(s['phases'].values()):,} (" + ", ".join(
            f"{k} {v:,}" for k, v in sorted(s["phases"].items())) + ")"),
        ("training steps", f"{s['train_steps']:,} ({s['samples']:,} samples)"),
        ("errors", f"**{s['errors']}**"),
        ("expected exceptions raised", ", ".join(
            f"{k} {v:,}" for k, v in sorted(s["expected_exceptions"].items())) or "none"),
    ]
    for kind, r in s["rss_mb"].items():
        judged = kind == s["rss_judged"]
        rows += [
            (f"RSS {kind}: start / after warm-up ({s['warmup_seconds']:g} s) / end / max",
             f"{r['start']} / {r['after_warmup']} / {r['end']} / {r['max_after_warmup']} MB"),
            (f"RSS {kind}: growth after warm-up" + (" (judged)" if judged else ""),
             (f"**{r['growth']:+} MB** (limit {s['rss_limit_mb']:g} MB)" if judged
              else f"{r['growth']:+} MB") + f"; second half {r['growth_second_half']:+} MB"),
        ]
    if not s["rss_mb"]:
        rows.append(("RSS", "not available (no /proc/self/status)"))
    rows += [
        ("reference step, first / last", f"{s['reference_first_us']:,.1f} / "
                                         f"{s['reference_last_us']:,.1f} µs (784-256-128-10, "
                                         f"batch 64, 1 thread, median)"),
        ("drift (last / first)", f"**{s['drift_ratio']:.3f}**"),
        ("reference, min / median / max of all", f"{min(refs):,.1f} / "
                                                 f"{float(np.median(refs)):,.1f} / "
                                                 f"{max(refs):,.1f} µs over {len(refs)} samples"),
    ]
    for k, v in sorted(s["notes"].items()):
        rows.append(("note", f"{k}: {v:,}"))
    print("\n| soak | |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    print("\n| phase | runs | seconds |\n|---|---:|---:|")
    for k in PHASES:
        print(f"| {k} | {s['phases'].get(k, 0):,} | {s['phase_seconds'].get(k, 0):,.1f} |")
    if s["errors"]:
        print("\nerrors (phase, time, settings, last line):")
        for t, phase, cfg, msg in s["error_list"][:50]:
            print(f"- {t} s {phase} [{cfg}]: {msg.strip().splitlines()[-1]}")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="how long (default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random choices")
    p.add_argument("--max-threads", type=int, default=2,
                   help="thread counts are drawn from 1..this (default 2)")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of random phases after the warm-up tour, before the RSS "
                        "baseline (default: 10%% of the run, at least 10 s)")
    p.add_argument("--ref-every", type=float, default=30.0,
                   help="seconds between reference measurements (default 30)")
    p.add_argument("--ref-steps", type=int, default=300,
                   help="steps timed per reference measurement (default 300)")
    p.add_argument("--max-rss-growth-mb", type=float, default=20.0,
                   help="RSS growth after the warm-up that fails the run (default 20)")
    p.add_argument("--no-trim", action="store_true",
                   help="judge the raw RSS, without malloc_trim(0) before the readings")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's dynamic mmap threshold (see the docstring)")
    p.add_argument("--max-printed-errors", type=int, default=20)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = max(10.0, 0.1 * args.minutes * 60)
    if not 1 <= args.max_threads <= bpcore.threads.max_threads():
        p.error(f"--max-threads: 1 to {bpcore.threads.max_threads()}")
    mmap_fixed = not args.default_malloc and fix_mmap_threshold()

    print(f"bpcore {bpcore.__version__} soak: {args.minutes:g} min, seed {args.seed}, threads "
          f"1..{args.max_threads} (default {bpcore.get_num_threads()}), RSS "
          f"{'from /proc/self/status' if rss_kb() else 'not available here'}"
          f"{', also after malloc_trim(0)' if MALLOC_TRIM and not args.no_trim else ''}"
          f"{', mmap threshold fixed at 256 KiB' if mmap_fixed else ''}", flush=True)
    args.mmap_fixed = mmap_fixed
    soak = Soak(args)
    interrupted = soak.run()
    s = soak.summary()
    print_report(s)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(s, fh, indent=1)
    failed = s["errors"] > 0 or (s["rss_growth_mb"] is not None
                                 and s["rss_growth_mb"] > args.max_rss_growth_mb)
    print(f"\n{'FAILED' if failed else 'passed'}: {s['errors']} errors, RSS growth "
          f"{s['rss_growth_mb']} MB ({s['rss_judged']}; limit {args.max_rss_growth_mb:g})")
    if interrupted:
        return 130
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
