"""The public API: sizes, views into flat buffers, initialisation, repr, config."""
import io

import numpy as np
import pytest

import bpcore


def test_parameter_counts_from_the_tutorial():
    assert bpcore.MLP([784, 256, 128, 10]).num_parameters == 235146
    assert bpcore.MLP([784, 10]).num_parameters == 7850
    per_layer = [m.num_parameters for m in bpcore.MLP([784, 256, 128, 10]).layers
                 if isinstance(m, bpcore.Dense)]
    assert per_layer == [200960, 32896, 1290]


def test_layers_are_views_into_one_flat_buffer():
    model = bpcore.MLP([4, 3, 2], seed=0)
    params = model.parameters()
    assert [p.name for p in params] == ["W", "b", "W", "b"]
    assert sum(p.size for p in params) == model.flat_params.size == model.num_parameters
    for p in params:
        assert np.shares_memory(p.data, model.flat_params)
        assert np.shares_memory(p.grad, model.flat_grads)
    model.flat_params[:] = np.arange(model.num_parameters)
    np.testing.assert_array_equal(model.layers[0].W.ravel(), np.arange(12))
    np.testing.assert_array_equal(model.layers[0].b, [12, 13, 14])
    assert bpcore.SGD(model, lr=0.1).native().size == model.flat_params.size  # one flat state


def test_gradients_accumulate_until_zero_grad(rng):
    model = bpcore.MLP([3, 4, 2], dtype="float64", seed=1)
    X, T = rng.uniform(size=(5, 3)), rng.uniform(size=(5, 2))
    loss = bpcore.MSELoss()
    loss(model.forward(X), T)
    model.backward(loss.backward())
    once = model.flat_grads.copy()
    loss(model.forward(X), T)
    model.backward(loss.backward())
    np.testing.assert_allclose(model.flat_grads, 2 * once)
    model.zero_grad()
    assert not model.flat_grads.any()


def test_seeded_initialisation(rng):
    a = bpcore.MLP([10, 8, 3], seed=42)
    b = bpcore.MLP([10, 8, 3], seed=42)
    c = bpcore.MLP([10, 8, 3], seed=43)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)
    assert not np.array_equal(bpcore.MLP([10, 3]).flat_params, bpcore.MLP([10, 3]).flat_params)


def test_initialisation_rules():
    relu = bpcore.MLP([400, 300, 10], activation="relu", seed=0)
    he = np.sqrt(6 / 400)
    assert 0.95 * he < np.abs(relu.layers[0].W).max() <= he
    glorot = np.sqrt(6 / (300 + 10))  # the linear output layer
    assert 0.95 * glorot < np.abs(relu.layers[2].W).max() <= glorot
    assert not relu.layers[0].b.any()
    tanh = bpcore.MLP([400, 300], activation="tanh", output_activation="tanh", seed=0)
    lim = np.sqrt(6 / 700)
    assert 0.95 * lim < np.abs(tanh.layers[0].W).max() <= lim
    paper = bpcore.MLP([6, 2, 1], activation="sigmoid", output_activation="sigmoid",
                       init=0.3, seed=0)
    assert np.abs(paper.flat_params).max() <= 0.3
    assert paper.layers[0].b.any()  # the 1986 scheme draws the biases too


@pytest.mark.parametrize("scale", [1.2e-44, 3e-45, 1e-40, 0.3])
def test_a_scale_without_an_exact_float32_value_still_bounds_the_weights(scale):
    # a subnormal float32 scale: a draw just below s rounds to the next subnormal above it
    model = bpcore.MLP([30, 40, 20], dtype="float32", init=scale, seed=1)
    assert np.abs(model.flat_params.astype(np.float64)).max() <= scale
    assert np.abs(model.flat_params).max() > 0


def test_dtype_float64_everywhere(rng):
    model = bpcore.MLP([3, 4, 2], dtype="float64", seed=0)
    assert model.flat_params.dtype == np.float64
    out = model.forward(rng.uniform(size=(2, 3)).astype(np.float32))
    assert out.dtype == np.float64


def test_predict_equals_forward_and_keeps_no_state(rng):
    model = bpcore.MLP([5, 6, 3], seed=0)
    X = rng.uniform(size=(4, 5))
    np.testing.assert_array_equal(model.predict(X), model.forward(X))
    fresh = bpcore.MLP([5, 6, 3], seed=0)
    fresh.predict(X)
    with pytest.raises(RuntimeError, match="forward"):
        fresh.backward(np.zeros((4, 3)))


def test_repr_shows_layers_shapes_and_counts():
    text = repr(bpcore.MLP([784, 256, 128, 10]))
    for piece in ["784 -> 256 -> 128 -> 10", "Dense(784, 256)", "ReLU()", "200,960", "32,896",
                  "1,290", "235,146", "float32"]:
        assert piece in text
    seq = repr(bpcore.Sequential(bpcore.Dense(3, 2), bpcore.Sigmoid()))
    assert "Dense(3, 2)" in seq and "Sigmoid()" in seq and "8 parameters" in seq
    masked = bpcore.Dense(2, 2, mask=[[1, 0], [0, 1]])
    assert "mask=2/4" in repr(masked)
    assert "lr=0.1" in repr(bpcore.SGD(masked.parameters(), lr=0.1))


def test_standalone_dense_and_optimizer_over_parameter_list(rng):
    layer = bpcore.Dense(3, 2, dtype="float64", seed=0)
    X = rng.uniform(size=(4, 3))
    loss = bpcore.MSELoss("sum")
    before = layer.W.copy()
    loss(layer.forward(X), np.zeros((4, 2)))
    layer.backward(loss.backward())
    bpcore.SGD(layer.parameters(), lr=0.01).step()
    np.testing.assert_allclose(layer.W, before - 0.01 * layer.dW)


def test_schedule_changes_lr_and_momentum_between_steps():
    opt = bpcore.SGD(bpcore.MLP([2, 1]), lr=0.005, momentum=0.5)
    opt.lr, opt.momentum = 0.01, 0.9
    assert (opt.lr, opt.momentum) == (0.01, 0.9)


def test_one_hot():
    np.testing.assert_array_equal(bpcore.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    assert bpcore.one_hot([1], 2).dtype == np.float32


def test_show_config():
    buf = io.StringIO()
    bpcore.show_config(file=buf)
    text = buf.getvalue()
    assert bpcore.__version__ in text
    assert "OpenMP" in text and "threads" in text
    assert "openblas" in text.lower() or "blas" in text.lower()
    assert "numpy" in text and "scipy" in text
    info = bpcore._config.config_info()
    assert info["blas"], "threadpoolctl should see the BLAS scipy loads"
    assert "scipy" in info["blas"][0]["filepath"]


def test_built_with_openmp():
    # every supported build has OpenMP (BPCORE_FAIL_NO_OPENMP=1 in wheel builds); a
    # single-threaded build here means the probe failed and must be looked at
    assert bpcore._threads.openmp_enabled()
