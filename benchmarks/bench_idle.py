"""What bpcore's idle OpenMP threads cost the Python work between native calls.

After a parallel region GNU libgomp's worker threads spin (busy-wait) before they sleep, so that
the next region starts without waking them; by default for 300,000 spins (about 9 ms on the
machine of the README's numbers). Between two back-to-back steps that is what makes them fast;
between an L-BFGS evaluation and the next (scipy's own work in between), or around NumPy work, it
takes a core from the code that runs meanwhile. The wait is set by libgomp's environment
(GOMP_SPINCOUNT, OMP_WAIT_POLICY, read once when libgomp loads), so each setting runs in its own
process: every round runs one child per setting, in turn, and the tables give medians over rounds.

Measured in each child, bpcore on 2 threads (explicitly), float32:
  lbfgs    fit_lbfgs of MLP [20, 64, 1] (tanh) on a 450 x 20 regression, 200 iterations: wall s
  lbfgs_cpu  the CPU seconds the process's other threads (bpcore's, the BLAS's) used meanwhile
  user_lbfgs the same fit as a user would write it: scipy.optimize.minimize calling
           bpcore.training.loss_and_gradient (scipy's BLAS not pinned between calls): wall s
  step     200 train_step calls of MLP [784, 256, 128, 10], SGD, at batches 1, 32, 128, on 2
           threads and on 1 thread: median us per call (pacing as users get it; --pacing off
           keeps every step on its threads, for an idle machine)
  mixed    200 turns of (200 x 200 NumPy matmul on 1 BLAS thread, predict of 32 rows,
           train_step of 32 rows): median us per turn
  pair     two processes at once, each the lbfgs fit (2 threads each): the slower one's wall s

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_idle.py
    ... --settings "main=PYTHONPATH=/path/to/other/build;bpcore=" --only steps --rounds 10
    ... --sweep 0,1k,10k,30k,100k,300k     # GOMP_SPINCOUNT values, besides the settings
    ... --only lbfgs                        # the L-BFGS fits (and the pair) alone

A setting is name=VAR=VALUE[,VAR=VALUE...]; an empty one is bpcore's own choice (nothing set).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

DEFAULT_SETTINGS = "libgomp=GOMP_SPINCOUNT=300000;passive=OMP_WAIT_POLICY=passive;bpcore="
WAIT_VARS = ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def lbfgs_seconds():
    import scipy.optimize  # noqa: F401  (imported before the clock starts)

    import bpcore
    from bpcore.training import fit_lbfgs
    rng = np.random.default_rng(0)
    X = rng.standard_normal((450, 20)).astype(np.float32)
    y = (np.sin(X[:, :3]).sum(1, keepdims=True) + 0.1 * rng.standard_normal((450, 1))
         ).astype(np.float32)
    model = bpcore.MLP([20, 64, 1], activation="tanh", seed=0)
    t0, cpu0, main0 = time.perf_counter(), time.process_time(), time.thread_time()
    out = fit_lbfgs(model, X, y, loss=bpcore.MSELoss(), optimizer=bpcore.LBFGS(max_iter=200))
    wall = time.perf_counter() - t0
    others = (time.process_time() - cpu0) - (time.thread_time() - main0)
    return wall, others, int(out["result"].nfev)


def user_lbfgs_seconds():
    """The same fit written by a user: scipy.optimize.minimize around loss_and_gradient (no
    pinning of scipy's BLAS around scipy's own work, unlike fit_lbfgs)."""
    import scipy.optimize

    import bpcore
    from bpcore.training import loss_and_gradient
    rng = np.random.default_rng(0)
    X = rng.standard_normal((450, 20)).astype(np.float32)
    y = (np.sin(X[:, :3]).sum(1, keepdims=True) + 0.1 * rng.standard_normal((450, 1))
         ).astype(np.float32)
    model = bpcore.MLP([20, 64, 1], activation="tanh", seed=0)
    loss = bpcore.MSELoss()

    def objective(w):
        model.flat_params[...] = w
        value, grad = loss_and_gradient(model, X, y, loss)
        return value, grad.astype(np.float64)

    t0 = time.perf_counter()
    scipy.optimize.minimize(objective, model.flat_params.astype(np.float64), jac=True,
                            method="L-BFGS-B", options={"maxiter": 200})
    return time.perf_counter() - t0


def step_us(threads, batch, steps=200):
    import bpcore
    rng = np.random.default_rng(1)
    X = rng.standard_normal((batch, 784)).astype(np.float32)
    y = rng.integers(0, 10, batch)
    model = bpcore.MLP([784, 256, 128, 10], seed=1)
    opt = bpcore.SGD(model, lr=1e-3, momentum=0.9)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    times = []
    with bpcore.num_threads(threads):
        for _ in range(20):
            model.train_step(X, y, loss, opt)
        for _ in range(steps):
            t0 = time.perf_counter()
            model.train_step(X, y, loss, opt)
            times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def mixed_us(turns=200):
    import bpcore
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(2)
    A = rng.standard_normal((200, 200))
    B = rng.standard_normal((200, 200))
    X = rng.standard_normal((32, 784)).astype(np.float32)
    y = rng.integers(0, 10, 32)
    model = bpcore.MLP([784, 256, 128, 10], seed=2)
    opt = bpcore.SGD(model, lr=1e-3)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    times = []
    with threadpool_limits(1, user_api="blas"):
        for i in range(turns + 20):
            t0 = time.perf_counter()
            A @ B
            model.predict(X)
            model.train_step(X, y, loss, opt)
            if i >= 20:
                times.append(time.perf_counter() - t0)
    return 1e6 * statistics.median(times)


def child(what, pacing):
    import bpcore
    from bpcore import _threads
    bpcore.set_num_threads(2)
    _threads.set_pacing(pacing)  # "off": every 2-thread step on 2 threads, even under load
    out = {}
    if what in ("all", "lbfgs", "pair"):
        out["lbfgs"], out["lbfgs_cpu"], out["nfev"] = lbfgs_seconds()
    if what in ("all", "lbfgs"):
        out["user_lbfgs"] = user_lbfgs_seconds()
    if what in ("all", "steps"):
        for threads in (2, 1):
            for batch in (1, 32, 128):
                out[f"step{threads}t_b{batch}"] = step_us(threads, batch)
    if what == "all":
        out["mixed"] = mixed_us()
    print(json.dumps(out))


def parse_settings(text):
    settings = {}
    for item in filter(None, (s.strip() for s in text.split(";"))):
        name, _, assignments = item.partition("=")
        env = {}
        for a in filter(None, assignments.split(",")):
            var, _, value = a.partition("=")
            env[var] = value
        settings[name] = env
    return settings


def env_for(extra):
    env = {k: v for k, v in os.environ.items() if k not in WAIT_VARS}
    env.update(extra)
    return env


def run_child(extra, what, pacing):
    cmd = [sys.executable, __file__, "--child", what, "--pacing", pacing]
    return json.loads(subprocess.run(cmd, env=env_for(extra), check=True, capture_output=True,
                                     text=True).stdout)


def run_pair(extra, pacing):
    cmd = [sys.executable, __file__, "--child", "pair", "--pacing", pacing]
    procs = [subprocess.Popen(cmd, env=env_for(extra), stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    return max(json.loads(p.communicate()[0])["lbfgs"] for p in procs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default=DEFAULT_SETTINGS)
    ap.add_argument("--sweep", default="", help="GOMP_SPINCOUNT values to add as settings")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--no-pair", action="store_true")
    ap.add_argument("--only", choices=("all", "steps", "lbfgs"), default="all",
                    help="steps: the train_step loops alone; lbfgs: the two L-BFGS fits")
    ap.add_argument("--pacing", choices=("on", "off"), default="on",
                    help="bpcore's pacing on a busy machine (on: as users get it)")
    ap.add_argument("--json")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args.child, args.pacing)
    settings = parse_settings(args.settings)
    for count in filter(None, args.sweep.split(",")):
        settings[f"spin={count}"] = {"GOMP_SPINCOUNT": count}
    results = {name: [] for name in settings}
    names = list(settings)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            row = run_child(settings[name], args.only, args.pacing)
            if not args.no_pair:
                row["pair"] = run_pair(settings[name], args.pacing)
            results[name].append(row)
            print(f"round {r} {name}: {row}", file=sys.stderr)
    keys = list(results[names[0]][0])
    print("| setting | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for name in names:
        med = {k: statistics.median(row[k] for row in results[name]) for k in keys}
        print(f"| {name} | " + " | ".join(f"{med[k]:.0f}" if k.startswith("step") or k == "mixed"
                                          else f"{med[k]:.3g}" for k in keys) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"settings": settings, "results": results}, fh, indent=1)


if __name__ == "__main__":
    main()
