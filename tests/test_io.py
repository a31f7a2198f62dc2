"""save and load."""
import numpy as np
import pytest

import bpcore


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mlp_round_trip(tmp_path, rng, dtype):
    model = bpcore.MLP([5, 7, 3], activation="tanh", output_activation="sigmoid", dtype=dtype,
                       seed=1)
    X = rng.uniform(size=(4, 5))
    model.save(tmp_path / "net.npz")
    back = bpcore.load(tmp_path / "net.npz")
    assert isinstance(back, bpcore.MLP) and back.dtype == model.dtype
    np.testing.assert_array_equal(back.flat_params, model.flat_params)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))
    assert repr(back) == repr(model)


def test_masked_sequential_round_trip_keeps_the_mask(tmp_path, rng):
    mask = (rng.uniform(size=(6, 4)) > 0.5).astype(float)
    net = bpcore.Sequential(bpcore.Dense(6, 4, mask=mask, seed=0), bpcore.Sigmoid(),
                            bpcore.Dense(4, 2, seed=1))
    net.save(tmp_path / "masked")  # .npz appended
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
