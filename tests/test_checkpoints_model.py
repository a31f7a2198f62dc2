"""Model checkpoints: model.save / bpcore.load / bpcore.load_optimizer.

Round trips are bitwise; a resumed run (network and optimizer state from the file) continues
bitwise like the uninterrupted run; damaged, truncated, hostile or inconsistent files raise
CheckpointError naming the path, without allocating what a header claims; bpcore 0.1's .npz
files still load; a process killed while model.save rewrites a file leaves the previous
checkpoint loadable.
"""
import json
import random

import numpy as np
import pytest

import bpcore
from bpcore import _checkpoint
from memory import peak_bytes
from sigkill import kill_while_rewriting

DTYPES = ("float32", "float64")
FORMAT = "bpcore-network-2"


def _mlp(dtype, seed=1):
    return bpcore.MLP([5, 7, 6, 3], activation="tanh", output_activation="sigmoid",
                      dtype=dtype, seed=seed)


def _masked(dtype, seed=2):
    mask = (np.random.default_rng(seed).random((6, 4)) > 0.4).astype(dtype)
    mask[0, 0] = 0  # at least one masked and one live connection
    mask[0, 1] = 1
    return bpcore.Sequential(bpcore.Dense(6, 4, mask=mask, dtype=dtype, seed=seed),
                             bpcore.ReLU(), bpcore.Dense(4, 2, dtype=dtype, seed=seed + 1)), mask


def _dense_layers(model):
    return [(i, m) for i, m in enumerate(model.layers) if isinstance(m, bpcore.Dense)]


def _raw_header(path):
    data = open(path, "rb").read()
    n = int.from_bytes(data[:8], "little")
    return data, 8, 8 + n


# ---------------------------------------------------------------------------------------------
# 1. round trips

@pytest.mark.parametrize("kind", ["mlp", "masked"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_is_bitwise_and_readable_by_safetensors(tmp_path, dtype, kind):
    model, mask = (_mlp(dtype), None) if kind == "mlp" else _masked(dtype)
    # train a little so that the weights are not just the initialisation
    rng = np.random.default_rng(3)
    X = rng.standard_normal((30, model.n_inputs)).astype(dtype)
    Y = rng.random((30, model.n_outputs)).astype(dtype)
    model.fit(X, Y, loss=bpcore.MSELoss(), optimizer=bpcore.SGD(model, lr=0.1, momentum=0.9),
              epochs=2, batch_size=8, seed=4)
    path = tmp_path / "net.safetensors"
    model.save(path)
    back = bpcore.load(path)
    assert type(back) is type(model)
    assert back.dtype == model.dtype == np.dtype(dtype)
    assert back.flat_params.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.flat_params, model.flat_params)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert repr(back) == repr(model)
    if mask is not None:
        np.testing.assert_array_equal(back.layers[0].mask, mask)
        assert (back.layers[0].W[mask == 0] == 0).all()

    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open

    tensors = safetensors_numpy.load_file(str(path))
    expected_names = set()
    for i, m in _dense_layers(model):
        expected_names |= {f"layers.{i}.W", f"layers.{i}.b"}
        np.testing.assert_array_equal(tensors[f"layers.{i}.W"], m.W)
        np.testing.assert_array_equal(tensors[f"layers.{i}.b"], m.b)
        assert tensors[f"layers.{i}.W"].dtype == np.dtype(dtype)
        if m.mask is not None:
            expected_names.add(f"layers.{i}.mask")
            np.testing.assert_array_equal(tensors[f"layers.{i}.mask"], m.mask)
    assert set(tensors) == expected_names
    with safe_open(str(path), framework="np") as f:
        metadata = f.metadata()
    assert metadata["format"] == FORMAT
    assert metadata["dtype"] == dtype
    assert metadata["bpcore_version"] == bpcore.__version__
    arch = json.loads(metadata["architecture"])
    assert arch["dtype"] == dtype
    assert [layer["type"] for layer in arch["layers"]] == [
        "dense" if isinstance(m, bpcore.Dense) else m.name for m in model.layers]
    if kind == "mlp":
        assert arch["mlp"] == {"sizes": [5, 7, 6, 3], "activation": "tanh",
                               "output_activation": "sigmoid"}
    else:
        assert "mlp" not in arch and arch["layers"][0]["mask"] is True
    assert "optimizer" not in metadata


def test_saving_with_an_optimizer_adds_its_buffers_and_the_network_still_loads(tmp_path):
    model = _mlp("float64")
    opt = bpcore.Adam(model, lr=1e-2, amsgrad=True)
    X = np.random.default_rng(5).standard_normal((10, 5))
    model.train_step(X, np.zeros((10, 3)), bpcore.MSELoss(), opt)
    path = tmp_path / "net.safetensors"
    model.save(path, optimizer=opt)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    tensors = safetensors_numpy.load_file(str(path))
    for name, buf in opt.state_dict()["buffers"].items():
        np.testing.assert_array_equal(tensors["optimizer." + name], buf)
    assert {"optimizer.exp_avg", "optimizer.exp_avg_sq", "optimizer.max_exp_avg_sq"} <= set(tensors)
    back = bpcore.load(path)
    np.testing.assert_array_equal(back.flat_params, model.flat_params)


# ---------------------------------------------------------------------------------------------
# 2. resume exactness

OPTIMIZERS = {
    "adam": (bpcore.Adam, dict(lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-3)),
    "adamw_amsgrad": (bpcore.AdamW, dict(lr=2e-2, weight_decay=0.05, amsgrad=True)),
    "adam_sklearn": (bpcore.Adam, dict(lr=1e-2, eps=1e-4, eps_form="sklearn")),
    "sgd_momentum": (bpcore.SGD, dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3)),
}


def _fresh_optimizer(name, model):
    """The same kind of optimizer as OPTIMIZERS[name], with other settings (lr and weight decay
    at their defaults): load_optimizer must restore the saved ones."""
    cls, kw = OPTIMIZERS[name]
    flags = {k: v for k, v in kw.items() if k in ("amsgrad", "eps_form")}
    return cls(model, **flags)


def _steps_data(dtype, n_steps, batch, seed=6):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, 5)).astype(dtype), rng.integers(0, 3, batch))
            for _ in range(n_steps)]


@pytest.mark.parametrize("batch", [1, 16, 150])
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES)
def test_resume_through_train_step_is_bitwise(tmp_path, dtype, opt_name, batch):
    total, k = 12, 5
    data = _steps_data(dtype, total, batch)
    loss = bpcore.SoftmaxCrossEntropyLoss()
    cls, kw = OPTIMIZERS[opt_name]
    sizes = [5, 9, 3]

    ref = bpcore.MLP(sizes, activation="relu", dtype=dtype, seed=7)
    ref_opt = cls(ref, **kw)
    ref_losses = [ref.train_step(X, y, loss, ref_opt) for X, y in data]

    model = bpcore.MLP(sizes, activation="relu", dtype=dtype, seed=7)
    opt = cls(model, **kw)
    losses = [model.train_step(X, y, loss, opt) for X, y in data[:k]]
    path = tmp_path / "resume.safetensors"
    model.save(path, optimizer=opt)
    del model, opt

    model = bpcore.load(path)
    opt = _fresh_optimizer(opt_name, model)
    assert opt.steps == 0
    assert bpcore.load_optimizer(path, opt) is opt
    assert opt.steps == k
    for key, value in kw.items():
        if key in ("lr", "weight_decay", "momentum", "eps"):
            assert opt.param_groups[0][key] == value, key
    losses += [model.train_step(X, y, loss, opt) for X, y in data[k:]]

    assert opt.steps == ref_opt.steps == total
    assert losses == ref_losses
    np.testing.assert_array_equal(model.flat_params, ref.flat_params)
    for name, buf in opt.state_dict()["buffers"].items():
        np.testing.assert_array_equal(buf, ref_opt.state_dict()["buffers"][name], err_msg=name)
    # the resume is not trivially exact: the optimizer's state mattered
    naive = bpcore.load(path)
    naive_opt = cls(naive, **kw)
    for X, y in data[k:]:
        naive.train_step(X, y, loss, naive_opt)
    assert not np.array_equal(naive.flat_params, ref.flat_params)


@pytest.mark.parametrize("opt_name", ["adamw_amsgrad", "sgd_momentum"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_resume_through_fit_is_bitwise(tmp_path, dtype, opt_name):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((100, 5)).astype(dtype)
    Y = rng.random((100, 3)).astype(dtype)
    loss = bpcore.MSELoss()
    cls, kw = OPTIMIZERS[opt_name]
    fit_kw = dict(loss=loss, batch_size=16, shuffle=False)

    ref = _mlp(dtype, seed=9)
    ref_opt = cls(ref, **kw)
    ref_hist = ref.fit(X, Y, optimizer=ref_opt, epochs=5, **fit_kw)

    model = _mlp(dtype, seed=9)
    opt = cls(model, **kw)
    hist = model.fit(X, Y, optimizer=opt, epochs=2, **fit_kw)["loss"]
    path = tmp_path / "resume.safetensors"
    model.save(path, optimizer=opt)
    model = bpcore.load(path)
    opt = bpcore.load_optimizer(path, _fresh_optimizer(opt_name, model))
    hist += model.fit(X, Y, optimizer=opt, epochs=3, **fit_kw)["loss"]

    assert opt.steps == ref_opt.steps == 5 * 7
    assert hist == ref_hist["loss"]
    np.testing.assert_array_equal(model.flat_params, ref.flat_params)


def test_resume_through_the_layer_api_is_bitwise(tmp_path):
    data = _steps_data("float64", 8, 10, seed=10)
    loss = bpcore.SoftmaxCrossEntropyLoss()

    def step(model, opt, X, y):
        model.zero_grad()
        loss(model.forward(X), y)
        model.backward(loss.backward())
        opt.step()

    ref = bpcore.MLP([5, 9, 3], dtype="float64", seed=11)
    ref_opt = bpcore.AdamW(ref, lr=1e-2, amsgrad=True)
    for X, y in data:
        step(ref, ref_opt, X, y)
    model = bpcore.MLP([5, 9, 3], dtype="float64", seed=11)
    opt = bpcore.AdamW(model, lr=1e-2, amsgrad=True)
    for X, y in data[:3]:
        step(model, opt, X, y)
    path = tmp_path / "layer.safetensors"
    model.save(path, optimizer=opt)
    model = bpcore.load(path)
    opt = bpcore.load_optimizer(path, bpcore.AdamW(model, amsgrad=True))
    for X, y in data[3:]:
        step(model, opt, X, y)
    assert opt.steps == 8
    np.testing.assert_array_equal(model.flat_params, ref.flat_params)


# ---------------------------------------------------------------------------------------------
# 3. load_optimizer's errors

def test_load_optimizer_from_a_file_without_one(tmp_path):
    model = _mlp("float32")
    path = tmp_path / "plain.safetensors"
    model.save(path)
    opt = bpcore.Adam(model)
    with pytest.raises(bpcore.CheckpointError, match="no optimizer state") as info:
        bpcore.load_optimizer(path, opt)
    assert isinstance(info.value, ValueError)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert opt.steps == 0


@pytest.mark.parametrize("other", [
    lambda m: bpcore.SGD(m, lr=0.1, momentum=0.9),       # another kind
    lambda m: bpcore.AdamW(m),                            # Adam's state into AdamW
    lambda m: bpcore.Adam(m, amsgrad=True),               # other flags
    lambda m: bpcore.Adam(m, eps_form="sklearn"),
])
def test_load_optimizer_of_another_kind_is_refused(tmp_path, other):
    model = _mlp("float64")
    opt = bpcore.Adam(model, lr=1e-2)
    model.train_step(np.ones((4, 5)), np.zeros((4, 3)), bpcore.MSELoss(), opt)
    path = tmp_path / "adam.safetensors"
    model.save(path, optimizer=opt)
    target = other(bpcore.load(path))
    before = {k: v.copy() for k, v in target.state_dict()["buffers"].items()}
    lr_before = target.lr
    with pytest.raises(ValueError, match="expected the state of a") as info:
        bpcore.load_optimizer(path, target)
    assert "Adam" in str(info.value)
    assert target.steps == 0 and target.lr == lr_before
    for name, buf in target.state_dict()["buffers"].items():
        np.testing.assert_array_equal(buf, before[name])


def test_load_optimizer_over_a_different_model_is_refused(tmp_path):
    model = _mlp("float64")
    opt = bpcore.Adam(model)
    model.train_step(np.ones((4, 5)), np.zeros((4, 3)), bpcore.MSELoss(), opt)
    path = tmp_path / "adam.safetensors"
    model.save(path, optimizer=opt)
    other = bpcore.MLP([5, 8, 3], dtype="float64", seed=0)
    target = bpcore.Adam(other)
    with pytest.raises(ValueError, match=r"exp_avg.*shape") as info:
        bpcore.load_optimizer(path, target)
    assert str(model.num_parameters) in str(info.value)
    assert str(other.num_parameters) in str(info.value)
    assert target.steps == 0
    # parameter groups: a different number of groups is refused too
    grouped = bpcore.Adam([{"params": [p]} for p in bpcore.load(path).parameters()])
    with pytest.raises(ValueError, match="parameter groups"):
        bpcore.load_optimizer(path, grouped)


# ---------------------------------------------------------------------------------------------
# 4. files that are refused

def _write_network_file(path, spec, tensors, metadata=None):
    """A checksummed file (bpcore._checkpoint.write) holding whatever spec and tensors say."""
    meta = {"format": FORMAT, "architecture": json.dumps(spec), "dtype": spec.get("dtype", "?"),
            "bpcore_version": bpcore.__version__}
    meta.update(metadata or {})
    _checkpoint.write(path, tensors, meta)


def _huge_spec():
    return {"dtype": "float32", "layers": [{"type": "dense", "fan_in": 16000, "fan_out": 16000,
                                            "mask": False}]}


def _refused_without_allocating(path):
    refused = []

    def refuse():
        with pytest.raises(bpcore.CheckpointError) as info:
            bpcore.load(path)
        refused.append(info.value)

    peak = peak_bytes(refuse)
    assert peak < 4_000_000, f"peak {peak} bytes while refusing the file"
    assert str(path) in str(refused[0])
    return refused[0]


def test_a_huge_layer_claimed_by_a_1kb_header_is_refused_without_allocating(tmp_path):
    # the tensors' entries claim 16000x16000 float32 (1 GB) but the file is about 1 KB
    spec = _huge_spec()
    header = {"__metadata__": {"format": FORMAT, "architecture": json.dumps(spec),
                               "dtype": "float32", "bpcore_version": bpcore.__version__},
              "layers.0.W": {"dtype": "F32", "shape": [16000, 16000],
                             "data_offsets": [0, 16000 * 16000 * 4]},
              "layers.0.b": {"dtype": "F32", "shape": [16000],
                             "data_offsets": [16000 * 16000 * 4, 16000 * 16000 * 4 + 64000]}}
    raw = json.dumps(header).encode()
    path = tmp_path / "huge.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(1024 - 8 - len(raw)))
    assert path.stat().st_size == 1024
    _refused_without_allocating(path)


def test_a_huge_architecture_over_small_tensors_is_refused_without_allocating(tmp_path):
    # a valid, checksummed file whose architecture claims 16000x16000 over 4x4 tensors
    path = tmp_path / "huge_arch.safetensors"
    _write_network_file(path, _huge_spec(), {"layers.0.W": np.zeros((4, 4), np.float32),
                                             "layers.0.b": np.zeros(4, np.float32)})
    assert path.stat().st_size < 2048
    err = _refused_without_allocating(path)
    assert "layers.0.W" in str(err)


def test_tracemalloc_sees_what_a_load_allocates(tmp_path):
    # guards the two tests above: a load that allocated would be seen
    model = bpcore.MLP([1000, 1000], dtype="float32", seed=0)
    path = tmp_path / "big.safetensors"
    model.save(path)
    assert peak_bytes(lambda: bpcore.load(path)) >= 4_000_000


@pytest.mark.parametrize("dtype", DTYPES)
def test_truncated_checkpoints_are_refused(tmp_path, dtype):
    path = tmp_path / "net.safetensors"
    _mlp(dtype).save(path, optimizer=None)
    data = path.read_bytes()
    bad = tmp_path / "cut.safetensors"
    for size in sorted({0, 4, 8, 9, len(data) // 3, len(data) // 2, len(data) - 100,
                        len(data) - 1}):
        bad.write_bytes(data[:size])
        with pytest.raises(bpcore.CheckpointError) as info:
            bpcore.load(bad)
        assert str(bad) in str(info.value)


def test_one_flipped_bit_in_the_data_is_refused(tmp_path):
    path = tmp_path / "net.safetensors"
    _mlp("float64").save(path)
    data, _, data_start = _raw_header(path)
    bad = tmp_path / "flip.safetensors"
    rng = random.Random(12)
    for pos in [data_start, len(data) - 1] + rng.sample(range(data_start, len(data)), 20):
        flipped = bytearray(data)
        flipped[pos] ^= 1 << rng.randrange(8)
        bad.write_bytes(bytes(flipped))
        with pytest.raises(bpcore.CheckpointError, match="checksum"):
            bpcore.load(bad)


def test_one_flipped_bit_in_the_architecture_is_refused(tmp_path):
    path = tmp_path / "net.safetensors"
    _mlp("float32").save(path)
    data, start, end = _raw_header(path)
    header = data[start:end].decode()
    arch = json.loads(header)["__metadata__"]["architecture"]
    escaped = json.dumps(arch, ensure_ascii=False)[1:-1]
    at = header.index(escaped)
    assert at > 0
    bad = tmp_path / "flip.safetensors"
    # one bit of every byte of the architecture text; and a digit of a size changed to
    # another digit (still a valid header and a valid, different, architecture)
    positions = [(start + at + i, 1 << (i % 8)) for i in range(len(escaped))]
    digit = start + at + escaped.index("7", escaped.index("fan_out"))
    assert data[digit:digit + 1] == b"7"
    positions.append((digit, 1))  # '7' -> '6'
    for pos, bit in positions:
        flipped = bytearray(data)
        flipped[pos] ^= bit
        bad.write_bytes(bytes(flipped))
        with pytest.raises(bpcore.CheckpointError):
            bpcore.load(bad)


def _small_spec_and_tensors():
    model = bpcore.MLP([4, 5, 3], activation="tanh", dtype="float64", seed=13)
    from bpcore.model import _tensors, describe
    return describe(model), {k: v.copy() for k, v in _tensors(model).items()}


@pytest.mark.parametrize("change,fragment", [
    (lambda s: s["mlp"].__setitem__("sizes", [4, 6, 3]), "MLP sizes"),
    (lambda s: s["mlp"].__setitem__("sizes", [4, 5, 3, 2]), "MLP sizes"),
    (lambda s: s["layers"][2].__setitem__("fan_in", 6), "inputs after"),
    (lambda s: s["layers"][1].__setitem__("type", "swish"), "unknown type"),
    (lambda s: s["layers"][1].__setitem__("alpha", 2.0), "architecture"),
    (lambda s: s["layers"][0].__setitem__("fan_out", 0), "sizes"),
    (lambda s: s["layers"][0].__setitem__("fan_in", 4.0), "sizes"),
    (lambda s: s.__setitem__("dtype", "float16"), "float16"),
    (lambda s: s.__setitem__("layers", [{"type": "tanh"}]), "no dense layer"),
    (lambda s: s.__setitem__("layers", "dense"), "architecture"),
    (lambda s: s.pop("dtype"), "architecture"),
    (lambda s: s["mlp"].__setitem__("activation", "relu"), "the settings build"),
    (lambda s: s["mlp"].__setitem__("activation", "swish"), "architecture: activation"),
    (lambda s: s["mlp"].__setitem__("output_activation", "bogus"),
     "architecture: output_activation"),
    (lambda s: s["layers"].append({"type": "tanh"}), "the settings build"),
])
def test_inconsistent_architectures_are_refused(tmp_path, change, fragment):
    spec, tensors = _small_spec_and_tensors()
    change(spec)
    path = tmp_path / "arch.safetensors"
    _write_network_file(path, spec, tensors)
    with pytest.raises(bpcore.CheckpointError, match=fragment) as info:
        bpcore.load(path)
    assert str(path) in str(info.value)


def test_the_unchanged_architecture_loads(tmp_path):
    # guards the test above: the same construction without a change is a valid file
    spec, tensors = _small_spec_and_tensors()
    path = tmp_path / "arch.safetensors"
    _write_network_file(path, spec, tensors)
    back = bpcore.load(path)
    np.testing.assert_array_equal(back.layers[0].W, tensors["layers.0.W"])


@pytest.mark.parametrize("metadata,fragment", [
    ({"format": "bpcore-network-3"}, "format"),
    ({"architecture": "{not json"}, "JSON"),
])
def test_wrong_format_or_unreadable_architecture_is_refused(tmp_path, metadata, fragment):
    spec, tensors = _small_spec_and_tensors()
    path = tmp_path / "meta.safetensors"
    _write_network_file(path, spec, tensors, metadata)
    with pytest.raises(bpcore.CheckpointError, match=fragment):
        bpcore.load(path)


def test_missing_and_unexpected_tensors_are_refused(tmp_path):
    spec, tensors = _small_spec_and_tensors()
    path = tmp_path / "t.safetensors"
    missing = dict(tensors)
    del missing["layers.2.b"]
    _write_network_file(path, spec, missing)
    with pytest.raises(bpcore.CheckpointError, match="layers.2.b"):
        bpcore.load(path)
    extra = {**tensors, "layers.9.W": np.zeros(3)}
    _write_network_file(path, spec, extra)
    with pytest.raises(bpcore.CheckpointError, match="layers.9.W"):
        bpcore.load(path)
    with pytest.raises(bpcore.CheckpointError, match="no such file"):
        bpcore.load(tmp_path / "absent.safetensors")


# ---------------------------------------------------------------------------------------------
# bpcore 0.1's .npz files

def _save_npz_the_old_way(model, path):
    """What bpcore 0.1's io.save wrote (git show HEAD~1:bpcore/io.py)."""
    layers = []
    for m in model.layers:
        if isinstance(m, bpcore.Dense):
            layers.append({"type": "dense", "fan_in": m.fan_in, "fan_out": m.fan_out,
                           "mask": m.mask is not None})
        else:
            layers.append({"type": m.name})
    spec = {"format": "bpcore-network-1", "dtype": model.dtype.name, "layers": layers}
    if isinstance(model, bpcore.MLP):
        spec["mlp"] = {"sizes": model.sizes, "activation": model.activation,
                       "output_activation": model.output_activation}
    masks = {f"mask{i}": m.mask for i, m in enumerate(model.layers)
             if isinstance(m, bpcore.Dense) and m.mask is not None}
    np.savez(path, spec=np.array(json.dumps(spec)), flat_params=model.flat_params, **masks)


@pytest.mark.parametrize("suffix", [".npz", ""])
@pytest.mark.parametrize("kind", ["mlp", "masked"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_bpcore_0_1_npz_files_still_load(tmp_path, dtype, kind, suffix):
    model, mask = (_mlp(dtype), None) if kind == "mlp" else _masked(dtype)
    _save_npz_the_old_way(model, tmp_path / "old.npz")
    back = bpcore.load(tmp_path / ("old" + suffix))
    assert type(back) is type(model) and back.dtype == model.dtype
    np.testing.assert_array_equal(back.flat_params, model.flat_params)
    X = np.random.default_rng(14).standard_normal((6, model.n_inputs))
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert repr(back) == repr(model)
    if mask is not None:
        np.testing.assert_array_equal(back.layers[0].mask, mask)
    # and it saves on as a safetensors file
    back.save(tmp_path / "new.safetensors")
    np.testing.assert_array_equal(bpcore.load(tmp_path / "new.safetensors").flat_params,
                                  model.flat_params)


def test_a_bad_npz_is_refused(tmp_path):
    model = _mlp("float32")
    path = tmp_path / "short.npz"
    np.savez(path, spec=np.array(json.dumps({"format": "bpcore-network-1", "dtype": "float32",
                                             "layers": [{"type": "dense", "fan_in": 5,
                                                         "fan_out": 7}]})),
             flat_params=model.flat_params)
    with pytest.raises(bpcore.CheckpointError, match="flat_params: expected 42 values"):
        bpcore.load(path)


# ---------------------------------------------------------------------------------------------
# 5. SIGKILL while model.save rewrites the file

_SAVER = r"""
import sys
import numpy as np
import bpcore
path, iteration = sys.argv[1], int(sys.argv[2]) * 1000
model = bpcore.MLP([1000, 2000], dtype="float32", seed=0)
print("ready", flush=True)
while True:
    model.flat_params[...] = iteration
    model.save(path)
    iteration += 1
"""


def _one_complete_version(path):
    model = bpcore.load(path)  # raises if the file is damaged
    values = np.unique(model.flat_params)
    assert values.size == 1, f"a mix of versions: {values[:5]}"
    return int(values[0])


def test_sigkill_during_model_save_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "ckpt.safetensors"
    model = bpcore.MLP([1000, 2000], dtype="float32", seed=0)  # 8 MB of weights
    model.flat_params[...] = 0
    model.save(path)
    # 3 kills at least; up to 8 until one landed mid-write and a rewrite had completed
    versions = kill_while_rewriting(_SAVER, [path], path, _one_complete_version, 3, 8, 0.6,
                                    seed=15)
    assert all(v == 0 or v // 1000 <= len(versions) for v in versions)


def test_load_optimizer_over_a_model_of_the_same_size_but_other_shapes_is_refused(tmp_path):
    model = bpcore.MLP([4, 5, 3], dtype="float64", seed=0)
    opt = bpcore.SGD(model, lr=0.1, momentum=0.9)
    path = tmp_path / "sgd.safetensors"
    model.save(path, optimizer=opt)
    # another three-layer-size MLP with exactly as many parameters
    other = next(bpcore.MLP([a, b, c], dtype="float64", seed=0)
                 for a in range(1, 12) for b in range(1, 12) for c in range(1, 12)
                 if a * b + b + b * c + c == model.num_parameters and [a, b, c] != [4, 5, 3])
    assert other.num_parameters == model.num_parameters
    target = bpcore.SGD(other, lr=0.1, momentum=0.9)
    with pytest.raises(ValueError, match=r"state: expected parameters of shapes"):
        bpcore.load_optimizer(path, target)
    assert target.steps == 0


# --------------------------------------------------------------------------------------------
# round trips through the public API (from the former test_io.py)

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_round_trip_keeps_class_dtype_and_repr(tmp_path, rng, dtype):
    model = bpcore.MLP([5, 7, 3], activation="tanh", output_activation="sigmoid", dtype=dtype,
                       seed=1)
    X = rng.uniform(size=(4, 5))
    model.save(tmp_path / "net.safetensors")
    back = bpcore.load(tmp_path / "net.safetensors")
    assert isinstance(back, bpcore.MLP) and back.dtype == model.dtype
    np.testing.assert_array_equal(back.flat_params, model.flat_params)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert repr(back) == repr(model)


def test_masked_sequential_round_trip_keeps_the_mask(tmp_path, rng):
    mask = (rng.uniform(size=(6, 4)) > 0.5).astype(float)
    net = bpcore.Sequential(bpcore.Dense(6, 4, mask=mask, seed=0), bpcore.Sigmoid(),
                            bpcore.Dense(4, 2, seed=1))
    net.save(tmp_path / "masked")  # any name: the format is in the file
    back = bpcore.load(tmp_path / "masked")
    np.testing.assert_array_equal(back.layers[0].mask, net.layers[0].mask)
    np.testing.assert_array_equal(back.flat_params, net.flat_params)
    opt = bpcore.SGD(back, lr=0.5, momentum=0.9)
    back.fit(rng.uniform(size=(8, 6)), rng.uniform(size=(8, 2)), loss=bpcore.MSELoss(),
             optimizer=opt, epochs=3, batch_size=4)
    np.testing.assert_array_equal(back.layers[0].W[mask == 0], 0)


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not a network saved by bpcore"):
        bpcore.load(tmp_path / "other.npz")


def test_extra_json_data_travels_with_the_network(tmp_path):
    path = tmp_path / "net.safetensors"
    model = bpcore.MLP([3, 4, 2], seed=0)
    model.save(path)
    assert bpcore.load_extra(path) is None
    extra = {"classes": ["a", "b"], "epochs": 3, "best": float("inf"), "nested": {"k": [1.5]}}
    model.save(path, extra=extra)
    assert bpcore.load_extra(path) == extra
    np.testing.assert_array_equal(bpcore.load(path).flat_params, model.flat_params)
    with pytest.raises(TypeError, match="extra: expected JSON data"):
        model.save(tmp_path / "bad.safetensors", extra={"array": np.zeros(2)})
    assert not (tmp_path / "bad.safetensors").exists()
