"""bpcore.sklearn's estimators against scikit-learn's MLP, the bare bpcore network, PyTorch and
the FLOP floor: whole ``fit`` calls, at scikit-learn's defaults.

Rows (``--cases`` picks some; each runs in every ``--dtypes`` and ``--threads``):

- ``large-adam``: 60,000 x 784 synthetic (uniform [0, 1) pixels, labels of a random teacher
  network, 10 classes), hidden (256, 128), Adam, batch 200, ``--large-epochs`` epochs; with
  float64 data also bpcore's ``dtype="float32"`` (float64 data trained in float32) where the
  estimator has that parameter (detected by ``get_params``; else left out with a note);
- ``digits-adam``, ``digits-adam-es``, ``digits-sgd``: scikit-learn's digits (1,797 x 64,
  X / 16), hidden (100,), ``--digits-epochs`` epochs, early stopping off / on;
- ``digits-adam-reg``: MLPRegressor on digits, the digit's value as the target;
- ``digits-lbfgs``, ``digits-lbfgs-reg``: L-BFGS, ``--lbfgs-iter`` iterations;
- ``large-lbfgs``: L-BFGS on the first ``--large-lbfgs-n`` rows of the large data, hidden
  (256, 128), ``--large-lbfgs-iter`` iterations.

Every estimator gets ``tol=0`` and a huge ``n_iter_no_change``, so that each runs the same
number of epochs. The implementations of a row, timed on the same data and thread count:

- ``bpcore``: ``bpcore.sklearn.MLPClassifier``/``MLPRegressor(...).fit(X, y)``, all of it
  (validation, initialisation, the per-epoch callback, early stopping's scoring);
- ``sklearn``: ``sklearn.neural_network``'s estimator with the same parameters;
- ``bare``: ``bpcore.MLP.fit`` with the equivalent loss and optimizer (scikit-learn's Adam/SGD
  forms, L2 on the weights), early stopping as ``validation_data`` on the same 10 % split,
  L-BFGS as ``optimizer=bpcore.LBFGS``: what the estimator costs over the engine;
- ``torch``: the equivalent PyTorch loop (``nn.Sequential``, Adam/SGD with the same settings,
  per epoch ``randperm`` and plain index batches; early stopping's accuracy/R^2 on the
  held-out rows each epoch; L-BFGS as the same scipy L-BFGS-B with torch's loss and gradient);
- skorch where installed is left out with a note (its loop is PyTorch's plus its callbacks).

Method: per row, a warm-up fit of each (a slice of the data, one epoch, for the large rows),
then ``--repeats`` rounds in one process, the implementations in turn (the order rotating each
round; the estimator and the bare fit side by side, their order alternating), a pause
(untimed) before each so that the previous thread pool has parked; medians. The estimator's
overhead over the bare fit is the median of the rounds' ratios of the two (adjacent fits: the
machine's drift, which moves a cell's median by 10-20 % here, cancels out).
The FLOP floor is the run's GEMM flops (per epoch ``bpcore.bench.step_flops`` over the
training rows, plus early stopping's forward pass over the held-out rows; for L-BFGS the
function evaluations of the bare run times the same) over the peak GEMM rate measured in the
same run (``bpcore.bench.peak_gemm_gflops``, the thread count and dtype of the row, just
before and just after the row's fits: the larger, since drift only slows a GEMM down).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_sklearn.py \\
        --json benchmarks/results/sklearn.json
    python benchmarks/bench_sklearn.py --cases digits-adam,digits-adam-es --threads 1
"""
import argparse
import math
import os
import platform
import statistics
import time
import warnings

import numpy as np

import bpcore
from bpcore import _simd
from bpcore.bench import cpu_model, peak_gemm_gflops, step_flops, thread_list, write_json

CASES = ("large-adam", "digits-adam", "digits-adam-es", "digits-sgd", "digits-adam-reg",
         "digits-lbfgs", "digits-lbfgs-reg", "large-lbfgs")
IMPLS = ("bpcore", "sklearn", "bare", "torch")
NO_CHANGE = 10 ** 9  # n_iter_no_change: never stop early on the loss
ALPHA, LR, BETAS, EPS, MOMENTUM, BATCH, VAL_FRACTION = 1e-4, 1e-3, (0.9, 0.999), 1e-8, 0.9, 200, 0.1

SETTINGS = {
    "full": dict(large_n=60000, large_hidden=(256, 128), large_epochs=2, digits_epochs=50,
                 lbfgs_iter=50, large_lbfgs_n=5000, large_lbfgs_iter=20, repeats=3,
                 warm_rows=4000, peak_size=2048, peak_reps=3, pause=0.3),
    "quick": dict(large_n=600, large_hidden=(16, 8), large_epochs=1, digits_epochs=2,
                  lbfgs_iter=3, large_lbfgs_n=300, large_lbfgs_iter=2, repeats=2,
                  warm_rows=200, peak_size=128, peak_reps=2, pause=0.0),
}
# the speed targets: (what, comparison, bound), checked per row
TARGETS = {
    "large": [("floor_ratio", "<=", 1.2), ("sklearn_ratio", ">=", 2.4)],
    "large-f32": [("sklearn_ratio", ">=", 5.0)],
    "digits": [("sklearn_ratio", ">=", 10.0)],
    "lbfgs": [("sklearn_ratio", ">=", 3.0)],
    "all": [("torch_ratio", ">", 1.0), ("bare_ratio", "<=", 1.05)],
}


# ---------------------------------------------------------------------------------------------
# data

def large_data(n, seed=0):
    """n x 784 uniform [0, 1) float64 rows; labels: argmax of a random tanh teacher network."""
    rng = np.random.default_rng(seed)
    X = rng.random((n, 784))
    W1 = rng.standard_normal((784, 64)) / math.sqrt(784)
    W2 = rng.standard_normal((64, 10))
    y = np.argmax(np.tanh(4.0 * (X - 0.5) @ W1) @ W2, axis=1)
    return X, y


def digits_data():
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


# ---------------------------------------------------------------------------------------------
# one row: what it trains

class Row:
    """One (case, data dtype, train dtype, threads) row and its data."""

    def __init__(self, case, X, y, hidden, epochs, threads, train_dtype):
        self.case, self.X, self.y, self.hidden = case, X, y, tuple(hidden)
        self.epochs, self.threads = epochs, threads
        self.dtype = X.dtype.name
        self.train_dtype = train_dtype  # bpcore's dtype parameter (None: the data's)
        self.regressor = case.endswith("-reg")
        self.solver = "lbfgs" if "lbfgs" in case else ("sgd" if "sgd" in case else "adam")
        self.early_stopping = case.endswith("-es")
        self.n_out = 1 if self.regressor else int(np.unique(y).size)
        self.sizes = [X.shape[1], *self.hidden, self.n_out]

    @property
    def label(self):
        dtype = self.dtype if self.train_dtype is None else f"{self.dtype}→{self.train_dtype}"
        return f"{self.case} {dtype} {self.threads}t"

    def params(self, epochs):
        p = dict(hidden_layer_sizes=self.hidden, solver=self.solver, max_iter=epochs, tol=0.0,
                 random_state=0, alpha=ALPHA)
        if self.solver != "lbfgs":
            p.update(n_iter_no_change=NO_CHANGE, early_stopping=self.early_stopping,
                     validation_fraction=VAL_FRACTION)
        return p

    def split(self, X, y):
        """The early-stopping split (held-out rows by scikit-learn's rule: ceil of 10 %)."""
        from sklearn.model_selection import train_test_split
        return train_test_split(X, y, test_size=VAL_FRACTION, random_state=0,
                                stratify=None if self.regressor else y)

    def flops(self, iters, n, nfev=None):
        """GEMM flops of a fit of `iters` epochs (L-BFGS: nfev evaluations) on n rows."""
        if self.solver == "lbfgs":
            return nfev * step_flops(self.sizes, n)
        if not self.early_stopping:
            return iters * step_flops(self.sizes, n)
        n_val = math.ceil(VAL_FRACTION * n)
        forward = 2 * n_val * sum(a * b for a, b in zip(self.sizes, self.sizes[1:]))
        return iters * (step_flops(self.sizes, n - n_val) + forward)


# ---------------------------------------------------------------------------------------------
# the implementations: prepare(X, y, epochs) (untimed) returns run() (timed), which returns
# {"iters": epochs or L-BFGS iterations run, "loss": the final training loss, "nfev": ...}

def prepare_bpcore(row, X, y, epochs):
    from bpcore.sklearn import MLPClassifier, MLPRegressor
    est = (MLPRegressor if row.regressor else MLPClassifier)(**row.params(epochs))
    if row.train_dtype is not None:
        est.set_params(dtype=row.train_dtype)

    def run():
        est.fit(X, y)
        return {"iters": est.n_iter_, "loss": float(est.loss_)}
    return run


def prepare_sklearn(row, X, y, epochs):
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    est = (MLPRegressor if row.regressor else MLPClassifier)(**row.params(epochs))

    def run():
        est.fit(X, y)
        return {"iters": est.n_iter_, "loss": float(est.loss_)}
    return run


def bare_optimizer(row, model):
    groups = [{"params": [p for p in model.parameters() if p.name == "W"],
               "weight_decay": ALPHA},
              {"params": [p for p in model.parameters() if p.name == "b"], "weight_decay": 0.0}]
    if row.solver == "sgd":
        return bpcore.SGD(groups, lr=LR, momentum=MOMENTUM, nesterov=True,
                          decay_form="sklearn")
    return bpcore.Adam(groups, lr=LR, betas=BETAS, eps=EPS, eps_form="sklearn",
                       decay_form="sklearn")


def prepare_bare(row, X, y, epochs):
    dtype = row.train_dtype or row.dtype
    X = np.ascontiguousarray(X, dtype)  # the estimator converts inside its fit; this is outside
    model = bpcore.MLP(row.sizes, activation="relu", dtype=dtype, seed=0)
    if row.regressor:
        loss, y = bpcore.MSELoss(), np.ascontiguousarray(y.reshape(-1, 1), dtype)
    else:
        loss, y = bpcore.SoftmaxCrossEntropyLoss(), np.unique(y, return_inverse=True)[1]
    if row.solver == "lbfgs":
        opt = bpcore.LBFGS(max_iter=epochs, tol=0.0)

        def run():
            res = model.fit(X, y, loss=loss, optimizer=opt)["result"]
            return {"iters": int(res.nit), "loss": float(res.fun), "nfev": int(res.nfev)}
        return run
    opt = bare_optimizer(row, model)
    extra = {}
    if row.early_stopping:
        X, Xv, y, yv = row.split(X, y)
        X, y = np.ascontiguousarray(X), np.ascontiguousarray(y)
        extra["validation_data"] = (np.ascontiguousarray(Xv), np.ascontiguousarray(yv))
    batch = min(BATCH, X.shape[0])

    def run():
        hist = model.fit(X, y, loss=loss, optimizer=opt, epochs=epochs, batch_size=batch,
                         shuffle=True, seed=0, **extra)
        return {"iters": len(hist["loss"]), "loss": float(hist["loss"][-1])}
    return run


def prepare_torch(torch, row, X, y, epochs):
    nn = torch.nn
    dtype = row.train_dtype or row.dtype
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    torch.manual_seed(0)
    mods = []
    for i, (a, b) in enumerate(zip(row.sizes, row.sizes[1:])):
        mods.append(nn.Linear(a, b, dtype=tdtype))
        if i < len(row.sizes) - 2:
            mods.append(nn.ReLU())
    net = nn.Sequential(*mods)
    weights = [m.weight for m in net if isinstance(m, nn.Linear)]
    biases = [m.bias for m in net if isinstance(m, nn.Linear)]
    if row.regressor:
        lossfn, Y = nn.MSELoss(), torch.from_numpy(np.ascontiguousarray(y.reshape(-1, 1), dtype))
    else:
        lossfn = nn.CrossEntropyLoss()
        Y = torch.from_numpy(np.unique(y, return_inverse=True)[1].astype(np.int64))
    Xt = torch.from_numpy(np.ascontiguousarray(X, dtype))
    if row.solver == "lbfgs":
        return torch_lbfgs(torch, net, weights, lossfn, Xt, Y, epochs)
    batch = min(BATCH, X.shape[0])
    # scikit-learn's L2: alpha * W / batch rows added to the gradient of the mean loss
    groups = [{"params": weights, "weight_decay": ALPHA / batch},
              {"params": biases, "weight_decay": 0.0}]
    if row.solver == "sgd":
        opt = torch.optim.SGD(groups, lr=LR, momentum=MOMENTUM, nesterov=True)
    else:
        opt = torch.optim.Adam(groups, lr=LR, betas=BETAS, eps=EPS)
    gen = torch.Generator().manual_seed(0)
    params = list(net.parameters())

    def score(Xv, Yv):
        with torch.no_grad():
            out = net(Xv)
            if not row.regressor:
                return (out.argmax(1) == Yv).double().mean().item()
            return 1.0 - (((out - Yv) ** 2).sum() / ((Yv - Yv.mean()) ** 2).sum()).item()

    def run():
        Xtr, Ytr = Xt, Y
        if row.early_stopping:  # the split is part of the fit, as in the estimators
            perm = torch.randperm(Xt.shape[0], generator=gen)
            n_val = math.ceil(VAL_FRACTION * Xt.shape[0])
            Xv, Yv = Xt[perm[:n_val]], Y[perm[:n_val]]
            Xtr, Ytr = Xt[perm[n_val:]], Y[perm[n_val:]]
            best, best_params = -math.inf, [p.detach().clone() for p in params]
        n = Xtr.shape[0]
        for _ in range(epochs):
            order = torch.randperm(n, generator=gen)
            total = torch.zeros((), dtype=tdtype)
            for i in range(0, n, batch):
                idx = order[i:i + batch]
                opt.zero_grad(set_to_none=True)
                loss = lossfn(net(Xtr[idx]), Ytr[idx])
                loss.backward()
                opt.step()
                total += loss.detach() * idx.numel()
            epoch_loss = total.item() / n
            if row.early_stopping:
                s = score(Xv, Yv)
                if s > best:
                    best = s
                    for b, p in zip(best_params, params):
                        b.copy_(p.detach())
        if row.early_stopping:
            with torch.no_grad():
                for b, p in zip(best_params, params):
                    p.copy_(b)
        return {"iters": epochs, "loss": epoch_loss}
    return run


def torch_lbfgs(torch, net, weights, lossfn, X, Y, iters):
    """scipy's L-BFGS-B (as both estimators use) on torch's loss and gradient."""
    from scipy.optimize import minimize
    from torch.nn.utils import parameters_to_vector, vector_to_parameters

    params = list(net.parameters())
    n = X.shape[0]

    def objective(w):
        with torch.no_grad():
            vector_to_parameters(torch.from_numpy(w).to(X.dtype), params)
        for p in params:
            p.grad = None
        loss = lossfn(net(X), Y) + 0.5 * ALPHA / n * sum((W * W).sum() for W in weights)
        loss.backward()
        return loss.item(), parameters_to_vector([p.grad for p in params]).double().numpy()

    def run():
        w0 = parameters_to_vector(params).detach().double().numpy().copy()
        res = minimize(objective, w0, jac=True, method="L-BFGS-B",
                       options={"maxiter": iters, "maxfun": 15000, "gtol": 0.0})
        return {"iters": int(res.nit), "loss": float(res.fun), "nfev": int(res.nfev)}
    return run


# ---------------------------------------------------------------------------------------------
# timing

def time_row(row, impls, repeats, pause, warm_rows):
    """Warm each implementation up, then `repeats` rounds of one fit each, in rotating order.
    Returns per implementation its times and the info of its runs."""
    names = list(impls)
    for name in names:
        n = min(warm_rows, row.X.shape[0]) if row.case.startswith("large") else row.X.shape[0]
        impls[name](row, row.X[:n], row.y[:n], 1 if row.case.startswith("large") else
                    row.epochs)()
    samples = {name: [] for name in names}
    infos = {name: [] for name in names}
    for r in range(repeats):
        for name in round_order(names, r):
            run = impls[name](row, row.X, row.y, row.epochs)
            if pause:
                time.sleep(pause)
            t0 = time.perf_counter()
            info = run()
            samples[name].append(time.perf_counter() - t0)
            infos[name].append(info)
    return samples, infos


def round_order(names, r):
    """Round r's order: `names` rotated by r, with "bare" moved beside "bpcore" (before it in
    odd rounds), so that each round's ratio of the two compares neighbouring fits."""
    units = [n for n in names if n != "bare"]
    units = units[r % len(units):] + units[:r % len(units)]
    pair = ["bpcore", "bare"] if r % 2 == 0 else ["bare", "bpcore"]
    return [m for n in units for m in (pair if n == "bpcore" and "bare" in names else [n])]


def check_targets(kinds, cell):
    out = []
    for kind in kinds:
        for key, op, bound in TARGETS[kind]:
            value = cell.get(key)
            if value is None:
                continue
            met = {"<=": value <= bound, ">=": value >= bound, ">": value > bound}[op]
            out.append({"what": key, "op": op, "bound": bound, "value": value, "met": met})
    return out


def measure_row(row, impls, settings):
    train_dtype = row.train_dtype or row.dtype
    peaks = [peak_gemm_gflops(settings["peak_size"], settings["peak_reps"], train_dtype)]
    samples, infos = time_row(row, impls, settings["repeats"], settings["pause"],
                              settings["warm_rows"])
    peaks.append(peak_gemm_gflops(settings["peak_size"], settings["peak_reps"], train_dtype))
    med = {k: statistics.median(v) for k, v in samples.items()}
    iters = infos["bpcore"][-1]["iters"]
    nfev = infos["bare"][-1].get("nfev") if "bare" in infos else None
    n = row.X.shape[0]
    flops = row.flops(iters, n, nfev)
    gflops = max(peaks)  # drift on a shared machine only slows a GEMM down
    floor_s = flops / (gflops * 1e9)
    cell = {
        "case": row.case, "estimator": "MLPRegressor" if row.regressor else "MLPClassifier",
        "solver": row.solver, "early_stopping": row.early_stopping, "dtype": row.dtype,
        "train_dtype": row.train_dtype or row.dtype, "threads": row.threads, "rows": n,
        "sizes": row.sizes, "max_iter": row.epochs, "iters": iters,
        "median_s": med, "samples_s": samples,
        "info": {k: v[-1] for k, v in infos.items()},
        "s_per_iter": med["bpcore"] / max(iters, 1),
        "gemm_flops": flops, "peak_gflops": gflops, "peak_samples_gflops": peaks,
        "floor_s": floor_s,
        "floor_ratio": med["bpcore"] / floor_s,
        "bare_floor_ratio": med["bare"] / floor_s if "bare" in med else None,
    }
    for other in ("sklearn", "torch"):
        cell[f"{other}_ratio"] = med[other] / med["bpcore"] if other in med else None
    # the estimator over the bare engine (its overhead): the median of the rounds' ratios
    cell["bare_ratio"] = (statistics.median(a / b for a, b in zip(samples["bpcore"],
                                                                  samples["bare"]))
                          if "bare" in samples else None)
    kinds = ["all"]
    if row.solver == "lbfgs":
        kinds.append("lbfgs")
    elif row.case.startswith("large"):
        kinds.append("large-f32" if row.train_dtype else "large")
    else:
        kinds.append("digits")
    cell["targets"] = check_targets(kinds, cell)
    return cell


# ---------------------------------------------------------------------------------------------
# the report

def blas_info():
    from threadpoolctl import threadpool_info
    return [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "filepath",
                                     "num_threads")}
            for lib in threadpool_info() if lib.get("user_api") == "blas"]


COLUMNS = ["case", "estimator", "solver", "dtype", "threads", "iters", "bpcore s",
           "ms/iter", "× floor", "bare × floor", "sklearn/bpcore", "torch/bpcore",
           "bpcore/bare", "targets"]


def table_row(c):
    def ratio(x):
        return "–" if x is None else f"{x:.2f}"
    dtype = c["dtype"] if c["dtype"] == c["train_dtype"] else f"{c['dtype']}→{c['train_dtype']}"
    met = sum(t["met"] for t in c["targets"])
    vals = [c["case"], c["estimator"], c["solver"], dtype, str(c["threads"]), str(c["iters"]),
            f"{c['median_s']['bpcore']:.3f}", f"{1000 * c['s_per_iter']:.2f}",
            ratio(c["floor_ratio"]), ratio(c["bare_floor_ratio"]), ratio(c["sklearn_ratio"]),
            ratio(c["torch_ratio"]), ratio(c["bare_ratio"]), f"{met}/{len(c['targets'])}"]
    return "| " + " | ".join(vals) + " |"


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench_sklearn.py", description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default=",".join(CASES),
                    help="comma-separated rows, of: " + ", ".join(CASES))
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--threads", type=thread_list, default=thread_list("1,all"),
                    help='comma-separated thread counts, "all" for every core (default 1,all)')
    ap.add_argument("--repeats", type=int, default=None, help="timed fits of each (default 3)")
    ap.add_argument("--large-epochs", type=int, default=None)
    ap.add_argument("--digits-epochs", type=int, default=None)
    ap.add_argument("--lbfgs-iter", type=int, default=None)
    ap.add_argument("--large-n", type=int, default=None)
    ap.add_argument("--large-lbfgs-n", type=int, default=None)
    ap.add_argument("--large-lbfgs-iter", type=int, default=None)
    ap.add_argument("--pause", type=float, default=None,
                    help="seconds slept (untimed) before each fit, so that the previous "
                         "implementation's thread pool parks (default 0.3)")
    ap.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes and budgets: a smoke test of the script, not a measurement")
    ap.add_argument("--json", metavar="PATH", help="write the raw numbers to PATH")
    args = ap.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    for c in args.cases:
        if c not in CASES:
            ap.error(f"--cases: expected names from {', '.join(CASES)}, got {c!r}")
    args.dtypes = [d for d in args.dtypes.split(",") if d]
    for d in args.dtypes:
        if d not in ("float32", "float64"):
            ap.error(f"--dtypes: expected float32 and/or float64, got {d!r}")
    settings = dict(SETTINGS["quick" if args.quick else "full"])
    for key in ("repeats", "large_epochs", "digits_epochs", "lbfgs_iter", "large_n",
                "large_lbfgs_n", "large_lbfgs_iter", "pause"):
        value = getattr(args, key)
        if value is not None:
            if value < (0 if key == "pause" else 1):
                ap.error(f"--{key.replace('_', '-')}: expected a positive value, got {value}")
            settings[key] = value
    args.settings = settings
    return args


def import_optional(name, skip):
    if skip:
        return None
    try:
        return __import__(name)
    except ImportError:
        return None


def build_rows(args, data, threads, notes, has_dtype):
    s = args.settings
    rows = []
    for case in args.cases:
        for dtype in args.dtypes:
            if case.startswith("large"):
                X, y = data["large"]
                if case == "large-lbfgs":
                    X, y = X[:s["large_lbfgs_n"]], y[:s["large_lbfgs_n"]]
                hidden = s["large_hidden"]
                epochs = s["large_lbfgs_iter"] if case == "large-lbfgs" else s["large_epochs"]
            else:
                X, y = data["digits"]
                hidden = (100,)
                epochs = s["lbfgs_iter"] if "lbfgs" in case else s["digits_epochs"]
            if case.endswith("-reg"):
                y = y.astype(np.float64)
            X = np.ascontiguousarray(X, dtype)
            variants = [None]
            if case == "large-adam" and dtype == "float64":
                if has_dtype:
                    variants.append("float32")
                elif "no dtype" not in notes:
                    notes["no dtype"] = ("bpcore.sklearn's estimators have no dtype parameter: "
                                         "the row of float64 data trained in float32 is left "
                                         "out")
            for v in variants:
                rows.append(Row(case, X, y, hidden, epochs, threads, v))
    return rows


def main(argv=None):
    args = parse_args(argv)
    s = args.settings
    import scipy
    import sklearn
    import threadpoolctl
    from sklearn.exceptions import ConvergenceWarning

    from bpcore.sklearn import MLPClassifier

    torch = import_optional("torch", args.no_torch)
    skorch = import_optional("skorch", False)
    notes = {}
    if skorch is None:
        notes["skorch"] = "skorch is not installed: its column is left out"
    else:
        notes["skorch"] = ("skorch is installed but not timed: its loop is PyTorch's (the "
                           "torch column) plus its callbacks")
    if torch is None:
        notes["torch"] = "PyTorch left out" + (" (--no-torch)" if args.no_torch else
                                               " (not installed)")
    has_dtype = "dtype" in MLPClassifier().get_params()

    data = {}
    if any(c.startswith("large") for c in args.cases):
        data["large"] = large_data(s["large_n"])
    if any(c.startswith("digits") for c in args.cases):
        data["digits"] = digits_data()

    impls = {"bpcore": prepare_bpcore, "sklearn": prepare_sklearn, "bare": prepare_bare}
    if torch is not None:
        impls["torch"] = lambda *a: prepare_torch(torch, *a)

    cfg = {
        "bpcore": bpcore.__version__, "sklearn": sklearn.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__,
        "threadpoolctl": threadpoolctl.__version__,
        "torch": torch.__version__ if torch is not None else None,
        "skorch": getattr(skorch, "__version__", None),
        "python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "blas": blas_info(), "simd": _simd.LEVEL_NAMES.get(_simd.level()),
        "env": {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE",
                                                "OMP_WAIT_POLICY", "OMP_NUM_THREADS")},
        "threads": args.threads, "dtypes": args.dtypes, "cases": args.cases,
        "estimator_dtype_parameter": has_dtype, "settings": s, "quick": args.quick,
        "targets": TARGETS,
    }
    arch = sorted({str(b["architecture"]) for b in cfg["blas"]})
    print(f"bpcore {cfg['bpcore']} · scikit-learn {cfg['sklearn']} · torch "
          f"{cfg['torch'] or 'not used'} · numpy {cfg['numpy']} · SIMD {cfg['simd']}")
    print(f"CPU: {cfg['cpu']} ({cfg['cpu_count']} logical cores), OpenBLAS core type "
          f"{', '.join(arch)}; medians of {s['repeats']} interleaved fits")
    for note in notes.values():
        print("note: " + note)
    print()

    old_threads = bpcore.get_num_threads()
    old_torch = torch.get_num_threads() if torch is not None else None
    cells = []
    header_printed = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for t in args.threads:
                bpcore.set_num_threads(t)
                if torch is not None:
                    torch.set_num_threads(t)
                rows = build_rows(args, data, t, notes, has_dtype)
                if not header_printed:
                    print("| " + " | ".join(COLUMNS) + " |\n|" + "---|" * 3 + "---:|" *
                          (len(COLUMNS) - 3), flush=True)
                    header_printed = True
                for row in rows:
                    cells.append(measure_row(row, impls, s))
                    print(table_row(cells[-1]), flush=True)
    finally:
        bpcore.set_num_threads(old_threads)
        if torch is not None:
            torch.set_num_threads(old_torch)

    missed = [(c, t) for c in cells for t in c["targets"] if not t["met"]]
    if missed and not args.quick:  # a smoke test's timings mean nothing
        print("\ntargets missed:")
        for c, t in missed:
            dtype = c["dtype"] if c["dtype"] == c["train_dtype"] else \
                f"{c['dtype']}→{c['train_dtype']}"
            print(f"  {c['case']} {dtype} {c['threads']}t: {t['what']} {t['value']:.2f}, "
                  f"expected {t['op']} {t['bound']}")
    results = {"config": cfg, "notes": notes, "cells": cells}
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
