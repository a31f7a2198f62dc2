"""Edits after creation never go silently out of sync.

A network's weights live in one flat buffer that the engine, the optimizers and the checkpoint
files all read. Replacing an array attribute (a layer's ``W``/``b``/``dW``/``db``, a network's
``flat_params``/``flat_grads``, a Parameter's ``data``/``grad``) copies into that buffer, or
raises naming the attribute; a network's layer list cannot change; an optimizer checks every
setting as it is assigned, follows Parameters that move into a network, and refuses a weight
listed twice. Each test below failed before this was so.
"""
import numpy as np
import pytest

import bpcore
from bpcore import (MLP, SGD, Adam, AdamW, Dense, MSELoss, Parameter, ReLU, Sequential,
                    schedules)

N_IN, N_OUT = 3, 2


def _data(n=8, seed=0, dtype=np.float32):
    r = np.random.default_rng(seed)
    return r.normal(size=(n, N_IN)).astype(dtype), r.normal(size=(n, N_OUT)).astype(dtype)


def _mlp(dtype="float32"):
    return MLP([N_IN, 4, N_OUT], activation="tanh", dtype=dtype, seed=7)


# ---------------------------------------------------------------------------------------------
# Replacing a layer's arrays

def test_assigning_W_and_b_copies_into_the_network_buffers(tmp_path):
    X, Y = _data()
    m = _mlp()
    layer = m.layers[0]
    W_obj, flat = layer.W, m.flat_params
    new_W = np.full((N_IN, 4), 0.25, np.float32)
    new_b = np.arange(4, dtype=np.float32)
    layer.W = new_W
    layer.b = new_b
    assert layer.W is W_obj and m.flat_params is flat, "the buffers must never be replaced"
    np.testing.assert_array_equal(m.flat_params[:N_IN * 4], new_W.ravel())
    np.testing.assert_array_equal(m.flat_params[N_IN * 4:N_IN * 4 + 4], new_b)
    # forward (layer by layer), predict (the engine) and save all see the new weights
    np.testing.assert_allclose(m.forward(X), m.predict(X), rtol=1e-6)
    m.save(tmp_path / "m.safetensors")
    np.testing.assert_array_equal(bpcore.load(tmp_path / "m.safetensors").layers[0].W, new_W)
    # and the engine trains them
    opt = SGD(m, lr=0.1)
    before = m.flat_params.copy()
    m.train_step(X, Y, MSELoss(), opt)
    assert not np.array_equal(before[:N_IN * 4], m.flat_params[:N_IN * 4])


def test_assigning_dW_and_db_copies_into_the_gradient_buffer():
    m = _mlp()
    layer = m.layers[2]
    layer.dW = np.ones((4, N_OUT), np.float32)
    layer.db = np.full(N_OUT, 2.0, np.float32)
    start = N_IN * 4 + 4
    np.testing.assert_array_equal(m.flat_grads[start:start + 4 * N_OUT], 1.0)
    np.testing.assert_array_equal(m.flat_grads[start + 4 * N_OUT:], 2.0)
    before = m.flat_params.copy()
    SGD(m, lr=0.5).step()  # the optimizer reads the flat gradient buffer
    np.testing.assert_allclose(m.flat_params[start:], before[start:] - 0.5 * m.flat_grads[start:])


@pytest.mark.parametrize("attr,value,exc,pattern", [
    ("W", np.zeros((4, N_IN), np.float32), ValueError,
     r"^W: expected an array of dtype float32 and shape \(3, 4\), got dtype float32 and "
     r"shape \(4, 3\)"),
    ("W", np.zeros((N_IN, 4)), TypeError,
     r"^W: expected an array of dtype float32 and shape \(3, 4\), got dtype float64"),
    ("W", np.full((N_IN, 4), np.nan, np.float32), ValueError, r"^W: expected finite values"),
    ("W", [[1, 2]], TypeError, r"^W: expected .*got dtype int64"),
    ("b", np.zeros(5, np.float32), ValueError, r"^b: expected .*shape \(4,\), got .*\(5,\)"),
    ("b", np.zeros(4, np.int32), TypeError, r"^b: expected .*float32.*got dtype int32"),
    ("dW", np.zeros((1, 1), np.float32), ValueError, r"^dW: expected .*shape \(3, 4\)"),
    ("db", np.zeros(4, np.float64), TypeError, r"^db: expected .*float32.*float64"),
])
def test_bad_replacement_of_a_layer_array_raises_and_changes_nothing(attr, value, exc, pattern):
    m = _mlp()
    params, grads = m.flat_params.copy(), m.flat_grads.copy()
    with pytest.raises(exc, match=pattern):
        setattr(m.layers[0], attr, value)
    np.testing.assert_array_equal(m.flat_params, params)
    np.testing.assert_array_equal(m.flat_grads, grads)


def test_assigning_W_of_a_standalone_layer_keeps_its_parameter():
    d = Dense(N_IN, 2, seed=0)
    p = d.parameters()[0]
    d.W = np.ones((N_IN, 2), np.float32)
    assert p.data is d.W
    np.testing.assert_array_equal(p.flat_data[:N_IN * 2], 1.0)


def test_in_place_writes_keep_working():
    X, _ = _data()
    m = _mlp()
    m.layers[0].W[...] = 0.5
    m.layers[0].W[0, 0] = 1.0
    m.flat_params[-N_OUT:] = 3.0
    assert m.flat_params[0] == 1.0 and m.flat_params[1] == 0.5
    np.testing.assert_array_equal(m.layers[2].b, 3.0)
    np.testing.assert_allclose(m.forward(X), m.predict(X), rtol=1e-6)


def test_assigning_W_with_a_non_native_byte_order_copies():
    m = _mlp()
    m.layers[0].W = np.ones((N_IN, 4), ">f4")
    np.testing.assert_array_equal(m.flat_params[:N_IN * 4], 1.0)


# ---------------------------------------------------------------------------------------------
# Replacing a network's flat buffers

def test_assigning_flat_params_copies_into_the_buffer():
    X, _ = _data()
    m = _mlp()
    flat, W = m.flat_params, m.layers[0].W
    new = np.linspace(-1, 1, m.num_parameters).astype(np.float32)
    m.flat_params = new
    assert m.flat_params is flat and m.layers[0].W is W
    np.testing.assert_array_equal(m.flat_params, new)
    np.testing.assert_array_equal(W.ravel(), new[:N_IN * 4])
    np.testing.assert_allclose(m.predict(X), m.forward(X), rtol=1e-6)
    ref = _mlp()
    ref.flat_params[...] = new
    np.testing.assert_array_equal(m.predict(X), ref.predict(X))


def test_assigning_flat_grads_copies_into_the_buffer():
    m = _mlp()
    flat = m.flat_grads
    m.flat_grads = np.ones(m.num_parameters, np.float32)
    assert m.flat_grads is flat
    np.testing.assert_array_equal(m.layers[0].dW, 1.0)


@pytest.mark.parametrize("attr", ["flat_params", "flat_grads"])
@pytest.mark.parametrize("value,exc,pattern", [
    (np.zeros(3, np.float32), ValueError, r"expected an array of dtype float32 and shape "
                                          r"\(26,\), got dtype float32 and shape \(3,\)"),
    (np.zeros(26), TypeError, r"expected .*float32.*got dtype float64"),
    (np.zeros((2, 13), np.float32), ValueError, r"expected .*, got .*shape \(2, 13\)"),
    (np.full(26, np.inf, np.float32), ValueError, r"expected finite values, got NaN or inf"),
])
def test_bad_flat_buffer_assignment_raises_and_changes_nothing(attr, value, exc, pattern):
    m = _mlp()
    before = getattr(m, attr).copy()
    with pytest.raises(exc, match=f"^{attr}: " + pattern):
        setattr(m, attr, value)
    np.testing.assert_array_equal(getattr(m, attr), before)


# ---------------------------------------------------------------------------------------------
# The layer list

def test_layers_cannot_be_appended_to_or_replaced():
    X, _ = _data()
    m = _mlp()
    m.predict(X)  # the engine is built from the layers on first use
    with pytest.raises(AttributeError):
        m.layers.append(ReLU())
    with pytest.raises(TypeError):
        m.layers[2] = Dense(4, N_OUT)
    with pytest.raises(AttributeError, match=r"^layers: a network's layers are fixed"):
        m.layers = [Dense(N_IN, N_OUT)]
    assert len(m.layers) == 3


def test_layers_index_and_iterate_as_before():
    m = _mlp()
    assert isinstance(m.layers[0], Dense) and isinstance(m.layers[-1], Dense)
    assert [type(layer).__name__ for layer in m.layers] == ["Dense", "Tanh", "Dense"]
    assert m.layers[::2] == (m.layers[0], m.layers[2])
    assert m.layers.index(m.layers[1]) == 1


# ---------------------------------------------------------------------------------------------
# An optimizer made before its layers join a network

def _grads(d, value):
    d.dW[...] = value
    d.db[...] = -value


@pytest.mark.parametrize("make", [lambda p: SGD(p, lr=0.1, momentum=0.9),
                                  lambda p: Adam(p, lr=0.01, amsgrad=True),
                                  lambda p: AdamW(p, lr=0.01)],
                         ids=["SGD-momentum", "Adam-amsgrad", "AdamW"])
def test_optimizer_follows_its_layer_into_a_network(make):
    # reference: the layer never moves
    ref = Dense(N_IN, N_OUT, seed=3)
    ref_opt = make(ref)
    moved = Dense(N_IN, N_OUT, seed=3)
    opt = make(moved)
    for k in range(3):
        _grads(ref, 0.1 * (k + 1))
        ref_opt.step()
        _grads(moved, 0.1 * (k + 1))
        opt.step()
    net = Sequential(moved)  # W and b now live in the network's buffers
    for k in range(3, 6):
        _grads(ref, 0.1 * (k + 1))
        ref_opt.step()
        _grads(moved, 0.1 * (k + 1))
        opt.step()
    np.testing.assert_array_equal(moved.W, ref.W)
    np.testing.assert_array_equal(moved.b, ref.b)
    np.testing.assert_array_equal(net.flat_params, np.concatenate([ref.W.ravel(), ref.b]))
    assert opt.steps == ref_opt.steps == 6
    for name, buf in opt.state_dict()["buffers"].items():
        np.testing.assert_array_equal(buf, ref_opt.state_dict()["buffers"][name], err_msg=name)


def test_optimizer_made_before_the_network_trains_it_through_the_engine():
    X, Y = _data()
    d1, d2 = Dense(N_IN, 4, seed=1), Dense(4, N_OUT, seed=2)
    early = SGD(d1.parameters() + d2.parameters(), lr=0.1, momentum=0.9)
    net = Sequential(d1, ReLU(), d2)
    ref = Sequential(Dense(N_IN, 4, seed=1), ReLU(), Dense(4, N_OUT, seed=2))
    late = SGD(ref, lr=0.1, momentum=0.9)
    for _ in range(3):
        net.train_step(X, Y, MSELoss(), early)
        ref.train_step(X, Y, MSELoss(), late)
    np.testing.assert_array_equal(net.flat_params, ref.flat_params)


def test_optimizer_over_one_layer_of_a_network_updates_only_that_layer():
    d1, d2 = Dense(N_IN, 4, seed=1), Dense(4, N_OUT, seed=2)
    opt = SGD(d1, lr=1.0)
    net = Sequential(d1, ReLU(), d2)
    net.flat_grads[...] = 1.0
    before = net.flat_params.copy()
    opt.step()
    n1 = d1.size
    np.testing.assert_array_equal(net.flat_params[:n1], before[:n1] - 1.0)
    np.testing.assert_array_equal(net.flat_params[n1:], before[n1:])


def test_layer_parameters_stay_the_same_objects_when_it_joins_a_network():
    d = Dense(N_IN, N_OUT, seed=0)
    params = d.parameters()
    net = Sequential(d)
    assert all(a is b for a, b in zip(params, d.parameters()))
    assert params[0].flat_data is net.flat_params and params[1].offset == N_IN * N_OUT


# ---------------------------------------------------------------------------------------------
# A weight listed twice

def test_the_same_parameter_object_twice_is_refused():
    m = _mlp()
    p = m.parameters()[0]
    with pytest.raises(ValueError, match=r"^params: Parameter\('W'.*appears more than once"):
        SGD([p, p])
    with pytest.raises(ValueError, match=r"appears more than once"):
        SGD([{"params": [p]}, {"params": [p], "lr": 0.5}])


def test_two_parameter_objects_over_the_same_memory_are_refused():
    m = _mlp()
    p = m.parameters()[0]
    twin = Parameter("W", p.data, p.grad)  # its own flat views, the same memory
    with pytest.raises(ValueError, match=r"^params: expected each weight once, got .* sharing"):
        SGD([p, twin])
    with pytest.raises(ValueError, match=r"^params: expected each weight once"):
        SGD([{"params": [p]}, {"params": [twin], "lr": 0.5}])
    half = Parameter("W0", p.data[0], p.grad[0])  # overlapping, not equal
    with pytest.raises(ValueError, match=r"^params: expected each weight once"):
        Adam(m.parameters() + [half])


def test_a_gradient_sharing_memory_with_its_data_is_refused():
    a = np.ones(3)
    with pytest.raises(ValueError, match=r"gradient apart from its data"):
        SGD([Parameter("w", a, a)])


def test_disjoint_groups_over_one_layer_update_each_weight_once():
    # W and b of one layer in two groups do not overlap: accepted, each updated once
    m = _mlp()
    W, b = m.layers[0].parameters()
    opt = SGD([{"params": [W]}, {"params": [b], "lr": 0.0}], lr=1.0)
    m.flat_grads[...] = 1.0
    before = m.flat_params.copy()
    opt.step()
    np.testing.assert_array_equal(m.layers[0].W, before[:N_IN * 4].reshape(N_IN, 4) - 1.0)


# ---------------------------------------------------------------------------------------------
# Settings checked as they are assigned

SGD_BAD = [("lr", -1.0), ("lr", float("nan")), ("momentum", -0.5), ("weight_decay", float("inf")),
           ("decay", 2.0), ("decay", 1.0), ("decay", "0.1"), ("nesterov", "False"),
           ("nesterov", None)]
ADAM_BAD = [("lr", -1.0), ("eps", -1e-8), ("eps", float("nan")), ("weight_decay", -0.1),
            ("beta1", 1.0), ("beta2", -0.1)]


@pytest.mark.parametrize("name,value", SGD_BAD, ids=[f"{n}={v!r}" for n, v in SGD_BAD])
def test_sgd_setting_is_checked_as_an_attribute_and_in_a_group(name, value):
    opt = SGD(_mlp(), lr=0.1, momentum=0.5, decay=0.1)
    before = dict(opt.param_groups[0])
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        setattr(opt, name, value)
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        opt.param_groups[0][name] = value
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        opt.param_groups[0].update({name: value})
    assert dict(opt.param_groups[0]) == before


@pytest.mark.parametrize("name,value", ADAM_BAD, ids=[f"{n}={v!r}" for n, v in ADAM_BAD])
@pytest.mark.parametrize("cls", [Adam, AdamW])
def test_adam_setting_is_checked_as_an_attribute_and_in_a_group(cls, name, value):
    opt = cls(_mlp())
    before = dict(opt.param_groups[0])
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        setattr(opt, name, value)
    with pytest.raises((ValueError, TypeError), match=f"^{name}: expected"):
        opt.param_groups[0][name] = value
    assert dict(opt.param_groups[0]) == before


@pytest.mark.parametrize("betas,exc", [((0.9, 1.0), ValueError), ((1.5, 0.9), ValueError),
                                       (0.9, TypeError), ((0.9,), TypeError)])
def test_adam_betas_are_checked_on_assignment(betas, exc):
    opt = Adam(_mlp())
    with pytest.raises(exc, match=r"^(betas|beta1|beta2): expected"):
        opt.betas = betas
    assert opt.betas == (0.9, 0.999)


def test_sgd_nesterov_needs_momentum_whichever_way_it_is_set():
    opt = SGD(_mlp(), lr=0.1, momentum=0.9, nesterov=True)
    with pytest.raises(ValueError, match=r"^momentum: expected momentum > 0 with Nesterov"):
        opt.param_groups[0]["momentum"] = 0.0
    plain = SGD(_mlp(), lr=0.1)
    with pytest.raises(ValueError, match=r"^nesterov: expected momentum > 0 with Nesterov"):
        plain.nesterov = True
    with pytest.raises(ValueError, match=r"^nesterov: expected momentum > 0"):
        plain.param_groups[0]["nesterov"] = True
    # both at once, in one update, is one consistent change
    plain.param_groups[0].update(momentum=0.9, nesterov=True)
    assert plain.nesterov is True and plain.momentum == 0.9


def test_a_setting_refused_for_one_group_is_set_in_none():
    m = _mlp()
    W, b = m.parameters()[:2]
    rest = m.parameters()[2:]
    opt = SGD([{"params": [W, b], "momentum": 0.9, "nesterov": True},
               {"params": rest, "momentum": 0.0}], lr=0.1)
    with pytest.raises(ValueError, match=r"momentum"):
        opt.momentum = 0.0
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.0]


def test_valid_settings_assigned_later_take_effect():
    X, Y = _data()
    for name, value in [("decay", 0.5), ("weight_decay", 0.3), ("momentum", 0.9)]:
        a, b = _mlp(), _mlp()
        oa, ob = SGD(a, lr=0.1), SGD(b, lr=0.1, **{name: value})
        setattr(oa, name, value)
        for _ in range(2):
            a.train_step(X, Y, MSELoss(), oa)
            b.train_step(X, Y, MSELoss(), ob)
        np.testing.assert_array_equal(a.flat_params, b.flat_params, err_msg=name)
    a, b = _mlp(), _mlp()
    oa, ob = Adam(a, lr=0.01), Adam(b, lr=0.01, eps=0.1, betas=(0.5, 0.6))
    oa.eps = 0.1  # once an attribute nothing read
    oa.param_groups[0]["beta1"] = 0.5
    oa.betas = (0.5, 0.6)
    for _ in range(2):
        a.train_step(X, Y, MSELoss(), oa)
        b.train_step(X, Y, MSELoss(), ob)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_a_setting_the_optimizer_does_not_have_is_refused():
    with pytest.raises(AttributeError, match=r"^momentum: expected a setting of Adam"):
        Adam(_mlp()).momentum = 0.9
    with pytest.raises(AttributeError, match=r"^eps: expected a setting of SGD"):
        SGD(_mlp()).eps = 1e-3
    with pytest.raises(AttributeError, match=r"^amsgrad: fixed"):
        Adam(_mlp()).amsgrad = True
    with pytest.raises(ValueError, match=r"^param_groups: expected a setting of SGD .*got 'betas'"):
        SGD(_mlp()).param_groups[0]["betas"] = (0.9, 0.9)


def test_group_parameters_and_settings_cannot_be_replaced_or_removed():
    opt = SGD(_mlp())
    group = opt.param_groups[0]
    with pytest.raises(TypeError, match=r"^params: expected the group's parameters to stay"):
        group["params"] = []
    with pytest.raises(TypeError, match=r"^param_groups: expected settings to be changed"):
        del group["lr"]
    with pytest.raises(TypeError):
        group.pop("momentum")
    with pytest.raises(AttributeError):
        opt.param_groups.append({"params": []})
    assert isinstance(group["params"], tuple)


def test_the_check_at_each_step_stays_as_a_second_line():
    opt = SGD(_mlp(), lr=0.1)
    dict.__setitem__(opt.param_groups[0], "lr", float("nan"))  # around the checked assignment
    with pytest.raises(ValueError, match=r"^lr: expected a finite number"):
        opt.step()


def test_schedules_still_drive_checked_groups():
    m = _mlp()
    opt = SGD(m, lr=0.4, momentum=0.5)
    assert schedules.StepLR(1, gamma=0.5).apply(opt, 2) == [0.1]
    assert opt.lr == 0.1 and opt.param_groups[0]["initial_lr"] == 0.4
    X, Y = _data()
    m.fit(X, Y, loss=MSELoss(), optimizer=opt, epochs=2, seed=0,
          schedule=lambda epoch: {"lr": 0.05, "momentum": 0.8})
    assert (opt.lr, opt.momentum) == (0.05, 0.8)


def test_state_dict_round_trip_with_checked_groups():
    X, Y = _data()
    a = _mlp()
    oa = SGD(a, lr=0.1, momentum=0.9, nesterov=True)
    a.train_step(X, Y, MSELoss(), oa)
    b = _mlp()
    ob = SGD(b, lr=0.3)  # no momentum, no nesterov: restored together, not one at a time
    ob.load_state_dict(oa.state_dict())
    assert (ob.lr, ob.momentum, ob.nesterov, ob.steps) == (0.1, 0.9, True, 1)


# ---------------------------------------------------------------------------------------------
# A Parameter's arrays

def test_parameter_data_and_grad_assignment_copies():
    m = _mlp()
    p = m.parameters()[0]
    p.data = np.full((N_IN, 4), 2.0, np.float32)
    p.grad = np.full((N_IN, 4), 3.0, np.float32)
    np.testing.assert_array_equal(m.layers[0].W, 2.0)
    np.testing.assert_array_equal(m.layers[0].dW, 3.0)
    with pytest.raises(ValueError, match=r"^W: expected"):
        p.data = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match=r"^W\.grad: expected"):
        p.grad = np.zeros(3, np.float32)


@pytest.mark.parametrize("attr", ["flat_data", "flat_grad", "offset"])
def test_parameter_buffers_cannot_be_replaced(attr):
    p = _mlp().parameters()[0]
    with pytest.raises(AttributeError):
        setattr(p, attr, getattr(p, attr))
