"""The 1986 symmetry detector (Rumelhart, Hinton & Williams, Nature 323:533, fig. 1).

Six binary inputs, two logistic hidden units, one logistic output that should be on when the
input is a palindrome (8 of the 64 patterns). All 64 patterns every sweep (full batch), the
paper's error E = 1/2 sum (y - d)^2 over cases, eq. 9 with epsilon = 0.1 and alpha = 0.9,
initial weights and biases uniform in [-0.3, 0.3].

For each seed: the sweeps until every output is within 0.2 of its target (the same 0.8/0.2
rule the paper uses for the family trees), and how many more or fewer a criterion of 0.1 or
0.5 would take; when the net reached the "always not symmetric" plateau (every one of the 64
outputs below 0.05) and how long it stayed there; and, for converged runs, the structure
the paper describes: mirrored input weights equal and opposite, their magnitudes near 1:2:4,
the two hidden units sign-flipped twins, hidden biases negative, output bias positive.

    python examples/symmetry.py [--seeds 100] [--max-sweeps 50000] [--out examples/figures]
"""
import argparse
import itertools
import os
import time

import numpy as np

import bpcore

PAPER_SWEEPS = 1425
EPSILON, ALPHA, INIT = 0.1, 0.9, 0.3
TOLERANCE = 0.2          # converged: every output within this of its target
COMPARED = (0.5, 0.1)    # the paper gives no criterion for this net: what these would change
PLATEAU_Y = 0.05         # every output below this: the net answers "not symmetric" to all 64


def dataset():
    """The 64 six-bit patterns (most significant bit first) and their targets (64, 1):
    1 for the 8 palindromes, 0 otherwise."""
    X = ((np.arange(64)[:, None] >> np.arange(5, -1, -1)) & 1).astype(np.float64)
    d = (X == X[:, ::-1]).all(axis=1).astype(np.float64)[:, None]
    return X, d


def build(seed):
    return bpcore.MLP([6, 2, 1], activation="sigmoid", output_activation="sigmoid",
                      dtype="float64", seed=seed, init=INIT)


def train(seed, max_sweeps, X, d):
    """Train one network until every output is within the tightest tolerance of its target
    (or for max_sweeps). Returns E per sweep, the largest of the 64 outputs before the first
    sweep and after each one, the sweeps to each tolerance ({tolerance: sweeps}, reached
    ones only) and the structure at TOLERANCE (None if not reached); the E and output
    series stop at TOLERANCE when it is reached."""
    model = build(seed)
    loss = bpcore.MSELoss("half_sum")
    opt = bpcore.SGD(model, lr=EPSILON, momentum=ALPHA)
    tolerances = sorted({TOLERANCE, *COMPARED}, reverse=True)
    reached, top, at = {}, [float(model.predict(X).max())], {}

    def watch(epoch, logs):
        y = model.predict(X)
        top.append(float(y.max()))
        err = np.abs(y - d).max()
        for t in tolerances:
            if err < t and t not in reached:
                reached[t] = epoch + 1
                if t == TOLERANCE:
                    # training goes on only to time the tighter criterion; everything else
                    # is reported for the network as it was here
                    at["structure"] = structure(model)
        return len(reached) == len(tolerances)

    hist = model.fit(X, d, loss=loss, optimizer=opt, epochs=max_sweeps, batch_size=len(X),
                     shuffle=False, callbacks=[watch])
    stop = reached.get(TOLERANCE, len(hist["loss"]))
    return (np.asarray(hist["loss"][:stop]), np.asarray(top[:stop + 1]), reached,
            at.get("structure"))


def plateau(top):
    """From the largest output before the first sweep (top[0]) and after each (top[k]): the
    first sweep after which every output is below PLATEAU_Y, the first sweep after that with
    one at or above it (None if it never comes), and how many separate stays there were."""
    on = top < PLATEAU_Y
    sweeps = np.nonzero(on)[0]
    if not len(sweeps):
        return {"entered": None, "left": None, "stays": 0}
    off = np.nonzero(~on[sweeps[0]:])[0]
    return {"entered": int(sweeps[0]), "left": int(sweeps[0] + off[0]) if len(off) else None,
            "stays": int(on[0] + (np.diff(on.astype(int)) == 1).sum())}


def structure(model):
    """The learned weights and the paper's properties of them, as numbers."""
    W1, b1 = model.layers[0].W.copy(), model.layers[0].b.copy()   # (6, 2), (2,)
    W2, b2 = model.layers[2].W.copy(), model.layers[2].b.copy()   # (2, 1), (1,)
    scale = np.abs(W1).max()
    # mirror: input i and input 5 - i should have equal and opposite weights
    mirror_error = float(np.abs(W1 + W1[::-1]).max() / scale)
    # magnitudes of the three mirrored pairs, innermost to outermost, per hidden unit,
    # normalised to the smallest
    pairs = np.abs(W1[:3] - W1[::-1][:3]) / 2          # rows: pairs (0,5), (1,4), (2,3)
    mags = np.sort(pairs, axis=0)                      # ascending, per unit
    ratios = mags / mags[0]
    # the detector needs no signed sum of the three magnitudes to cancel
    margin = min(abs(np.dot(c, mags[:, j])) for j in range(2)
                 for c in itertools.product((-1, 0, 1), repeat=3) if any(c)) / scale
    twins = float(W1[:, 0] @ W1[:, 1] / (np.linalg.norm(W1[:, 0]) * np.linalg.norm(W1[:, 1])))
    return {
        "W1": W1, "b1": b1, "W2": W2, "b2": b2,
        "mirror_error": mirror_error,
        "ratios": ratios[:, 0].tolist(), "ratios_unit2": ratios[:, 1].tolist(),
        "cancel_margin": float(margin),
        "twin_cosine": twins,
        "hidden_bias_negative": bool((b1 < 0).all()),
        "output_bias_positive": bool(b2[0] > 0),
        "output_weights_negative": bool((W2 < 0).all()),
    }


def run(seeds, max_sweeps):
    X, d = dataset()
    runs = []
    for seed in range(seeds):
        E, top, reached, st = train(seed, max_sweeps, X, d)
        runs.append({"seed": seed, "sweeps": reached.get(TOLERANCE), "reached": reached,
                     "E": E, "max_output": top, "plateau": plateau(top), "structure": st})
    return runs


def summarise(runs, max_sweeps):
    n = len(runs)
    conv = [r for r in runs if r["sweeps"]]
    sweeps = np.array([r["sweeps"] for r in conv], dtype=float)
    pl = [r["plateau"] for r in runs]
    visited = [p for p in pl if p["entered"] is not None]
    stay = np.array([p["left"] - p["entered"] for p in visited if p["left"] is not None])
    after = np.array([r["sweeps"] - r["plateau"]["left"] for r in conv
                      if r["plateau"]["left"] is not None], dtype=float)
    # a run that converged before PAPER_SWEEPS has left the plateau by then
    on_at_paper = sum(1 for r in runs if len(r["max_output"]) > PAPER_SWEEPS
                      and r["max_output"][PAPER_SWEEPS] < PLATEAU_Y)
    start = np.array([r["max_output"][0] for r in runs])
    compared = {}
    for t in COMPARED:
        both = [r for r in conv if t in r["reached"]]
        diff = np.array([abs(r["reached"][t] - r["sweeps"]) for r in both], dtype=float)
        compared[t] = {"runs": len(both),
                       "range": [int(diff.min()), int(diff.max())] if len(both) else None,
                       "quartiles": np.percentile(diff, [25, 75]).tolist() if len(both) else None,
                       "median": float(np.median(diff)) if len(both) else None}
    s = [r["structure"] for r in conv]
    summary = {
        "seeds": n, "max_sweeps": max_sweeps, "converged": len(conv),
        "not_converged": n - len(conv),
        "median_sweeps": float(np.median(sweeps)) if len(conv) else None,
        "quartiles": np.percentile(sweeps, [25, 75]).tolist() if len(conv) else None,
        "min_sweeps": int(sweeps.min()) if len(conv) else None,
        "max_sweeps_seen": int(sweeps.max()) if len(conv) else None,
        "converged_by_paper": int((sweeps <= PAPER_SWEEPS).sum()),
        "compared": compared,
        "start_max_output": [float(start.min()), float(start.max())] if n else None,
        "visited_plateau": len(visited),
        "entered_range": ([min(p["entered"] for p in visited), max(p["entered"] for p in visited)]
                          if visited else None),
        "stay_median": float(np.median(stay)) if len(stay) else None,
        "stay_quartiles": np.percentile(stay, [25, 75]).tolist() if len(stay) else None,
        "stay_range": [int(stay.min()), int(stay.max())] if len(stay) else None,
        "never_left_plateau": sum(1 for p in visited if p["left"] is None),
        "plateau_reentered": sum(1 for p in visited if p["stays"] > 1),
        "on_plateau_at_paper": on_at_paper,
        "median_after_plateau": float(np.median(after)) if len(after) else None,
        "range_after_plateau": [int(after.min()), int(after.max())] if len(after) else None,
        "mirror_ok": sum(x["mirror_error"] < 0.05 for x in s),
        "twins_ok": sum(x["twin_cosine"] < -0.99 for x in s),
        "bias_signs_ok": sum(x["hidden_bias_negative"] and x["output_bias_positive"] for x in s),
        "output_weights_negative": sum(x["output_weights_negative"] for x in s),
        "no_cancellation": sum(x["cancel_margin"] > 0.05 for x in s),
        "median_ratios": np.median([x["ratios"] for x in s], axis=0).tolist() if s else None,
        "near_124": sum(abs(x["ratios"][1] - 2) < 0.3 and abs(x["ratios"][2] - 4) < 0.6
                        for x in s),
    }
    return summary


def report(runs, summary, seconds):
    s = summary
    print(f"symmetry: 6-2-1 logistic, 64 patterns, full batch, eps={EPSILON}, alpha={ALPHA}, "
          f"weights U[-{INIT}, {INIT}], E = 1/2 sum (y - d)^2")
    print(f"converged (every output within {TOLERANCE} of its target) in {s['converged']} of "
          f"{s['seeds']} runs within {s['max_sweeps']:,} sweeps")
    if s["converged"]:
        q1, q3 = s["quartiles"]
        print(f"sweeps to convergence: median {s['median_sweeps']:.0f}, quartiles {q1:.0f}-"
              f"{q3:.0f}, range {s['min_sweeps']}-{s['max_sweeps_seen']}  (paper: {PAPER_SWEEPS:,})")
        print(f"converged within the paper's {PAPER_SWEEPS:,} sweeps: "
              f"{s['converged_by_paper']} of {s['seeds']}")
        for t in COMPARED:
            c = s["compared"][t]
            if not c["runs"]:
                print(f"every output within {t}: reached by none of the converged runs")
                continue
            word = "fewer" if t > TOLERANCE else "more"
            print(f"every output within {t} instead: {word} sweeps per run by median "
                  f"{c['median']:.0f}, quartiles {c['quartiles'][0]:.0f}-{c['quartiles'][1]:.0f}, "
                  f"range {c['range'][0]}-{c['range'][1]} ({c['runs']} of {s['converged']} "
                  f"converged runs reached it)")
    lo, hi = s["start_max_output"]
    print(f"'always not symmetric' plateau (every output below {PLATEAU_Y}): largest output at "
          f"the start {lo:.2f}-{hi:.2f}; reached by {s['visited_plateau']} of {s['seeds']} runs")
    if s["visited_plateau"]:
        lo, hi = s["entered_range"]
        print(f"  first sweep on it: {lo}-{hi}; never left it within {s['max_sweeps']:,} sweeps: "
              f"{s['never_left_plateau']}; came back to it after leaving: "
              f"{s['plateau_reentered']}; still on it at sweep {PAPER_SWEEPS:,}: "
              f"{s['on_plateau_at_paper']} of {s['seeds']}")
    if s["stay_range"]:
        q1, q3 = s["stay_quartiles"]
        lo, hi = s["stay_range"]
        print(f"  sweeps on it before leaving: median {s['stay_median']:.0f}, quartiles "
              f"{q1:.0f}-{q3:.0f}, range {lo}-{hi}")
    if s["range_after_plateau"]:
        lo, hi = s["range_after_plateau"]
        print(f"  sweeps from leaving it to convergence: median "
              f"{s['median_after_plateau']:.0f}, range {lo}-{hi}")
    if s["converged"]:
        c = s["converged"]
        r = s["median_ratios"]
        print(f"structure of the {c} converged networks:")
        print(f"  mirrored input weights equal and opposite (to 5%): {s['mirror_ok']} of {c}")
        print(f"  pair magnitudes, median ratio 1 : {r[1]:.2f} : {r[2]:.2f}; within 1:2:4 "
              f"(+-0.3, +-0.6): {s['near_124']} of {c}; no signed sum cancels: "
              f"{s['no_cancellation']} of {c}")
        print(f"  hidden units sign-flipped twins (cosine < -0.99): {s['twins_ok']} of {c}")
        print(f"  hidden biases negative and output bias positive: {s['bias_signs_ok']} of {c}; "
              f"both hidden-to-output weights negative: {s['output_weights_negative']} of {c}")
        best = example_run(runs)
        st = best["structure"]
        np.set_printoptions(precision=2, suppress=True)
        print(f"  seed {best['seed']} ({best['sweeps']} sweeps): input->hidden weights "
              f"(rows = hidden units)\n{st['W1'].T}\n  hidden biases {st['b1']}, "
              f"hidden->output {st['W2'].ravel()}, output bias {st['b2']}")
    print(f"time: {seconds:.1f} s")


def example_run(runs):
    """The converged run whose sweep count is closest to the paper's."""
    conv = [r for r in runs if r["sweeps"]]
    return min(conv, key=lambda r: abs(r["sweeps"] - PAPER_SWEEPS))


def figure(runs, summary, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [1.25, 1, 1]})
    conv = [r for r in runs if r["sweeps"]]
    if conv:
        draw_network(axes[0], example_run(runs))
    else:
        axes[0].axis("off")
    ax = axes[1]
    show = sorted(conv, key=lambda r: r["sweeps"])
    picks = [show[int(q * (len(show) - 1))] for q in (0, 0.25, 0.5, 0.75, 1)] if show else []
    picks += [r for r in runs if not r["sweeps"]][:2]
    for r in picks:
        label = f"seed {r['seed']}: " + (f"{r['sweeps']} sweeps" if r["sweeps"] else "stalled")
        ax.plot(np.arange(1, len(r["E"]) + 1), r["E"], lw=1.2, label=label)
    ax.axhline(4.0, color="0.5", ls=":", lw=1)
    ax.text(12, 4.2, "E = 4: output off for all 64 patterns", color="0.35", fontsize=8)
    ax.axvline(PAPER_SWEEPS, color="k", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("sweep")
    ax.set_ylabel("E = ½ Σ (y − d)²")
    ax.set_title("error per sweep (runs at the quantiles)")
    ax.legend(fontsize=7, loc="upper right")
    ax = axes[2]
    if conv:
        sw = np.sort([r["sweeps"] for r in conv])
        ax.step(sw, np.arange(1, len(sw) + 1) / len(runs), where="post", color="C0")
    ax.axvline(PAPER_SWEEPS, color="k", ls="--", lw=0.8)
    ax.text(PAPER_SWEEPS * 1.05, 0.03, f"paper: {PAPER_SWEEPS:,}", fontsize=8)
    ax.set_xscale("log")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("sweeps to convergence (every output within 0.2)")
    ax.set_ylabel(f"share of {len(runs)} seeds converged")
    ax.set_title(f"median {summary['median_sweeps']:.0f} sweeps" if conv else "no run converged")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_network(ax, run):
    """The paper's fig. 1: units as circles with their bias, connections labelled."""
    st = run["structure"]
    W1, b1, W2, b2 = st["W1"], st["b1"], st["W2"], st["b2"]
    xin = np.arange(6) * 1.0
    hid = [(1.0, 1.6), (4.0, 1.6)]
    out = (2.5, 3.1)
    wmax = max(np.abs(W1).max(), np.abs(W2).max())

    def edge(p, q, w, label):
        color = "C3" if w < 0 else "C0"
        ax.plot([p[0], q[0]], [p[1], q[1]], color=color, lw=0.4 + 3.5 * abs(w) / wmax,
                alpha=0.8, zorder=1)
        if label:
            x, y = (p[0] + q[0]) / 2, (p[1] + q[1]) / 2
            ax.text(x, y, f"{w:.1f}", fontsize=8, ha="center", va="center", color=color,
                    bbox=dict(boxstyle="round,pad=0.1", fc="white", ec="none", alpha=0.85),
                    zorder=3)

    for j, h in enumerate(hid):
        for i in range(6):
            edge((xin[i], 0), h, W1[i, j], False)
        edge(h, out, W2[j, 0], True)
    for i in range(6):
        ax.add_patch(matplotlib_circle((xin[i], 0), "0.85"))
        ax.text(xin[i], 0, f"{i + 1}", ha="center", va="center", fontsize=8)
        for j in range(2):
            w = W1[i, j]
            ax.text(xin[i], -0.5 - 0.3 * j, f"h{j + 1}: {w:+.1f}", ha="center", va="center",
                    fontsize=7.5, color="C3" if w < 0 else "C0")
    for j, h in enumerate(hid):
        ax.add_patch(matplotlib_circle(h, "0.95"))
        ax.text(h[0], h[1], f"{b1[j]:.1f}", ha="center", va="center", fontsize=8)
        ax.text(h[0] + (-0.45 if j == 0 else 0.45), h[1], f"h{j + 1}", ha="center",
                va="center", fontsize=8)
    ax.add_patch(matplotlib_circle(out, "0.95"))
    ax.text(out[0], out[1], f"{b2[0]:.1f}", ha="center", va="center", fontsize=8)
    ax.set_xlim(-0.6, 5.6)
    ax.set_ylim(-1.0, 3.6)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(f"seed {run['seed']}, converged in {run['sweeps']} sweeps\n"
                 "input weights under the inputs, biases in the units (blue +, red −)",
                 fontsize=9)


def matplotlib_circle(xy, color):
    from matplotlib.patches import Circle
    return Circle(xy, 0.3, fc=color, ec="k", lw=0.8, zorder=2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=100, help="runs, seeds 0..N-1 (default 100)")
    ap.add_argument("--max-sweeps", type=int, default=50_000)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures"))
    ap.add_argument("--quick", action="store_true", help="20 seeds, at most 20,000 sweeps")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.max_sweeps = min(args.seeds, 20), min(args.max_sweeps, 20_000)
    t0 = time.perf_counter()
    runs = run(args.seeds, args.max_sweeps)
    summary = summarise(runs, args.max_sweeps)
    seconds = time.perf_counter() - t0
    report(runs, summary, seconds)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "symmetry.png")
    figure(runs, summary, path)
    print(f"figure: {path}")
    return {"runs": runs, "summary": summary, "figure": path, "seconds": seconds}


if __name__ == "__main__":
    main()
