"""Training through the fused native engine: train_step, fit, evaluate, predict, and L-BFGS.

These are the methods of Sequential (and so of MLP); they live here because they own one
concern, driving bpcore._engine. The engine shares the network's flat parameter and gradient
buffers and the optimizer's native state, so the layer API and the engine see the same weights
and can be mixed freely. The engine uses ``flat_grads`` as scratch space: after ``train_step``
or ``fit`` it holds no meaningful gradient (call ``zero_grad`` before using ``backward`` again).
"""
import contextlib
import functools
import sys
import time
import weakref

import numpy as np

from bpcore import _engine, _threads, distributed
from bpcore._claims import claim, release
from bpcore._progress import EpochProgress
from bpcore._validation import (as_matrix, as_sparse_matrix, check_choice, check_int,
                                check_real, check_sample_weight, is_sparse, weight_total)
from bpcore.callbacks import Callback
from bpcore.errors import NonFiniteError
from bpcore.layers import Activation, Dense, Dropout, Softmax
from bpcore.losses import Loss, SoftmaxCrossEntropyLoss
from bpcore.optim import LBFGS, Optimizer
from bpcore.params import as_generator
from bpcore.schedules import LRSchedule

__all__ = ["engine_for", "engine_input", "train_step", "fit", "evaluate", "predict", "fit_lbfgs"]

# each network's engine, built on first use (a network's layout never changes)
_ENGINES = weakref.WeakKeyDictionary()



def _exclusive(what):
    """The decorated function(model, ...) holds the model's buffers for its thread while it
    runs (bpcore._claims): another thread's use of the network is refused, not interleaved.
    (train_step, the per-step path, claims inline: no argument packing per step.)"""
    def wrap(function):
        @functools.wraps(function)
        def exclusive(model, *args, **kwargs):
            keys = claim((model.flat_params, model.flat_grads), what)
            try:
                return function(model, *args, **kwargs)
            finally:
                release(keys)
        return exclusive
    return wrap


def _engine_layout(model):
    """(sizes, activations, masks, dropouts) if the network is Dense layers each followed by at
    most one activation and at most one Dropout, the layout the engine runs; else the index of
    the first layer that breaks it."""
    sizes, acts, masks, drops = [model.n_inputs], [], [], []
    layers = model.layers
    i = 0
    while i < len(layers):
        m = layers[i]
        if not isinstance(m, Dense):
            return i
        i += 1
        act = layers[i] if i < len(layers) and isinstance(layers[i], Activation) else None
        i += act is not None
        drop = layers[i] if i < len(layers) and isinstance(layers[i], Dropout) else None
        i += drop is not None
        sizes.append(m.fan_out)
        acts.append(act.spec if act is not None else int(Activation.kind))
        masks.append(m.mask)
        drops.append((drop.p, drop.state) if drop is not None and drop.p > 0 else None)
    return sizes, acts, masks, drops


def engine_for(model):
    """The model's engine (built on first use)."""
    eng = _ENGINES.get(model)
    if eng is None:
        layout = _engine_layout(model)
        if isinstance(layout, int):
            raise ValueError(f"layers[{layout}]: the training engine takes Dense layers each "
                             f"followed by at most one activation and one Dropout; got "
                             f"{model.layers[layout]!r}")
        sizes, acts, masks, drops = layout
        eng = _engine.Engine(sizes, acts, model.flat_params, model.flat_grads, masks, drops)
        _ENGINES[model] = eng
    return eng


def engine_input(model, X, name="X", finite=False):
    """X as the model's engine takes it, converted once: a C-contiguous (n, n_inputs) array of
    the model's dtype (exact arrays go straight through: the engine checks them natively), or,
    for a scipy.sparse matrix (any format), the engine's CSRMatrix, never densified (see
    bpcore._validation.as_sparse_matrix). finite=True also checks the values here (else the
    engine's entry points do)."""
    if isinstance(X, _engine.CSRMatrix):  # converted already
        return X
    if is_sparse(X):
        return as_sparse_matrix(X, name, model.dtype, cols=model.n_inputs, finite=finite)
    if finite:
        return as_matrix(X, name, model.dtype, cols=model.n_inputs)
    if (type(X) is np.ndarray and X.dtype == model.dtype and X.ndim == 2
            and X.shape[1] == model.n_inputs and X.shape[0] and X.flags.c_contiguous):
        return X
    return as_matrix(X, name, model.dtype, cols=model.n_inputs, finite=False)


def _target(model, loss, y, n):
    """(loss kind, target, pos_weight): what the engine takes of the loss and the target."""
    if not isinstance(loss, Loss):
        raise TypeError(f"loss: expected a bpcore loss (MSELoss, SoftmaxCrossEntropyLoss, "
                        f"BCEWithLogitsLoss, PoissonLoss), got {type(loss).__name__}")
    if isinstance(loss, SoftmaxCrossEntropyLoss) and isinstance(model.layers[-1], Softmax):
        raise ValueError("loss: SoftmaxCrossEntropyLoss applies the softmax itself, and the "
                         "model's last layer is a Softmax: train the logits (a network without "
                         "it), or use another loss on the probabilities")
    kind, T = loss.target_for(y, n, model.n_outputs, model.dtype, finite=False)
    return kind, T, loss.native_pos_weight(model.dtype, model.n_outputs)


def _optimizer(optimizer):
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: expected a bpcore optimizer (SGD, Adam, AdamW), got "
                        f"{type(optimizer).__name__}")
    return optimizer.native()


def _max_norm(max_grad_norm):
    if max_grad_norm is None:
        return 0.0
    return check_real(max_grad_norm, "max_grad_norm", low=0, low_open=True)


def _team(model, comm):
    """bpcore.distributed's Team over comm for this model's gradient buffer, or None."""
    return None if comm is None else distributed.Team(comm, model.flat_grads)


def _agreement(team):
    """Checks run under it raise on every rank of a team if they raise on one."""
    return contextlib.nullcontext() if team is None else team.agreement()


def _dropout_streams(model):
    return [m.state for m in model.layers if isinstance(m, Dropout)]


def train_step(model, X, y, loss, optimizer, max_grad_norm=None, sample_weight=None,
               comm=None):
    """Forward, loss, backward and update of one batch in one native call, without the GIL.

    Returns the batch loss (of the weights before the update). Equal, to round-off, to
    ``zero_grad(); loss(forward(X), y); backward(loss.backward()); optimizer.step()``.
    With ``max_grad_norm`` the whole gradient is formed first and scaled to that global norm
    (clip_grad_norm) before the update. ``sample_weight`` (n,) weighs the rows: each row's
    loss is multiplied by its weight and a "mean" divides by the summed weight (as
    scikit-learn's sample_weight); weights must be finite and >= 0 (0 removes a row).

    ``comm`` (an mpi4py communicator; see bpcore.distributed): every rank calls train_step
    with its rows of one batch; the step is the whole batch's (the gradient summed over the
    ranks by one Allreduce, the same update on every rank), and the loss returned is the
    whole batch's on every rank. It takes two more small collectives (the batch's row counts
    and weights before, the loss after); fit's epochs take one per step.
    """
    keys = claim((model.flat_params, model.flat_grads), "train_step")
    try:
        if comm is not None:
            return _team_step(model, X, y, loss, optimizer, max_grad_norm, sample_weight, comm)
        eng, X, kind, T, pw, w = _step_inputs(model, X, y, loss, sample_weight)
        value = eng.train_step(X, T, kind, loss.reduction_code, _optimizer(optimizer),
                               _max_norm(max_grad_norm), pw, w)
        if eng.failure is not None:
            raise _nonfinite(eng.failure[0], "train_step: the batch's")
        return value
    finally:
        release(keys)


def _step_inputs(model, X, y, loss, sample_weight):
    """(engine, X, loss kind, target, pos_weight, sample weights) of one batch, checked as the
    engine takes them."""
    eng = engine_for(model)
    X = engine_input(model, X)
    kind, T, pw = _target(model, loss, y, X.shape[0])
    return eng, X, kind, T, pw, check_sample_weight(sample_weight, X.shape[0], model.dtype)


def _team_step(model, X, y, loss, optimizer, max_grad_norm, sample_weight, comm):
    """train_step's data-parallel step (the caller holds the model's buffers)."""
    team = _team(model, comm)
    with team.agreement():  # a rank must not fail after the others have started to plan
        eng, X, kind, T, pw, w = _step_inputs(model, X, y, loss, sample_weight)
        native, max_norm = _optimizer(optimizer), _max_norm(max_grad_norm)
        eng.check_data(X, T, kind)
    team.plan_step(X.shape[0], weight_total(w, X.shape[0]),
                   loss.elements_per_row(model.n_outputs))
    value = eng.train_step(X, T, kind, loss.reduction_code, native, max_norm, pw, w, team=team)
    if eng.failure is not None:
        raise _failure(eng.failure[0], "train_step: the batch's", team)
    return float(team.sum(value)[0])

# what each kind of failure means for the weights (the engine reports "loss", "gradient" or
# "update"; a loss or gradient that is not finite stops the step before it changes anything)
_FAILED = {"loss": "loss is NaN or infinite; the step was not applied",
           "gradient": "gradient is NaN or infinite; the step was not applied",
           "update": "update wrote a NaN or an infinity into the parameters"}


def _failure(what, where, team, restored=False):
    """The exception for a failed step: the team's reduction's own, or NonFiniteError."""
    if what == "reduce":
        return distributed.DistributedError(f"{where} gradient could not be summed over the "
                                            f"ranks: {team.error!r}")
    return _nonfinite(what, where, restored)


def _nonfinite(what, where, restored=False):
    message = f"{where} {_FAILED[what]}"
    if what == "update":
        message += (" (restored to before that step)" if restored else
                    "; they hold that step's values (fit restores the last good weights)")
    return NonFiniteError(message + ". A learning rate too large for the data is the usual "
                          "cause.")


# elements of a block of sparse rows made dense for a network the engine does not run
_DENSE_BLOCK = 1 << 22


def _through_layers(model, X):
    for m in model.layers:
        X = m.forward_unchecked(X, keep=False)
    return X


def _dense_rows(X, start, stop):
    """Rows start..stop-1 of a CSRMatrix as a dense array (repeated columns add up)."""
    stop = min(stop, X.shape[0])
    out = np.zeros((stop - start, X.shape[1]), X.dtype)
    lo, hi = X.indptr[start], X.indptr[stop]
    rows = np.repeat(np.arange(stop - start), np.diff(X.indptr[start:stop + 1]))
    np.add.at(out, (rows, X.indices[lo:hi]), X.data[lo:hi])
    return out


@_exclusive("predict")
def predict(model, X):
    """The network's output for X (n, n_outputs), computed natively in chunks of rows (layer by
    layer, with the same kernels, for a layout the engine does not run)."""
    X = engine_input(model, X)
    if model not in _ENGINES and isinstance(_engine_layout(model), int):
        if isinstance(X, _engine.CSRMatrix):  # layer by layer, a bounded block of rows at a time
            _engine.check_finite(X.data, "X")
            step = max(1, _DENSE_BLOCK // X.shape[1])
            return np.concatenate([_through_layers(model, _dense_rows(X, i, i + step))
                                   for i in range(0, X.shape[0], step)])
        _engine.check_finite(X, "X")
        return _through_layers(model, X)
    out = np.empty((X.shape[0], model.n_outputs), model.dtype)
    return engine_for(model).predict(X, out)


@_exclusive("evaluate")
def evaluate(model, X, y, loss, sample_weight=None):
    """{"loss": the loss over all of X, "accuracy": the share of rows right}, computed natively
    in chunks; with ``sample_weight`` both are weighted (the loss as in train_step, the
    accuracy the right rows' share of the summed weight). Which rows are right depends on the
    loss:

    - MSELoss, SoftmaxCrossEntropyLoss: the output's argmax is the label (or the target row's
      argmax); accuracy is None for a single output, where there is no argmax to compare;
    - BCEWithLogitsLoss: every output's (z > 0) equals its target's (t > 0.5), i.e. each
      column is thresholded at probability 1/2 and the row is right only if all are
      (scikit-learn's subset accuracy for multi-label targets; plain accuracy for one column);
    - PoissonLoss: accuracy is None (a predicted rate is not right or wrong).
    """
    X = engine_input(model, X)
    kind, T, pw = _target(model, loss, y, X.shape[0])
    w = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    total, correct = engine_for(model).evaluate(X, T, kind, pw, w)
    c, weight = model.n_outputs, weight_total(w, X.shape[0])
    return {"loss": loss.from_sum(total, weight, c), "accuracy": loss.accuracy(correct, weight, c)}


def _check_schedule(schedule):
    """fit's schedule: None, a bpcore.schedules object or a callable (see _apply_schedule)."""
    if schedule is not None and not isinstance(schedule, LRSchedule) and not callable(schedule):
        raise TypeError(f"schedule: expected a bpcore.schedules object or a callable "
                        f"schedule(epoch) returning a dict of optimizer settings, got "
                        f"{type(schedule).__name__} {schedule!r}")
    return schedule


def _apply_schedule(schedule, optimizer, epoch, samples_seen):
    """Before an epoch: a schedule object (bpcore.schedules) sets each group's lr; a plain
    callable returns a dict of optimizer settings, e.g. {"lr": 0.01, "momentum": 0.9}."""
    if isinstance(schedule, LRSchedule):
        schedule.apply(optimizer, epoch, samples_seen)
        return
    settings = schedule(epoch)
    if settings is not None and not isinstance(settings, dict):
        raise TypeError(f"schedule: expected schedule({epoch}) to return a dict of optimizer "
                        f"settings such as {{'lr': 0.01}}, got {type(settings).__name__} "
                        f"{settings!r}")
    for key, value in (settings or {}).items():
        if key not in ("lr", "momentum") or not hasattr(optimizer, key):
            raise ValueError(f"schedule: expected settings 'lr' or 'momentum' (SGD), got {key!r}")
        setattr(optimizer, key, value)


def _as_callbacks(callbacks):
    """fit's callbacks as a list: None, one callable, or an iterable of callables, each
    cb(epoch, logs) (a bpcore.callbacks.Callback is one); checked before any epoch, so that a
    bad one does not cost a trained epoch."""
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    if isinstance(callbacks, (str, bytes, dict)) or not hasattr(callbacks, "__iter__"):
        raise TypeError(f"callbacks: expected a callable cb(epoch, logs) or a list of them, "
                        f"got {type(callbacks).__name__} {callbacks!r}")
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not callable(cb):
            raise TypeError(f"callbacks[{i}]: expected a callable cb(epoch, logs), got "
                            f"{type(cb).__name__} {cb!r}")
    return callbacks


def _validation_data(model, loss, validation_data):
    """(X, loss kind, target) of fit's validation_data, checked in full (shapes, finite
    values, labels in range) before the first epoch, errors naming validation_data[0] or [1]."""
    if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
        got = type(validation_data).__name__
        if isinstance(validation_data, (tuple, list)):
            got += f" of length {len(validation_data)}"
        raise TypeError(f"validation_data: expected a pair (X_val, y_val), got {got}")
    Xv = engine_input(model, validation_data[0], "validation_data[0]", finite=True)
    kind, T = loss.target_for(validation_data[1], Xv.shape[0], model.n_outputs, model.dtype,
                              name="validation_data[1]")
    return Xv, kind, T


class _Snapshot:
    """The weights and the optimizer's state at the start of an epoch (copies, into buffers
    allocated once): with the epoch's order, enough to rebuild the state before any of its
    steps exactly, by replaying the steps before it (the engine is deterministic)."""

    def __init__(self, model, native):
        self.model, self.native = model, native
        self.params = np.empty_like(model.flat_params)
        self.state = {k: np.empty_like(v) for k, v in native.state().items()}
        self.steps = 0
        # the dropout layers' mask counters: the replay draws the same masks
        self.drops = [(m.state, m.state.copy()) for m in model.layers if isinstance(m, Dropout)]

    def take(self):
        np.copyto(self.params, self.model.flat_params)
        for k, v in self.native.state().items():
            np.copyto(self.state[k], v)
        self.steps = self.native.steps
        for live, saved in self.drops:
            np.copyto(saved, live)

    def restore(self):
        np.copyto(self.model.flat_params, self.params)
        for k, v in self.native.state().items():
            np.copyto(v, self.state[k])
        self.native.steps = self.steps
        for live, saved in self.drops:
            np.copyto(live, saved)


@_exclusive("fit")
def fit(model, X, y, *, loss, optimizer, epochs=1, batch_size=32, shuffle=True, seed=None,
        validation_data=None, schedule=None, callbacks=None, max_grad_norm=None,
        on_nonfinite="raise", verbose=0, sample_weight=None, class_weight=None, comm=None):
    """Train for ``epochs`` passes over (X, y); returns the history.

    Each epoch runs natively: the rows are shuffled with the seeded RNG (``shuffle=False``
    keeps their order), gathered into the batch buffer and trained on in batches of
    ``batch_size`` (the last may be smaller; ``batch_size=len(X)`` is full-batch training).
    Python runs only between epochs: ``schedule`` (before each epoch) is a bpcore.schedules
    object, or a callable ``schedule(epoch)`` returning a dict of optimizer settings, e.g.
    ``{"lr": 0.01, "momentum": 0.9}``. ``seed`` is an integer in [0, 2**64), None or a bpcore
    Generator (the rule of every seed). ``max_grad_norm`` clips each step's gradient to that
    global norm. Ctrl-C raises KeyboardInterrupt within a few batches and leaves the model
    consistent.

    ``callbacks`` (one or a list) are called as ``cb(epoch, logs)`` after each epoch, epoch
    counted from 0, logs as below; a callback that returns a truthy value stops training
    after every callback has seen the epoch. A bpcore.callbacks.Callback (EarlyStopping,
    Checkpoint, or a subclass of your own) is also told ``on_train_begin(model, optimizer,
    log_keys)`` after the arguments are checked and before the first epoch (log_keys: the
    keys each epoch's logs will have), and ``on_train_end()`` when training ends without an
    exception (all epochs run, a callback stopped it, or on_nonfinite="stop").
    ``logs`` = {"loss", "seconds", and with validation_data "val_loss", "val_accuracy"}.

    ``verbose`` prints a line per epoch on stdout, and for an epoch longer than a second a
    progress bar over its batches (tqdm's, if tqdm is installed, else a plain line at most
    every second), updated where the engine returns to Python for Ctrl-C;
    ``verbose="progress"`` shows the bar only (for a caller that prints its own epoch lines,
    as bpcore.sklearn's estimators).

    ``optimizer=bpcore.LBFGS(...)`` trains full-batch by L-BFGS instead (see fit_lbfgs), and
    refuses validation_data, schedule, callbacks and max_grad_norm, which it would not use.
    Every argument, validation_data's labels included, is checked before the first epoch.

    ``sample_weight`` (n,) weighs the rows as in train_step; the weights travel with their
    rows through the shuffle, and each batch's mean divides by its own summed weight (a batch
    of zero weights steps with a zero gradient). ``class_weight`` ({class: weight}, classes
    left out weighing 1, or "balanced": n / (classes * rows of the class), as scikit-learn's
    classifiers; SoftmaxCrossEntropyLoss, and BCEWithLogitsLoss with one output) multiplies
    each row's weight by its class's.

    A step whose loss, gradient or update is NaN or infinite is never applied: the weights
    and the optimizer's state are put back to before it (an update already written is undone
    by replaying the epoch's earlier steps from the state at its start), then
    ``on_nonfinite="raise"`` raises bpcore.NonFiniteError naming the epoch and batch, and
    ``"stop"`` ends training there, recording ``history["stopped"] = (epoch, batch)`` (1-based).

    ``comm`` (an mpi4py communicator; see bpcore.distributed) trains data-parallel: every rank
    calls fit with its shard of the rows (``bpcore.distributed.shard``) and the same other
    arguments. Rank 0's weights and optimizer state are broadcast first; each epoch every
    rank shuffles its own rows (seeded from ``seed`` and its rank) and takes as many steps as
    the rank with the most rows needs (one whose rows have run out steps on none); step k's
    batch is the union of the ranks' k-th batches of ``batch_size`` rows, its gradient summed
    over the ranks by one in-place Allreduce, so every rank applies the same update.
    ``validation_data`` is each rank's shard of it; the losses and accuracies logged are
    those of all the ranks' rows, the same on every rank, and so are the callbacks'
    decisions; only rank 0 prints (``verbose``), and Checkpoint saves only there
    (``Callback.root``). An argument refused on one rank is refused on all.
    ``optimizer=LBFGS`` takes no comm.

    Returns {"loss": [...], and with validation_data (Xv, yv) "val_loss": [...],
    "val_accuracy": [...]}: per epoch, the mean batch loss weighted by batch size (by the
    batches' summed sample weight, with weights; for "sum"
    reductions, the summed loss over the epoch, the 1986 paper's E per sweep); an epoch cut
    short by a non-finite step is not in it. val_accuracy follows evaluate's rule (None where
    that has none: one output of MSELoss, PoissonLoss).
    """
    team = _team(model, comm)
    with _agreement(team):
        args = _fit_arguments(model, X, y, loss, optimizer, epochs, batch_size, seed,
                              validation_data, schedule, callbacks, max_grad_norm, on_nonfinite,
                              sample_weight, class_weight, team)
    if isinstance(optimizer, LBFGS):
        return fit_lbfgs(model, X, y, loss=loss, optimizer=optimizer,
                         sample_weight=sample_weight, class_weight=class_weight)
    return _fit_epochs(model, loss, optimizer, shuffle, verbose, team, **args)


def _fit_arguments(model, X, y, loss, optimizer, epochs, batch_size, seed, validation_data,
                   schedule, callbacks, max_grad_norm, on_nonfinite, sample_weight,
                   class_weight, team):
    """fit's arguments, every one checked before any work, whichever optimizer trains (a
    dict of what the epochs use; empty for L-BFGS)."""
    epochs = check_int(epochs, "epochs", low=0)
    batch_size = check_int(batch_size, "batch_size", low=1)
    max_norm = _max_norm(max_grad_norm)
    check_choice(on_nonfinite, "on_nonfinite", ("raise", "stop"))
    rng = as_generator(seed)  # checked without shuffle too: a bad seed is a mistake either way
    callbacks = _as_callbacks(callbacks)
    schedule = _check_schedule(schedule)
    if isinstance(optimizer, LBFGS) and team is not None:
        raise ValueError("comm: expected None with optimizer=LBFGS (L-BFGS trains in one "
                         "process), got a communicator")
    if isinstance(optimizer, LBFGS):
        unused = {"validation_data": validation_data, "schedule": schedule,
                  "callbacks": callbacks or None, "max_grad_norm": max_grad_norm}
        for name, value in unused.items():
            if value is not None:
                raise ValueError(f"{name}: expected None with optimizer=LBFGS (one "
                                 f"scipy.optimize call, without epochs), got "
                                 f"{type(value).__name__}")
        return {}
    eng = engine_for(model)
    X = engine_input(model, X)
    kind, T, pw = _target(model, loss, y, X.shape[0])
    w = _row_weights(model, loss, kind, T, sample_weight, class_weight)
    _optimizer(optimizer)
    eng.check_data(X, T, kind)  # finite values and labels in range, once for all epochs
    validation = None
    if validation_data is not None:
        validation = _validation_data(model, loss, validation_data)
    return dict(eng=eng, X=X, T=T, kind=kind, pw=pw, w=w, epochs=epochs, batch_size=batch_size,
                max_norm=max_norm, on_nonfinite=on_nonfinite, rng=rng, seed=seed,
                callbacks=callbacks, schedule=schedule, validation=validation)


def _fit_epochs(model, loss, optimizer, shuffle, verbose, team, *, eng, X, T, kind, pw, w,
                epochs, batch_size, max_norm, on_nonfinite, rng, seed, callbacks, schedule,
                validation):
    """fit's epochs, on checked arguments."""
    weight = weight_total(w, X.shape[0])
    order = np.arange(X.shape[0], dtype=np.intp) if shuffle else None
    if not shuffle:
        rng = None
    steps = None
    if team is not None:
        team.broadcast_start(model.flat_params, optimizer, _dropout_streams(model))
        counts = team.rows_per_rank(X.shape[0])
        steps = team.steps(counts, batch_size)
        weight = float(team.sum(weight)[0])
        if shuffle:
            rng = as_generator(team.shuffle_seed(seed))
        per_row = loss.elements_per_row(model.n_outputs)
        verbose = verbose if team.root else 0
    snapshot = _Snapshot(model, _optimizer(optimizer))
    history = {"loss": []}
    log_keys = ("loss", "seconds")
    if validation is not None:
        history.update(val_loss=[], val_accuracy=[])
        log_keys += ("val_loss", "val_accuracy")
    objects = [cb for cb in callbacks if isinstance(cb, Callback)]
    for cb in objects:
        cb.root = team is None or team.root
        cb.on_train_begin(model, optimizer, log_keys)
    progress = EpochProgress(epochs) if verbose else None
    for epoch in range(epochs):
        if schedule is not None:
            _apply_schedule(schedule, optimizer, epoch, epoch * X.shape[0])
        t0 = time.perf_counter()
        if rng is not None:
            rng.shuffle(order)
        native = _optimizer(optimizer)
        snapshot.take()
        if progress is not None:
            progress.begin(epoch)
        if team is not None:
            team.plan(counts, batch_size, steps, order, w, per_row)
        try:
            total = eng.run_epoch(X, T, kind, loss.reduction_code, order, batch_size, native,
                                  max_norm, False, -1 if team is None else steps,
                                  pos_weight=pw, sample_weight=w, progress=progress, team=team)
        finally:
            if progress is not None:
                progress.end()
        if eng.failure is not None:
            what, batch = eng.failure
            if what == "update":
                snapshot.restore()
                eng.run_epoch(X, T, kind, loss.reduction_code, order, batch_size, native,
                              max_norm, False, batch, pw, w, team=team)
                if eng.failure is not None:  # the replay is deterministic: it cannot fail
                    raise RuntimeError(f"fit: replaying epoch {epoch + 1} up to batch "
                                       f"{batch + 1} failed at batch {eng.failure[1] + 1}")
            if on_nonfinite == "stop" and what != "reduce":
                history["stopped"] = (epoch + 1, batch + 1)
                break
            raise _failure(what, f"fit: epoch {epoch + 1}, batch {batch + 1}: the step's",
                           team, restored=True)
        if team is not None:
            total = float(team.sum(total)[0])
        logs = {"loss": total / weight if loss.reduction == "mean" else total,
                "seconds": time.perf_counter() - t0}
        history["loss"].append(logs["loss"])
        if validation is not None:
            Xv, kv, Tv = validation
            total, correct = eng.evaluate(Xv, Tv, kv, pw)
            nv = Xv.shape[0]
            if team is not None:
                total, correct, nv = team.sum(total, correct, nv)
            logs["val_loss"] = loss.from_sum(total, nv, model.n_outputs)
            logs["val_accuracy"] = loss.accuracy(correct, nv, model.n_outputs)
            history["val_loss"].append(logs["val_loss"])
            history["val_accuracy"].append(logs["val_accuracy"])
        if schedule is not None and hasattr(schedule, "observe"):
            schedule.observe(epoch, logs.get("val_loss", logs["loss"]))
        if verbose and verbose != "progress":
            extra = "".join(f"  {k} {v:.4f}" for k, v in logs.items()
                            if k.startswith("val") and v is not None)
            print(f"epoch {epoch + 1}/{epochs}  loss {logs['loss']:.4f}{extra}  "
                  f"({logs['seconds']:.2f} s)", file=sys.stdout)
        if any([cb(epoch, logs) for cb in callbacks]):
            break
    for cb in objects:
        cb.on_train_end()
    return history


def _row_weights(model, loss, kind, T, sample_weight, class_weight):
    """The rows' weights for the engine (None: all 1): sample_weight checked, times each row's
    class weight under class_weight."""
    n = T.shape[0]
    w = check_sample_weight(sample_weight, n, model.dtype)
    if class_weight is None:
        return w
    per_row = loss.row_weights(kind, T, class_weight, model.n_outputs)
    return check_sample_weight(per_row if w is None else per_row * w, n, model.dtype,
                               "sample_weight * class_weight")


@_exclusive("loss_and_gradient")
def loss_and_gradient(model, X, y, loss, sample_weight=None):
    """The loss over all rows of (X, y) in the loss's reduction (rows weighted as in
    train_step), and its gradient (a copy of the flat gradient buffer), from one native call;
    the weights are the model's own."""
    eng = engine_for(model)
    X = engine_input(model, X)
    kind, T, pw = _target(model, loss, y, X.shape[0])
    w = check_sample_weight(sample_weight, X.shape[0], model.dtype)
    scale = loss.from_sum(1.0, weight_total(w, X.shape[0]), model.n_outputs)
    value = eng.loss_and_gradient(X, T, kind, scale, pw, w)
    return value, model.flat_grads.copy()


@_exclusive("fit_lbfgs")
def fit_lbfgs(model, X, y, *, loss, optimizer=None, sample_weight=None, class_weight=None):
    """Full-batch training by scipy.optimize.minimize(method="L-BFGS-B") on the flat parameter
    vector, each evaluation one native call for the loss and the whole gradient over all rows
    (weighted by sample_weight and class_weight as in fit).
    The model keeps its dtype (scipy works in float64; a float32 model computes in float32).
    scipy's BLAS stays on one thread for the whole fit (L-BFGS-B's own products included), so
    its pool never competes with bpcore's threads between evaluations.
    Returns {"loss": [loss after each iteration], "result": scipy's OptimizeResult}."""
    from scipy.optimize import minimize

    settings = optimizer if optimizer is not None else LBFGS()
    if not isinstance(settings, LBFGS):
        raise TypeError(f"optimizer: expected bpcore.LBFGS, got {type(settings).__name__}")
    eng = engine_for(model)
    X = engine_input(model, X)
    kind, T, pw = _target(model, loss, y, X.shape[0])
    eng.check_data(X, T, kind)
    rows = _row_weights(model, loss, kind, T, sample_weight, class_weight)
    # the reduction, as a factor
    scale = loss.from_sum(1.0, weight_total(rows, X.shape[0]), model.n_outputs)
    losses = []
    last = {}  # the last point evaluated and its loss: the callback's point, almost always

    def objective(w):
        model.flat_params[...] = w
        value = eng.loss_and_gradient(X, T, kind, scale, pw, rows)
        if not np.isfinite(value):
            raise NonFiniteError(f"fit_lbfgs: the loss became {value} during L-BFGS")
        last["w"], last["loss"] = w.copy(), value
        return value, model.flat_grads.astype(np.float64)

    def after_iteration(w):
        if not np.array_equal(w, last["w"]):
            objective(w)
        losses.append(last["loss"])

    # scipy's BLAS on one thread for the whole fit, not only inside each evaluation: L-BFGS-B's
    # own products would start its pool, whose workers then spin on the core the next
    # evaluation's threads need (measured: 0.29 s -> 0.18 s for 204 evaluations on 2 cores)
    with _threads.blas_pinned():
        result = minimize(objective, model.flat_params.astype(np.float64), jac=True,
                          method="L-BFGS-B", callback=after_iteration,
                          options={"maxiter": settings.max_iter, "maxfun": settings.max_fun,
                                   "ftol": settings.tol, "gtol": settings.tol,
                                   "maxcor": settings.history})
    model.flat_params[...] = result.x
    return {"loss": losses, "result": result}
