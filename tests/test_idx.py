"""bpcore.data's IDX reader and writer and load_mnist, on small IDX files the tests write."""
import gzip

import numpy as np
import pytest
from memory import peak_bytes

import bpcore
from bpcore.data import load_mnist, read_idx, write_idx
from bpcore.errors import FileFormatError


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
    (b"\x1f\x8b not really gzip", r"gzip stream corrupted \(Unknown compression method\)"),
])
def test_bad_files_raise_naming_the_file(tmp_path, content, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=match) as info:
        read_idx(path)
    assert "bad-idx" in str(info.value)


def test_write_rejects_what_idx_cannot_store(tmp_path):
    with pytest.raises(TypeError, match="uint8, int8, int16, int32, float32 or float64"):
        write_idx(tmp_path / "x", np.zeros(3, np.uint16))
    with pytest.raises(TypeError, match="got complex128"):
        write_idx(tmp_path / "x", np.zeros(3, complex))


# ---------------------------------------------------------------------------------------------
# Untrusted files: one exception type, naming the file, and no allocation the file cannot back

def raises_format_error(path, match):
    """read_idx(path) raises FileFormatError matching `match`, with the path in the message."""
    with pytest.raises(FileFormatError, match=match) as info:
        read_idx(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    return info.value


def test_truncated_gzip(tmp_path):
    packed = gzip.compress(idx_bytes(0x0C, (50, 40), np.arange(2000, dtype=">i4").tobytes()))
    # in the gzip header, in the deflate data, just before the CRC, and inside the ISIZE
    for cut in (5, 12, len(packed) // 2, len(packed) - 8, len(packed) - 2):
        path = tmp_path / f"cut{cut}-idx2-int.gz"
        path.write_bytes(packed[:cut])
        raises_format_error(path, "truncated")
    # load_mnist passes the error on, naming the damaged file
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((3, 28, 28), np.uint8))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-10])
    with pytest.raises(FileFormatError, match="train-images-idx3-ubyte.gz: truncated"):
        load_mnist(tmp_path)


def test_corrupt_gzip(tmp_path, rng):
    payload = rng.integers(0, 4, 5000, dtype=np.uint8).tobytes()  # compressible: real deflate
    packed = gzip.compress(idx_bytes(0x08, (5000,), payload))
    header_end = 10  # gzip.compress writes the fixed 10-byte header, no optional fields
    for at in range(header_end, len(packed) - 8, max(1, (len(packed) - 18) // 40)):
        flipped = bytearray(packed)
        flipped[at] ^= 0xFF
        path = tmp_path / f"flip{at}-idx1-ubyte.gz"
        path.write_bytes(bytes(flipped))
        # Whatever the flip does to the stream (bad code, bad distance, wrong CRC, a stream
        # ending early or running long), it must come out as FileFormatError.
        raises_format_error(path, "gzip stream corrupted|truncated|trailing data")
    crc = bytearray(packed)
    crc[-8] ^= 0x01
    (tmp_path / "crc.gz").write_bytes(bytes(crc))
    raises_format_error(tmp_path / "crc.gz", r"gzip stream corrupted \(CRC check failed")


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory):
    """A 256 KB gzip file: a header for 16 bytes of uint8, then 256 MiB of zeros."""
    path = tmp_path_factory.mktemp("bomb") / "bomb-idx1-ubyte.gz"
    zeros = bytes(1 << 20)
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as gz:
        gz.write(idx_bytes(0x08, (16,), bytes(range(16))))
        for _ in range(256):
            gz.write(zeros)
    return path


def test_gzip_bomb_raises_in_bounded_memory(gzip_bomb):
    assert gzip_bomb.stat().st_size < 1 << 20
    peak = peak_bytes(lambda: pytest.raises(FileFormatError, read_idx, gzip_bomb))
    assert peak < 10_000_000, f"peak {peak} bytes reading a gzip bomb"
    raises_format_error(gzip_bomb, r"trailing data: IDX header says shape \(16,\) of uint8, "
                                   r"16 bytes of data \(24 bytes in all\), but the gzip "
                                   r"stream inflates to more")


@pytest.mark.parametrize("shape", [(60000, 10000, 10000), (0xFFFFFFFF,) * 4])
@pytest.mark.parametrize("compress", [False, True])
def test_huge_header_shape_raises_before_allocating(tmp_path, shape, compress):
    raw = idx_bytes(0x08, shape, bytes(1000))
    path = tmp_path / "huge-idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    peak = peak_bytes(lambda: pytest.raises(FileFormatError, read_idx, path))
    assert peak < 1_000_000, f"peak {peak} bytes for a header claiming {shape}"
    nbytes = int(np.prod(shape, dtype=object))
    if compress:
        raises_format_error(path, rf"truncated: .*{nbytes} bytes of data.*but a gzip file of "
                                  rf"{path.stat().st_size} bytes inflates to at most")
    else:
        raises_format_error(path, rf"truncated: IDX header says shape \({shape[0]}, .*"
                                  rf"{nbytes} bytes of data.*but the file has "
                                  rf"{path.stat().st_size} bytes")


def test_zero_dimensions(tmp_path):
    (tmp_path / "scalar-idx").write_bytes(bytes([0, 0, 0x08, 0, 7]))
    raises_format_error(tmp_path / "scalar-idx", r"0 dimensions \(expected 1 to 255\)")
    # write_idx never makes one: a scalar is refused, naming the argument
    with pytest.raises(ValueError, match="array: expected at least 1 dimension"):
        write_idx(tmp_path / "x", np.uint8(7))


@pytest.mark.parametrize("compress", [False, True])
def test_trailing_bytes(tmp_path, compress):
    raw = idx_bytes(0x0B, (2, 3), np.arange(6, dtype=">i2").tobytes()) + b"\x00"
    path = tmp_path / "long-idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    where = "the gzip stream inflates to more" if compress else "the file has 25 bytes"
    raises_format_error(path, rf"trailing data: IDX header says shape \(2, 3\) of int16, "
                              rf"12 bytes of data \(24 bytes in all\), but {where}")
    # bytes after a valid gzip member that do not start another one
    path.write_bytes(gzip.compress(raw[:-1]) + b"junk")
    raises_format_error(path, "gzip stream corrupted")


def test_empty_file(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    raises_format_error(tmp_path / "empty", r"not an IDX file .*got an empty file\)")
    (tmp_path / "empty.gz").write_bytes(gzip.compress(b""))
    raises_format_error(tmp_path / "empty.gz", r"not an IDX file .*got an empty gzip stream\)")
    # a missing file is not a format problem
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "missing")


def test_valid_gzip_that_is_not_idx(tmp_path):
    (tmp_path / "text.gz").write_bytes(gzip.compress(b"hello, world\n" * 100))
    raises_format_error(tmp_path / "text.gz", r"not an IDX file \(expected a magic number "
                                              r"0x0000TTDD, got 68656c6c\)")


@pytest.mark.parametrize("compress", [False, True])
def test_valid_read_peak_is_the_output_plus_a_buffer(tmp_path, rng, compress):
    a = rng.integers(-1000, 1000, (1000, 2000), dtype=np.int32)    # 8 MB, byte-swapped on read
    raw = idx_bytes(0x0C, a.shape, a.astype(">i4").tobytes())
    path = tmp_path / "big-idx2-int"
    path.write_bytes(gzip.compress(raw, compresslevel=1) if compress else raw)  # level 1: fast
    out = []
    peak = peak_bytes(lambda: out.append(read_idx(path)))
    assert peak < a.nbytes + 4_000_000, f"peak {peak} bytes reading {a.nbytes} bytes"
    b = out[0]
    assert b.dtype == np.int32 and b.dtype.isnative and b.flags.c_contiguous
    np.testing.assert_array_equal(a, b)


def test_multi_member_gzip_still_reads(tmp_path):
    raw = idx_bytes(0x08, (2, 3), bytes(range(6)))
    # `cat a.gz b.gz` makes a valid gzip file; its last trailer counts only the last member
    (tmp_path / "two.gz").write_bytes(gzip.compress(raw[:9]) + gzip.compress(raw[9:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "two.gz"), [[0, 1, 2], [3, 4, 5]])
    (tmp_path / "padded.gz").write_bytes(gzip.compress(raw) + bytes(8))   # zero padding
    np.testing.assert_array_equal(read_idx(tmp_path / "padded.gz"), [[0, 1, 2], [3, 4, 5]])


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
