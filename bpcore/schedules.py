"""Learning-rate schedules: objects that say what the learning rate of each epoch should be.

A schedule maps (the lr a parameter group started with, the epoch about to run) to the lr for
that epoch. Every schedule is an :class:`LRSchedule` with four methods:

``lr_at(base_lr, epoch, samples_seen=0)``
    the lr for epoch ``epoch`` (0-based, the epoch about to run) of a group whose initial lr is
    ``base_lr``; ``samples_seen`` is the number of training samples processed before that
    epoch (only :class:`InverseScalingLR` reads it).
``observe(epoch, value)``
    the monitored value after epoch ``epoch`` (the validation loss if there is one, else the
    training loss). Only :class:`ReduceLROnPlateau` and :class:`AdaptiveLR` use it.
``apply(optimizer, epoch, samples_seen=0)``
    sets ``group["lr"] = lr_at(group["initial_lr"], epoch, samples_seen)`` for every group in
    ``optimizer.param_groups`` (a sequence of dicts, as in torch.optim; a bpcore optimizer
    checks each value as it is assigned).
``state_dict()`` / ``load_state_dict(state)``
    a JSON-able dict (numbers, strings, lists, None) from which a resumed run continues with
    exactly the same learning rates.

How ``fit`` uses one: before each epoch it calls ``schedule.apply(optimizer, epoch,
samples_seen)``; after the epoch it calls ``schedule.observe(epoch, loss)``. A hand-written
loop does the same::

    sched = schedules.StepLR(step_size=30, gamma=0.1)
    for epoch in range(epochs):
        sched.apply(opt, epoch)              # samples_seen=... too, for InverseScalingLR
        loss = train_one_epoch(model, opt)
        sched.observe(epoch, loss)           # a no-op unless the schedule watches the loss

The schedule objects are an addition, not a replacement: ``fit``'s ``schedule=`` still takes a
plain callable ``schedule(epoch) -> {"lr": ..., "momentum": ...}``, and that remains the
shortest way to write a schedule that also changes the momentum, such as the 1986 paper's
two-phase schedule (as in the README), still one line::

    model.fit(X, y, loss=loss, optimizer=opt, epochs=300,
              schedule=lambda sweep: {"lr": 0.005, "momentum": 0.5} if sweep < 20
                                     else {"lr": 0.01, "momentum": 0.9})

Schedules and their torch.optim.lr_scheduler / scikit-learn counterparts (learning rates
agree to rounding; tests/test_schedules.py checks each against the original):

========================  ===============================================================
``ConstantLR()``          the lr unchanged: scikit-learn MLP ``learning_rate="constant"``
``ConstantLR(f, n)``      torch ConstantLR(factor=f, total_iters=n)
``StepLR``                torch StepLR
``MultiStepLR``           torch MultiStepLR
``ExponentialLR``         torch ExponentialLR
``CosineAnnealingLR``     torch CosineAnnealingLR (its closed form)
``LinearWarmup``          torch SequentialLR([LinearLR(...), after], milestones=[n])
``LambdaLR``              torch LambdaLR
``ReduceLROnPlateau``     torch ReduceLROnPlateau (scalar min_lr)
``InverseScalingLR``      scikit-learn MLP ``learning_rate="invscaling"``
``AdaptiveLR``            scikit-learn MLP ``learning_rate="adaptive"``
========================  ===============================================================
"""
import math
import numbers

from bpcore._validation import check_choice, check_int, check_real

__all__ = [
    "LRSchedule", "ConstantLR", "StepLR", "MultiStepLR", "ExponentialLR", "CosineAnnealingLR",
    "LinearWarmup", "LambdaLR", "InverseScalingLR", "ReduceLROnPlateau", "AdaptiveLR",
]


def _check_epoch(epoch, name="epoch"):
    return check_int(epoch, name, low=0)


def _check_count(value, name):
    # sample counts outgrow check_int's 32-bit BLAS bound in long runs; only the sign matters
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected an integer >= 0, got {value}")
    return int(value)


def _check_observed(value, name="value"):
    # any real number, NaN and infinities included: a diverged run is observed, not refused
    # (torch's ReduceLROnPlateau counts a NaN as an epoch without improvement)
    if isinstance(value, (bool, str, bytes)):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} "
                        f"{value!r}") from None


def _float_to_json(x):
    # strict JSON has no infinities or NaN ("no best value yet" is an infinity)
    return x if math.isfinite(x) else repr(x)


def _float_from_json(x, name):
    if isinstance(x, str) and x in ("inf", "-inf", "nan"):
        return float(x)
    return _check_observed(x, name)


class LRSchedule:
    """Base class of the learning-rate schedules; see the module docstring for the protocol.

    A subclass implements ``lr_at``, and ``_settings`` (its constructor arguments, JSON-able,
    shown by repr and checked by load_state_dict); one that keeps state between epochs also
    implements ``observe``, ``_state`` and ``_load_state``.
    """

    def lr_at(self, base_lr, epoch, samples_seen=0):
        """The learning rate for epoch ``epoch`` of a group whose initial lr is ``base_lr``."""
        raise NotImplementedError

    def observe(self, epoch, value):
        """Record the monitored value after epoch ``epoch``; this schedule ignores it."""
        _check_epoch(epoch)
        _check_observed(value)

    def apply(self, optimizer, epoch, samples_seen=0):
        """Set each of ``optimizer.param_groups``' "lr" for epoch ``epoch``; returns the lrs.

        A group without "initial_lr" gets its current "lr" recorded as such first (as torch's
        schedulers do), so a plain torch optimizer can be driven too.
        """
        groups = getattr(optimizer, "param_groups", None)
        if groups is None:
            raise TypeError(f"optimizer: expected an object with param_groups, got "
                            f"{type(optimizer).__name__}")
        lrs = []
        for group in groups:
            group.setdefault("initial_lr", group["lr"])
            lr = self.lr_at(group["initial_lr"], epoch, samples_seen)
            group["lr"] = lr
            lrs.append(lr)
        return lrs

    def _settings(self):
        return {}

    def _state(self):
        return {}

    def _load_state(self, state):
        pass

    def state_dict(self):
        """{"schedule": class name, "settings": constructor arguments, "state": progress}."""
        return {"schedule": type(self).__name__, "settings": self._settings(),
                "state": self._state()}

    def load_state_dict(self, state_dict):
        """Continue from ``state_dict``, which must come from a schedule of the same class and
        settings (build the schedule as before, then load its state)."""
        if not isinstance(state_dict, dict) or not {"schedule", "settings", "state"} <= set(
                state_dict):
            raise TypeError(f"state_dict: expected a dict from {type(self).__name__}.state_dict(), "
                            f"got {state_dict!r}")
        name = type(self).__name__
        if state_dict["schedule"] != name:
            raise ValueError(f"state_dict: expected the state of a {name}, got that of a "
                             f"{state_dict['schedule']}")
        mine, saved = self._settings(), state_dict["settings"]
        for key in mine:
            if key not in saved or saved[key] != mine[key]:
                raise ValueError(f"state_dict: saved with {key}={saved.get(key)!r}, this {name} "
                                 f"has {key}={mine[key]!r}")
        self._load_state(state_dict["state"])

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._settings().items())
        return f"{type(self).__name__}({args})"

    def _check_query(self, base_lr, epoch, samples_seen):
        return (check_real(base_lr, "base_lr", low=0), _check_epoch(epoch),
                _check_count(samples_seen, "samples_seen"))


class ConstantLR(LRSchedule):
    """``factor * base_lr`` for the first ``total_iters`` epochs, then ``base_lr``.

    With the defaults, ``ConstantLR()``, the learning rate never changes (scikit-learn's
    ``learning_rate="constant"``). With arguments it is torch's ConstantLR, whose *defaults*
    differ (torch: factor=1/3, total_iters=5, a short damped start, not a constant lr).
    """

    def __init__(self, factor=1.0, total_iters=0):
        self.factor = check_real(factor, "factor", low=0, high=1)
        self.total_iters = check_int(total_iters, "total_iters", low=0)

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, _ = self._check_query(base_lr, epoch, samples_seen)
        return base_lr * self.factor if epoch < self.total_iters else base_lr

    def _settings(self):
        return {"factor": self.factor, "total_iters": self.total_iters}


class StepLR(LRSchedule):
    """``base_lr * gamma ** (epoch // step_size)``: multiplied by gamma every step_size epochs."""

    def __init__(self, step_size, gamma=0.1):
        self.step_size = check_int(step_size, "step_size", low=1)
        self.gamma = check_real(gamma, "gamma", low=0, low_open=True)

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, _ = self._check_query(base_lr, epoch, samples_seen)
        return base_lr * self.gamma ** (epoch // self.step_size)

    def _settings(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class MultiStepLR(LRSchedule):
    """``base_lr`` multiplied by gamma once for every milestone <= epoch.

    A milestone listed twice counts twice (as in torch); the order does not matter.
    """

    def __init__(self, milestones, gamma=0.1):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, "__iter__"):
            raise TypeError(f"milestones: expected a list of epochs, got "
                            f"{type(milestones).__name__} {milestones!r}")
        checked = [check_int(m, f"milestones[{i}]", low=1) for i, m in enumerate(milestones)]
        if not checked:
            raise ValueError("milestones: expected at least one epoch, got none")
        self.milestones = sorted(checked)
        self.gamma = check_real(gamma, "gamma", low=0, low_open=True)

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, _ = self._check_query(base_lr, epoch, samples_seen)
        passed = sum(1 for m in self.milestones if m <= epoch)
        return base_lr * self.gamma ** passed

    def _settings(self):
        return {"milestones": list(self.milestones), "gamma": self.gamma}


class ExponentialLR(LRSchedule):
    """``base_lr * gamma ** epoch``."""

    def __init__(self, gamma):
        self.gamma = check_real(gamma, "gamma", low=0, low_open=True)

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, _ = self._check_query(base_lr, epoch, samples_seen)
        return base_lr * self.gamma ** epoch

    def _settings(self):
        return {"gamma": self.gamma}


class CosineAnnealingLR(LRSchedule):
    """Half a cosine from ``base_lr`` (epoch 0) down to ``eta_min`` (epoch T_max):
    ``eta_min + (base_lr - eta_min) * (1 + cos(pi * epoch / T_max)) / 2``.

    Past T_max the formula keeps going, as torch's CosineAnnealingLR does: the lr climbs back
    along the cosine to ``base_lr`` at 2*T_max, falls again to ``eta_min`` at 3*T_max, and so
    on (period 2*T_max). To stay at eta_min, train for T_max + 1 epochs at most, or use
    :class:`LambdaLR` with ``min(epoch, T_max)``.
    """

    def __init__(self, T_max, eta_min=0.0):
        self.T_max = check_int(T_max, "T_max", low=1)
        self.eta_min = check_real(eta_min, "eta_min", low=0)

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, _ = self._check_query(base_lr, epoch, samples_seen)
        cosine = math.cos(math.pi * epoch / self.T_max)
        return self.eta_min + (base_lr - self.eta_min) * (1 + cosine) / 2

    def _settings(self):
        return {"T_max": self.T_max, "eta_min": self.eta_min}


class LinearWarmup(LRSchedule):
    """A linear ramp from ``start_factor * base_lr`` (epoch 0) towards ``base_lr`` over
    ``warmup_epochs`` epochs, then the schedule ``after`` (or ``base_lr`` if None).

    ``after`` counts its own epochs from 0 at the end of the warm-up, so
    ``LinearWarmup(5, 0.1, after=CosineAnnealingLR(95))`` is torch's
    ``SequentialLR(opt, [LinearLR(opt, 0.1, total_iters=5), CosineAnnealingLR(opt, 95)],
    milestones=[5])``. ``samples_seen`` is passed on unchanged (it still counts the warm-up's
    samples), and values observed during the warm-up are not passed on, so that a plateau
    schedule after it starts from the first post-warm-up epoch (torch's SequentialLR refuses
    ReduceLROnPlateau altogether).
    """

    def __init__(self, warmup_epochs, start_factor=1.0 / 3, after=None):
        self.warmup_epochs = check_int(warmup_epochs, "warmup_epochs", low=0)
        self.start_factor = check_real(start_factor, "start_factor", low=0, high=1,
                                       low_open=True)
        if after is not None and not isinstance(after, LRSchedule):
            raise TypeError(f"after: expected an LRSchedule or None, got "
                            f"{type(after).__name__} {after!r}")
        self.after = after

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, samples_seen = self._check_query(base_lr, epoch, samples_seen)
        if epoch < self.warmup_epochs:
            ramp = (1 - self.start_factor) * epoch / self.warmup_epochs
            return base_lr * (self.start_factor + ramp)
        if self.after is None:
            return base_lr
        return self.after.lr_at(base_lr, epoch - self.warmup_epochs, samples_seen)

    def observe(self, epoch, value):
        epoch = _check_epoch(epoch)
        value = _check_observed(value)
        if self.after is not None and epoch >= self.warmup_epochs:
            self.after.observe(epoch - self.warmup_epochs, value)

    def _settings(self):
        return {"warmup_epochs": self.warmup_epochs, "start_factor": self.start_factor,
                "after": None if self.after is None else type(self.after).__name__}

    def _state(self):
        return {"after": None if self.after is None else self.after.state_dict()}

    def _load_state(self, state):
        if self.after is not None:
            self.after.load_state_dict(state["after"])

    def __repr__(self):
        return (f"LinearWarmup(warmup_epochs={self.warmup_epochs}, "
                f"start_factor={self.start_factor!r}, after={self.after!r})")


class LambdaLR(LRSchedule):
    """``base_lr * fn(epoch)`` for a function ``fn`` of the epoch (0-based).

    ``fn`` is not saved by ``state_dict``: rebuild the schedule with the same function.
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"fn: expected a function of the epoch, got {type(fn).__name__} {fn!r}")
        self.fn = fn

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, _ = self._check_query(base_lr, epoch, samples_seen)
        factor = check_real(self.fn(epoch), f"fn({epoch})", low=0)
        return base_lr * factor

    def _settings(self):
        return {}

    def __repr__(self):
        return f"LambdaLR(fn={getattr(self.fn, '__qualname__', repr(self.fn))})"


class InverseScalingLR(LRSchedule):
    """``base_lr / (samples_seen + 1) ** power_t``: scikit-learn's MLP
    ``learning_rate="invscaling"``.

    scikit-learn updates its lr after each epoch from the number of training samples seen so
    far, t, as ``learning_rate_init / (t + 1) ** power_t`` (SGDOptimizer.iteration_ends;
    its documentation writes ``/ pow(t, power_t)``, the code has always used t + 1); so
    the first epoch runs at ``base_lr`` and epoch e of n samples each at
    ``base_lr / (e * n + 1) ** power_t``. The lr depends on ``samples_seen`` only: the caller
    must pass it (fit does); an epoch after the first with ``samples_seen=0`` is refused, since
    it would silently keep the lr at base_lr.
    """

    def __init__(self, power_t=0.5):
        self.power_t = check_real(power_t, "power_t", low=0)

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, epoch, samples_seen = self._check_query(base_lr, epoch, samples_seen)
        if epoch > 0 and samples_seen == 0:
            raise ValueError(f"samples_seen: expected the number of training samples processed "
                             f"before epoch {epoch} (InverseScalingLR decays with it), got 0")
        return base_lr / (samples_seen + 1) ** self.power_t

    def _settings(self):
        return {"power_t": self.power_t}


class ReduceLROnPlateau(LRSchedule):
    """Multiply the lr by ``factor`` when the monitored value stops improving: torch's
    ReduceLROnPlateau, with ``observe(epoch, value)`` in the place of ``scheduler.step(value)``.

    After each observed epoch: the value improves on the best so far if it is below
    ``best * (1 - threshold)`` (mode "min", threshold_mode "rel"), below ``best - threshold``
    ("min", "abs"), above ``best * (1 + threshold)`` ("max", "rel") or above
    ``best + threshold`` ("max", "abs"); an improvement becomes the new best and clears the
    count of bad epochs, anything else adds one. For ``cooldown`` epochs after a reduction bad
    epochs are not counted. When the count exceeds ``patience`` (patience + 1 bad epochs in a
    row) the lr is reduced, from the following epoch on, to ``max(lr * factor, min_lr)``,
    unless that would change it by ``eps`` or less. ``lr_at`` returns the lr after all the
    reductions observed so far (its ``epoch`` is only checked), each group's reductions
    replayed from its own base_lr exactly as torch applies them. ``min_lr`` is one number for
    all groups (torch also takes a list, one per group).

    scikit-learn's ``learning_rate="adaptive"`` looks close to
    ``ReduceLROnPlateau(factor=0.2, patience=n_iter_no_change, threshold=tol,
    threshold_mode="abs", eps=0.0)`` but is not the same rule: scikit-learn counts an epoch
    as good when the loss is at most (not strictly below) ``best - tol``, moves its best to
    every new minimum even when the gain is below tol, and stops training once the lr is
    1e-6 or less instead of flooring it. A loss falling by tol/2 per epoch, for instance, is a
    plateau to scikit-learn (every epoch misses the moving best by more than tol - tol/2) and
    steady progress to torch (its best stays put until beaten by more than tol, which
    happens every two or three epochs, too often for patience >= 2 to run out).
    :class:`AdaptiveLR` reproduces scikit-learn exactly.
    """

    def __init__(self, mode="min", factor=0.1, patience=10, threshold=1e-4,
                 threshold_mode="rel", cooldown=0, min_lr=0.0, eps=1e-8):
        self.mode = check_choice(mode, "mode", ("min", "max"))
        self.factor = check_real(factor, "factor", low=0, high=1, high_open=True)
        self.patience = check_int(patience, "patience", low=0)
        self.threshold = check_real(threshold, "threshold", low=0)
        self.threshold_mode = check_choice(threshold_mode, "threshold_mode", ("rel", "abs"))
        self.cooldown = check_int(cooldown, "cooldown", low=0)
        self.min_lr = check_real(min_lr, "min_lr", low=0)
        self.eps = check_real(eps, "eps", low=0)
        self.best = math.inf if self.mode == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0
        self.num_reductions = 0
        self.last_epoch = None

    def _improves(self, value):
        if self.mode == "min":
            bar = (self.best * (1.0 - self.threshold) if self.threshold_mode == "rel"
                   else self.best - self.threshold)
            return value < bar
        bar = (self.best * (1.0 + self.threshold) if self.threshold_mode == "rel"
               else self.best + self.threshold)
        return value > bar

    def observe(self, epoch, value):
        self.last_epoch = _check_epoch(epoch)
        value = _check_observed(value)
        if self._improves(value):
            self.best = value
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            self.num_reductions += 1
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0

    def lr_at(self, base_lr, epoch, samples_seen=0):
        lr, _, _ = self._check_query(base_lr, epoch, samples_seen)
        # replayed one reduction at a time, not lr * factor**k: torch multiplies the group's
        # current lr each time, and the min_lr floor and eps rule act step by step
        for _ in range(self.num_reductions):
            reduced = max(lr * self.factor, self.min_lr)
            if not lr - reduced > self.eps:
                break  # every later reduction would be refused too
            lr = reduced
        return lr

    def _settings(self):
        return {"mode": self.mode, "factor": self.factor, "patience": self.patience,
                "threshold": self.threshold, "threshold_mode": self.threshold_mode,
                "cooldown": self.cooldown, "min_lr": self.min_lr, "eps": self.eps}

    def _state(self):
        return {"best": _float_to_json(self.best), "num_bad_epochs": self.num_bad_epochs,
                "cooldown_counter": self.cooldown_counter,
                "num_reductions": self.num_reductions, "last_epoch": self.last_epoch}

    def _load_state(self, state):
        self.best = _float_from_json(state["best"], "state_dict['state']['best']")
        self.num_bad_epochs = check_int(state["num_bad_epochs"], "num_bad_epochs", low=0)
        self.cooldown_counter = check_int(state["cooldown_counter"], "cooldown_counter", low=0)
        self.num_reductions = check_int(state["num_reductions"], "num_reductions", low=0)
        last = state["last_epoch"]
        self.last_epoch = None if last is None else _check_epoch(last, "last_epoch")


# scikit-learn's SGDOptimizer.trigger_stopping: at or below this lr a plateau ends training
_SKLEARN_STOP_LR = 1e-6


class AdaptiveLR(LRSchedule):
    """scikit-learn's MLP ``learning_rate="adaptive"``: the lr is divided by 5 each time the
    monitored loss fails to improve by ``tol`` for more than ``n_iter_no_change`` epochs.

    The rule, after each epoch's loss L (scikit-learn's ``_update_no_improvement_count`` and
    ``_fit_stochastic``): the epoch is bad if ``L > best - tol``, else good (the bad count
    restarts); ``best`` then becomes L if L < best (any new minimum, even a small one); when
    the bad count exceeds ``n_iter_no_change`` the count restarts and the lr for the following
    epochs is divided by 5 -- unless it is already 1e-6 or less, where scikit-learn stops
    training instead. A schedule cannot stop ``fit``: the lr then stays where it is, and
    ``sklearn_would_stop(base_lr)`` says whether scikit-learn would have stopped by now (a
    fit callback can return it). To follow scikit-learn's ``early_stopping=True`` variant,
    which watches a validation *score* to be maximised, observe ``-score``: the same rule
    holds for the negated score.
    """

    def __init__(self, tol=1e-4, n_iter_no_change=10):
        self.tol = check_real(tol, "tol", low=0)
        self.n_iter_no_change = check_int(n_iter_no_change, "n_iter_no_change", low=1)
        self.best_loss = math.inf
        self.no_improvement_count = 0
        self.num_reductions = 0

    def observe(self, epoch, value):
        _check_epoch(epoch)
        value = _check_observed(value)
        # written as scikit-learn's comparisons, so that ties and NaN go the same way
        if value > self.best_loss - self.tol:
            self.no_improvement_count += 1
        else:
            self.no_improvement_count = 0
        if value < self.best_loss:
            self.best_loss = value
        if self.no_improvement_count > self.n_iter_no_change:
            self.num_reductions += 1
            self.no_improvement_count = 0

    def _replay(self, base_lr):
        """(lr after the reductions so far, whether one of them found lr <= 1e-6)."""
        lr = base_lr
        for _ in range(self.num_reductions):
            if lr <= _SKLEARN_STOP_LR:
                return lr, True
            lr /= 5.0
        return lr, False

    def lr_at(self, base_lr, epoch, samples_seen=0):
        base_lr, _, _ = self._check_query(base_lr, epoch, samples_seen)
        return self._replay(base_lr)[0]

    def sklearn_would_stop(self, base_lr):
        """Whether scikit-learn, starting from ``base_lr``, would have ended training by now."""
        return self._replay(check_real(base_lr, "base_lr", low=0))[1]

    def _settings(self):
        return {"tol": self.tol, "n_iter_no_change": self.n_iter_no_change}

    def _state(self):
        return {"best_loss": _float_to_json(self.best_loss),
                "no_improvement_count": self.no_improvement_count,
                "num_reductions": self.num_reductions}

    def _load_state(self, state):
        self.best_loss = _float_from_json(state["best_loss"], "state_dict['state']['best_loss']")
        self.no_improvement_count = check_int(state["no_improvement_count"],
                                              "no_improvement_count", low=0)
        self.num_reductions = check_int(state["num_reductions"], "num_reductions", low=0)
