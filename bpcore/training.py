"""Training through the fused native engine: train_step, fit, evaluate and predict.

These are the methods of Sequential (and so of MLP); they live here because they own one
concern, driving bpcore._engine. The engine shares the network's flat parameter and gradient
buffers and the optimiser's velocity, so the layer API and the engine see the same weights and
can be mixed freely. The engine uses ``flat_grads`` as scratch space: after ``train_step`` or
``fit`` it holds no meaningful gradient (call ``zero_grad`` before using ``backward`` again).
"""
import sys
import time

import numpy as np

from bpcore import _engine
from bpcore._rng import Generator
from bpcore._validation import as_matrix, check_int
from bpcore.layers import Dense, _Activation, new_seed
from bpcore.losses import MSELoss, SoftmaxCrossEntropyLoss
from bpcore.optim import SGD

__all__ = ["engine_for", "train_step", "fit", "evaluate", "predict"]


def _engine_layout(model):
    """(sizes, activations, masks) if the network is Dense layers each followed by at most one
    activation, the layout the engine runs; else the index of the first layer that breaks it."""
    sizes, acts, masks = [model.n_inputs], [], []
    layers = model.layers
    i = 0
    while i < len(layers):
        m = layers[i]
        if not isinstance(m, Dense):
            return i
        act = layers[i + 1] if i + 1 < len(layers) and isinstance(layers[i + 1], _Activation) else None
        sizes.append(m.fan_out)
        acts.append(int(act.kind) if act is not None else int(_Activation.kind))
        masks.append(m.mask)
        i += 2 if act is not None else 1
    return sizes, acts, masks


def engine_for(model):
    """The model's engine, built on first use (the network's layout never changes)."""
    eng = model.__dict__.get("_engine")
    if eng is None:
        layout = _engine_layout(model)
        if isinstance(layout, int):
            raise ValueError(f"layers[{layout}]: the training engine takes Dense layers each "
                             f"followed by at most one activation; got {model.layers[layout]!r}")
        eng = _engine.Engine(*layout[:2], model.flat_params, model.flat_grads, layout[2])
        model._engine = eng
    return eng


def _input(model, X, name="X"):
    """X as the engine takes it: exact arrays go straight through (the engine checks their
    shape and finiteness natively); anything else is converted once."""
    if (type(X) is np.ndarray and X.dtype == model.dtype and X.ndim == 2
            and X.shape[1] == model.n_inputs and X.shape[0] and X.flags.c_contiguous):
        return X
    return as_matrix(X, name, model.dtype, cols=model.n_inputs, finite=False)


def _loss_target(model, loss, y, n):
    if not isinstance(loss, (MSELoss, SoftmaxCrossEntropyLoss)):
        raise TypeError(f"loss: expected MSELoss or SoftmaxCrossEntropyLoss, got "
                        f"{type(loss).__name__}")
    if type(y) is np.ndarray and y.flags.c_contiguous and len(y) == n:
        # exact arrays go straight through: values are checked natively
        if isinstance(loss, SoftmaxCrossEntropyLoss) and y.ndim == 1 and y.dtype == np.intp:
            return _engine.XENT_LABELS_KIND, y
        if (isinstance(loss, MSELoss) and y.ndim == 2 and y.dtype == model.dtype
                and y.shape[1] == model.n_outputs):
            return _engine.MSE_KIND, y
    return loss.target_for(y, n, model.n_outputs, model.dtype, finite=False)


def _velocity(model, optimizer):
    """The optimiser's velocity buffer, if it updates exactly this model's flat buffer."""
    if not isinstance(optimizer, SGD):
        raise TypeError(f"optimizer: expected bpcore.SGD, got {type(optimizer).__name__}")
    if optimizer.__dict__.get("_checked_for") is model:  # its buffers never change
        return optimizer._segments[0].velocity
    segs = optimizer._segments
    if (len(segs) != 1 or segs[0].data.size != model.flat_params.size
            or not np.shares_memory(segs[0].data, model.flat_params)):
        raise ValueError("optimizer: expected an SGD over all of this model's parameters "
                         "(SGD(model, ...)), got one over other parameters")
    optimizer._checked_for = model
    return segs[0].velocity


def _opt_args(opt):
    return (opt._lr, opt._momentum, opt.nesterov, opt.weight_decay, opt.decay)


def train_step(model, X, y, loss, optimizer):
    """Forward, loss, backward and SGD update of one batch in one native call, without the GIL.

    Returns the batch loss (of the weights before the update). Equal, to round-off, to
    ``zero_grad(); loss(forward(X), y); backward(loss.backward()); optimizer.step()``.
    """
    eng = engine_for(model)
    X = _input(model, X)
    kind, T = _loss_target(model, loss, y, X.shape[0])
    return eng.train_step(X, T, kind, loss.reduction_code, _velocity(model, optimizer),
                          *_opt_args(optimizer))


def predict(model, X):
    """The network's output for X (n, n_outputs), computed natively in chunks of rows (layer by
    layer, with the same kernels, for a layout the engine does not run)."""
    X = _input(model, X)
    if "_engine" not in model.__dict__ and isinstance(_engine_layout(model), int):
        if not np.isfinite(X).all():
            raise ValueError("X: expected finite values, got NaN or infinity")
        for m in model.layers:
            X = m._forward(X, keep=False)
        return X
    out = np.empty((X.shape[0], model.n_outputs), model.dtype)
    return engine_for(model).predict(X, out)


def _finish_loss(loss, total, n, c):
    """The loss over n rows from the engine's summed loss, in the loss's own reduction."""
    if loss.reduction == "mean":
        return total / (n * c) if isinstance(loss, MSELoss) else total / n
    return 0.5 * total if loss.reduction == "half_sum" else total


def evaluate(model, X, y, loss):
    """{"loss": the loss over all of X, "accuracy": share of rows whose output argmax is the
    label (or the target's argmax); None for a single output}, computed natively in chunks."""
    X = _input(model, X)
    kind, T = _loss_target(model, loss, y, X.shape[0])
    total, correct = engine_for(model).evaluate(X, T, kind)
    c = model.n_outputs
    return {"loss": _finish_loss(loss, total, X.shape[0], c),
            "accuracy": correct / X.shape[0] if c > 1 else None}


def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True, seed=None,
        validation_data=None, schedule=None, callbacks=None, verbose=0):
    """Train for ``epochs`` passes over (X, y); returns the history.

    Each epoch runs natively: the rows are shuffled with the seeded RNG (``shuffle=False``
    keeps their order), gathered into the batch buffer and trained on in batches of
    ``batch_size`` (the last may be smaller; ``batch_size=len(X)`` is full-batch training).
    Python runs only between epochs: ``schedule(epoch)`` (before each epoch) may return a dict
    of optimiser settings, e.g. ``{"lr": 0.01, "momentum": 0.9}``; ``callbacks`` are called as
    ``cb(epoch, logs)`` after each epoch, and a callback that returns True stops training.
    Ctrl-C raises KeyboardInterrupt within a few batches and leaves the model consistent.

    Returns {"loss": [...], and with validation_data (Xv, yv) "val_loss": [...],
    "val_accuracy": [...]}: per epoch, the mean batch loss weighted by batch size (for "sum"
    reductions, the summed loss over the epoch, the 1986 paper's E per sweep).
    """
    eng = engine_for(model)
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size", low=1)
    X = _input(model, X)
    kind, T = _loss_target(model, loss, y, X.shape[0])
    velocity = _velocity(model, optimizer)
    eng.check_data(X, T, kind)  # finite values and labels in range, once for all epochs
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise TypeError("validation_data: expected a pair (X_val, y_val)")
        Xv = _input(model, validation_data[0], "validation_data[0]")
        kv, Tv = _loss_target(model, loss, validation_data[1], Xv.shape[0])
    callbacks = list(callbacks or [])
    order = np.arange(X.shape[0], dtype=np.intp) if shuffle else None
    rng = Generator(new_seed() if seed is None else seed) if shuffle else None
    history = {"loss": []}
    if validation_data is not None:
        history.update(val_loss=[], val_accuracy=[])
    for epoch in range(epochs):
        if schedule is not None:
            for key, value in (schedule(epoch) or {}).items():
                if key not in ("lr", "momentum"):
                    raise ValueError(f"schedule: expected settings 'lr' or 'momentum', got {key!r}")
                setattr(optimizer, key, value)
        t0 = time.perf_counter()
        if rng is not None:
            rng.shuffle(order)
        total = eng.run_epoch(X, T, kind, loss.reduction_code, order, batch_size, velocity,
                              *_opt_args(optimizer), False)
        logs = {"loss": total / X.shape[0] if loss.reduction == "mean" else total,
                "seconds": time.perf_counter() - t0}
        history["loss"].append(logs["loss"])
        if validation_data is not None:
            total, correct = eng.evaluate(Xv, Tv, kv)
            logs["val_loss"] = _finish_loss(loss, total, Xv.shape[0], model.n_outputs)
            logs["val_accuracy"] = correct / Xv.shape[0]
            history["val_loss"].append(logs["val_loss"])
            history["val_accuracy"].append(logs["val_accuracy"])
        if verbose:
            extra = "".join(f"  {k} {v:.4f}" for k, v in logs.items() if k.startswith("val"))
            print(f"epoch {epoch + 1}/{epochs}  loss {logs['loss']:.4f}{extra}  "
                  f"({logs['seconds']:.2f} s)", file=sys.stdout)
        if any([cb(epoch, logs) for cb in callbacks]):
            break
    return history
