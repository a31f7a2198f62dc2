"""Data-parallel training over MPI: measured throughput on this machine, and a model of it
across machines.

Run under mpiexec, one table per rank count:

    mpiexec -n 2 python benchmarks/bench_mpi.py [--batches 16,64,256] [--json PATH]

or let the script launch ``mpiexec -n P`` for each P itself (the mpiexec next to this Python,
else the one on PATH) and print one combined table:

    python benchmarks/bench_mpi.py --ranks 1,2 [--batches 16,64,256] [--json PATH]

The network: MLP 784-256-128-10 (235,146 parameters), float32, ReLU, softmax cross-entropy,
SGD lr 0.01 momentum 0.9, on 8,192 synthetic rows (standard normal X, uniform labels; the
timing does not depend on the values), every rank holding its ``bpcore.distributed.shard``.
Each rank runs ``bpcore.distributed.default_threads`` threads (usable cores // ranks on the
machine) unless ``--threads`` says otherwise. Per batch size per rank b:

- samples/s: ``model.fit(X_shard, y_shard, batch_size=b, comm=COMM)`` over 1 warm-up epoch and
  ``--epochs`` timed ones; an epoch's time is its logged ``seconds`` on the slowest rank, and
  samples/s the 8,192 rows (all ranks together) over the median epoch;
- allreduce µs: one ``COMM.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)`` on a float32 buffer of
  the network's 235,146 parameters (the call fit makes each step), timed after a barrier;
  the median over ``--allreduce-reps`` calls, on the slowest rank;
- step µs: ``model.train_step`` at batch b without comm, on every rank at once with its own
  threads (the compute of one data-parallel step under the same sharing of the cores); the
  median of blocks of steps, on the slowest rank.

Speedups compare with the 1-rank run at the same batch per rank (P times the samples per
step) and at the same global batch P·b (the same optimisation, split over the ranks); the
driver runs 1 rank at every P·b too. ``--baseline`` gives a 1-rank JSON to a run under
mpiexec for the same columns.

The scaling model (``scaling_model``): one step on p machines takes one machine's compute at
batch b plus a ring allreduce of the gradient, not overlapped (bpcore reduces between backward
and update): ``2(p-1)/p · bytes / bandwidth + 2(p-1) · latency`` (each of the 2(p-1) rounds
moves bytes/p over every link and pays one latency). The assumed networks are in NETWORKS.
Its inputs are measured by rank 0 of the first run at the machine's full thread count while the
other ranks sleep (``--model-batches``, default 16..1024): per batch, train_step's time, and
fit's seconds per step over the 8,192 rows without comm ("step": one machine on its own) and
with a 1-process comm ("path": the data-parallel step's own compute, which forms the whole
gradient, reduces it, checks it and then applies it, where the plain step applies it block by
block as its GEMMs form it), alternating. Efficiency = step / (step + allreduce), predicted
samples/s = p·b / (step + allreduce); and again with the path: step / (path + allreduce) and
p·b / (path + allreduce) (the speedup over one machine training alone, over p). Per network
and p, the smallest batch per machine with efficiency ≥ 80 %, by linear interpolation between
the measured batches (past the largest along the last segment, marked "extrapolated").

Rank 0 prints the tables (Markdown) to stdout, progress to stderr; ``--json`` writes every
measurement (the driver: the runs, the combined cells and the model).
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import bpcore
from bpcore.bench import cpu_model, int_list, write_json

SIZES = (784, 256, 128, 10)
ROWS = 8192
LR, MOMENTUM = 0.01, 0.9
DEFAULT_BATCHES = (16, 64, 256)
MODEL_BATCHES = (16, 32, 64, 128, 256, 512, 1024)
# (name, bandwidth bytes/s, latency s): the assumed figures of the scaling model; bandwidth is
# the link's line rate, latency one small message's end-to-end time through the MPI stack
NETWORKS = (("10 GbE", 1.25e9, 20e-6), ("25 GbE", 3.1e9, 10e-6),
            ("100 GbE", 12.5e9, 5e-6), ("InfiniBand HDR", 25e9, 1e-6))
MACHINES = (2, 4, 8, 16, 64)
TARGET_EFFICIENCY = 0.8
BLOCK_S = 0.02  # a step timing block's length: long enough to dwarf perf_counter's cost


# ---------------------------------------------------------------------------------------------
# the scaling model

def ring_allreduce_seconds(nbytes, machines, bandwidth, latency):
    """A ring allreduce of nbytes over `machines` machines: reduce-scatter then allgather,
    2(p-1) rounds each moving nbytes/p over every link and paying one latency."""
    p = machines
    if p < 2:
        return 0.0
    return 2 * (p - 1) / p * nbytes / bandwidth + 2 * (p - 1) * latency


def efficiency(step, allreduce):
    """The share of a data-parallel step spent computing, with no overlap of the reduction."""
    return step / (step + allreduce)


def smallest_batch(steps, allreduce, target=TARGET_EFFICIENCY, path_steps=None):
    """(batch, how): the smallest batch per machine at efficiency ≥ target, from the measured
    {batch: seconds} of one machine's step, by linear interpolation between measured batches.
    Efficiency is step / (path + allreduce), path the data-parallel step's compute
    (path_steps; the same as steps if None, the plain model step / (step + allreduce)), so the
    condition is step - target·path ≥ target·allreduce. how: "measured" (met at the smallest
    measured batch: that batch), "interpolated", "extrapolated" (past the largest, along the
    last segment), or "never" (batch None: the last segment does not approach the target)."""
    path_steps = steps if path_steps is None else path_steps
    bs = sorted(set(steps) & set(path_steps))
    margin = {b: steps[b] - target * path_steps[b] for b in bs}
    need = target * allreduce
    if margin[bs[0]] >= need:
        return bs[0], "measured"
    for b0, b1 in zip(bs, bs[1:]):
        if margin[b1] >= need:
            m0, m1 = margin[b0], margin[b1]
            return whole(b0 + (need - m0) * (b1 - b0) / (m1 - m0)), "interpolated"
    if len(bs) < 2 or margin[bs[-1]] <= margin[bs[-2]]:
        return None, "never"
    b0, b1 = bs[-2], bs[-1]
    slope = (margin[b1] - margin[b0]) / (b1 - b0)
    return whole(b1 + (need - margin[b1]) / slope), "extrapolated"


def whole(batch):
    """The smallest whole batch at or above `batch`, forgiving the round-off of the
    interpolation (a threshold that is 300 exactly comes out as 300.00000000000006)."""
    return int(np.ceil(batch - 1e-9 * max(1.0, abs(batch))))


def scaling_model(steps, nbytes, path_steps=None, networks=NETWORKS, machines=MACHINES,
                  target=TARGET_EFFICIENCY):
    """The model's predictions from one machine's measured {batch per machine: step seconds}:
    {"allreduce": per (network, p) the seconds, "cells": per (network, p, batch) the step,
    allreduce, efficiency = step / (step + allreduce), samples/s = p·b / (step + allreduce)
    and speedup over one machine at the same batch (p · efficiency), "threshold": per
    (network, p) the smallest batch per machine at efficiency ≥ target}. With path_steps
    (the data-parallel step's own compute per batch, measured), each cell and threshold also
    has the "_path" figures: a step on p machines takes path + allreduce, so efficiency =
    step / (path + allreduce) and samples/s = p·b / (path + allreduce)."""
    allreduce, cells, threshold = [], [], []
    for name, bandwidth, latency in networks:
        for p in machines:
            reduce_s = ring_allreduce_seconds(nbytes, p, bandwidth, latency)
            allreduce.append({"network": name, "machines": p, "allreduce_s": reduce_s})
            for b in sorted(steps):
                step = steps[b]
                eff = efficiency(step, reduce_s)
                cell = {"network": name, "machines": p, "batch": b, "global_batch": p * b,
                        "step_s": step, "allreduce_s": reduce_s, "efficiency": eff,
                        "samples_per_s": p * b / (step + reduce_s), "speedup": p * eff}
                if path_steps is not None and b in path_steps:
                    path = path_steps[b]
                    cell.update(path_step_s=path,
                                efficiency_path=step / (path + reduce_s),
                                samples_per_s_path=p * b / (path + reduce_s),
                                speedup_path=p * step / (path + reduce_s))
                cells.append(cell)
            batch, how = smallest_batch(steps, reduce_s, target)
            row = {"network": name, "machines": p, "batch": batch, "how": how}
            if path_steps is not None:
                row["batch_path"], row["how_path"] = smallest_batch(steps, reduce_s, target,
                                                                    path_steps)
            threshold.append(row)
    return {"bytes": nbytes, "target_efficiency": target,
            "networks": [{"name": n, "bandwidth_bytes_per_s": bw, "latency_s": lat}
                         for n, bw, lat in networks],
            "machines": list(machines), "allreduce": allreduce, "cells": cells,
            "threshold": threshold}


# ---------------------------------------------------------------------------------------------
# measurements on the ranks

def make_data(seed=0):
    """The same 8,192 rows on every rank (each then takes its shard)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, SIZES[0]), dtype=np.float32)
    y = rng.integers(0, SIZES[-1], ROWS)
    return X, y


def new_model():
    model = bpcore.MLP(SIZES, activation="relu", dtype="float32", seed=0)
    return model, bpcore.SoftmaxCrossEntropyLoss(), bpcore.SGD(model, lr=LR, momentum=MOMENTUM)


def rows_of(X, y, batch):
    """The first `batch` rows of X, y (repeated if there are fewer)."""
    if batch > X.shape[0]:
        reps = -(-batch // X.shape[0])
        X, y = np.concatenate([X] * reps), np.concatenate([y] * reps)
    return np.ascontiguousarray(X[:batch]), np.ascontiguousarray(y[:batch])


def step_seconds(X, y, seconds):
    """Median seconds of one ``train_step`` (no comm) on X, y: blocks of k steps (k so that a
    block takes about BLOCK_S) for `seconds` after a warm-up."""
    model, loss, opt = new_model()
    t0 = time.perf_counter()
    k = 0
    while time.perf_counter() - t0 < 0.1 or k < 3:  # warm-up; also calibrates k
        model.train_step(X, y, loss, opt)
        k += 1
    per = (time.perf_counter() - t0) / k
    k = max(1, int(BLOCK_S / per))
    samples = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(samples) < 5:
        t0 = time.perf_counter()
        for _ in range(k):
            model.train_step(X, y, loss, opt)
        samples.append((time.perf_counter() - t0) / k)
    return statistics.median(samples)


def allreduce_seconds(comm, n, reps):
    """Median seconds of one in-place float32 Allreduce of n values, each after a barrier."""
    from mpi4py import MPI
    buf = np.ones(n, dtype=np.float32)
    for _ in range(10):
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        buf.fill(1.0)  # keep the sums finite and of one size
    times = []
    for _ in range(reps):
        comm.Barrier()
        t0 = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        times.append(time.perf_counter() - t0)
        buf.fill(1.0)
    return statistics.median(times)


def fit_epochs(comm, X, y, batch, epochs):
    """This rank's logged seconds of 1 warm-up + `epochs` epochs of fit with comm."""
    model, loss, opt = new_model()
    seconds = []
    model.fit(X, y, loss=loss, optimizer=opt, epochs=1 + epochs, batch_size=batch,
              shuffle=True, seed=1, comm=comm,
              callbacks=lambda epoch, logs: seconds.append(logs["seconds"]))
    return seconds


def polite_barrier(comm):
    """A barrier that sleeps while it waits (MPICH's blocking one spins on a core, which
    would slow the step rank 0 times meanwhile)."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def blas_kernel():
    """The OpenBLAS that bpcore calls, as threadpoolctl reports it."""
    from threadpoolctl import threadpool_info

    from bpcore.threads import BLAS_LIBRARY
    for lib in threadpool_info():
        if lib.get("user_api") == "blas" and lib.get("filepath") == BLAS_LIBRARY:
            return {k: lib.get(k) for k in ("internal_api", "version", "architecture")}
    blas = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    return {k: blas[0].get(k) for k in ("internal_api", "version", "architecture")} \
        if blas else {}


def rank_run(args):
    """The measurements of one mpiexec run; the results dict on rank 0, None elsewhere."""
    from mpi4py import MPI

    from bpcore import distributed
    from bpcore.threads import usable_cpus
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    threads = args.threads or distributed.default_threads(comm)
    bpcore.set_num_threads(threads)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if rank == 0 else \
        (lambda text: None)
    load_before = os.getloadavg()
    X, y = make_data()
    Xs, ys = distributed.shard(X, y, comm)
    n_params = new_model()[0].flat_grads.size

    cells = []
    for b in args.batches:
        say(f"ranks {size}, batch per rank {b}: fit")
        comm.Barrier()
        epochs = np.array(comm.allgather(fit_epochs(comm, Xs, ys, b, args.epochs)))
        slowest = epochs.max(axis=0)[1:]  # per timed epoch, the slowest rank's seconds
        epoch_s = statistics.median(slowest)
        say(f"ranks {size}, batch per rank {b}: allreduce, step")
        reduce_s = max(comm.allgather(allreduce_seconds(comm, n_params, args.allreduce_reps)))
        comm.Barrier()
        Xb, yb = rows_of(Xs, ys, b)
        step_s = max(comm.allgather(step_seconds(Xb, yb, args.step_seconds)))
        steps_per_epoch = -(-max(comm.allgather(Xs.shape[0])) // b)
        cells.append({"ranks": size, "threads_per_rank": threads, "batch": b,
                      "global_batch": size * b, "epoch_s": epoch_s,
                      "epoch_s_all": slowest.tolist(), "steps_per_epoch": steps_per_epoch,
                      "samples_per_s": ROWS / epoch_s, "fit_step_s": epoch_s / steps_per_epoch,
                      "allreduce_s": reduce_s, "step_s": step_s,
                      "allreduce_over_step": reduce_s / step_s})

    # one machine's step at its full thread count, for the scaling model (rank 0 alone)
    full = usable_cpus()
    model_steps = {}
    if args.model_batches:
        if rank == 0:
            with bpcore.num_threads(full):
                for b in args.model_batches:
                    say(f"scaling model: batch {b}, {full} threads")
                    model_steps[b] = machine_steps(X, y, b, args)
                    reuse = [c for c in cells if c["batch"] == b and size == 1
                             and c["threads_per_rank"] == full]
                    model_steps[b]["train_step_s"] = reuse[0]["step_s"] if reuse else \
                        step_seconds(*rows_of(X, y, b), args.step_seconds)
        polite_barrier(comm)
    if rank != 0:
        return None
    return {"config": run_config(args, size, threads, full, n_params, load_before),
            "cells": cells,
            "model_steps": {"threads": full,
                            "batches": {str(b): m for b, m in model_steps.items()}}}


def machine_steps(X, y, batch, args):
    """One machine's seconds per step of fit over all the rows at `batch`: without comm
    ("fit_s", the single machine's step) and with a 1-process comm ("path_s": the
    data-parallel step's compute, whose gradient is formed whole, reduced, checked, then
    applied, where the plain step applies it block by block as it is formed). Alternating,
    `args.model_rounds` rounds of 1 + 2 epochs each; medians of the timed epochs."""
    from mpi4py import MPI
    plain, path = [], []
    steps = -(-X.shape[0] // batch)
    for r in range(args.model_rounds):
        order = ((None, plain), (MPI.COMM_SELF, path))
        for comm, out in order if r % 2 == 0 else order[::-1]:
            out.extend(s / steps for s in fit_epochs(comm, X, y, batch, 2)[1:])
    return {"fit_s": statistics.median(plain), "path_s": statistics.median(path),
            "fit_s_all": plain, "path_s_all": path}


def run_config(args, size, threads, full, n_params, load_before):
    import mpi4py
    from mpi4py import MPI
    return {"bpcore": bpcore.__version__, "python": sys.version.split()[0],
            "numpy": np.__version__, "mpi4py": mpi4py.__version__,
            "mpi": MPI.Get_library_version().strip().splitlines()[0],
            "cpu": cpu_model(), "cpu_count": os.cpu_count(), "usable_cpus": full,
            "blas": blas_kernel(), "ranks": size, "threads_per_rank": threads,
            "sizes": list(SIZES), "parameters": n_params, "dtype": "float32",
            "loss": "softmax cross-entropy", "optimizer": f"SGD lr {LR} momentum {MOMENTUM}",
            "rows": ROWS, "batches": args.batches, "epochs": args.epochs,
            "allreduce_reps": args.allreduce_reps, "step_seconds": args.step_seconds,
            "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()),
            "openblas_env": {k: os.environ.get(k) for k in
                             ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS")}}


# ---------------------------------------------------------------------------------------------
# combining runs, tables

def with_speedups(runs):
    """Every run's cells, each with its speedups over the 1-rank run (None where that run or
    its batch is missing)."""
    one = {c["batch"]: c["samples_per_s"] for c in runs.get(1, {}).get("cells", [])}
    cells = []
    for size in sorted(runs):
        for c in runs[size]["cells"]:
            c = dict(c)
            same_b, same_global = one.get(c["batch"]), one.get(c["global_batch"])
            c["speedup_same_batch"] = c["samples_per_s"] / same_b if same_b else None
            c["speedup_same_global_batch"] = (c["samples_per_s"] / same_global
                                              if same_global else None)
            cells.append(c)
    return cells


def fmt(value, spec, none="—"):
    return none if value is None else format(value, spec)


def markdown(head, rows):
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def measured_table(cells):
    head = ["ranks", "threads/rank", "batch/rank", "global batch", "samples/s",
            "speedup (same b)", "speedup (same global)", "fit µs/step", "allreduce µs",
            "step µs", "allreduce/step"]
    rows = [[str(c["ranks"]), str(c["threads_per_rank"]), str(c["batch"]),
             str(c["global_batch"]), f"{c['samples_per_s']:,.0f}",
             fmt(c.get("speedup_same_batch"), ".2f"),
             fmt(c.get("speedup_same_global_batch"), ".2f"),
             f"{c['fit_step_s'] * 1e6:,.0f}", f"{c['allreduce_s'] * 1e6:,.1f}",
             f"{c['step_s'] * 1e6:,.0f}", f"{c['allreduce_over_step']:.2f}"] for c in cells]
    return markdown(head, rows)


def machine_table(model_steps):
    """One machine's measured steps at its full thread count, the model's inputs."""
    rows = []
    for b, m in sorted(model_steps["batches"].items(), key=lambda kv: int(kv[0])):
        rows.append([b, f"{m['train_step_s'] * 1e6:,.0f}", f"{m['fit_s'] * 1e6:,.0f}",
                     f"{m['path_s'] * 1e6:,.0f}", f"{m['path_s'] / m['fit_s']:.2f}",
                     f"{int(b) / m['fit_s']:,.0f}"])
    return markdown(["batch", "train_step µs", "fit µs/step", "data-parallel path µs/step",
                     "path/fit", "fit samples/s"], rows)


def model_tables(model, batches=None):
    """The scaling model as Markdown tables: the allreduce per (network, p); efficiency and
    samples/s per (network, batch) and p, plain and with the data-parallel path's cost; the
    smallest batch at the target efficiency."""
    ps = model["machines"]
    names = [n["name"] for n in model["networks"]]
    ar = {(a["network"], a["machines"]): a["allreduce_s"] for a in model["allreduce"]}
    nets = {n["name"]: n for n in model["networks"]}
    t_allreduce = markdown(
        ["network (assumed)"] + [f"p={p} µs" for p in ps],
        [[f"{n} ({nets[n]['bandwidth_bytes_per_s'] / 1e9:g} GB/s, "
          f"{nets[n]['latency_s'] * 1e6:g} µs)"] + [f"{ar[n, p] * 1e6:,.0f}" for p in ps]
         for n in names])
    by = {(c["network"], c["machines"], c["batch"]): c for c in model["cells"]}
    shown = [b for b in sorted({c["batch"] for c in model["cells"]})
             if batches is None or b in batches]

    def efficiencies(suffix):
        rows = []
        for n in names:
            for b in shown:
                if "efficiency" + suffix not in by[n, ps[0], b]:
                    continue
                rows.append([n, str(b)] + [f"{by[n, p, b]['efficiency' + suffix]:.0%} · "
                                           f"{by[n, p, b]['samples_per_s' + suffix]:,.0f}"
                                           for p in ps])
        return markdown(["network", "batch/machine"] + [f"p={p}: eff · samples/s" for p in ps],
                        rows) if rows else None
    th = {(t["network"], t["machines"]): t for t in model["threshold"]}

    def cell(batch, how):
        if batch is None:
            return "never"
        if how == "measured":
            return f"≤ {batch}"
        return f"{batch:,}" + (" (extrap.)" if how == "extrapolated" else "")
    rows = []
    for n in names:
        rows.append([n, "step / (step + allreduce)"]
                    + [cell(th[n, p]["batch"], th[n, p]["how"]) for p in ps])
        if "batch_path" in th[n, ps[0]]:
            rows.append([n, "step / (path + allreduce)"]
                        + [cell(th[n, p]["batch_path"], th[n, p]["how_path"]) for p in ps])
    t_threshold = markdown(["network", "efficiency"] + [f"p={p}" for p in ps], rows)
    return t_allreduce, efficiencies(""), efficiencies("_path"), t_threshold


def header(cfg, runs):
    blas = cfg["blas"]
    threads = ", ".join(f"{r} rank{'s' if r > 1 else ''} × {runs[r]['config']['threads_per_rank']}"
                        f" thread{'s' if runs[r]['config']['threads_per_rank'] > 1 else ''}"
                        for r in sorted(runs))

    def triples(value):  # one run's (1, 5, 15 min) load averages, or a list per round
        return value if isinstance(value[0], list) else [value]

    loads = "; ".join(
        f"{r} rank{'s' if r > 1 else ''}: " + ", ".join(
            f"{before[0]:.2f} → {after[0]:.2f}" for before, after in
            zip(triples(runs[r]["config"]["load_average_before"]),
                triples(runs[r]["config"]["load_average_after"])))
        for r in sorted(runs))
    rounds = cfg.get("rounds", 1)
    return "\n".join([
        f"bpcore {cfg['bpcore']} · {cfg['mpi']} · mpi4py {cfg['mpi4py']} · numpy "
        f"{cfg['numpy']} · Python {cfg['python']}",
        f"CPU: {cfg['cpu']} ({cfg['cpu_count']} logical cores, {cfg['usable_cpus']} usable), "
        f"BLAS {blas.get('internal_api')} {blas.get('version')} ({blas.get('architecture')})",
        f"threads per rank: {threads}",
        f"MLP {'-'.join(map(str, cfg['sizes']))} {cfg['dtype']} ({cfg['parameters']:,} "
        f"parameters), ReLU, {cfg['loss']}, {cfg['optimizer']}; {cfg['rows']:,} synthetic rows "
        f"sharded over the ranks; fit: median of {cfg['epochs']} epochs after 1 warm-up (slowest "
        f"rank)" + (f" × {rounds} runs per rank count, alternating" if rounds > 1 else "")
        + f"; allreduce: median of {cfg['allreduce_reps']} after a barrier; step: "
        f"train_step without comm, every rank at once, median of blocks over "
        f"{cfg['step_seconds']:g} s",
        f"1-minute load average before → after each run: {loads}",
    ])


def report(runs, model_batches=None):
    """Print the measured and the model's tables; the combined results."""
    first = runs[min(runs)]
    cfg = first["config"]
    cells = with_speedups(runs)
    print(header(cfg, runs))
    print()
    print(measured_table(cells))
    results = {"config": cfg, "runs": {str(r): runs[r] for r in sorted(runs)}, "cells": cells}
    ms = first["model_steps"]
    if not ms["batches"]:
        return results
    fit = {int(b): m["fit_s"] for b, m in ms["batches"].items()}
    path = {int(b): m["path_s"] for b, m in ms["batches"].items()}
    model = scaling_model(fit, cfg["parameters"] * 4, path_steps=path)
    results["scaling_model"] = dict(model, step_threads=ms["threads"])
    t_allreduce, t_eff, t_eff_path, t_threshold = model_tables(model, model_batches)
    target = model["target_efficiency"]
    print(f"\none machine, {ms['threads']} threads (rank 0 of the {min(runs)}-rank run"
          + ("s" if cfg.get("rounds", 1) > 1 else "") + ", any others asleep): train_step at the batch (no comm); fit's seconds per step over "
          f"the {cfg['rows']:,} rows without comm and with a 1-process comm (the "
          f"data-parallel path: gradient formed whole, reduced, checked, then applied), "
          f"alternating, medians\n")
    print(machine_table(ms))
    print(f"\nscaling model: ring allreduce of {cfg['parameters'] * 4:,} bytes (the float32 "
          f"gradient) = 2(p−1)/p · bytes/bandwidth + 2(p−1) · latency, not overlapped with "
          f"compute; step = one machine's fit µs/step above\n")
    print(t_allreduce)
    print("\nefficiency = step / (step + allreduce), samples/s = p·b / (step + allreduce):\n")
    print(t_eff)
    if t_eff_path:
        print("\nthe same with the data-parallel path's own compute: efficiency = step / "
              "(path + allreduce), samples/s = p·b / (path + allreduce):\n")
        print(t_eff_path)
    print(f"\nsmallest batch per machine with efficiency ≥ {target:.0%} (interpolated between "
          f"the measured batches {min(fit)}..{max(fit)}; extrap.: past them):\n")
    print(t_threshold)
    return results


# ---------------------------------------------------------------------------------------------
# the driver

def find_mpiexec():
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = here if os.access(here, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        raise SystemExit("--ranks: no mpiexec next to this Python or on PATH "
                         "(pip install 'bpcore[mpi]')")
    return found


def drive(args):
    """Launch mpiexec -n P for each P of --ranks, --rounds times in turn (P = 1, 2, 1, 2, ...:
    a change in the machine's load hits every rank count alike); one 1-rank run covers every
    P·b too. Returns {P: the rounds merged (merge_rounds)}."""
    import json
    mpiexec = find_mpiexec()
    ranks = sorted(set(args.ranks))
    rounds = {p: [] for p in ranks}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, p in enumerate(ranks):
                batches = set(args.batches)
                if p == 1:
                    batches |= {q * b for q in ranks for b in args.batches}
                out = os.path.join(tmp, f"ranks{p}_round{r}.json")
                cmd = [mpiexec, "-n", str(p), sys.executable, os.path.abspath(__file__),
                       "--batches", ",".join(map(str, sorted(batches))), "--json", out,
                       "--quiet", "--epochs", str(args.epochs),
                       "--allreduce-reps", str(args.allreduce_reps),
                       "--step-seconds", str(args.step_seconds),
                       "--model-rounds", str(args.model_rounds),
                       "--model-batches",
                       ",".join(map(str, args.model_batches)) if i == 0 else "none"]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                print(f"round {r + 1}/{args.rounds}: $ " + " ".join(cmd), file=sys.stderr,
                      flush=True)
                subprocess.run(cmd, check=True)
                with open(out) as f:
                    rounds[p].append(json.load(f))
    return {p: merge_rounds(rounds[p]) for p in ranks}


def merge_rounds(results):
    """Several runs of one rank count as one: per batch, the epochs of every round pooled (the
    median of all of them), the allreduce and the step the median of the rounds' medians; the
    scaling model's fits pooled the same way. The rounds themselves are kept ("rounds")."""
    if len(results) == 1:
        return results[0]
    cfg = dict(results[0]["config"])
    cfg["rounds"] = len(results)
    cfg["load_average_before"] = [r["config"]["load_average_before"] for r in results]
    cfg["load_average_after"] = [r["config"]["load_average_after"] for r in results]
    cells = []
    for first in results[0]["cells"]:
        same = [c for r in results for c in r["cells"] if c["batch"] == first["batch"]]
        epochs = [s for c in same for s in c["epoch_s_all"]]
        cell = dict(first, epoch_s_all=epochs, epoch_s=statistics.median(epochs),
                    allreduce_s=statistics.median(c["allreduce_s"] for c in same),
                    step_s=statistics.median(c["step_s"] for c in same))
        cell.update(samples_per_s=ROWS / cell["epoch_s"],
                    fit_step_s=cell["epoch_s"] / cell["steps_per_epoch"],
                    allreduce_over_step=cell["allreduce_s"] / cell["step_s"])
        cells.append(cell)
    batches = {}
    for b in results[0]["model_steps"]["batches"]:
        same = [r["model_steps"]["batches"][b] for r in results]
        fit = [s for m in same for s in m["fit_s_all"]]
        path = [s for m in same for s in m["path_s_all"]]
        batches[b] = {"fit_s": statistics.median(fit), "path_s": statistics.median(path),
                      "fit_s_all": fit, "path_s_all": path,
                      "train_step_s": statistics.median(m["train_step_s"] for m in same)}
    return {"config": cfg, "cells": cells,
            "model_steps": dict(results[0]["model_steps"], batches=batches),
            "rounds": results}


def batch_list(text):
    if text.strip().lower() in ("", "none"):
        return []
    values = int_list(text)
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected batch sizes ≥ 1, got {text}")
    return values


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ranks", type=batch_list, default=None,
                    help="driver mode: run mpiexec -n P for each P (e.g. 1,2) and combine")
    ap.add_argument("--batches", type=batch_list, default=list(DEFAULT_BATCHES),
                    help="batch sizes per rank (default 16,64,256)")
    ap.add_argument("--model-batches", type=batch_list, default=list(MODEL_BATCHES),
                    help="batches of the scaling model's step times (default 16..1024; "
                         "'none': no model)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="driver mode: runs of each rank count, alternating (default 3)")
    ap.add_argument("--epochs", type=int, default=8,
                    help="timed epochs per cell and run (default 8)")
    ap.add_argument("--model-rounds", type=int, default=3,
                    help="alternating rounds of the scaling model's fits per run (default 3)")
    ap.add_argument("--allreduce-reps", type=int, default=200)
    ap.add_argument("--step-seconds", type=float, default=1.0,
                    help="seconds of train_step blocks per batch (default 1)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per rank (default: usable cores // ranks on the machine)")
    ap.add_argument("--baseline", default=None,
                    help="a 1-rank run's JSON, for the speedup columns of a run under mpiexec")
    ap.add_argument("--json", default=None, help="write the raw numbers here")
    ap.add_argument("--quiet", action="store_true", help="no tables (the driver's children)")
    args = ap.parse_args(argv)
    for name in ("rounds", "epochs", "model_rounds", "allreduce_reps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')}: expected at least 1, got "
                     f"{getattr(args, name)}")
    if args.step_seconds <= 0:
        ap.error(f"--step-seconds: expected a positive number, got {args.step_seconds}")
    if not args.batches:
        ap.error("--batches: expected at least one batch size")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.ranks:
        runs = drive(args)
    else:
        result = rank_run(args)
        if result is None:
            return None
        if args.quiet:
            if args.json:
                write_json(args.json, result)
            return result
        runs = {result["config"]["ranks"]: result}
        if args.baseline:
            import json
            with open(args.baseline) as f:
                base = json.load(f)
            base = base["runs"]["1"] if "runs" in base else base
            runs.setdefault(1, base)
    results = report(runs)
    if args.json:
        write_json(args.json, results)
    return results


if __name__ == "__main__":
    main()
