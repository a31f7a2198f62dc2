"""A straight line cannot separate the centre from the corners (the tutorial).

A cluster at the centre of the square (class 1) surrounded by four clusters at its corners
(class 0), 2-D points. A network with no hidden layer (2 inputs -> 2 softmax outputs: its
decision boundary is a straight line) can do no better than the majority rate, 4/5 of the
points; one hidden layer of 16 tanh units bends the boundary around the centre and separates
it. Both are trained by bpcore with softmax cross-entropy and SGD with momentum; both
decision regions are drawn.

    python examples/centre_vs_corners.py [--seed 0] [--out examples/figures]
"""
import argparse
import os
import time

import numpy as np

import bpcore

CENTRES = np.array([[0.0, 0.0], [-1, -1], [-1, 1], [1, -1], [1, 1]])
LABELS = np.array([1, 0, 0, 0, 0])
SPREAD = 0.25


def dataset(n_per_cluster, seed):
    """(X (5n, 2) float32, y (5n,) intp): n points around each of the five centres."""
    rng = np.random.default_rng(seed)
    X = np.concatenate([c + SPREAD * rng.standard_normal((n_per_cluster, 2)) for c in CENTRES])
    y = np.repeat(LABELS, n_per_cluster).astype(np.intp)
    order = rng.permutation(len(X))
    return X[order].astype(np.float32), y[order]


def train(sizes, X, y, epochs, seed):
    model = bpcore.MLP(sizes, activation="tanh", seed=seed)
    opt = bpcore.SGD(model, lr=0.05, momentum=0.9)
    model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(), optimizer=opt, epochs=epochs,
              batch_size=32, seed=seed)
    return model


def accuracy(model, X, y):
    return float((model.predict(X).argmax(axis=1) == y).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures"))
    ap.add_argument("--quick", action="store_true", help="100 epochs")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 100)
    t0 = time.perf_counter()
    X, y = dataset(100, args.seed)
    Xt, yt = dataset(200, args.seed + 1000)
    majority = float(max(np.mean(yt == 0), np.mean(yt == 1)))
    models = {"no hidden layer (2 -> 2)": train([2, 2], X, y, args.epochs, args.seed),
              f"one hidden layer (2 -> {args.hidden} tanh -> 2)":
                  train([2, args.hidden, 2], X, y, args.epochs, args.seed)}
    seconds = time.perf_counter() - t0
    print(f"centre vs corners: {len(X)} training and {len(Xt)} test points, 5 clusters "
          f"(sd {SPREAD}), class 'centre' = 1/5; majority rate {majority:.1%}")
    results = {}
    for name, m in models.items():
        results[name] = {"train": accuracy(m, X, y), "test": accuracy(m, Xt, yt),
                         "centre_recall": float((m.predict(Xt).argmax(1)[yt == 1] == 1).mean()),
                         "model": m}
        r = results[name]
        print(f"  {name:<34} train {r['train']:.1%}  test {r['test']:.1%}  "
              f"(centre points called centre: {r['centre_recall']:.0%})")
    print(f"time: {seconds:.2f} s ({args.epochs} epochs each)")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "centre_vs_corners.png")
    figure(results, Xt, yt, majority, path)
    print(f"figure: {path}")
    return {"results": results, "majority": majority, "figure": path, "seconds": seconds}


def figure(results, X, y, majority, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    g = np.linspace(-2.1, 2.1, 300, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.column_stack([gx.ravel(), gy.ravel()])
    fig, axes = plt.subplots(1, len(results), figsize=(5.2 * len(results), 5))
    for ax, (name, r) in zip(axes, results.items()):
        zone = r["model"].predict(grid).argmax(axis=1).reshape(gx.shape)
        ax.contourf(gx, gy, zone, levels=[-0.5, 0.5, 1.5],
                    cmap=ListedColormap(["#cfe0f3", "#f6d5c4"]))
        ax.contour(gx, gy, zone, levels=[0.5], colors="k", linewidths=1)
        ax.scatter(*X[y == 0].T, s=6, c="C0", label="corner (class 0)")
        ax.scatter(*X[y == 1].T, s=6, c="C3", label="centre (class 1)")
        ax.set_aspect("equal")
        ax.set_xlim(-2.1, 2.1)
        ax.set_ylim(-2.1, 2.1)
        ax.set_title(f"{name}\ntest accuracy {r['test']:.1%} (majority rate {majority:.0%})",
                     fontsize=10)
    axes[0].legend(loc="upper center", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
