# cython: language_level=3
"""MSE and fused, numerically stable softmax cross-entropy."""
from cython.parallel cimport prange
from libc.math cimport exp, expf, log, logf

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


# ---- Python-callable entry points (shapes checked here; labels range-checked here) ----

cdef inline void _require(bint ok, str what) except *:
    if not ok:
        raise ValueError(what)


def py_mse(const floating[:, ::1] Y, const floating[:, ::1] T, floating[:, ::1] dY, int red):
    """Return the MSE loss of Y against T and write dloss/dY into dY."""
    cdef int n = Y.shape[0], m = Y.shape[1]
    _require(T.shape[0] == n and T.shape[1] == m, f"target: expected shape ({n}, {m})")
    _require(dY.shape[0] == n and dY.shape[1] == m, f"dY: expected shape ({n}, {m})")
    _require(0 <= red <= 2, f"red: expected 0..2, got {red}")
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
    cdef Py_ssize_t i
    _require(labels.shape[0] == n, f"labels: expected length {n}, got {labels.shape[0]}")
    _require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    _require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    _require(n > 0 and c > 0, f"Z: expected a non-empty (n, classes) array, got ({n}, {c})")
    for i in range(n):
        if labels[i] < 0 or labels[i] >= c:
            raise ValueError(f"labels: expected class labels in [0, {c}), "
                             f"got {labels[i]} at index {i}")
    cdef double loss
    with nogil:
        loss = softmax_xent_labels(n, c, &Z[0, 0], &labels[0], &dZ[0, 0], <Reduction>red)
    return loss


def py_softmax_xent_probs(const floating[:, ::1] Z, const floating[:, ::1] T,
                          floating[:, ::1] dZ, int red):
    """Return the softmax cross-entropy of logits Z against target rows T; write dZ."""
    cdef int n = Z.shape[0], c = Z.shape[1]
    _require(T.shape[0] == n and T.shape[1] == c, f"target: expected shape ({n}, {c})")
    _require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    _require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    _require(n > 0 and c > 0, f"Z: expected a non-empty (n, classes) array, got ({n}, {c})")
    cdef double loss
    with nogil:
        loss = softmax_xent_probs(n, c, &Z[0, 0], &T[0, 0], &dZ[0, 0], <Reduction>red)
    return loss
