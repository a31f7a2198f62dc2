"""Gradient descent on a 1-D loss curve: the tutorial's ball rolling into the valley.

One weight w, one linear unit y = w x (bpcore Dense(1, 1) with its bias left out of the
optimiser), the mean squared error L(w) = mean((w x - d)^2) over a small data set. bpcore's
forward, backward and SGD move w by w <- w - lr dL/dw from the same start with four learning
rates, relative to the curvature L'' = 2 mean(x^2): lr L'' = 0.05 (too small: crawls), 0.8
(about right), 1.8 (too large: overshoots the valley floor, back and forth) and 2.1 (far too
large: every step overshoots further, it diverges). The path of w is drawn on the curve.

    python examples/gradient_descent_1d.py [--steps 20] [--out examples/figures]
"""
import argparse
import os
import time

import numpy as np

import bpcore

# learning rate times curvature: above 2 a step lands farther from the minimum than it started
REGIMES = [("too small: crawls", 0.05), ("about right", 0.8),
           ("too large: overshoots", 1.8), ("far too large: diverges", 2.1)]
W0 = -1.0


def dataset():
    """20 points on d = 2x, with a little fixed noise: the valley floor is near w = 2."""
    x = np.linspace(-1, 1, 20)
    noise = 0.3 * np.sin(7 * x)          # deterministic "noise": no RNG, the same every run
    return x[:, None], (2 * x + noise)[:, None]


def loss_curve(w, x, d):
    """L(w) = mean((w x - d)^2) for an array of w."""
    w = np.asarray(w, dtype=float)
    return ((w[..., None] * x.ravel() - d.ravel()) ** 2).mean(axis=-1)


def descend(lr, steps, x, d, w0=W0):
    """The path of the weight under bpcore SGD: [w_0, w_1, ..., w_steps] and the losses."""
    layer = bpcore.Dense(1, 1, dtype="float64", seed=0)
    net = bpcore.Sequential(layer)
    layer.W[...] = w0
    layer.b[...] = 0                     # no bias: the loss is a curve in one weight
    loss = bpcore.MSELoss("mean")
    opt = bpcore.SGD([layer.parameters()[0]], lr=lr)   # only W moves
    path, losses = [float(layer.W[0, 0])], []
    for _ in range(steps):
        net.zero_grad()
        losses.append(loss(net.forward(x), d))
        net.backward(loss.backward())
        opt.step()
        path.append(float(layer.W[0, 0]))
    losses.append(float(loss_curve(path[-1], x, d)))
    return np.array(path), np.array(losses)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures"))
    ap.add_argument("--quick", action="store_true", help="the same (it takes milliseconds)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    x, d = dataset()
    curvature = 2 * float((x ** 2).mean())
    w_star = float((x * d).sum() / (x * x).sum())
    print(f"L(w) = mean((w x - d)^2) over {len(x)} points: minimum at w* = {w_star:.4f} "
          f"(L = {loss_curve(w_star, x, d):.4f}), curvature L'' = {curvature:.4f}; "
          f"start w0 = {W0}, {args.steps} steps")
    print(f"  {'regime':<26}{'lr':>8}{'lr*L´´':>8}{'w after':>12}{'|w - w*|':>12}{'L after':>12}"
          f"  steps to |w - w*| < 0.01")
    runs = []
    for name, k in REGIMES:
        lr = k / curvature
        path, losses = descend(lr, args.steps, x, d)
        err = np.abs(path - w_star)
        within = np.nonzero(err < 0.01)[0]
        reached = int(within[0]) if len(within) and (err[within[0]:] < 0.01).all() else None
        runs.append({"name": name, "k": k, "lr": lr, "path": path, "losses": losses,
                     "reached": reached})
        print(f"  {name:<26}{lr:>8.3f}{k:>8.2f}{path[-1]:>12.4g}{err[-1]:>12.4g}"
              f"{losses[-1]:>12.4g}  {reached if reached is not None else 'never'}")
    seconds = time.perf_counter() - t0
    print(f"time: {seconds:.2f} s")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "gradient_descent_1d.png")
    figure(runs, x, d, w_star, path)
    print(f"figure: {path}")
    return {"runs": runs, "w_star": w_star, "curvature": curvature, "figure": path,
            "seconds": seconds}


def figure(runs, x, d, w_star, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(4 * len(runs), 3.8), sharey=True)
    for ax, r in zip(axes, runs):
        p = r["path"]
        shown = p
        if np.abs(p - w_star).max() > 4:            # diverging: draw the steps that fit
            shown = p[:np.argmax(np.abs(p - w_star) > 4) + 1]
        lo = min(shown.min(), w_star - 3.2) - 0.3
        hi = max(shown.max(), w_star + 3.2) + 0.3
        ws = np.linspace(lo, hi, 400)
        ax.plot(ws, loss_curve(ws, x, d), color="0.4", lw=1.5)
        ls = loss_curve(shown, x, d)
        ax.plot(shown, ls, color="C3", lw=0.8, alpha=0.7)
        ax.scatter(shown, ls, c=np.arange(len(shown)), cmap="viridis", s=28, zorder=3,
                   edgecolors="k", linewidths=0.4)
        ax.plot([shown[0]], [ls[0]], "o", ms=11, mfc="none", mec="k")
        ax.axvline(w_star, color="0.6", ls=":", lw=1)
        ax.set_xlim(lo, hi)
        ax.set_ylim(0, loss_curve(np.array([lo, hi]), x, d).max() * 1.05)
        ax.set_xlabel("weight w")
        note = (f"at w* ± 0.01 after {r['reached']} steps" if r["reached"] is not None
                else f"|w − w*| = {abs(p[-1] - w_star):.3g} after {len(p) - 1} steps")
        ax.set_title(f"{r['name']}\nlr = {r['lr']:.3f} (lr·L″ = {r['k']}): {note}", fontsize=9)
    axes[0].set_ylabel("loss L(w) = mean((w x − d)²)")
    fig.suptitle("Gradient descent from w = −1: the ball rolling into the valley "
                 "(colour: step, dark → light; circle: start)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
