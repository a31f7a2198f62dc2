"""python -m bpcore.demo: train the tutorial's MLP shape on real handwritten digits.

scikit-learn's 8x8 digits (1,797 images, shipped inside scikit-learn, no download): a
64-256-128-10 ReLU network, one-hot targets, softmax cross-entropy, SGD with momentum; prints
the loss per epoch, the held-out accuracy and the time taken.
"""
import argparse
import time

import numpy as np

import bpcore


def load_digits_split(seed):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise SystemExit("the demo needs scikit-learn for its data: pip install 'bpcore[examples]'")
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.intp)
    order = np.random.default_rng(seed).permutation(len(X))
    X, y = X[order], y[order]
    cut = int(0.8 * len(X))
    return X[:cut], y[:cut], X[cut:], y[cut:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    Xtr, ytr, Xte, yte = load_digits_split(args.seed)
    model = bpcore.MLP([64, 256, 128, 10], activation="relu", seed=args.seed)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    opt = bpcore.SGD(model, lr=args.lr, momentum=0.9)
    print(model)
    print(f"{len(Xtr)} training and {len(Xte)} held-out images of 8x8 digits")
    order_rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        order = order_rng.permutation(len(Xtr))
        total = 0.0
        for start in range(0, len(Xtr), args.batch_size):
            idx = order[start:start + args.batch_size]
            model.zero_grad()
            total += loss(model.forward(Xtr[idx]), ytr[idx]) * len(idx)
            model.backward(loss.backward())
            opt.step()
        if epoch == 1 or epoch % 5 == 0 or epoch == args.epochs:
            acc = (model.predict(Xte).argmax(axis=1) == yte).mean()
            print(f"epoch {epoch:3d}  train loss {total / len(Xtr):.4f}  held-out accuracy {acc:.2%}")
    seconds = time.perf_counter() - t0
    acc = (model.predict(Xte).argmax(axis=1) == yte).mean()
    print(f"held-out accuracy {acc:.2%} after {args.epochs} epochs in {seconds:.2f} s")
    return acc


if __name__ == "__main__":
    main()
