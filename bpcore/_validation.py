"""Checks and conversions at the API boundary.

Everything a user passes is checked here, once, before it reaches native code. Arrays that are
not C-contiguous, are Fortran-ordered or have another numeric dtype are converted (one copy) to
C-contiguous arrays of the model's dtype; arrays that already fit are used as they are, without
a copy. Errors name the argument, what was expected and what was received.
"""
import math
import numbers
import os
import sys

import numpy as np

from bpcore._claims import Claimed
from bpcore._engine import CSRMatrix, check_finite
from bpcore._losses import check_labels

_INT_MAX = 2**31 - 1
_FLOAT_DTYPES = {np.dtype(np.float32): np.float32, np.dtype(np.float64): np.float64}


def resolve_dtype(dtype, name="dtype"):
    """np.float32 or np.float64 for anything NumPy reads as one of them; TypeError otherwise."""
    if dtype is None:  # NumPy reads None as float64; here it would hide a forgotten argument
        raise TypeError(f"{name}: expected 'float32' or 'float64', got None")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dtype!r}") from None
    if dt.kind == "f":
        # byte order is a property of stored data, not of the precision asked for: '>f4' is
        # float32, and the arrays are converted to native order at the boundary anyway
        dt = dt.newbyteorder("=")
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"{name}: expected 'float32' or 'float64', got {dt.name!r}")
    return _FLOAT_DTYPES[dt]


def as_array(a, name):
    """np.asarray(a), with a TypeError naming the argument for what NumPy cannot read."""
    try:
        return np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: expected a numeric array, got {type(a).__name__} ({exc})") from None


def _numeric_array(a, name):
    arr = as_array(a, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype.name!r}")
    return arr


def float_dtype_of(arr):
    """The dtype a standalone layer or loss computes in: the array's own if float32/float64,
    else float64 (as NumPy would)."""
    return arr.dtype.type if arr.dtype in _FLOAT_DTYPES else np.float64


def as_matrix(a, name, dtype, cols=None, what="n_features", allow_empty=False, finite=True):
    """a as a C-contiguous (n, cols) array of dtype, converted once if it has to be."""
    arr = _numeric_array(a, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_samples, {what}), "
                         f"got {arr.ndim}-D with shape {arr.shape}")
    if cols is not None and arr.shape[1] != cols:
        raise ValueError(f"{name}: expected {cols} columns ({what}), got shape {arr.shape}")
    if arr.shape[0] == 0 and not allow_empty:
        raise ValueError(f"{name}: expected at least one row, got an empty batch of shape {arr.shape}")
    if arr.shape[0] > _INT_MAX or arr.shape[1] > _INT_MAX:
        raise ValueError(f"{name}: expected at most {_INT_MAX} rows and columns "
                         f"(BLAS dimensions are 32-bit), got shape {arr.shape}")
    return _converted(arr, name, dtype, finite)


def _converted(values, name, dtype, finite):
    """values as a C-contiguous array of dtype, checked finite if `finite`: a finite value too
    large for dtype (float64 data for a float32 model) is refused as out of range, by name,
    rather than becoming the infinity a later check would report."""
    # only a cast to a narrower float can overflow: errstate (1.6 us, on every step) only then
    if values.dtype.kind == "f" and values.dtype.itemsize > np.dtype(dtype).itemsize:
        out = _narrowed(values, name, dtype)
    else:
        out = np.ascontiguousarray(values, dtype=dtype)
    if finite:
        check_finite(out, name)
    return out


def _narrowed(values, name, dtype):
    """values cast to the narrower float dtype; a finite value beyond its range is refused."""
    try:
        with np.errstate(over="raise"):  # only a finite value beyond dtype's range overflows
            return np.ascontiguousarray(values, dtype=dtype)
    except FloatingPointError:
        with np.errstate(invalid="ignore"):
            big = float(np.nanmax(np.where(np.isfinite(values), np.abs(values), 0)))
        raise ValueError(f"{name}: expected values within {np.dtype(dtype).name}'s range "
                         f"(magnitude at most {float(np.finfo(dtype).max):.4g}), got "
                         f"{big:.4g}") from None


def is_sparse(a):
    """True for a scipy.sparse matrix or array (scipy.sparse is not imported for the question:
    nothing can be one before it is)."""
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(a)


def as_sparse_matrix(a, name, dtype, cols=None, what="n_features", finite=True):
    """A scipy.sparse matrix a as the engine's CSRMatrix: values of dtype, int32 columns, intp
    row offsets, converted once where they differ (the values are shared when they already are
    dtype). CSR is used as it is; every other format (CSC, COO, LIL, DOK, BSR, DIA) is converted
    to CSR first, one copy, as scikit-learn's accept_sparse="csr" does: only the layout differs,
    the matrix is the same (COO's and DOK's repeated entries add up, in any format). Integer and
    boolean values are converted like a dense X; columns may be unsorted or repeat."""
    if a.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D sparse matrix (n_samples, {what}), got "
                         f"{a.ndim}-D with shape {a.shape}")
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a sparse matrix of real numbers, got dtype "
                        f"{a.dtype.name!r}")
    n, m = a.shape
    if cols is not None and m != cols:
        raise ValueError(f"{name}: expected {cols} columns ({what}), got shape {a.shape}")
    if n == 0:
        raise ValueError(f"{name}: expected at least one row, got an empty batch of shape {a.shape}")
    if n > _INT_MAX or m > _INT_MAX:
        raise ValueError(f"{name}: expected at most {_INT_MAX} rows and columns "
                         f"(BLAS dimensions are 32-bit), got shape {a.shape}")
    csr = a if a.format == "csr" else a.tocsr()
    nnz = int(csr.indptr[-1])
    indices = csr.indices[:nnz]  # scipy may keep room for more entries past the last offset
    if indices.dtype != np.int32:
        # the columns are below cols <= _INT_MAX once in range; CSRMatrix checks the range of
        # what it is given, so a column out of range is refused here, before int32 wraps it
        if nnz and (indices.min() < 0 or indices.max() >= m):
            raise ValueError(f"{name}: expected column indices in [0, {m}), got "
                             f"{indices.min()} to {indices.max()}")
        indices = indices.astype(np.int32)
    data = _converted(csr.data[:nnz], name, dtype, finite)
    try:
        X = CSRMatrix(data, np.ascontiguousarray(indices),
                      np.ascontiguousarray(csr.indptr, dtype=np.intp), m)
    except ValueError as exc:  # a structure scipy would not build itself (edited arrays)
        raise ValueError(f"{name}: expected a valid CSR structure, got {exc}") from None
    return X


def as_labels(y, name, n, n_classes):
    """y as a C-contiguous intp vector of n class labels in [0, n_classes)."""
    arr = _numeric_array(y, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of class labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name}: expected {n} labels (one per row of the output), "
                         f"got {arr.shape[0]}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all() or np.any(arr != np.round(arr)):
            raise TypeError(f"{name}: expected integer class labels, got non-integral "
                            f"values of dtype {arr.dtype.name!r}")
    check_labels(arr, n_classes, name)
    return np.ascontiguousarray(arr, dtype=np.intp)


def assign_array(target, value, name):
    """Copy value into the array target, which stays the same object: what assigning to an
    array attribute (a layer's W, a network's flat_params) means, since the engine and the
    optimizers keep using target's memory. value must have target's shape and dtype (a
    conversion is asked for by writing ``target[...] = value``) and finite values; target is
    unchanged when it has not."""
    arr = value if isinstance(value, np.ndarray) else as_array(value, name)
    same_dtype = arr.dtype.newbyteorder("=") == target.dtype  # byte order is storage only
    if not same_dtype or arr.shape != target.shape:
        error = TypeError if not same_dtype else ValueError
        raise error(f"{name}: expected an array of dtype {target.dtype.name} and shape "
                    f"{target.shape}, got dtype {arr.dtype.name} and shape {arr.shape} "
                    f"(assigning copies into the existing array; {name}[...] = value converts)")
    arr = np.ascontiguousarray(arr, dtype=target.dtype)
    if arr.dtype.kind == "f":
        check_finite(arr, name)
    with Claimed((target,), f"assigning {name}"):
        np.copyto(target, arr)


def check_path(path, name="path"):
    """path, a file name; TypeError naming the argument for anything else (open() would take
    an int for a file descriptor, and close it)."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a str or os.PathLike, got {type(path).__name__} "
                        f"{path!r}")
    text = os.fspath(path)
    if ("\0" if isinstance(text, str) else b"\0") in text:
        raise ValueError(f"{name}: expected a file name without NUL characters, got {text!r}")
    return path


def check_same_rows(n_expected, arr, name, other="X"):
    if arr.shape[0] != n_expected:
        raise ValueError(f"{name}: expected {n_expected} rows to match {other}, "
                         f"got {arr.shape[0]}")


def check_real(value, name, low=None, high=None, low_open=False, high_open=False):
    """value as a finite float within [low, high] (or open at either end); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__} {value!r}")
    v = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    rng = f"{lo}{'-inf' if low is None else low}, {'inf' if high is None else high}{hi}"
    bad = (not math.isfinite(v)
           or (low is not None and (v <= low if low_open else v < low))
           or (high is not None and (v >= high if high_open else v > high)))
    if bad:
        raise ValueError(f"{name}: expected a finite number in {rng}, got {value!r}")
    return v


def check_fits(value, name, dtype):
    """value (a checked real) as a float that stays finite in dtype; ValueError otherwise."""
    with np.errstate(over="ignore"):
        fits = np.isfinite(np.dtype(dtype).type(value))
    if not fits:
        raise ValueError(f"{name}: expected a value finite in {np.dtype(dtype).name}, got {value!r}")
    return value


def check_init_scale(init, dtype, name="init"):
    """A uniform initialisation scale s: weights are drawn from [-s, s] as low + 2s * u in
    double, then stored in the dtype: s finite in the dtype, 2s in double."""
    s = check_fits(check_real(init, name, low=0), name, dtype)
    if not math.isfinite(2 * s):
        raise ValueError(f"{name}: expected a scale s with 2s finite in float64 (weights are "
                         f"drawn from [-s, s] as -s + 2s u), got {init!r}")
    return s


def within_scale(a, s):
    """Clip a (drawn from [-s, s] in double, stored in its dtype) to the dtype's values in
    [-s, s]: rounding to the dtype can carry a draw past s where s has no exact value there
    (a subnormal float32 scale, by up to half a step); elsewhere it changes nothing."""
    bound = np.asarray(s, dtype=a.dtype)
    if float(bound) > s:
        bound = np.nextafter(bound, np.asarray(0, dtype=a.dtype))
    np.clip(a, -bound, bound, out=a)


def check_int(value, name, low=None):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name}: expected an integer >= {low}, got {v}")
    if v > _INT_MAX:
        raise ValueError(f"{name}: expected at most {_INT_MAX} (BLAS dimensions are 32-bit), got {v}")
    return v


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(repr(c) for c in choices)}, "
                         f"got {value!r}")
    return value


def check_sample_weight(sample_weight, n, dtype, name="sample_weight"):
    """sample_weight as a C-contiguous (n,) array of dtype: finite, >= 0, not all zero (a zero
    removes its row); None stays None."""
    if sample_weight is None:
        return None
    w = _numeric_array(sample_weight, name)
    if w.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), one weight per row, got {w.shape}")
    with np.errstate(over="ignore"):
        w = np.ascontiguousarray(w, dtype)
    bad = np.flatnonzero(~np.isfinite(w) | (w < 0))
    if bad.size:
        i = bad[0]
        raise ValueError(f"{name}: expected finite weights >= 0 (in {np.dtype(dtype).name}), got "
                         f"{np.asarray(sample_weight).reshape(-1)[i].item()!r} at index {i}")
    if n and not w.any():
        raise ValueError(f"{name}: expected at least one positive weight, got only zeros")
    return w


def weight_total(w, n):
    """The summed weight of n rows with weights w (None: n), what means divide by."""
    return n if w is None else float(np.sum(w, dtype=np.float64))
