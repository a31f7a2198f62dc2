"""python -m bpcore.demo: train the tutorial's MLP shape on real handwritten digits.

scikit-learn's 8x8 digits (1,797 images, shipped inside scikit-learn, no download): a
64-256-128-10 ReLU network, softmax cross-entropy, SGD with momentum, trained by the native
``fit``; prints the loss and held-out accuracy every few epochs and the time taken.
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

    def report(epoch, logs):
        if epoch == 0 or (epoch + 1) % 5 == 0:
            print(f"epoch {epoch + 1:3d}  train loss {logs['loss']:.4f}  "
                  f"held-out accuracy {logs['val_accuracy']:.2%}")

    t0 = time.perf_counter()
    model.fit(Xtr, ytr, loss=loss, optimizer=opt, epochs=args.epochs,
              batch_size=args.batch_size, seed=args.seed, validation_data=(Xte, yte),
              callbacks=[report])
    seconds = time.perf_counter() - t0
    acc = model.evaluate(Xte, yte, loss)["accuracy"]
    print(f"held-out accuracy {acc:.2%} after {args.epochs} epochs "
          f"({args.epochs * len(Xtr):,} samples) in {seconds:.2f} s")
    return acc


if __name__ == "__main__":
    main()
