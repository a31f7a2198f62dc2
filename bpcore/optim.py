"""Optimizers over flat parameter buffers, in the manner of torch.optim.

Every optimizer keeps its state (velocities, moments) in flat native buffers laid out like the
parameters and updates with one native loop (bpcore._optim); the training engine calls the same
update on each block of a layer's gradient as it forms it. Settings live in ``param_groups``
(a tuple of dicts, as torch.optim's list), so weights and biases can have their own learning
rate or weight decay::

    weights = [p for p in model.parameters() if p.name == "W"]
    biases = [p for p in model.parameters() if p.name == "b"]
    opt = bpcore.AdamW([{"params": weights, "weight_decay": 1e-2},
                        {"params": biases, "weight_decay": 0.0}], lr=1e-3)

- ``SGD``: the 1986 paper's eq. 9 (also scikit-learn's form), ``v <- momentum * v - lr * g;
  w <- w + v``, which with a constant learning rate matches ``torch.optim.SGD`` step for step.
  Options: ``nesterov``; ``weight_decay`` (L2: ``g <- g + weight_decay * w``, as torch;
  with ``decay_form="sklearn"``, ``g <- g + weight_decay * w / batch_weight``, the gradient
  of scikit-learn's ``alpha / 2 |W|^2`` added to the summed loss, divided by the batch's
  summed sample weight with the rest of the mean); ``decay`` (the paper's decoupled decay, ``w <- (1 - decay) * w`` after each update).
- ``Adam``, ``AdamW`` (decoupled weight decay, ``w <- (1 - lr * weight_decay) w``), both with
  ``amsgrad``; ``eps_form="torch"`` puts eps after the bias correction as torch.optim.Adam,
  ``"sklearn"`` on the uncorrected sqrt(v), with ``lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``,
  as scikit-learn's MLP; ``decay_form`` as for SGD.
- ``clip_grad_norm``: scale gradients to a global norm (torch.nn.utils.clip_grad_norm_).
- ``LBFGS``: the settings of full-batch training through scipy.optimize (see bpcore.training).

Every setting is checked when it is assigned, as an attribute (``opt.lr = 0.1`` sets every
group's) or in a group (``opt.param_groups[1]["weight_decay"] = 0.0``); ``native()`` checks
them again before each step. An optimizer holds its Parameters, not their buffers: made over a
layer that later joins a network, it follows the layer's weights into the network's buffers,
keeping its state.
"""
import math

import numpy as np

from bpcore import _optim
from bpcore._claims import Claimed
from bpcore._validation import check_choice, check_fits, check_int, check_real
from bpcore.errors import NonFiniteError
from bpcore.params import Parameter

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "LBFGS", "clip_grad_norm"]

_RULE = _optim.Rule


def _as_parameter_list(params, name="params"):
    if hasattr(params, "parameters"):
        params = params.parameters()
    if isinstance(params, (str, bytes, dict)) or not hasattr(params, "__iter__"):
        raise TypeError(f"{name}: expected a model or a list of its Parameters, got "
                        f"{type(params).__name__}")
    params = list(params)
    if not params:
        raise ValueError(f"{name}: expected at least one parameter, got none")
    for i, p in enumerate(params):
        if not isinstance(p, Parameter):
            raise TypeError(f"{name}[{i}]: expected a bpcore Parameter, got {type(p).__name__}")
        if p.data.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}[{i}]: expected float32 or float64, got {p.data.dtype.name}")
    return params


def _as_groups(params):
    """[{"params": [...], settings...}] from a model, a list of Parameters or a list of dicts."""
    if (isinstance(params, (list, tuple)) and params
            and all(isinstance(g, dict) for g in params)):
        groups = []
        for i, g in enumerate(params):
            if "params" not in g:
                raise ValueError(f"params[{i}]: expected a dict with a 'params' entry")
            groups.append({**g, "params": tuple(_as_parameter_list(g["params"], f"params[{i}]"))})
        return groups
    return [{"params": tuple(_as_parameter_list(params))}]


def _check_distinct(params):
    """Refuse a weight listed twice, as one Parameter object or as two over the same memory
    (it would be updated twice per step), and a gradient that shares memory with a weight."""
    regions = []
    for p in params:
        for kind, flat in (("data", p.flat_data), ("grad", p.flat_grad)):
            if p.size:
                start = flat.ctypes.data + p.offset * flat.itemsize
                regions.append((start, start + p.size * flat.itemsize, kind, p))
    regions.sort(key=lambda r: r[:2])
    for (_, end, kind, p), (start, _, other_kind, q) in zip(regions, regions[1:]):
        if start >= end:
            continue
        if p is q and kind == other_kind:
            raise ValueError(f"params: {p!r} appears more than once")
        if p is q:
            raise ValueError(f"params: expected {p!r}'s gradient apart from its data, got "
                             f"them sharing memory")
        what = "gradients" if kind == other_kind == "grad" else "memory"
        raise ValueError(f"params: expected each weight once, got {p!r} and {q!r} sharing "
                         f"{what}")


def _runs(groups):
    """(data, grad, group) for each run of parameters back to back in one flat buffer and one
    group; the group of every parameter; and the parameters in that order. All follow the
    parameters' order in their flat buffers, not the groups' order, so the optimizer's state of
    the weight at offset k of a network's buffer sits at offset k of the state (what the
    training engine relies on), and each parameter's state is where the ones before it end."""
    buffers = {}  # id of a flat buffer -> its rank of first appearance
    tagged = []
    for gi, group in enumerate(groups):
        for p in group["params"]:
            rank = buffers.setdefault(id(p.flat_data), len(buffers))
            tagged.append((rank, p.offset, gi, p))
    tagged.sort(key=lambda t: t[:2])
    runs, group_of, order = [], [], []
    for _, _, gi, p in tagged:
        order.append(p)
        group_of.append(gi)
        start, stop = p.offset, p.offset + p.size
        last = runs[-1] if runs else None
        if last is not None and last[0] is p.flat_data and last[3] == start and last[4] == gi:
            last[3] = stop
        else:
            runs.append([p.flat_data, p.flat_grad, start, stop, gi])
    return [(flat[a:b], gflat[a:b], gi) for flat, gflat, a, b, gi in runs], group_of, order


def _state_starts(order):
    """{id(parameter): where its state starts} for parameters in _runs' order."""
    starts, at = {}, 0
    for p in order:
        starts[id(p)] = at
        at += p.size
    return starts


class ParamGroup(dict):
    """One parameter group of an optimizer: its Parameters under "params" and its settings, a
    dict as in torch.optim. Every assignment (``group["lr"] = 0.01``, ``update``,
    ``setdefault``) is checked by the optimizer as it is made, so a bad value fails where it is
    written, not at the next step; the parameters are fixed and no setting can be removed."""

    __slots__ = ("_optimizer",)

    def __init__(self, optimizer, settings):
        super().__init__(settings)
        self._optimizer = optimizer

    def __setitem__(self, key, value):
        self.update({key: value})

    def update(self, *args, **kwargs):
        changes = dict(*args, **kwargs)
        super().update(self._optimizer.check_settings(self, changes))

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other):
        self.update(other)
        return self

    def _refuse_removal(self, *args):
        raise TypeError("param_groups: expected settings to be changed, not removed (the "
                        "optimizer reads every one at each step)")

    __delitem__ = pop = popitem = clear = _refuse_removal

    def __reduce__(self):
        # copies (copy, deepcopy, pickle) are plain dicts of the settings: a group belongs to
        # its optimizer, which a copy of the dict alone could not check against
        return dict, (dict(self),)


def _setting(name):
    """A property for the setting `name` of the first group; setting it checks the value and
    sets it in every group (or in none)."""

    def get(self):
        return self.param_groups[0][name]

    def set(self, value):
        self.set_everywhere({name: value})

    return property(get, set, doc=f"The {name} of the first group; setting it sets every "
                                  f"group's.")


# every setting some optimizer has: assigning one an optimizer does not have would otherwise
# add an attribute nothing reads
_SETTING_NAMES = {"lr", "momentum", "weight_decay", "decay", "nesterov", "betas", "beta1",
                  "beta2", "eps", "amsgrad", "eps_form"}


class Optimizer:
    """Base class: parameter groups, a native state, ``step``, ``zero_grad`` and state dicts.

    Subclasses set ``rule`` and ``defaults`` and check each setting in ``check_setting``.
    """

    rule = None
    defaults = {}

    def __init__(self, params, flags=None, **settings):
        groups = _as_groups(params)
        _check_distinct([p for g in groups for p in g["params"]])
        dtypes = {p.data.dtype for g in groups for p in g["params"]}
        if len(dtypes) > 1:
            raise TypeError(f"params: expected one dtype, got {sorted(d.name for d in dtypes)}")
        self.dtype = dtypes.pop()
        base = {**self.defaults, **settings}
        param_groups = []
        for group in groups:
            unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
            if unknown:
                raise ValueError(f"params: unknown setting {sorted(unknown)[0]!r} in a group; "
                                 f"expected {', '.join(sorted(self.defaults))}")
            merged = {**base, **group}
            merged.setdefault("initial_lr", merged["lr"])
            param_groups.append(ParamGroup(self, merged))
        # a tuple: the native state has one slot per group, made here
        self.param_groups = tuple(param_groups)
        self.flags = dict(flags or {})
        self._build_native()
        self.native()  # checks every setting now, not at the first step

    def _build_native(self):
        """A fresh native state over the parameters where they are now."""
        runs, group_of, self._order = _runs(self.param_groups)
        self._native = _optim.OptimizerState(self.rule, self.dtype, runs, group_of,
                                             len(self.param_groups), **self.flags)
        self._applied = [None] * len(self.param_groups)  # the settings last given to _native
        # where each parameter was when the native state was made (it holds views there)
        self._layout = tuple((p, p.flat_data, p.offset) for p in self._order)

    def _follow_parameters(self):
        """Rebuild the native state over the buffers the parameters have moved to (a layer
        that joined a network after this optimizer was made), keeping each parameter's state
        (velocities, moments) and the step count: the optimizer follows its Parameters."""
        old, old_starts = self._native, _state_starts(self._order)
        _check_distinct(self.params)
        self._build_native()
        new_starts = _state_starts(self._order)
        previous = old.state()
        for name, buf in self._native.state().items():
            for p in self._order:
                a, b = old_starts[id(p)], new_starts[id(p)]
                buf[b:b + p.size] = previous[name][a:a + p.size]
        self._native.steps = old.steps

    def __setattr__(self, name, value):
        if name in _SETTING_NAMES and not hasattr(type(self), name):
            raise AttributeError(f"{name}: expected a setting of {type(self).__name__} "
                                 f"({', '.join(self.defaults)}), got {name!r}")
        super().__setattr__(name, value)

    @property
    def params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def check_setting(self, name, value):
        """value checked for the setting `name` (ValueError/TypeError naming it)."""
        return check_fits(check_real(value, name, low=0), name, self.dtype)

    def check_group(self, settings, changed=()):
        """Raise unless a group's settings, each already checked, go together (`changed`: the
        names just assigned, for the error to name)."""

    def check_settings(self, group, changes):
        """changes ({name: value}) to the settings of group, checked, with the group they
        would make: what every assignment to a group goes through."""
        checked = {}
        for key, value in changes.items():
            if key == "params":
                raise TypeError("params: expected the group's parameters to stay those the "
                                "optimizer was made with (make a new optimizer for others)")
            if key == "initial_lr":
                checked[key] = check_real(value, key, low=0)
            elif key in self.defaults:
                checked[key] = self.check_setting(key, value)
            else:
                raise ValueError(f"param_groups: expected a setting of {type(self).__name__} "
                                 f"({', '.join(self.defaults)}, initial_lr), got {key!r}")
        self.check_group({**group, **checked}, tuple(checked))
        return checked

    def set_everywhere(self, changes):
        """Set the settings in changes ({name: value}) in every group, or, if one is refused
        for any group, in none."""
        for group in self.param_groups:
            self.check_settings(group, changes)
        for group in self.param_groups:
            group.update(changes)

    def native(self):
        """The native state, with every group's current settings checked and applied: what
        ``step`` and the training engine update with. If the parameters have moved to other
        buffers since it was made, it is rebuilt there first."""
        for p, flat, offset in self._layout:
            if p.flat_data is not flat or p.offset != offset:
                self._follow_parameters()
                break
        applied = self._applied
        for i, group in enumerate(self.param_groups):
            if applied[i] is not None and all(group[k] is v for k, v in applied[i].items()):
                continue  # unchanged since last applied: a steady-state step allocates nothing
            # checked again: a group is a dict, and dict.__setitem__ called directly bypasses
            # the check on assignment
            settings = {k: self.check_setting(k, group[k]) for k in self.defaults}
            self.check_group(settings)
            self._native.configure(i, **settings)
            applied[i] = {k: group[k] for k in self.defaults}
        return self._native

    def step(self):
        """Apply one update to every parameter from its accumulated gradient. A gradient with
        a NaN or an infinity raises bpcore.NonFiniteError before anything is changed; so does
        an update that overflows, after it (the parameters then hold its values)."""
        if self.flags.get("sklearn_decay"):
            raise ValueError("decay_form: step() cannot apply decay_form='sklearn' (it needs "
                             "the batch's summed weight, which train_step and fit know); got "
                             "'sklearn'")
        params = self.params
        with Claimed([p.data for p in params] + [p.grad for p in params], "step"):
            failed = self.native().step()
        if failed == "gradient":
            raise NonFiniteError("step: a gradient is NaN or infinite; no parameter was updated")
        if failed == "update":
            raise NonFiniteError("step: the update wrote a NaN or an infinity into the "
                                 "parameters (the gradient was finite: the learning rate is "
                                 "too large for it)")

    def zero_grad(self):
        params = self.params
        with Claimed([p.grad for p in params], "zero_grad"):
            for p in params:
                p.grad[...] = 0

    @property
    def steps(self):
        """Updates applied so far (by step, train_step or fit)."""
        return self._native.steps

    lr = _setting("lr")

    def state_dict(self):
        """Settings, step count and state buffers (copies): everything a resume needs."""
        self.native()  # follows parameters that moved, so the buffers are laid out as they are
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.param_groups]
        return {"type": type(self).__name__, "steps": self.steps, "flags": self.flags,
                "param_groups": groups,
                "shapes": [[list(p.shape) for p in g["params"]] for g in self.param_groups],
                "buffers": {k: v.copy() for k, v in self._native.state().items()}}

    def load_state_dict(self, state):
        """Restore what state_dict() returned (from this kind of optimizer over the same
        parameters); ValueError naming what does not match."""
        if state.get("type") != type(self).__name__ or state.get("flags") != self.flags:
            raise ValueError(f"state: expected the state of a {type(self).__name__} with "
                             f"{self.flags}, got {state.get('type')!r} with {state.get('flags')}")
        groups = state.get("param_groups")
        self.native()  # follows parameters that moved, so the buffers are laid out as they are
        if not isinstance(groups, list) or len(groups) != len(self.param_groups):
            raise ValueError(f"state: expected {len(self.param_groups)} parameter groups")
        mine = self._native.state()
        buffers = state.get("buffers", {})
        if set(buffers) != set(mine):
            raise ValueError(f"state: expected buffers {sorted(mine)}, got {sorted(buffers)}")
        for name, buf in buffers.items():
            buf = np.asarray(buf)
            if buf.shape != mine[name].shape:
                raise ValueError(f"state: expected {name} of shape {mine[name].shape}, "
                                 f"got {buf.shape}")
            if not np.isfinite(buf).all():
                raise ValueError(f"state: expected finite values in {name}")
        shapes = [[list(p.shape) for p in g["params"]] for g in self.param_groups]
        if state.get("shapes") != shapes:
            raise ValueError(f"state: expected parameters of shapes {shapes} (by group), got "
                             f"{state.get('shapes')}")
        steps = check_int(state.get("steps"), "steps", low=0)
        restored = [{k: saved[k] for k in list(self.defaults) + ["initial_lr"] if k in saved}
                    for saved in groups]
        for group, settings in zip(self.param_groups, restored):
            self.check_settings(group, settings)  # all checked before any is changed
        with Claimed([p.data for p in self.params], "load_state_dict"):
            for group, settings in zip(self.param_groups, restored):
                group.update(settings)
            for name, buf in buffers.items():
                mine[name][...] = buf
            self._native.steps = steps

    def __repr__(self):
        shown = [f"{k}={self.param_groups[0][k]!r}" for k in self.defaults]
        shown += [f"{k}={v!r}" for k, v in self.flags.items() if v]
        groups = f", {len(self.param_groups)} groups" if len(self.param_groups) > 1 else ""
        return f"{type(self).__name__}({', '.join(shown)}{groups})"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov, L2 and decoupled weight decay.

    ``params``: a model (anything with ``parameters()``), a list of its Parameters, or a list
    of parameter-group dicts. Every setting may be changed between steps (schedules), through
    its attribute (every group) or ``param_groups[i][name]``; each value is checked as it is
    assigned.
    """

    rule = _RULE.SGD_RULE
    defaults = {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "decay": 0.0,
                "nesterov": False}

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 decay=0.0, decay_form="torch"):
        super().__init__(params, _decay_flags(decay_form), lr=lr, momentum=momentum,
                         nesterov=nesterov, weight_decay=weight_decay, decay=decay)

    def check_setting(self, name, value):
        if name == "nesterov":
            # bool("False") is True: only a truth value says what was meant
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"nesterov: expected True or False, got {type(value).__name__} "
                                f"{value!r}")
            return bool(value)
        v = super().check_setting(name, value)
        if name == "decay":
            check_real(v, "decay", low=0, high=1, high_open=True)
        return v

    def check_group(self, settings, changed=()):
        if settings["nesterov"] and settings["momentum"] == 0:
            name = "momentum" if "momentum" in changed else "nesterov"
            raise ValueError(f"{name}: expected momentum > 0 with Nesterov, got momentum=0")

    momentum = _setting("momentum")
    nesterov = _setting("nesterov")
    weight_decay = _setting("weight_decay")
    decay = _setting("decay")

    @property
    def decay_form(self):
        return _decay_form(self.flags)


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 ``weight_decay`` added to the gradient (torch.optim.Adam),
    ``amsgrad``, and eps placed as PyTorch does (``eps_form="torch"``) or as scikit-learn's MLP
    (``"sklearn"``)."""

    rule = _RULE.ADAM_RULE
    defaults = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    decoupled = False

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, eps_form="torch", decay_form="torch"):
        beta1, beta2 = _pair(betas)
        check_choice(eps_form, "eps_form", ("torch", "sklearn"))
        if eps_form == "sklearn" and amsgrad:
            raise ValueError("amsgrad: expected False with eps_form='sklearn' (scikit-learn's "
                             "Adam has no AMSGrad), got True")
        flags = {"decoupled": self.decoupled, "amsgrad": bool(amsgrad),
                 "sklearn_eps": eps_form == "sklearn", **_decay_flags(decay_form)}
        super().__init__(params, flags, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay)

    def check_setting(self, name, value):
        v = super().check_setting(name, value)
        if name in ("beta1", "beta2"):
            check_real(v, name, low=0, high=1, high_open=True)
        return v

    beta1 = _setting("beta1")
    beta2 = _setting("beta2")
    eps = _setting("eps")
    weight_decay = _setting("weight_decay")

    @property
    def betas(self):
        """(beta1, beta2) of the first group; setting them sets every group's."""
        return self.param_groups[0]["beta1"], self.param_groups[0]["beta2"]

    @betas.setter
    def betas(self, value):
        beta1, beta2 = _pair(value)
        self.set_everywhere({"beta1": beta1, "beta2": beta2})

    # fixed when the optimizer is made: they decide which state buffers it has
    @property
    def amsgrad(self):
        return self.flags["amsgrad"]

    @amsgrad.setter
    def amsgrad(self, value):
        raise AttributeError("amsgrad: fixed when the optimizer is made (it decides the state "
                             "it keeps); make a new optimizer")

    @property
    def eps_form(self):
        return "sklearn" if self.flags["sklearn_eps"] else "torch"

    @eps_form.setter
    def eps_form(self, value):
        raise AttributeError("eps_form: fixed when the optimizer is made; make a new optimizer")

    @property
    def decay_form(self):
        return _decay_form(self.flags)


def _decay_flags(decay_form):
    """The native flag of decay_form; absent for "torch", so that the flags (and the
    optimizer state files that record them) stay those of optimizers made before it existed."""
    check_choice(decay_form, "decay_form", ("torch", "sklearn"))
    return {"sklearn_decay": True} if decay_form == "sklearn" else {}


def _decay_form(flags):
    return "sklearn" if flags.get("sklearn_decay") else "torch"


def _pair(betas):
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}") from None
    return beta1, beta2


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter; torch.optim.AdamW): each step
    first shrinks w by ``lr * weight_decay``, apart from the gradient."""

    defaults = {**Adam.defaults, "weight_decay": 0.01}
    decoupled = True

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01,
                 amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad)


class LBFGS:
    """Full-batch training by L-BFGS-B (scipy.optimize.minimize) on the flat parameter vector:
    pass it as ``model.fit(..., optimizer=bpcore.LBFGS(...))``. Each evaluation is one native
    call for the loss and the whole gradient over all rows. ``max_iter`` and ``tol`` are
    scipy's ``maxiter`` and ``ftol``/``gtol``; ``max_fun`` its ``maxfun`` (as scikit-learn's
    MLP); ``history`` its ``maxcor``."""

    def __init__(self, max_iter=200, tol=1e-7, max_fun=15000, history=10):
        self.max_iter = check_int(max_iter, "max_iter", low=1)
        self.tol = check_real(tol, "tol", low=0)
        self.max_fun = check_int(max_fun, "max_fun", low=1)
        self.history = check_int(history, "history", low=1)

    def __repr__(self):
        return (f"LBFGS(max_iter={self.max_iter}, tol={self.tol:g}, max_fun={self.max_fun}, "
                f"history={self.history})")


def squared_norm(arrays):
    """The sum of the squares of the elements of arrays (float32 or float64), by the native
    global norm (in double): an L2 penalty's |W|^2 between epochs, without NumPy's BLAS (whose
    own thread pool would start between bpcore's calls) or a NumPy call per array's overhead."""
    norms = [_optim.py_global_norm(np.ascontiguousarray(a).reshape(-1)) for a in arrays]
    return sum(n * n for n in norms)  # a product, where ** would raise on overflow


def clip_grad_norm(params, max_norm):
    """Scale the gradients of params (a model or its Parameters) so that their global L2 norm
    is at most max_norm, as torch.nn.utils.clip_grad_norm_; returns the norm before scaling.
    The norm is taken natively, in double, without overflow for finite gradients; a NaN or
    infinite norm is returned as it is and the gradients are left unscaled."""
    params = _as_parameter_list(params)
    max_norm = check_real(max_norm, "max_norm", low=0, low_open=True)
    grads = [p.grad.reshape(-1) for p in params]
    with Claimed(grads, "clip_grad_norm"):
        norm = math.hypot(*(_optim.py_global_norm(g) for g in grads))
        coef = _optim.clip_factor(norm, max_norm)
        if coef < 1:
            for g in grads:
                _optim.py_scale(g, coef)
    return norm
