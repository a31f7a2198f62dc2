# cython: language_level=3
"""MSE and fused, numerically stable softmax cross-entropy."""
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf

from bpcore._checks cimport require

import numpy as np
from bpcore._threads cimport threads_for

cdef enum:
    # the loss is summed in this many fixed pieces (then serially): a thread-count-free order
    NCHUNK = 64


cdef double mse(int n, int m, const floating *Y, const floating *T, floating *dY,
                Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t size = <Py_ssize_t>n * m, ch, i, lo, hi
    cdef floating d, gscale
    cdef double lscale
    if red == MEAN:
        lscale = 1.0 / size if size else 0.0
        gscale = <floating>(2.0 / size) if size else 0
    elif red == SUM:
        lscale = 1.0
        gscale = 2
    else:
        lscale = 0.5
        gscale = 1
    for ch in prange(NCHUNK, num_threads=threads_for(size), schedule="static"):
        lo = ch * size // NCHUNK
        hi = (ch + 1) * size // NCHUNK
        acc = 0
        for i in range(lo, hi):
            d = Y[i] - T[i]
            acc = acc + <double>d * d
            dY[i] = gscale * d
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * lscale


cdef inline floating _softmax_row(int c, const floating *z, floating *p) noexcept nogil:
    """p = softmax(z); returns log(sum(exp(z))), with the row max taken out first."""
    cdef int j
    cdef floating mx = z[0], s = 0
    for j in range(1, c):
        if z[j] > mx:
            mx = z[j]
    for j in range(c):
        if floating is float:
            p[j] = expf(z[j] - mx)
        else:
            p[j] = exp(z[j] - mx)
        s = s + p[j]
    for j in range(c):
        p[j] = p[j] / s
    if floating is float:
        return mx + logf(s)
    else:
        return mx + log(s)


cdef double softmax_xent_labels(int n, int c, const floating *Z, const Py_ssize_t *labels,
                                floating *dZ, Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t ch, i, lo, hi, y
    cdef int j
    cdef floating lse, scale = (<floating>1 / n) if red == MEAN else 1
    for ch in prange(NCHUNK, num_threads=threads_for(<Py_ssize_t>n * c * 8),
                     schedule="static"):
        lo = ch * n // NCHUNK
        hi = (ch + 1) * n // NCHUNK
        acc = 0
        for i in range(lo, hi):
            y = labels[i]
            lse = _softmax_row(c, &Z[i * c], &dZ[i * c])
            acc = acc + (lse - Z[i * c + y])
            dZ[i * c + y] = dZ[i * c + y] - 1
            for j in range(c):
                dZ[i * c + j] = dZ[i * c + j] * scale
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * scale


cdef double softmax_xent_probs(int n, int c, const floating *Z, const floating *T,
                               floating *dZ, Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t ch, i, lo, hi
    cdef int j
    cdef floating lse, tsum, scale = (<floating>1 / n) if red == MEAN else 1
    for ch in prange(NCHUNK, num_threads=threads_for(<Py_ssize_t>n * c * 8),
                     schedule="static"):
        lo = ch * n // NCHUNK
        hi = (ch + 1) * n // NCHUNK
        acc = 0
        for i in range(lo, hi):
            lse = _softmax_row(c, &Z[i * c], &dZ[i * c])
            tsum = 0
            for j in range(c):
                # -sum_j t_j log p_j = sum_j t_j (lse - z_j)
                acc = acc + T[i * c + j] * (lse - Z[i * c + j])
                tsum = tsum + T[i * c + j]
            for j in range(c):
                dZ[i * c + j] = (dZ[i * c + j] * tsum - T[i * c + j]) * scale
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * scale


cdef double loss_and_delta(LossSpec spec, int n, int c, const floating *Y, const void *T,
                           const Py_ssize_t *labels, floating *dY) noexcept nogil:
    if spec.kind == MSE:
        return mse(n, c, Y, <const floating *>T, dY, <Reduction>spec.reduction)
    if spec.kind == XENT_LABELS:
        return softmax_xent_labels(n, c, Y, labels, dY, <Reduction>spec.reduction)
    return softmax_xent_probs(n, c, Y, <const floating *>T, dY, <Reduction>spec.reduction)


cdef Py_ssize_t first_bad_label(Py_ssize_t n, const Py_ssize_t *y, Py_ssize_t c) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if y[i] < 0 or y[i] >= c:
            return i
    return -1


def check_labels(labels, Py_ssize_t n_classes, str name="target"):
    """Raise ValueError unless every label of the 1-D array is in [0, n_classes): the one
    place of that rule. intp arrays are scanned natively; others (before their conversion to
    intp, which could wrap huge values into range) with NumPy."""
    cdef const Py_ssize_t[::1] view
    cdef Py_ssize_t bad = -1
    if not isinstance(labels, np.ndarray) or labels.ndim != 1:
        raise TypeError(f"{name}: expected a 1-D array of class labels, got {type(labels).__name__}")
    if labels.dtype == np.intp and labels.flags.c_contiguous:
        view = labels
        if view.shape[0]:
            with nogil:
                bad = first_bad_label(view.shape[0], &view[0], n_classes)
    else:
        outside = np.flatnonzero((labels < 0) | (labels >= n_classes))
        bad = outside[0] if outside.size else -1
    if bad >= 0:
        raise ValueError(f"{name}: expected class labels in [0, {n_classes}), "
                         f"got {labels[bad]} at index {bad}")


def valid_reduction(int kind, int reduction):
    """True if `reduction` applies to loss `kind` (half_sum is MSE's alone)."""
    return (0 <= kind <= 2 and 0 <= reduction <= 2
            and (reduction != HALF_SUM or kind == MSE))


# ---- Python-callable entry points (shapes checked here; labels range-checked here) ----

def py_mse(const floating[:, ::1] Y, const floating[:, ::1] T, floating[:, ::1] dY, int red):
    """Return the MSE loss of Y against T and write dloss/dY into dY."""
    cdef int n = Y.shape[0], m = Y.shape[1]
    require(T.shape[0] == n and T.shape[1] == m, f"target: expected shape ({n}, {m})")
    require(dY.shape[0] == n and dY.shape[1] == m, f"dY: expected shape ({n}, {m})")
    require(0 <= red <= 2, f"red: expected 0..2, got {red}")
    if n == 0 or m == 0:
        return 0.0
    cdef double loss
    with nogil:
        loss = mse(n, m, &Y[0, 0], &T[0, 0], &dY[0, 0], <Reduction>red)
    return loss


def py_softmax_xent_labels(const floating[:, ::1] Z, const Py_ssize_t[::1] labels,
                           floating[:, ::1] dZ, int red):
    """Return the softmax cross-entropy of logits Z against integer labels; write dZ."""
    cdef int n = Z.shape[0], c = Z.shape[1]
    require(labels.shape[0] == n, f"labels: expected length {n}, got {labels.shape[0]}")
    require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    require(n > 0 and c > 0, f"Z: expected a non-empty (n, classes) array, got ({n}, {c})")
    check_labels(np.asarray(labels), c, "labels")
    cdef double loss
    with nogil:
        loss = softmax_xent_labels(n, c, &Z[0, 0], &labels[0], &dZ[0, 0], <Reduction>red)
    return loss


def py_softmax_xent_probs(const floating[:, ::1] Z, const floating[:, ::1] T,
                          floating[:, ::1] dZ, int red):
    """Return the softmax cross-entropy of logits Z against target rows T; write dZ."""
    cdef int n = Z.shape[0], c = Z.shape[1]
    require(T.shape[0] == n and T.shape[1] == c, f"target: expected shape ({n}, {c})")
    require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    require(n > 0 and c > 0, f"Z: expected a non-empty (n, classes) array, got ({n}, {c})")
    cdef double loss
    with nogil:
        loss = softmax_xent_probs(n, c, &Z[0, 0], &T[0, 0], &dZ[0, 0], <Reduction>red)
    return loss
