# cython: language_level=3
"""MSE, fused and numerically stable softmax cross-entropy and sigmoid binary cross-entropy,
and the Poisson negative log-likelihood of log-rates."""
from cython.parallel cimport prange
from libc.float cimport DBL_MAX
from libc.math cimport exp, expf, log, log1p, log1pf, logf

from bpcore._checks cimport require

import numpy as np
from bpcore._threads cimport threads_for

cdef enum:
    # the loss is summed in this many fixed pieces (then serially): a thread-count-free order
    NCHUNK = 64


cdef double weight_sum(int n, const floating *w) noexcept nogil:
    """The rows' summed weight: n without weights. In a fixed order."""
    cdef double total = 0
    cdef int i
    if w == NULL:
        return n
    for i in range(n):
        total = total + w[i]
    return total


cdef inline double _per(double count) noexcept nogil:
    """1 / count, or 0 for none (a batch whose weights are all zero adds nothing)."""
    return 1.0 / count if count > 0 else 0.0


cdef double mse(int n, int m, const floating *Y, const floating *T, const floating *w,
                floating *dY, Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t size = <Py_ssize_t>n * m, ch, i, lo, hi
    cdef floating d, gscale, rw
    cdef double lscale
    if red == MEAN:  # over all elements: rows counted by their weights
        lscale = _per(weight_sum(n, w) * m)
        gscale = <floating>(2 * lscale)
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
            rw = w[i // m] if w != NULL else 1  # a weight of 1 changes no bit
            acc = acc + rw * (<double>d * d)
            dY[i] = (rw * gscale) * d
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * lscale


cdef floating softmax_row(int c, const floating *z, floating *p) noexcept nogil:
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
                                const floating *w, floating *dZ, Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t ch, i, lo, hi, y
    cdef int j
    cdef double lscale = _per(weight_sum(n, w)) if red == MEAN else 1
    cdef floating lse, g, rw, scale = <floating>lscale
    for ch in prange(NCHUNK, num_threads=threads_for(<Py_ssize_t>n * c * 8),
                     schedule="static"):
        lo = ch * n // NCHUNK
        hi = (ch + 1) * n // NCHUNK
        acc = 0
        for i in range(lo, hi):
            y = labels[i]
            rw = w[i] if w != NULL else 1
            lse = softmax_row(c, &Z[i * c], &dZ[i * c])
            acc = acc + rw * (lse - Z[i * c + y])
            dZ[i * c + y] = dZ[i * c + y] - 1
            g = rw * scale
            for j in range(c):
                dZ[i * c + j] = dZ[i * c + j] * g
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * lscale


cdef double softmax_xent_probs(int n, int c, const floating *Z, const floating *T,
                               const floating *w, floating *dZ, Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total, row
    cdef Py_ssize_t ch, i, lo, hi
    cdef int j
    cdef double lscale = _per(weight_sum(n, w)) if red == MEAN else 1
    cdef floating lse, tsum, g, rw, scale = <floating>lscale
    for ch in prange(NCHUNK, num_threads=threads_for(<Py_ssize_t>n * c * 8),
                     schedule="static"):
        lo = ch * n // NCHUNK
        hi = (ch + 1) * n // NCHUNK
        acc = 0
        for i in range(lo, hi):
            rw = w[i] if w != NULL else 1
            lse = softmax_row(c, &Z[i * c], &dZ[i * c])
            tsum = 0
            row = 0
            for j in range(c):
                # -sum_j t_j log p_j = sum_j t_j (lse - z_j); a class of target 0 adds nothing,
                # even where lse - z_j overflows (0 * inf would make the loss NaN)
                if T[i * c + j] != 0:
                    row = row + T[i * c + j] * (lse - Z[i * c + j])
                tsum = tsum + T[i * c + j]
            acc = acc + rw * row
            g = rw * scale
            for j in range(c):
                dZ[i * c + j] = (dZ[i * c + j] * tsum - T[i * c + j]) * g
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * lscale


cdef inline floating _exp(floating x) noexcept nogil:
    if floating is float:
        return expf(x)
    else:
        return exp(x)


cdef inline floating _log1p(floating x) noexcept nogil:
    if floating is float:
        return log1pf(x)
    else:
        return log1p(x)


cdef inline floating _bce_element(floating z, floating t, floating p, floating scale,
                                  floating *dz) noexcept nogil:
    """The loss -(p t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))) of one logit; *dz = scale
    times its derivative (1 - t) sigmoid(z) - p t sigmoid(-z).

    Written as p t softplus(-z) + (1 - t) softplus(z): two terms >= 0, so nothing cancels
    (torch's (1 - t) z + (1 + (p - 1) t) softplus(-z), the same function, loses eps |z|
    absolute when z << 0 and t = 0). Both softplus and both sigmoids come from e = exp(-|z|)
    <= 1, which cannot overflow at any logit. A NaN logit gives NaN (z >= 0 is false, and
    log1p(NaN) is NaN), an infinite one inf or NaN (0 * inf): never a number."""
    cdef floating e = _exp(-z if z >= 0 else z)
    cdef floating l1 = _log1p(e), r = 1 / (1 + e)
    cdef floating sp_pos, sp_neg, s_pos, s_neg  # softplus(z), softplus(-z), their sigmoids
    if z >= 0:
        sp_pos, sp_neg, s_pos, s_neg = z + l1, l1, r, e * r
    else:
        sp_pos, sp_neg, s_pos, s_neg = l1, l1 - z, e * r, r
    dz[0] = ((1 - t) * s_pos - p * t * s_neg) * scale
    return p * t * sp_neg + (1 - t) * sp_pos


cdef double bce_logits(int n, int c, const floating *Z, const floating *T,
                       const floating *pos_weight, const floating *w, floating *dZ,
                       Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t size = <Py_ssize_t>n * c, ch, i, k, lo, hi
    cdef int j
    cdef floating p, rw
    # torch's mean is over every element, its gradient that mean's: 1/size (rows counted by
    # their weights)
    cdef double lscale = _per(weight_sum(n, w) * c) if red == MEAN else 1.0
    cdef floating gscale = <floating>lscale
    # rows, not elements, are split: each column meets its own pos_weight
    for ch in prange(NCHUNK, num_threads=threads_for(size * 8), schedule="static"):
        lo = ch * n // NCHUNK
        hi = (ch + 1) * n // NCHUNK
        acc = 0
        for i in range(lo, hi):
            rw = w[i] if w != NULL else 1
            for j in range(c):
                k = i * c + j
                p = pos_weight[j] if pos_weight != NULL else 1  # private: set every time
                acc = acc + rw * _bce_element(Z[k], T[k], p, rw * gscale, &dZ[k])
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * lscale


cdef double poisson_nll(int n, int c, const floating *Z, const floating *T, const floating *w,
                        floating *dZ, Reduction red) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double acc, total
    cdef Py_ssize_t size = <Py_ssize_t>n * c, ch, i, lo, hi
    cdef floating rate, rw
    cdef double lscale = _per(weight_sum(n, w) * c) if red == MEAN else 1.0
    cdef floating gscale = <floating>lscale
    for ch in prange(NCHUNK, num_threads=threads_for(size * 4), schedule="static"):
        lo = ch * size // NCHUNK
        hi = (ch + 1) * size // NCHUNK
        acc = 0
        for i in range(lo, hi):
            # exp(z) - t z: torch's PoissonNLLLoss(log_input=True, full=False); an overflowing
            # rate is inf, and the engine stops the step
            rate = _exp(Z[i])
            rw = w[i // c] if w != NULL else 1
            acc = acc + rw * (rate - T[i] * Z[i])
            dZ[i] = (rate - T[i]) * (rw * gscale)
        part[ch] = acc
    total = 0
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total * lscale


cdef double loss_and_delta(LossSpec spec, int n, int c, const floating *Y, const void *T,
                           const Py_ssize_t *labels, const void *weights,
                           floating *dY) noexcept nogil:
    cdef const floating *w = <const floating *>weights
    cdef Reduction red = <Reduction>spec.reduction
    if spec.kind == MSE:
        return mse(n, c, Y, <const floating *>T, w, dY, red)
    if spec.kind == XENT_LABELS:
        return softmax_xent_labels(n, c, Y, labels, w, dY, red)
    if spec.kind == BCE_LOGITS:
        return bce_logits(n, c, Y, <const floating *>T, <const floating *>spec.pos_weight, w,
                          dY, red)
    if spec.kind == POISSON:
        return poisson_nll(n, c, Y, <const floating *>T, w, dY, red)
    return softmax_xent_probs(n, c, Y, <const floating *>T, w, dY, red)


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


cdef Py_ssize_t first_outside(Py_ssize_t size, const floating *T, double lo,
                              double hi) noexcept nogil:
    """The index of the first value of T not in [lo, hi] (NaN never is), or -1."""
    cdef Py_ssize_t i
    for i in range(size):
        if not (lo <= T[i] <= hi):
            return i
    return -1


# what each kind's targets may be: (low, high, the words for them); DBL_MAX as the high end
# keeps an infinity out
_TARGET_RANGES = {BCE_LOGITS: (0.0, 1.0, "values in [0, 1] (0/1 labels or probabilities)"),
                  POISSON: (0.0, DBL_MAX, "finite values >= 0 (counts or rates)")}


def check_targets(T, int kind, str name="target"):
    """Raise ValueError unless every value of the C-contiguous float32/float64 array T is a
    target of loss `kind` (BCE_LOGITS: in [0, 1]; POISSON: finite and >= 0): the one place of
    those rules, called by bpcore.losses and the engine. NaN never passes."""
    cdef const float[::1] f32
    cdef const double[::1] f64
    cdef Py_ssize_t bad = -1
    cdef double lo, hi
    if kind not in _TARGET_RANGES:
        raise ValueError(f"kind: expected BCE_LOGITS or POISSON, got {kind}")
    lo, hi, words = _TARGET_RANGES[kind]
    if (not isinstance(T, np.ndarray) or not T.flags.c_contiguous
            or T.dtype not in (np.float32, np.float64)):
        raise TypeError(f"{name}: expected a C-contiguous float32 or float64 array, "
                        f"got {type(T).__name__}")
    flat = T.reshape(-1)
    if flat.shape[0] == 0:
        return
    if T.dtype == np.float32:
        f32 = flat
        with nogil:
            bad = first_outside(f32.shape[0], &f32[0], lo, hi)
    else:
        f64 = flat
        with nogil:
            bad = first_outside(f64.shape[0], &f64[0], lo, hi)
    if bad >= 0:
        where = np.unravel_index(bad, T.shape)
        raise ValueError(f"{name}: expected {words}, got {float(flat[bad])} at index "
                         f"{tuple(int(k) for k in where)}")


def valid_reduction(int kind, int reduction):
    """True if `reduction` applies to loss `kind` (half_sum is MSE's alone)."""
    return (MSE <= kind <= POISSON and 0 <= reduction <= 2
            and (reduction != HALF_SUM or kind == MSE))


# ---- Python-callable entry points (shapes checked here; labels range-checked here) ----

cdef const floating *_weights(const floating[::1] sample_weight, int n) except? NULL:
    """The rows' weights (checked length; their values are the caller's to check), or NULL."""
    if sample_weight is None:
        return NULL
    require(sample_weight.shape[0] == n,
            f"sample_weight: expected length {n}, got {sample_weight.shape[0]}")
    return &sample_weight[0] if n else NULL


def py_mse(const floating[:, ::1] Y, const floating[:, ::1] T, floating[:, ::1] dY, int red,
           const floating[::1] sample_weight=None):
    """Return the MSE loss of Y against T and write dloss/dY into dY."""
    cdef int n = Y.shape[0], m = Y.shape[1]
    require(T.shape[0] == n and T.shape[1] == m, f"target: expected shape ({n}, {m})")
    require(dY.shape[0] == n and dY.shape[1] == m, f"dY: expected shape ({n}, {m})")
    require(0 <= red <= 2, f"red: expected 0..2, got {red}")
    if n == 0 or m == 0:
        return 0.0
    cdef const floating *w = _weights(sample_weight, n)
    cdef double loss
    with nogil:
        loss = mse(n, m, &Y[0, 0], &T[0, 0], w, &dY[0, 0], <Reduction>red)
    return loss


def py_softmax_xent_labels(const floating[:, ::1] Z, const Py_ssize_t[::1] labels,
                           floating[:, ::1] dZ, int red, const floating[::1] sample_weight=None):
    """Return the softmax cross-entropy of logits Z against integer labels; write dZ."""
    cdef int n = Z.shape[0], c = Z.shape[1]
    require(labels.shape[0] == n, f"labels: expected length {n}, got {labels.shape[0]}")
    require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    require(n > 0 and c > 0, f"Z: expected a non-empty (n, classes) array, got ({n}, {c})")
    check_labels(np.asarray(labels), c, "labels")
    cdef const floating *w = _weights(sample_weight, n)
    cdef double loss
    with nogil:
        loss = softmax_xent_labels(n, c, &Z[0, 0], &labels[0], w, &dZ[0, 0], <Reduction>red)
    return loss


def py_softmax_xent_probs(const floating[:, ::1] Z, const floating[:, ::1] T,
                          floating[:, ::1] dZ, int red, const floating[::1] sample_weight=None):
    """Return the softmax cross-entropy of logits Z against target rows T; write dZ."""
    cdef int n = Z.shape[0], c = Z.shape[1]
    require(T.shape[0] == n and T.shape[1] == c, f"target: expected shape ({n}, {c})")
    require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    require(n > 0 and c > 0, f"Z: expected a non-empty (n, classes) array, got ({n}, {c})")
    cdef const floating *w = _weights(sample_weight, n)
    cdef double loss
    with nogil:
        loss = softmax_xent_probs(n, c, &Z[0, 0], &T[0, 0], w, &dZ[0, 0], <Reduction>red)
    return loss


def py_bce_logits(const floating[:, ::1] Z, const floating[:, ::1] T, pos_weight,
                  floating[:, ::1] dZ, int red, const floating[::1] sample_weight=None):
    """Return the sigmoid binary cross-entropy of logits Z against targets T, the positive
    term of column j weighted by pos_weight[j] (None: 1); write dloss/dZ into dZ. (The
    targets' range is checked by check_targets, before.)"""
    cdef int n = Z.shape[0], c = Z.shape[1]
    cdef const floating[::1] pw
    cdef const floating *pw_data = NULL
    require(T.shape[0] == n and T.shape[1] == c, f"target: expected shape ({n}, {c})")
    require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    if pos_weight is not None:
        pw = pos_weight
        require(pw.shape[0] == c, f"pos_weight: expected length {c}, got {pw.shape[0]}")
        if c:
            pw_data = &pw[0]
    if n == 0 or c == 0:
        return 0.0
    cdef const floating *w = _weights(sample_weight, n)
    cdef double loss
    with nogil:
        loss = bce_logits(n, c, &Z[0, 0], &T[0, 0], pw_data, w, &dZ[0, 0], <Reduction>red)
    return loss


def py_poisson_nll(const floating[:, ::1] Z, const floating[:, ::1] T, floating[:, ::1] dZ,
                   int red, const floating[::1] sample_weight=None):
    """Return the Poisson negative log-likelihood exp(z) - t z of log-rates Z against targets
    T; write dloss/dZ into dZ."""
    cdef int n = Z.shape[0], c = Z.shape[1]
    require(T.shape[0] == n and T.shape[1] == c, f"target: expected shape ({n}, {c})")
    require(dZ.shape[0] == n and dZ.shape[1] == c, f"dZ: expected shape ({n}, {c})")
    require(red == MEAN or red == SUM, f"red: expected MEAN or SUM, got {red}")
    if n == 0 or c == 0:
        return 0.0
    cdef const floating *w = _weights(sample_weight, n)
    cdef double loss
    with nogil:
        loss = poisson_nll(n, c, &Z[0, 0], &T[0, 0], w, &dZ[0, 0], <Reduction>red)
    return loss
