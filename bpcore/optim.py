"""Optimizers over flat parameter buffers, in the manner of torch.optim.

Every optimizer keeps its state (velocities, moments) in flat native buffers laid out like the
parameters and updates with one native loop (bpcore._optim); the training engine calls the same
update on each block of a layer's gradient as it forms it. Settings live in ``param_groups``
(a list of dicts, as torch.optim), so weights and biases can have their own learning rate or
weight decay::

    weights = [p for p in model.parameters() if p.name == "W"]
    biases = [p for p in model.parameters() if p.name == "b"]
    opt = bpcore.AdamW([{"params": weights, "weight_decay": 1e-2},
                        {"params": biases, "weight_decay": 0.0}], lr=1e-3)

- ``SGD``: the 1986 paper's eq. 9 (also scikit-learn's form), ``v <- momentum * v - lr * g;
  w <- w + v``, which with a constant learning rate matches ``torch.optim.SGD`` step for step.
  Options: ``nesterov``; ``weight_decay`` (L2: ``g <- g + weight_decay * w``, as torch);
  ``decay`` (the paper's decoupled decay, ``w <- (1 - decay) * w`` after each update).
- ``Adam``, ``AdamW`` (decoupled weight decay, ``w <- (1 - lr * weight_decay) w``), both with
  ``amsgrad``; ``eps_form="torch"`` puts eps after the bias correction as torch.optim.Adam,
  ``"sklearn"`` on the uncorrected sqrt(v), with ``lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``,
  as scikit-learn's MLP.
- ``clip_grad_norm``: scale gradients to a global norm (torch.nn.utils.clip_grad_norm_).
- ``LBFGS``: the settings of full-batch training through scipy.optimize (see bpcore.training).
"""
import numpy as np

from bpcore import _optim
from bpcore._validation import check_choice, check_int, check_real
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
            groups.append({**g, "params": _as_parameter_list(g["params"], f"params[{i}]")})
        return groups
    return [{"params": _as_parameter_list(params)}]


def _runs(groups):
    """(data, grad, group) for each run of parameters back to back in one flat buffer and one
    group; and the group of every parameter. Both follow the parameters' order in their flat
    buffers, not the groups' order, so the optimizer's state of the weight at offset k of a
    network's buffer sits at offset k of the state (what the training engine relies on)."""
    buffers = {}  # id of a flat buffer -> its rank of first appearance
    tagged = []
    for gi, group in enumerate(groups):
        for p in group["params"]:
            rank = buffers.setdefault(id(p.flat_data), len(buffers))
            tagged.append((rank, p.offset, gi, p))
    tagged.sort(key=lambda t: t[:2])
    runs, group_of = [], []
    for _, _, gi, p in tagged:
        group_of.append(gi)
        start, stop = p.offset, p.offset + p.size
        last = runs[-1] if runs else None
        if last is not None and last[0] is p.flat_data and last[3] == start and last[4] == gi:
            last[3] = stop
        else:
            runs.append([p.flat_data, p.flat_grad, start, stop, gi])
    return [(flat[a:b], gflat[a:b], gi) for flat, gflat, a, b, gi in runs], group_of


class Optimizer:
    """Base class: parameter groups, a native state, ``step``, ``zero_grad`` and state dicts.

    Subclasses set ``rule`` and ``defaults`` and check each setting in ``check_setting``.
    """

    rule = None
    defaults = {}

    def __init__(self, params, flags=None, **settings):
        groups = _as_groups(params)
        seen = set()
        for group in groups:
            for p in group["params"]:
                if id(p) in seen:
                    raise ValueError(f"params: {p!r} appears more than once")
                seen.add(id(p))
        dtypes = {p.data.dtype for g in groups for p in g["params"]}
        if len(dtypes) > 1:
            raise TypeError(f"params: expected one dtype, got {sorted(d.name for d in dtypes)}")
        self.dtype = dtypes.pop()
        base = {**self.defaults, **settings}
        self.param_groups = []
        for group in groups:
            unknown = set(group) - set(self.defaults) - {"params", "initial_lr"}
            if unknown:
                raise ValueError(f"params: unknown setting {sorted(unknown)[0]!r} in a group; "
                                 f"expected {', '.join(sorted(self.defaults))}")
            merged = {**base, **group}
            merged.setdefault("initial_lr", merged["lr"])
            self.param_groups.append(merged)
        self.flags = dict(flags or {})
        runs, group_of = _runs(self.param_groups)
        self._native = _optim.OptimizerState(self.rule, self.dtype, runs, group_of,
                                             len(self.param_groups), **self.flags)
        self._applied = [None] * len(self.param_groups)  # the settings last given to _native
        self.native()  # checks every setting now, not at the first step

    @property
    def params(self):
        return [p for g in self.param_groups for p in g["params"]]

    def check_setting(self, name, value):
        """value checked for the setting `name` (ValueError/TypeError naming it)."""
        v = check_real(value, name, low=0)
        with np.errstate(over="ignore"):
            fits = np.isfinite(self.dtype.type(v))
        if not fits:
            raise ValueError(f"{name}: expected a value finite in {self.dtype.name}, got {value!r}")
        return v

    def native(self):
        """The native state, with every group's current settings checked and applied: what
        ``step`` and the training engine update with."""
        applied = self._applied
        for i, group in enumerate(self.param_groups):
            if applied[i] is not None and all(group[k] is v for k, v in applied[i].items()):
                continue  # unchanged since last applied: a steady-state step allocates nothing
            settings = {k: self.check_setting(k, group[k]) for k in self.defaults}
            self._native.configure(i, **self._native_settings(settings))
            applied[i] = {k: group[k] for k in self.defaults}
        return self._native

    def _native_settings(self, settings):
        return settings

    def step(self):
        """Apply one update to every parameter from its accumulated gradient. A gradient with
        a NaN or an infinity raises bpcore.NonFiniteError before anything is changed; so does
        an update that overflows, after it (the parameters then hold its values)."""
        failed = self.native().step()
        if failed == "gradient":
            raise NonFiniteError("step: a gradient is NaN or infinite; no parameter was updated")
        if failed == "update":
            raise NonFiniteError("step: the update wrote a NaN or an infinity into the "
                                 "parameters (the gradient was finite: the learning rate is "
                                 "too large for it)")

    def zero_grad(self):
        for p in self.params:
            p.grad[...] = 0

    @property
    def steps(self):
        """Updates applied so far (by step, train_step or fit)."""
        return self._native.steps

    @property
    def lr(self):
        """The learning rate of the first group; setting it sets every group's."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        value = self.check_setting("lr", value)
        for group in self.param_groups:
            group["lr"] = value

    def state_dict(self):
        """Settings, step count and state buffers (copies): everything a resume needs."""
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
        for group, saved in zip(self.param_groups, groups):
            for k in list(self.defaults) + ["initial_lr"]:
                if k in saved:
                    group[k] = saved[k]
        self.native()  # checks the restored settings
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
    of parameter-group dicts. ``lr`` and ``momentum`` may be changed between steps (schedules).
    """

    rule = _RULE.SGD_RULE
    defaults = {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0, "decay": 0.0,
                "nesterov": False}

    def __init__(self, params, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0,
                 decay=0.0):
        super().__init__(params, lr=lr, momentum=momentum, nesterov=nesterov,
                         weight_decay=weight_decay, decay=decay)

    def check_setting(self, name, value):
        if name == "nesterov":
            return bool(value)
        v = super().check_setting(name, value)
        if name == "decay":
            check_real(v, "decay", low=0, high=1, high_open=True)
        return v

    def _native_settings(self, settings):
        if settings["nesterov"] and settings["momentum"] == 0:
            raise ValueError("nesterov: expected momentum > 0 with Nesterov, got momentum=0")
        return settings

    @property
    def momentum(self):
        return self.param_groups[0]["momentum"]

    @momentum.setter
    def momentum(self, value):
        value = self.check_setting("momentum", value)
        for group in self.param_groups:
            if group["nesterov"] and value == 0:
                raise ValueError("momentum: expected momentum > 0 with Nesterov, got momentum=0")
            group["momentum"] = value

    @property
    def nesterov(self):
        return self.param_groups[0]["nesterov"]

    @property
    def weight_decay(self):
        return self.param_groups[0]["weight_decay"]

    @property
    def decay(self):
        return self.param_groups[0]["decay"]


class Adam(Optimizer):
    """Adam (Kingma & Ba), with L2 ``weight_decay`` added to the gradient (torch.optim.Adam),
    ``amsgrad``, and eps placed as PyTorch does (``eps_form="torch"``) or as scikit-learn's MLP
    (``"sklearn"``)."""

    rule = _RULE.ADAM_RULE
    defaults = {"lr": 0.001, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8, "weight_decay": 0.0}
    decoupled = False

    def __init__(self, params, lr=0.001, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                 amsgrad=False, eps_form="torch"):
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}") from None
        check_choice(eps_form, "eps_form", ("torch", "sklearn"))
        if eps_form == "sklearn" and amsgrad:
            raise ValueError("amsgrad: expected False with eps_form='sklearn' (scikit-learn's "
                             "Adam has no AMSGrad), got True")
        flags = {"decoupled": self.decoupled, "amsgrad": bool(amsgrad),
                 "sklearn_eps": eps_form == "sklearn"}
        super().__init__(params, flags, lr=lr, beta1=beta1, beta2=beta2, eps=eps,
                         weight_decay=weight_decay)

    def check_setting(self, name, value):
        v = super().check_setting(name, value)
        if name in ("beta1", "beta2"):
            check_real(v, name, low=0, high=1, high_open=True)
        return v

    @property
    def betas(self):
        return self.param_groups[0]["beta1"], self.param_groups[0]["beta2"]


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


def clip_grad_norm(params, max_norm):
    """Scale the gradients of params (a model or its Parameters) so that their global L2 norm
    is at most max_norm, as torch.nn.utils.clip_grad_norm_; returns the norm before scaling.
    The norm is taken natively, in double; a NaN or infinite norm is returned as it is and
    the gradients are left unscaled."""
    params = _as_parameter_list(params)
    max_norm = check_real(max_norm, "max_norm", low=0, low_open=True)
    grads = [p.grad.reshape(-1) for p in params]
    norm = float(np.sqrt(sum(_optim.py_sum_of_squares(g) for g in grads)))
    coef = _optim.clip_factor(norm, max_norm)
    if coef < 1:
        for g in grads:
            _optim.py_scale(g, coef)
    return norm
