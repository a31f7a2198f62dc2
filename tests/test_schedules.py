"""bpcore.schedules against the schedulers it mirrors.

torch.optim.lr_scheduler: a torch optimizer with two parameter groups of different initial lr
is stepped once per epoch by the torch scheduler; the lr each group holds during each epoch
must equal ``apply``'s over 40+ epochs (rel 1e-12; torch updates most lrs recursively, these
schedules use closed forms, so they differ by rounding only).
scikit-learn: InverseScalingLR against SGDOptimizer.iteration_ends, AdaptiveLR against the
lr that MLPClassifier(solver="sgd", learning_rate="adaptive") actually trains each epoch with.
"""
import json
import math
import warnings

import pytest

from bpcore import schedules

BASE_LRS = (0.1, 0.03)
N_EPOCHS = 45
REL = 1e-12


class GroupsOnly:
    """The part of an optimizer a schedule touches."""

    def __init__(self, lrs=BASE_LRS):
        self.param_groups = [{"lr": lr, "initial_lr": lr} for lr in lrs]


def our_lrs(schedule, n_epochs=N_EPOCHS, observed=None):
    opt = GroupsOnly()
    history = []
    for epoch in range(n_epochs):
        schedule.apply(opt, epoch)
        history.append([group["lr"] for group in opt.param_groups])
        if observed is not None:
            schedule.observe(epoch, observed[epoch])
    return history


def torch_optimizer():
    torch = pytest.importorskip("torch")
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in BASE_LRS]
    return torch.optim.SGD(groups, lr=BASE_LRS[0])


def torch_lrs(make_scheduler, n_epochs=N_EPOCHS, observed=None):
    opt = torch_optimizer()
    scheduler = make_scheduler(opt)
    history = []
    for epoch in range(n_epochs):
        history.append([float(group["lr"]) for group in opt.param_groups])
        opt.step()  # no gradients: only keeps torch's call-order check quiet
        if observed is None:
            scheduler.step()
        else:
            scheduler.step(observed[epoch])
    return history


def assert_same_lrs(ours, theirs):
    assert len(ours) == len(theirs)
    for epoch, (mine, ref) in enumerate(zip(ours, theirs)):
        assert mine == pytest.approx(ref, rel=REL, abs=0), f"epoch {epoch}"


def lr_sched():
    return pytest.importorskip("torch").optim.lr_scheduler


# --- closed-form schedules against torch --------------------------------------------------

@pytest.mark.parametrize("factor, total_iters", [(1.0, 0), (0.5, 4), (0.25, 10), (0.0, 3)])
def test_constant_lr_matches_torch(factor, total_iters):
    ours = our_lrs(schedules.ConstantLR(factor, total_iters))
    if factor == 0.0:  # torch divides by the factor to undo it; check the closed form alone
        expected = [[0.0 if e < total_iters else b for b in BASE_LRS] for e in range(N_EPOCHS)]
        assert ours == expected
        return
    theirs = torch_lrs(lambda opt: lr_sched().ConstantLR(opt, factor, total_iters))
    assert_same_lrs(ours, theirs)


def test_default_constant_lr_leaves_the_lr_alone():
    assert our_lrs(schedules.ConstantLR()) == [list(BASE_LRS)] * N_EPOCHS


@pytest.mark.parametrize("step_size, gamma", [(1, 0.5), (3, 0.1), (7, 0.9), (10, 1.5)])
def test_step_lr_matches_torch(step_size, gamma):
    assert_same_lrs(our_lrs(schedules.StepLR(step_size, gamma)),
                    torch_lrs(lambda opt: lr_sched().StepLR(opt, step_size, gamma)))


@pytest.mark.parametrize("milestones, gamma", [([5, 15, 30], 0.1), ([30, 5], 0.5),
                                               ([10, 10, 25], 0.3), ([1, 2, 3, 44], 0.8)])
def test_multistep_lr_matches_torch(milestones, gamma):
    assert_same_lrs(our_lrs(schedules.MultiStepLR(milestones, gamma)),
                    torch_lrs(lambda opt: lr_sched().MultiStepLR(opt, milestones, gamma)))


@pytest.mark.parametrize("gamma", [0.9, 0.99, 0.5, 1.05])
def test_exponential_lr_matches_torch(gamma):
    assert_same_lrs(our_lrs(schedules.ExponentialLR(gamma)),
                    torch_lrs(lambda opt: lr_sched().ExponentialLR(opt, gamma)))


@pytest.mark.parametrize("T_max, eta_min", [(10, 0.0), (7, 1e-3), (1, 0.0), (2, 0.01),
                                            (25, 5e-3), (40, 0.0), (13, 0.05)])
def test_cosine_annealing_lr_matches_torch_past_T_max(T_max, eta_min):
    # 3 * T_max + 5 epochs: down to eta_min, back up to base_lr and down again, as torch does;
    # eta_min=0.05 lies above the second group's base_lr (0.03), so that group rises
    n = max(N_EPOCHS, 3 * T_max + 5)
    ours = our_lrs(schedules.CosineAnnealingLR(T_max, eta_min), n)
    assert_same_lrs(ours, torch_lrs(lambda opt: lr_sched().CosineAnnealingLR(opt, T_max, eta_min),
                                    n))
    assert ours[T_max] == pytest.approx([eta_min, eta_min], rel=REL, abs=1e-15)
    assert ours[2 * T_max] == pytest.approx(list(BASE_LRS), rel=REL)


def _warmup_cases():
    sched = lr_sched()
    return {
        "cosine after": (
            schedules.LinearWarmup(5, 0.1, after=schedules.CosineAnnealingLR(20, 1e-4)),
            lambda opt: sched.SequentialLR(opt, [sched.LinearLR(opt, 0.1, total_iters=5),
                                                 sched.CosineAnnealingLR(opt, 20, 1e-4)], [5])),
        "step after": (
            schedules.LinearWarmup(3, 1 / 3, after=schedules.StepLR(4, 0.5)),
            lambda opt: sched.SequentialLR(opt, [sched.LinearLR(opt, 1 / 3, total_iters=3),
                                                 sched.StepLR(opt, 4, 0.5)], [3])),
        "exponential after": (
            schedules.LinearWarmup(8, 0.25, after=schedules.ExponentialLR(0.93)),
            lambda opt: sched.SequentialLR(opt, [sched.LinearLR(opt, 0.25, total_iters=8),
                                                 sched.ExponentialLR(opt, 0.93)], [8])),
        "nothing after": (
            schedules.LinearWarmup(10, 0.05),
            lambda opt: sched.LinearLR(opt, 0.05, total_iters=10)),
        "default start": (
            schedules.LinearWarmup(5),
            lambda opt: sched.LinearLR(opt)),
    }


@pytest.mark.parametrize("case", ["cosine after", "step after", "exponential after",
                                  "nothing after", "default start"])
def test_linear_warmup_matches_torch_linear_lr_and_sequential_lr(case):
    ours, make_theirs = _warmup_cases()[case]
    assert_same_lrs(our_lrs(ours), torch_lrs(make_theirs))


@pytest.mark.parametrize("name", ["decay", "inverse", "staircase"])
def test_lambda_lr_matches_torch(name):
    fn = {"decay": lambda e: 0.95 ** e, "inverse": lambda e: 1 / (1 + e),
          "staircase": lambda e: 1.0 if e < 10 else 0.2 if e < 30 else 0.01}[name]
    assert_same_lrs(our_lrs(schedules.LambdaLR(fn)),
                    torch_lrs(lambda opt: lr_sched().LambdaLR(opt, fn)))


# --- ReduceLROnPlateau against torch ------------------------------------------------------

def scripted_losses():
    """60 epochs: a steady fall, a flat plateau, gains too small to count, noise, a jump up, a
    second fall, a long flat tail."""
    fall = [1.0 / (1 + e) for e in range(10)]
    flat = [fall[-1]] * 6
    creep = [fall[-1] * (1 - 2e-5 * k) for k in range(1, 7)]
    noise = [0.09 + 0.004 * ((-1) ** k) * (k % 3) for k in range(8)]
    jump = [0.3, 0.25]
    second_fall = [0.08 - 0.01 * k for k in range(6)]
    tail = [0.03] * 22
    losses = fall + flat + creep + noise + jump + second_fall + tail
    assert len(losses) == 60
    return losses


PLATEAU_CASES = {
    "defaults, short patience": dict(patience=2),
    "rel threshold": dict(factor=0.5, patience=3, threshold=1e-2),
    "abs threshold, cooldown": dict(factor=0.5, patience=1, threshold=0.005,
                                    threshold_mode="abs", cooldown=2),
    "no patience": dict(factor=0.7, patience=0),
    "min_lr floor": dict(factor=0.3, patience=1, min_lr=0.004),
    "eps stops small groups": dict(factor=0.5, patience=1, eps=4e-3),
    "long cooldown": dict(factor=0.2, patience=2, cooldown=6, threshold=0.0),
}


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("case", list(PLATEAU_CASES))
def test_reduce_lr_on_plateau_matches_torch(case, mode):
    settings = dict(PLATEAU_CASES[case], mode=mode)
    losses = scripted_losses()
    # "max" watches an accuracy-like score that rises while the loss falls
    observed = losses if mode == "min" else [1.0 - v for v in losses]
    ours = our_lrs(schedules.ReduceLROnPlateau(**settings), len(observed), observed)
    theirs = torch_lrs(lambda opt: lr_sched().ReduceLROnPlateau(opt, **settings), len(observed),
                       observed)
    assert_same_lrs(ours, theirs)
    assert ours[-1] != ours[0], "the script should trigger at least one reduction"


@pytest.mark.parametrize("threshold_mode", ["rel", "abs"])
def test_reduce_lr_on_plateau_matches_torch_on_negative_and_non_finite_values(threshold_mode):
    # negative values flip what a relative threshold means; NaN and inf are bad epochs
    observed = [v - 0.5 for v in scripted_losses()]
    observed[20], observed[40], observed[41] = math.nan, math.inf, math.nan
    settings = dict(factor=0.5, patience=1, threshold=0.01, threshold_mode=threshold_mode)
    assert_same_lrs(
        our_lrs(schedules.ReduceLROnPlateau(**settings), len(observed), observed),
        torch_lrs(lambda opt: lr_sched().ReduceLROnPlateau(opt, **settings), len(observed),
                  observed))


# --- InverseScalingLR against scikit-learn ------------------------------------------------

@pytest.mark.parametrize("power_t", [0.5, 0.25, 1.0, 0.0])
@pytest.mark.parametrize("epoch_sizes", ["even", "uneven"])
def test_inverse_scaling_lr_matches_sklearn_sgd_optimizer(power_t, epoch_sizes):
    stochastic = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    sizes = [100] * N_EPOCHS if epoch_sizes == "even" else [1 + 37 * e % 101 for e in
                                                            range(N_EPOCHS)]
    sched = schedules.InverseScalingLR(power_t)
    for base in BASE_LRS:
        reference = stochastic.SGDOptimizer([], learning_rate_init=base,
                                            lr_schedule="invscaling", power_t=power_t)
        samples_seen = 0
        for epoch, size in enumerate(sizes):
            assert sched.lr_at(base, epoch, samples_seen) == pytest.approx(
                reference.learning_rate, rel=REL, abs=0), f"epoch {epoch}"
            samples_seen += size
            reference.iteration_ends(samples_seen)  # as MLP fit calls it, with t_ so far


def sklearn_lr_per_epoch(monkeypatch, **mlp_settings):
    """(the lr each epoch of MLPClassifier.fit trained with, its loss curve, n_samples),
    read from the optimizer at every weight update."""
    pytest.importorskip("sklearn")
    from sklearn.datasets import make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.neural_network import _stochastic_optimizers as stochastic

    X, y = make_classification(n_samples=120, n_features=8, n_informative=5, random_state=0)
    model = MLPClassifier(solver="sgd", hidden_layer_sizes=(6,), batch_size=40, random_state=0,
                          **mlp_settings)
    lrs_by_epoch = {}
    update = stochastic.SGDOptimizer.update_params

    def recording_update(self, params, grads):
        lrs_by_epoch.setdefault(len(model.loss_curve_), set()).add(self.learning_rate)
        return update(self, params, grads)

    monkeypatch.setattr(stochastic.SGDOptimizer, "update_params", recording_update)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
    curve = list(model.loss_curve_)
    assert sorted(lrs_by_epoch) == list(range(len(curve)))
    assert all(len(lrs) == 1 for lrs in lrs_by_epoch.values()), "lr changed within an epoch"
    return [lrs_by_epoch[e].pop() for e in range(len(curve))], curve, X.shape[0]


def test_inverse_scaling_lr_matches_sklearn_mlp_fit(monkeypatch):
    lrs, curve, n = sklearn_lr_per_epoch(monkeypatch, learning_rate="invscaling", power_t=0.3,
                                         learning_rate_init=0.2, max_iter=40)
    sched = schedules.InverseScalingLR(power_t=0.3)
    ours = [sched.lr_at(0.2, epoch, samples_seen=epoch * n) for epoch in range(len(curve))]
    assert ours == pytest.approx(lrs, rel=REL, abs=0)


# --- AdaptiveLR against scikit-learn ------------------------------------------------------

def test_adaptive_lr_matches_sklearn_mlp_fit(monkeypatch):
    lrs, curve, _ = sklearn_lr_per_epoch(
        monkeypatch, learning_rate="adaptive", learning_rate_init=0.8, tol=1e-3,
        n_iter_no_change=3, max_iter=400)
    assert len(set(lrs)) >= 4, "the run should see several reductions"
    sched = schedules.AdaptiveLR(tol=1e-3, n_iter_no_change=3)
    ours = []
    for epoch, loss in enumerate(curve):
        ours.append(sched.lr_at(0.8, epoch))
        sched.observe(epoch, loss)
    assert ours == pytest.approx(lrs, rel=REL, abs=0)
    # scikit-learn ends training only when a plateau finds the lr at 1e-6 or below
    assert sched.sklearn_would_stop(0.8) == (len(curve) < 400)


def test_adaptive_lr_matches_sklearn_rule_on_ties_and_stopping():
    """Losses built from exact binary fractions, so ``loss == best - tol`` really is a tie,
    fed through scikit-learn's own _update_no_improvement_count and trigger_stopping."""
    pytest.importorskip("sklearn")
    import inspect

    from sklearn.neural_network import MLPRegressor
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

    tol, patience = 0.25, 2
    losses = ([1.0, 0.75, 0.5, 0.25]            # each exactly tol better: all good epochs
              + [0.125, 0.0625, 0.03125, 0.0]   # new minima, but by less than tol: bad
              + [0.0, -0.25, -0.25, -0.25, -0.5, -0.5, -0.5, -0.5]
              + [-0.5 - 2.0 ** -k for k in range(1, 13)])
    for base in (0.1, 1e-5):
        model = MLPRegressor(tol=tol, n_iter_no_change=patience)
        model.loss_curve_, model.best_loss_, model._no_improvement_count = [], math.inf, 0
        model._optimizer = SGDOptimizer([], learning_rate_init=base, lr_schedule="adaptive")
        n_args = len(inspect.signature(model._update_no_improvement_count).parameters)
        sched = schedules.AdaptiveLR(tol=tol, n_iter_no_change=patience)
        stopped = False
        for epoch, loss in enumerate(losses):
            assert sched.lr_at(base, epoch) == model._optimizer.learning_rate, (base, epoch)
            assert sched.sklearn_would_stop(base) is stopped
            # the end of one epoch of MLP._fit_stochastic, without the training
            model.loss_curve_.append(loss)
            model._update_no_improvement_count(False, *[None] * (n_args - 1))
            sched.observe(epoch, loss)
            if model._no_improvement_count > model.n_iter_no_change:
                stopped = model._optimizer.trigger_stopping("plateau", verbose=False)
                if stopped:
                    break
                model._no_improvement_count = 0
        assert sched.sklearn_would_stop(base) is stopped
        assert sched.num_reductions >= 3
        assert stopped == (base == 1e-5), "the small base lr should reach 1e-6 and stop"


def test_reduce_lr_on_plateau_is_not_sklearn_adaptive():
    # the docstring's example: a loss falling by tol/2 per epoch
    tol, patience = 0.01, 2
    adaptive = schedules.AdaptiveLR(tol=tol, n_iter_no_change=patience)
    plateau = schedules.ReduceLROnPlateau(factor=0.2, patience=patience, threshold=tol,
                                          threshold_mode="abs", eps=0.0)
    for epoch in range(20):
        loss = 1.0 - epoch * tol / 2
        adaptive.observe(epoch, loss)
        plateau.observe(epoch, loss)
    assert adaptive.lr_at(0.1, 20) < 0.1
    assert plateau.lr_at(0.1, 20) == 0.1


# --- apply, state_dict, repr ----------------------------------------------------------------

def test_apply_sets_every_group_from_its_initial_lr():
    opt = GroupsOnly((0.5, 0.2, 0.0))
    opt.param_groups[0]["lr"] = 123.0  # the current lr plays no part
    returned = schedules.StepLR(2, gamma=0.5).apply(opt, 5)
    assert [g["lr"] for g in opt.param_groups] == returned == [0.125, 0.05, 0.0]
    assert [g["initial_lr"] for g in opt.param_groups] == [0.5, 0.2, 0.0]


def test_apply_records_a_missing_initial_lr_and_drives_a_torch_optimizer():
    opt = torch_optimizer()
    assert "initial_lr" not in opt.param_groups[0]
    sched = schedules.ExponentialLR(0.5)
    for epoch in range(4):
        sched.apply(opt, epoch)
    assert [g["lr"] for g in opt.param_groups] == [b * 0.125 for b in BASE_LRS]
    assert [g["initial_lr"] for g in opt.param_groups] == list(BASE_LRS)


def test_apply_refuses_an_object_without_param_groups():
    with pytest.raises(TypeError, match="optimizer"):
        schedules.StepLR(3).apply(object(), 0)


def resumable_cases():
    return {
        "step": lambda: schedules.StepLR(4, 0.5),
        "multistep": lambda: schedules.MultiStepLR([5, 22, 30], 0.3),
        "cosine": lambda: schedules.CosineAnnealingLR(17, 1e-4),
        "inverse scaling": lambda: schedules.InverseScalingLR(0.5),
        "plateau": lambda: schedules.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=2,
                                                       min_lr=1e-3),
        "plateau max": lambda: schedules.ReduceLROnPlateau(mode="max", patience=0),
        "adaptive": lambda: schedules.AdaptiveLR(tol=1e-3, n_iter_no_change=2),
        "warm-up then plateau": lambda: schedules.LinearWarmup(
            5, 0.2, after=schedules.ReduceLROnPlateau(factor=0.5, patience=1)),
    }


@pytest.mark.parametrize("case", list(resumable_cases()))
def test_state_dict_round_trip_mid_run_continues_exactly(case):
    make = resumable_cases()[case]
    losses = scripted_losses()
    if case == "plateau max":
        losses = [1.0 - v for v in losses]
    samples_per_epoch = 50

    def run_epochs(schedule, epochs):
        history = []
        for e in epochs:
            history.append([schedule.lr_at(b, e, samples_seen=e * samples_per_epoch)
                            for b in BASE_LRS])
            schedule.observe(e, losses[e])
        return history

    uninterrupted = run_epochs(make(), range(60))
    first = make()
    run_epochs(first, range(25))
    saved = json.dumps(first.state_dict(), allow_nan=False)  # strict JSON
    resumed = make()
    resumed.load_state_dict(json.loads(saved))
    assert resumed.state_dict() == json.loads(saved)
    assert run_epochs(resumed, range(25, 60)) == uninterrupted[25:]


def test_plateau_state_dict_holds_the_counters():
    sched = schedules.ReduceLROnPlateau(factor=0.5, patience=1, cooldown=3)
    assert sched.state_dict()["state"]["best"] == "inf"
    for epoch, loss in enumerate([1.0, 1.0, 1.0, 0.5]):
        sched.observe(epoch, loss)
    assert sched.state_dict()["state"] == {"best": 0.5, "num_bad_epochs": 0,
                                           "cooldown_counter": 2, "num_reductions": 1,
                                           "last_epoch": 3}
    assert sched.lr_at(0.1, 4) == 0.05


def test_load_state_dict_refuses_another_schedule_or_other_settings():
    state = schedules.StepLR(4, 0.5).state_dict()
    with pytest.raises(ValueError, match="ExponentialLR"):
        schedules.ExponentialLR(0.5).load_state_dict(state)
    with pytest.raises(ValueError, match="step_size"):
        schedules.StepLR(5, 0.5).load_state_dict(state)
    with pytest.raises(TypeError, match="state_dict"):
        schedules.StepLR(4, 0.5).load_state_dict({"best": 1.0})
    warm = schedules.LinearWarmup(3, after=schedules.StepLR(4)).state_dict()
    with pytest.raises(ValueError, match="after"):
        schedules.LinearWarmup(3, after=schedules.ExponentialLR(0.5)).load_state_dict(warm)


def test_repr_shows_the_settings():
    assert repr(schedules.StepLR(10)) == "StepLR(step_size=10, gamma=0.1)"
    assert repr(schedules.ConstantLR()) == "ConstantLR(factor=1.0, total_iters=0)"
    assert repr(schedules.MultiStepLR([30, 10])) == "MultiStepLR(milestones=[10, 30], gamma=0.1)"
    assert repr(schedules.LinearWarmup(5, 0.5, after=schedules.CosineAnnealingLR(50))) == (
        "LinearWarmup(warmup_epochs=5, start_factor=0.5, "
        "after=CosineAnnealingLR(T_max=50, eta_min=0.0))")
    assert repr(schedules.ReduceLROnPlateau()).startswith(
        "ReduceLROnPlateau(mode='min', factor=0.1, patience=10, threshold=0.0001, ")

    def halve(epoch):
        return 0.5

    assert "halve" in repr(schedules.LambdaLR(halve))


def test_every_schedule_is_an_lr_schedule():
    for make in resumable_cases().values():
        assert isinstance(make(), schedules.LRSchedule)
    assert isinstance(schedules.LambdaLR(lambda e: 1.0), schedules.LRSchedule)


# --- bad arguments --------------------------------------------------------------------------

nan, inf = math.nan, math.inf
BAD_ARGUMENTS = [
    (lambda: schedules.ConstantLR(factor=1.5), ValueError, "factor", "1.5"),
    (lambda: schedules.ConstantLR(total_iters=-1), ValueError, "total_iters", "-1"),
    (lambda: schedules.StepLR(0), ValueError, "step_size", "0"),
    (lambda: schedules.StepLR(2.5), TypeError, "step_size", "2.5"),
    (lambda: schedules.StepLR(3, gamma=-1), ValueError, "gamma", "-1"),
    (lambda: schedules.StepLR(3, gamma=nan), ValueError, "gamma", "nan"),
    (lambda: schedules.StepLR(3, gamma=inf), ValueError, "gamma", "inf"),
    (lambda: schedules.MultiStepLR(5), TypeError, "milestones", "5"),
    (lambda: schedules.MultiStepLR([]), ValueError, "milestones", "none"),
    (lambda: schedules.MultiStepLR([3, 0]), ValueError, r"milestones\[1\]", "0"),
    (lambda: schedules.MultiStepLR([3, 4.0]), TypeError, r"milestones\[1\]", "4.0"),
    (lambda: schedules.ExponentialLR(0), ValueError, "gamma", "0"),
    (lambda: schedules.ExponentialLR("0.9"), TypeError, "gamma", "'0.9'"),
    (lambda: schedules.CosineAnnealingLR(0), ValueError, "T_max", "0"),
    (lambda: schedules.CosineAnnealingLR(10, eta_min=-1e-3), ValueError, "eta_min", "-0.001"),
    (lambda: schedules.CosineAnnealingLR(10, eta_min=inf), ValueError, "eta_min", "inf"),
    (lambda: schedules.LinearWarmup(-1), ValueError, "warmup_epochs", "-1"),
    (lambda: schedules.LinearWarmup(5, start_factor=0), ValueError, "start_factor", "0"),
    (lambda: schedules.LinearWarmup(5, start_factor=1.1), ValueError, "start_factor", "1.1"),
    (lambda: schedules.LinearWarmup(5, after="cosine"), TypeError, "after", "'cosine'"),
    (lambda: schedules.LambdaLR(0.5), TypeError, "fn", "0.5"),
    (lambda: schedules.InverseScalingLR(-0.5), ValueError, "power_t", "-0.5"),
    (lambda: schedules.InverseScalingLR(True), TypeError, "power_t", "True"),
    (lambda: schedules.ReduceLROnPlateau(mode="minimum"), ValueError, "mode", "'minimum'"),
    (lambda: schedules.ReduceLROnPlateau(factor=1.0), ValueError, "factor", "1.0"),
    (lambda: schedules.ReduceLROnPlateau(patience=-1), ValueError, "patience", "-1"),
    (lambda: schedules.ReduceLROnPlateau(threshold=-1e-4), ValueError, "threshold", "-0.0001"),
    (lambda: schedules.ReduceLROnPlateau(threshold_mode="relative"), ValueError,
     "threshold_mode", "'relative'"),
    (lambda: schedules.ReduceLROnPlateau(cooldown=1.5), TypeError, "cooldown", "1.5"),
    (lambda: schedules.ReduceLROnPlateau(min_lr=-1), ValueError, "min_lr", "-1"),
    (lambda: schedules.ReduceLROnPlateau(eps=nan), ValueError, "eps", "nan"),
    (lambda: schedules.AdaptiveLR(tol=-1), ValueError, "tol", "-1"),
    (lambda: schedules.AdaptiveLR(n_iter_no_change=0), ValueError, "n_iter_no_change", "0"),
    # queries
    (lambda: schedules.StepLR(3).lr_at(0.1, -1), ValueError, "epoch", "-1"),
    (lambda: schedules.StepLR(3).lr_at(0.1, 1.5), TypeError, "epoch", "1.5"),
    (lambda: schedules.StepLR(3).lr_at(nan, 1), ValueError, "base_lr", "nan"),
    (lambda: schedules.StepLR(3).lr_at(0.1, 1, samples_seen=-3), ValueError, "samples_seen",
     "-3"),
    (lambda: schedules.InverseScalingLR().lr_at(0.1, 3), ValueError, "samples_seen", "0"),
    (lambda: schedules.ReduceLROnPlateau().observe(0, "low"), TypeError, "value", "'low'"),
    (lambda: schedules.ReduceLROnPlateau().observe(-2, 0.5), ValueError, "epoch", "-2"),
    (lambda: schedules.LambdaLR(lambda e: -1.0).lr_at(0.1, 2), ValueError, r"fn\(2\)", "-1.0"),
]


@pytest.mark.parametrize("make, error, name, received", BAD_ARGUMENTS,
                         ids=[f"{i}-{case[2]}" for i, case in enumerate(BAD_ARGUMENTS)])
def test_bad_arguments_are_refused_naming_the_argument(make, error, name, received):
    with pytest.raises(error, match=name) as info:
        make()
    assert received in str(info.value)


def test_samples_seen_may_exceed_32_bits():
    lr = schedules.InverseScalingLR(1.0).lr_at(1.0, 100, samples_seen=2**40)
    assert lr == pytest.approx(1.0 / (2**40 + 1), rel=REL)
