"""Small data helpers: one-hot targets, and the IDX files MNIST is distributed in.

IDX (the format of the MNIST, Fashion-MNIST and EMNIST files): a 4-byte magic number -- two
zero bytes, a type code and the number of dimensions -- then each dimension as a big-endian
32-bit integer, then the values, big-endian, in C order. ``read_idx`` reads any such file,
gzip-compressed or not (told by its first bytes, not by its name); ``load_mnist`` reads the
four standard MNIST files from a folder, ready to train on::

    from bpcore.data import load_mnist
    X, y = load_mnist("~/data/mnist", "train")      # (60000, 784) float32 in [0, 1], labels
    X_test, y_test = load_mnist("~/data/mnist", "test")
"""
import gzip
import os

import numpy as np

from bpcore._validation import as_array, as_labels, check_choice, check_int, resolve_dtype

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


def _open(path):
    """The file's bytes, gunzipped if they start with the gzip magic number."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == _GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: not a valid gzip file ({exc})") from None
    return data


def read_idx(path):
    """The array stored in the IDX file at ``path`` (gzip-compressed or not).

    Returns a C-contiguous NumPy array of the file's shape in native byte order: uint8 for
    MNIST's images (n, 28, 28) and labels (n,). Raises ValueError naming the file if the
    header is not IDX or the data is shorter or longer than the header says.
    """
    path = os.fspath(os.path.expanduser(path))
    data = _open(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path}: not an IDX file (expected a magic number 0x0000TTDD, "
                         f"got {data[:4].hex() or 'an empty file'})")
    code, ndim = data[2], data[3]
    if code not in _IDX_TYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{code:02X} (expected one of "
                         f"{', '.join(f'0x{c:02X}' for c in _IDX_TYPES)})")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({ndim} dimensions need {header} bytes, "
                         f"got {len(data)})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    dtype = _IDX_TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} of {dtype.newbyteorder('=').name} "
                         f"({expected} bytes in all), but the file has {len(data)} bytes")
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    return np.ascontiguousarray(arr.astype(dtype.newbyteorder("="), copy=False))


def write_idx(path, array, compress=None):
    """Write ``array`` to ``path`` as an IDX file; gzip it if ``compress`` is true, or, when
    ``compress`` is None, if the path ends in ".gz". The dtype must be one IDX stores: uint8,
    int8, int16, int32, float32 or float64."""
    path = os.fspath(os.path.expanduser(path))
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
