"""Small data helpers: one-hot targets, and the IDX files MNIST is distributed in.

IDX (the format of the MNIST, Fashion-MNIST and EMNIST files): a 4-byte magic number -- two
zero bytes, a type code and the number of dimensions -- then each dimension as a big-endian
32-bit integer, then the values, big-endian, in C order. ``read_idx`` reads any such file,
gzip-compressed or not (told by its first bytes, not by its name), checking the header
before it allocates, so a damaged or hostile file raises ``bpcore.errors.FileFormatError``
rather than exhausting memory; ``load_mnist`` reads the four standard MNIST files from a
folder, ready to train on::

    from bpcore.data import load_mnist
    X, y = load_mnist("~/data/mnist", "train")      # (60000, 784) float32 in [0, 1], labels
    X_test, y_test = load_mnist("~/data/mnist", "test")
"""
import gzip
import math
import os
import stat
import zlib

import numpy as np

from bpcore._validation import (as_array, as_labels, check_choice, check_int, check_path,
                                resolve_dtype)
from bpcore.errors import FileFormatError

__all__ = ["one_hot", "read_idx", "write_idx", "load_mnist", "MNIST_FILES"]


def one_hot(labels, n_classes, dtype="float32"):
    """Integer labels (n,) -> one-hot rows (n, n_classes) of dtype."""
    n_classes = check_int(n_classes, "n_classes", low=1)
    arr = as_array(labels, "labels")
    y = as_labels(arr, "labels", arr.shape[0] if arr.ndim else 0, n_classes)
    out = np.zeros((y.shape[0], n_classes), resolve_dtype(dtype))
    out[np.arange(y.shape[0]), y] = 1
    return out


# ---------------------------------------------------------------------------------------------
# IDX

# type code -> dtype of the stored values (big-endian)
_IDX_TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
              0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
_IDX_CODES = {dt.newbyteorder("=").kind + str(dt.itemsize): code
              for code, dt in _IDX_TYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate's densest code is a 258-byte match in 2 bits, so no gzip file inflates to more than
# 1032 times its size: a header asking for more is refused before anything is allocated.
# (The gzip trailer's ISIZE is no such bound: it counts only the last member of a multi-member
# file such as `cat a.gz b.gz` makes, and it is only the size mod 2**32.)
_DEFLATE_MAX_RATIO = 1032
# Bytes asked of the decompressor at a time: what gzip holds beyond the output array.
_CHUNK = 1 << 20


def _fill(path, stream, view):
    """Read ``stream`` into ``view`` until it is full or the stream ends; the bytes read.

    gzip's own exceptions (a BadGzipFile OSError, EOFError, zlib.error) become the
    FileFormatError read_idx promises, so a caller never sees a raw decompression error.
    """
    got = 0
    try:
        while got < len(view):
            n = stream.readinto(view[got:got + _CHUNK])
            if not n:
                break
            got += n
    except EOFError:
        raise FileFormatError(path, "truncated gzip stream (it ends before its end-of-stream "
                                    "marker)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise FileFormatError(path, f"gzip stream corrupted ({exc})") from None
    return got


def read_idx(path):
    """The array stored in the IDX file at ``path`` (gzip-compressed or not).

    Returns a C-contiguous NumPy array of the file's shape in native byte order: uint8 for
    MNIST's images (n, 28, 28) and labels (n,). Safe on untrusted files: the header is read
    and checked first (against the file's size, or for gzip the most it can inflate to), the
    array is allocated once at the size the header gives, and a gzip stream is inflated in
    bounded chunks, never past that size. Raises ``bpcore.errors.FileFormatError`` (a
    ValueError) naming the file if it is not IDX, not valid gzip, or its data is shorter or
    longer than the header says; FileNotFoundError if there is no such file.
    """
    path = os.fspath(os.path.expanduser(check_path(path)))
    with open(path, "rb") as fh:
        info = os.fstat(fh.fileno())
        # A pipe's or a device's size is not known until it has been read.
        size = info.st_size if stat.S_ISREG(info.st_mode) else None
        if fh.peek(2)[:2] != _GZIP_MAGIC:
            return _read_idx_stream(path, fh, size, compressed=False)
        with gzip.GzipFile(fileobj=fh, mode="rb") as gz:
            return _read_idx_stream(path, gz, size, compressed=True)


def _read_idx_stream(path, stream, size, compressed):
    """read_idx on an open stream: the raw file (``size`` its length, or None when unknown)
    or a GzipFile over it (``size`` then the compressed length)."""
    where = "the gzip stream inflates to" if compressed else "the file has"
    magic = bytearray(4)
    got = _fill(path, stream, memoryview(magic))
    if got < 4 or magic[0] != 0 or magic[1] != 0:
        seen = bytes(magic[:got]).hex() or ("an empty gzip stream" if compressed
                                            else "an empty file")
        raise FileFormatError(path, f"not an IDX file (expected a magic number 0x0000TTDD, "
                                    f"got {seen})")
    code, ndim = magic[2], magic[3]
    if code not in _IDX_TYPES:
        raise FileFormatError(path, f"unknown IDX type code 0x{code:02X} (expected one of "
                                    f"{', '.join(f'0x{c:02X}' for c in _IDX_TYPES)})")
    if ndim == 0:
        raise FileFormatError(path, "IDX header says 0 dimensions (expected 1 to 255)")
    header = 4 + 4 * ndim
    dims = bytearray(4 * ndim)
    got = _fill(path, stream, memoryview(dims))
    if got < len(dims):
        raise FileFormatError(path, f"truncated IDX header ({ndim} dimensions need {header} "
                                    f"bytes, {where} {4 + got})")
    shape = tuple(int.from_bytes(dims[i:i + 4], "big") for i in range(0, len(dims), 4))
    dtype = _IDX_TYPES[code]
    # Python integers: a product of up to 255 32-bit dimensions must not wrap around.
    nbytes = math.prod(shape) * dtype.itemsize
    expected = header + nbytes
    says = (f"IDX header says shape {shape} of {dtype.newbyteorder('=').name}, "
            f"{nbytes} bytes of data ({expected} bytes in all)")
    if size is not None and not compressed and size != expected:
        problem = "truncated" if size < expected else "trailing data"
        raise FileFormatError(path, f"{problem}: {says}, but the file has {size} bytes")
    if size is not None and compressed and expected > _DEFLATE_MAX_RATIO * size:
        raise FileFormatError(path, f"truncated: {says}, but a gzip file of {size} bytes "
                                    f"inflates to at most {_DEFLATE_MAX_RATIO * size}")
    try:
        data = np.empty(nbytes, np.uint8)
    except (MemoryError, ValueError):
        # The size checks bound a header by the file, not by this machine (nor a pipe's at all).
        raise FileFormatError(path, f"{says}, more than this machine can allocate") from None
    got = _fill(path, stream, memoryview(data))
    if got < nbytes:
        raise FileFormatError(path, f"truncated: {says}, but {where} {header + got} bytes")
    # One byte past the end: enough to tell trailing data (or a gzip bomb) from a clean end,
    # and, for gzip, to make it check the stream's CRC and length.
    if _fill(path, stream, memoryview(bytearray(1))):
        raise FileFormatError(path, f"trailing data: {says}, but {where} more")
    try:
        arr = data.view(dtype).reshape(shape)
    except ValueError:  # an empty array of a shape NumPy cannot represent (0 x 2**31 x 2**31)
        raise FileFormatError(path, f"{says}: a shape NumPy cannot represent") from None
    if not dtype.isnative:
        arr.byteswap(inplace=True)  # in place: the array is the only copy held
    return arr.view(dtype.newbyteorder("="))


def write_idx(path, array, compress=None):
    """Write ``array`` to ``path`` as an IDX file; gzip it if ``compress`` is true, or, when
    ``compress`` is None, if the path ends in ".gz". The dtype must be one IDX stores: uint8,
    int8, int16, int32, float32 or float64."""
    path = os.fspath(os.path.expanduser(check_path(path)))
    if np.ndim(array) == 0:  # (ascontiguousarray would make it 1-d)
        raise ValueError("array: expected at least 1 dimension (IDX stores 1 to 255), got a "
                         "0-d array")
    arr = np.ascontiguousarray(array)
    key = arr.dtype.kind + str(arr.dtype.itemsize)
    if key not in _IDX_CODES:
        raise TypeError(f"array: expected dtype uint8, int8, int16, int32, float32 or float64 "
                        f"(what IDX stores), got {arr.dtype.name}")
    if arr.ndim > 255:
        raise ValueError(f"array: IDX stores at most 255 dimensions, got {arr.ndim}")
    if any(d > 0xFFFFFFFF for d in arr.shape):
        raise ValueError(f"array: IDX dimensions are 32-bit, got shape {arr.shape}")
    code = _IDX_CODES[key]
    body = (bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes()
            + arr.astype(_IDX_TYPES[code], copy=False).tobytes())
    if compress is None:
        compress = path.endswith(".gz")
    if compress:
        body = gzip.compress(body, mtime=0)
    with open(path, "wb") as fh:
        fh.write(body)
    return path


# The standard names, with the variants found in the wild (a dot for the dash, .gz or not).
MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _find(directory, stem):
    candidates = []
    for name in (stem, stem.replace("-idx", ".idx")):
        candidates += [name, name + ".gz"]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(f"{directory}: no {stem} file (looked for {', '.join(candidates)})")


def load_mnist(directory, split="train", *, dtype="float32", flatten=True, normalize=True):
    """MNIST's images and labels from the standard IDX files in ``directory``.

    ``split`` "train" reads train-images-idx3-ubyte and train-labels-idx1-ubyte (60,000
    images), "test" the t10k files (10,000); each may be gzipped (".gz") and may have a dot
    for the dash before "idx" as some mirrors name them. Returns ``(X, y)``: X (n, 784) of
    ``dtype`` with pixels scaled to [0, 1] (``normalize=False`` keeps 0-255;
    ``flatten=False`` keeps (n, 28, 28)), y (n,) intp labels 0-9. Works for any data set in
    the same files (Fashion-MNIST, KMNIST).
    """
    check_choice(split, "split", tuple(MNIST_FILES))
    directory = os.path.expanduser(os.fspath(directory))
    images_path, labels_path = (_find(directory, stem) for stem in MNIST_FILES[split])
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise ValueError(f"{images_path}: expected images of shape (n, rows, cols), "
                         f"got {images.shape}")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ValueError(f"{labels_path}: expected {images.shape[0]} labels (one per image in "
                         f"{os.path.basename(images_path)}), got shape {labels.shape}")
    X = images.reshape(images.shape[0], -1) if flatten else images
    X = X.astype(resolve_dtype(dtype))
    if normalize:
        X /= 255
    return X, labels.astype(np.intp)
