"""bpcore.data's IDX reader and writer and load_mnist, on small IDX files the tests write."""
import gzip

import numpy as np
import pytest

import bpcore
from bpcore.data import load_mnist, read_idx, write_idx


def idx_bytes(code, shape, payload):
    """An IDX file built by hand (not by write_idx): magic, big-endian dims, payload."""
    return bytes([0, 0, code, len(shape)]) + np.asarray(shape, ">u4").tobytes() + payload


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_write_read_round_trip(tmp_path, rng, dtype, suffix):
    a = (rng.standard_normal((3, 5, 7)) * 50).astype(dtype)
    path = write_idx(tmp_path / f"a-idx3{suffix}", a)
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape and b.flags.c_contiguous
    np.testing.assert_array_equal(a, b)
    with open(path, "rb") as fh:
        assert (fh.read(2) == b"\x1f\x8b") == (suffix == ".gz")


def test_reads_big_endian_header_and_values(tmp_path):
    values = np.array([[1, -2, 300], [-40000 // 2, 7, 0]], ">i2")
    (tmp_path / "x").write_bytes(idx_bytes(0x0B, (2, 3), values.tobytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "x"), values.astype(np.int16))
    (tmp_path / "labels").write_bytes(idx_bytes(0x08, (4,), bytes([0, 9, 3, 255])))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "labels")), [0, 9, 3, 255])


def test_gzip_is_told_by_content_not_name(tmp_path):
    raw = idx_bytes(0x08, (2, 2), bytes([1, 2, 3, 4]))
    (tmp_path / "plain.gz").write_bytes(raw)                    # not compressed, named .gz
    (tmp_path / "packed").write_bytes(gzip.compress(raw))       # compressed, no .gz
    for name in ("plain.gz", "packed"):
        np.testing.assert_array_equal(read_idx(tmp_path / name), [[1, 2], [3, 4]])
    write_idx(tmp_path / "forced", np.zeros(3, np.uint8), compress=True)
    assert (tmp_path / "forced").read_bytes()[:2] == b"\x1f\x8b"


@pytest.mark.parametrize("content, match", [
    (b"", "not an IDX file"),
    (b"\x01\x00\x08\x01" + b"\x00" * 8, "not an IDX file"),
    (bytes([0, 0, 0x07, 1, 0, 0, 0, 1, 0]), "unknown IDX type code 0x07"),
    (bytes([0, 0, 0x08, 3, 0, 0]), "truncated IDX header"),
    (idx_bytes(0x08, (2, 3), bytes(5)), r"shape \(2, 3\).*has 17 bytes"),
    (idx_bytes(0x08, (2, 3), bytes(7)), r"shape \(2, 3\).*has 19 bytes"),
    (b"\x1f\x8b not really gzip", "not a valid gzip file"),
])
def test_bad_files_raise_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=match) as info:
        read_idx(path)
    assert "bad-idx" in str(info.value)


def test_write_rejects_what_idx_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="uint8, int8, int16, int32, float32 or float64"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))
    with pytest.raises(TypeError, match="got complex128"):
        write_idx(tmp_path / "x", np.zeros(3, complex))


def write_mnist(directory, n_train=12, n_test=5, gz=True, dot=False, seed=0):
    """Small MNIST-shaped IDX files, named as the real ones (or as some mirrors name them)."""
    rng = np.random.default_rng(seed)
    out = {}
    for split, stem, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n).astype(np.uint8)
        sep = "." if dot else "-"
        ext = ".gz" if gz else ""
        write_idx(directory / f"{stem}-images{sep}idx3-ubyte{ext}", images)
        write_idx(directory / f"{stem}-labels{sep}idx1-ubyte{ext}", labels)
        out[split] = images, labels
    return out


@pytest.mark.parametrize("gz, dot", [(True, False), (False, False), (True, True), (False, True)])
def test_load_mnist_reads_the_standard_files(tmp_path, gz, dot):
    written = write_mnist(tmp_path, gz=gz, dot=dot)
    for split in ("train", "test"):
        images, labels = written[split]
        X, y = load_mnist(tmp_path, split)
        assert X.shape == (len(images), 784) and X.dtype == np.float32
        assert y.dtype == np.intp
        np.testing.assert_array_equal(y, labels)
        np.testing.assert_allclose(X, images.reshape(len(images), -1) / 255, rtol=1e-6)
        assert 0 <= X.min() and X.max() <= 1


def test_load_mnist_options(tmp_path):
    images, labels = write_mnist(tmp_path)["train"]
    X, _ = load_mnist(str(tmp_path), flatten=False, normalize=False, dtype="float64")
    assert X.shape == (12, 28, 28) and X.dtype == np.float64
    np.testing.assert_array_equal(X, images)


def test_load_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path, "train")
    with pytest.raises(ValueError, match="split: expected one of 'train', 'test'"):
        load_mnist(tmp_path, "validation")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8))
    with pytest.raises(ValueError, match="expected 3 labels"):
        load_mnist(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((4, 784), np.uint8))
    with pytest.raises(ValueError, match=r"expected images of shape \(n, rows, cols\)"):
        load_mnist(tmp_path)


def test_train_on_loaded_files_in_one_call(tmp_path):
    write_mnist(tmp_path, n_train=64)
    X, y = load_mnist(tmp_path, "train")
    model = bpcore.MLP([784, 32, 10], seed=0)
    hist = model.fit(X, y, loss=bpcore.SoftmaxCrossEntropyLoss(),
                     optimizer=bpcore.SGD(model, lr=0.1), epochs=2, batch_size=16, seed=0)
    assert len(hist["loss"]) == 2 and np.isfinite(hist["loss"]).all()
