"""Callback objects for fit: ``model.fit(..., callbacks=[EarlyStopping(), Checkpoint(path)])``.

fit's callbacks are plain callables ``cb(epoch, logs)`` (a truthy return stops training), or
objects of a Callback subclass, which fit also hands the model and the optimizer:

- ``on_train_begin(model, optimizer, log_keys)`` once, after fit has checked its arguments and
  before the first epoch; ``log_keys`` are the keys every epoch's logs will have ("loss",
  "seconds", and with validation_data "val_loss", "val_accuracy"), so that a callback can
  refuse a setting before any epoch is spent;
- ``on_epoch_end(epoch, logs)`` after each epoch (``epoch`` counted from 0, ``logs`` as a plain
  callable gets them); a truthy return stops training (every callback still sees the epoch);
- ``on_train_end()`` when training ends without an exception: all epochs run, a callback
  stopped it, or ``on_nonfinite="stop"`` ended it. After an exception (Ctrl-C, a
  NonFiniteError) fit leaves the model as it was and calls no on_train_end.

A Callback is called like a plain callable (``cb(epoch, logs)`` is ``on_epoch_end``), so
anything that takes fit's callbacks takes these. The callbacks use the model's public API only
(``flat_params``, ``save``).
"""
import math
import numbers
import os

import numpy as np

from bpcore._validation import check_choice, check_int, check_real

__all__ = ["Callback", "EarlyStopping", "Checkpoint"]


class Callback:
    """Base of fit's callback objects (see the module's description of the protocol).

    ``root`` is False on every rank but the first of a data-parallel fit (``comm=``), set by
    fit before ``on_train_begin``: a callback that writes files or prints does so only where
    it is True (the logs, and so the decisions, are the same on every rank)."""

    root = True

    def on_train_begin(self, model, optimizer, log_keys):
        pass

    def on_epoch_end(self, epoch, logs):
        return False

    def on_train_end(self):
        pass

    def __call__(self, epoch, logs):
        return self.on_epoch_end(epoch, logs)


class EarlyStopping(Callback):
    """Stop training when ``monitor`` (a key of fit's logs: "loss", "val_loss",
    "val_accuracy", ...) has not improved by more than ``min_delta`` for ``patience`` epochs in
    a row.

    ``mode`` "min" wants the value to fall, "max" to rise; "auto" takes "max" for accuracy-like
    keys (any with "acc" in the name) and "min" for the others. A NaN never counts as an
    improvement. With ``restore_best`` the model's weights (``flat_params``) of the best epoch
    are copied as it ends, and put back when training ends (stopped or not); the optimizer's
    state stays that of the last epoch. After a fit: ``best`` (the best value, None before any
    improvement), ``best_epoch`` (counted from 0 as fit's callbacks count, an index into the
    history's lists; None if no epoch improved on the start), ``stopped_epoch`` (the epoch
    that stopped training, None if it ran to the end) and ``best_weights`` (the copy, None
    without restore_best), which survives an interrupted fit:
    ``model.flat_params = stopper.best_weights`` restores by hand after Ctrl-C.
    """

    def __init__(self, monitor="val_loss", patience=10, min_delta=0.0, mode="auto",
                 restore_best=True):
        if not isinstance(monitor, str):
            raise TypeError(f"monitor: expected a key of fit's logs such as 'val_loss', got "
                            f"{type(monitor).__name__} {monitor!r}")
        self.monitor = monitor
        self.patience = check_int(patience, "patience", low=1)
        self.min_delta = check_real(min_delta, "min_delta", low=0)
        check_choice(mode, "mode", ("auto", "min", "max"))
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        self.mode = mode
        if not isinstance(restore_best, (bool, np.bool_)):
            raise TypeError(f"restore_best: expected True or False, got "
                            f"{type(restore_best).__name__} {restore_best!r}")
        self.restore_best = bool(restore_best)
        self.best_weights = None
        self._model = None
        self._reset()

    def _reset(self):
        self.best = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.wait = 0  # epochs since the last improvement

    def on_train_begin(self, model, optimizer, log_keys):
        if self.monitor not in log_keys:
            hint = (" (val_loss and val_accuracy need fit's validation_data)"
                    if self.monitor.startswith("val_") and "val_loss" not in log_keys else "")
            raise ValueError(f"monitor: expected one of fit's logs "
                             f"{', '.join(repr(k) for k in log_keys)}, got "
                             f"{self.monitor!r}{hint}")
        self._reset()
        self._model = model
        self.best_weights = (np.empty_like(model.flat_params) if self.restore_best else None)

    def _value(self, logs):
        if self.monitor not in logs:
            raise ValueError(f"monitor: expected one of the epoch's logs "
                             f"{', '.join(repr(k) for k in logs)}, got {self.monitor!r}")
        value = logs[self.monitor]
        if value is None:
            raise ValueError(f"monitor: logs[{self.monitor!r}] is None (this loss has no "
                             f"accuracy rule for the network's outputs); monitor another key")
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"monitor: expected logs[{self.monitor!r}] to be a real number, "
                            f"got {type(value).__name__} {value!r}")
        return float(value)

    def _improves(self, value):
        if math.isnan(value):  # every comparison with NaN is False already; said for clarity
            return False
        if self.best is None:
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, epoch, logs):
        value = self._value(logs)
        if self._improves(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.best_weights is not None and self._model is not None:
                np.copyto(self.best_weights, self._model.flat_params)
            return False
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def on_train_end(self):
        if (self.restore_best and self._model is not None and self.best_epoch is not None):
            self._model.flat_params = self.best_weights
        self._model = None  # the callback does not keep the network alive


class Checkpoint(Callback):
    """Save the model (and fit's optimizer, with ``save_optimizer``) every ``every`` epochs
    with ``model.save``: a safetensors file written atomically (a crash leaves the previous
    file whole), read back by ``bpcore.load`` and ``bpcore.load_optimizer``.

    ``path`` may hold ``{epoch}`` (str.format, e.g. ``"ckpt-{epoch:03d}.safetensors"``): the
    number of epochs this fit has trained when the file is written (1 after the first); without
    it each save replaces the last. ``keep_last`` (with ``{epoch}`` in path) keeps only the
    newest that many files this callback wrote, deleting older ones. ``saved`` lists the files
    written in the last fit and still kept, oldest first.
    """

    def __init__(self, path, every=1, keep_last=None, save_optimizer=True):
        template = os.fspath(path) if isinstance(path, os.PathLike) else path
        if not isinstance(template, str):
            raise TypeError(f"path: expected a str or os.PathLike, got {type(path).__name__} "
                            f"{path!r}")
        try:
            first, second = template.format(epoch=1), template.format(epoch=2)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"path: expected a file name whose only replacement field is "
                             f"{{epoch}}, got {template!r} ({type(exc).__name__}: {exc})") from None
        self.path = template
        self.every = check_int(every, "every", low=1)
        if keep_last is not None:
            keep_last = check_int(keep_last, "keep_last", low=1)
            if first == second:
                raise ValueError(f"keep_last: expected None for a path without {{epoch}} "
                                 f"(each save replaces the one file), got {keep_last} with "
                                 f"path {template!r}")
        self.keep_last = keep_last
        if not isinstance(save_optimizer, (bool, np.bool_)):
            raise TypeError(f"save_optimizer: expected True or False, got "
                            f"{type(save_optimizer).__name__} {save_optimizer!r}")
        self.save_optimizer = bool(save_optimizer)
        self.saved = []
        self._model = self._optimizer = None

    def path_for(self, epochs_trained):
        """The file name for the save after ``epochs_trained`` epochs."""
        return self.path.format(epoch=epochs_trained)

    def on_train_begin(self, model, optimizer, log_keys):
        # a missing folder is found now, not after the first `every` epochs
        folder = os.path.dirname(self.path_for(self.every)) or os.curdir
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"path: the folder {folder!r} of {self.path!r} does not "
                                    f"exist")
        self._model = model
        self._optimizer = optimizer if self.save_optimizer else None
        self.saved = []

    def on_epoch_end(self, epoch, logs):
        if (epoch + 1) % self.every:
            return False
        if self._model is None:
            raise RuntimeError("Checkpoint: no model to save; pass the Checkpoint in fit's "
                               "callbacks (fit hands it the model in on_train_begin)")
        if not self.root:  # the other ranks hold the same weights: one writer
            return False
        path = self.path_for(epoch + 1)
        self._model.save(path, optimizer=self._optimizer)
        if path in self.saved:
            self.saved.remove(path)
        self.saved.append(path)
        if self.keep_last is not None:
            while len(self.saved) > self.keep_last:
                try:
                    os.remove(self.saved.pop(0))
                except FileNotFoundError:  # removed by someone else: nothing left to do
                    pass
        return False

    def on_train_end(self):
        self._model = self._optimizer = None
