"""Small data helpers."""
import numpy as np

from bpcore._validation import as_array, as_labels, check_int, resolve_dtype

__all__ = ["one_hot"]


def one_hot(labels, n_classes, dtype="float32"):
    """Integer labels (n,) -> one-hot rows (n, n_classes) of dtype."""
    n_classes = check_int(n_classes, "n_classes", low=1)
    arr = as_array(labels, "labels")
    y = as_labels(arr, "labels", arr.shape[0] if arr.ndim else 0, n_classes)
    out = np.zeros((y.shape[0], n_classes), resolve_dtype(dtype))
    out[np.arange(y.shape[0]), y] = 1
    return out
