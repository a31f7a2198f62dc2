# cython: language_level=3
"""The fused training engine.

One native call runs a whole training step (forward, loss, backward, update) without the GIL;
``run_epoch`` runs many, gathering shuffled rows into the batch buffer itself. Activations and
deltas live in workspaces sized for the largest batch seen, so a step in steady state
allocates nothing.

The Python layer (bpcore.model) checks dtypes, shapes and layouts and hands over arrays that
fit; the engine still checks the shapes it relies on (cheaply), and checks that values are
finite and labels in range in native loops, so nothing it is given can make it write out of
bounds.
"""
cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cython.parallel cimport parallel, prange, threadid
from libc.stdlib cimport calloc, free
from libc.string cimport memcpy

import numpy as np

from bpcore._blas cimport Block, gemm, gemm_in_parts, gemm_part, NoTrans, Trans
from bpcore._layers cimport (Activation, activation_backward, act_rows, colsum_rows, dact_rows,
                             dense_forward)
from bpcore._losses cimport Reduction, MEAN, SUM, HALF_SUM, mse, softmax_xent_labels, softmax_xent_probs
from bpcore._optim cimport outer_row_update, sgd_block
from bpcore._simd cimport bp_simd_table, simd
from bpcore._threads cimport (blas_pin, blas_unpin, bp_omp_barrier, bp_omp_team_size,
                              gemm_parts, pool_threads, threads_for, PARALLEL_MIN_WORK)

cnp.import_array()

cdef bp_simd_table *K = simd()

cdef enum:
    # the epoch loop goes back for the GIL every this many batches, to let Ctrl-C through
    SIGNAL_EVERY = 16
    PREDICT_CHUNK = 1024
    CHECK_BLOCK = 65536


# ---------------------------------------------------------------------------------------------
# the step, generic over float/double

cdef inline floating *_A(Net *net, floating *acts, int l) noexcept nogil:
    return acts + net.aoff[l]


cdef void forward(Net *net, int n, const floating *X, const floating *P,
                  floating *acts) noexcept nogil:
    """A_l (n, sizes[l+1]) = act_l(A_{l-1} @ W_l + b_l) for every layer, A_{-1} = X."""
    cdef int l, fi, fo
    cdef const floating *inp = X
    cdef floating *A
    for l in range(net.L):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        A = _A(net, acts, l)
        dense_forward(n, fi, fo, inp, P + net.woff[l], P + net.woff[l] + <Py_ssize_t>fi * fo, A,
                      <Activation>net.act[l])
        inp = A


cdef double loss_and_delta(LossConf lc, int n, int c, const floating *Y, const floating *T,
                           const Py_ssize_t *labels, floating *dY) noexcept nogil:
    if lc.kind == LOSS_MSE:
        return mse(n, c, Y, T, dY, <Reduction>lc.reduction)
    if lc.kind == LOSS_XENT_LABELS:
        return softmax_xent_labels(n, c, Y, labels, dY, <Reduction>lc.reduction)
    return softmax_xent_probs(n, c, Y, T, dY, <Reduction>lc.reduction)


cdef inline void _delta_below_part(int part, int nparts, int n, int fi, int fo,
                                   const floating *dZ, const floating *W, const floating *A,
                                   floating *dZb, Activation act) noexcept nogil:
    """dZb = (dZ @ W.T) * act'(A): the delta of the layer below, one block per part."""
    cdef Block blk = gemm_part(NoTrans, Trans, n, fi, fo, <floating>1, dZ, fo, W, fo,
                               <floating>0, dZb, fi, part, nparts)
    dact_rows(blk.r0, blk.r1, blk.c0, blk.c1, fi, A, dZb, dZb, act)


cdef void delta_below(int n, int fi, int fo, const floating *dZ, const floating *W,
                      const floating *A, floating *dZb, Activation act) noexcept nogil:
    cdef int nt = gemm_parts(n, fi, fo)
    if nt == 1:
        _delta_below_part(0, 1, n, fi, fo, dZ, W, A, dZb, act)
        return
    with parallel(num_threads=nt):
        _delta_below_part(threadid(), bp_omp_team_size(), n, fi, fo, dZ, W, A, dZb, act)


cdef inline void _update_part(int part, int nparts, int n, int fi, int fo, const floating *X,
                              const floating *dZ, floating *W, floating *G, floating *V,
                              const floating *mask, SGDConf oc) noexcept nogil:
    """Rows of dW = X.T @ dZ into G, then the SGD update of those rows of W at once; and the
    bias (after W in the flat buffers) for this part's share of the columns."""
    cdef Py_ssize_t nw = <Py_ssize_t>fi * fo, r, j, off
    cdef floating lr = <floating>oc.lr, mom = <floating>oc.momentum
    cdef floating wd = <floating>oc.weight_decay, keep = <floating>(1 - oc.decay)
    cdef int c0, c1
    cdef Block blk = gemm_part(Trans, NoTrans, fi, fo, n, <floating>1, X, fi, dZ, fo,
                               <floating>0, G, fo, part, nparts)
    for r in range(blk.r0, blk.r1):
        off = r * fo + blk.c0
        if mask != NULL:
            for j in range(blk.c1 - blk.c0):
                G[off + j] *= mask[off + j]
        sgd_block(blk.c1 - blk.c0, W + off, G + off, V + off, lr, mom, oc.nesterov, wd, keep)
    c0 = <int>(<Py_ssize_t>fo * part // nparts)
    c1 = <int>(<Py_ssize_t>fo * (part + 1) // nparts)
    for j in range(c0, c1):
        G[nw + j] = 0
    colsum_rows(n, c0, c1, fo, dZ, G + nw)
    sgd_block(c1 - c0, W + nw + c0, G + nw + c0, V + nw + c0, lr, mom, oc.nesterov, wd, keep)


cdef void update_layer(int n, int fi, int fo, const floating *X, const floating *dZ,
                       floating *W, floating *G, floating *V, const floating *mask,
                       SGDConf oc) noexcept nogil:
    """The SGD update of a Dense layer (W then b in the flat buffers) from its input X and
    delta dZ, each GEMM part updating the rows it computed."""
    cdef int nt = gemm_parts(fi, fo, n)
    if nt == 1:
        _update_part(0, 1, n, fi, fo, X, dZ, W, G, V, mask, oc)
        return
    with parallel(num_threads=nt):
        _update_part(threadid(), bp_omp_team_size(), n, fi, fo, X, dZ, W, G, V, mask, oc)


cdef inline void _even(int total, int part, int nparts, int *lo, int *hi) noexcept nogil:
    lo[0] = <int>(<Py_ssize_t>total * part // nparts)
    hi[0] = <int>(<Py_ssize_t>total * (part + 1) // nparts)


cdef void rowsplit_step_part(int tid, int nt, Net *net, int n, const floating *X,
                             const floating *T, const Py_ssize_t *labels, LossConf lc,
                             SGDConf oc, bint fused, floating *P, floating *G, floating *V,
                             floating *acts, floating *d0, floating *d1, floating *partials,
                             Py_ssize_t pstride, double *loss) noexcept nogil:
    """Thread tid's share of a whole training step on a small or middling batch (n rows).

    For a few rows the cost is moving the weights, not arithmetic, so every layer's weights
    are split by rows among the threads for the whole step, and each thread keeps its rows of
    W and their velocity in its own cache (splitting W one way for the forward pass and
    another for the update would move half of it between cores every step):
      forward   its rows' partial product X[:, rows] @ W[rows] (split-K), then after a barrier
                its columns of the sum, with bias and activation;
      backward  the columns of dX that belong to its rows of W (with the layer below's
                activation derivative), then the update of those rows and of its share of the
                bias: fused (the gradient formed a block at a time, never stored) when `fused`,
                else dW[rows] = X[:, rows].T @ dZ into G and one pass of the update over them.
    Called by all nt threads of a parallel region (or alone with nt = 1).
    """
    cdef int l, fi, fo, L = net.L, r0, r1, c0, c1, t
    cdef Py_ssize_t r, j, i, nw
    cdef const floating *inp = X
    cdef const floating *Xl
    cdef const floating *mask
    cdef floating *Z
    cdef floating *W
    cdef floating *d = d0
    cdef floating *dn = d1
    cdef floating *tmp
    cdef floating one = 1
    cdef floating lr = <floating>oc.lr, mom = <floating>oc.momentum
    cdef floating wd = <floating>oc.weight_decay, keep = <floating>(1 - oc.decay)
    for l in range(L):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        W = P + net.woff[l]
        Z = _A(net, acts, l)
        _even(fi, tid, nt, &r0, &r1)
        gemm(NoTrans, NoTrans, n, fo, r1 - r0, <floating>1, inp + r0, fi, W + <Py_ssize_t>r0 * fo,
             fo, <floating>0, partials + tid * pstride, fo)
        bp_omp_barrier()
        _even(fo, tid, nt, &c0, &c1)
        if c1 > c0:  # its columns: sum the threads' partials into thread 0's, then bias + act
            for t in range(1, nt):
                for r in range(n):
                    colsum_rows(1, c0, c1, fo, partials + t * pstride + r * fo,
                                partials + r * fo)
            act_rows(0, n, c0, c1, fo, partials, W + <Py_ssize_t>fi * fo, Z,
                     <Activation>net.act[l])
        bp_omp_barrier()
        inp = Z
    if tid == 0:
        fo = net.sizes[L]
        Z = _A(net, acts, L - 1)
        loss[0] = loss_and_delta(lc, n, fo, Z, T, labels, d)
        dact_rows(0, n, 0, fo, fo, Z, d, d, <Activation>net.act[L - 1])
    bp_omp_barrier()
    for l in range(L - 1, -1, -1):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        nw = <Py_ssize_t>fi * fo
        W = P + net.woff[l]
        Xl = X if l == 0 else _A(net, acts, l - 1)
        mask = <const floating *>net.mask[l]
        _even(fi, tid, nt, &r0, &r1)
        if l > 0 and r1 > r0:  # dX[:, rows] = dZ @ W[rows].T, before those rows move
            gemm(NoTrans, Trans, n, r1 - r0, fo, <floating>1, d, fo, W + <Py_ssize_t>r0 * fo, fo,
                 <floating>0, dn + r0, fi)
            dact_rows(0, n, r0, r1, fi, _A(net, acts, l - 1), dn, dn,
                      <Activation>net.act[l - 1])
        if fused:
            for i in range(r0, r1):
                outer_row_update(n, fi, Xl + i, d, fo, fo, W + i * fo, V + net.woff[l] + i * fo,
                                 mask + i * fo if mask != NULL else NULL, lr, mom, oc.nesterov,
                                 wd, keep)
        elif r1 > r0:
            gemm(Trans, NoTrans, r1 - r0, fo, n, <floating>1, Xl + r0, fi, d, fo, <floating>0,
                 G + net.woff[l] + <Py_ssize_t>r0 * fo, fo)
            if mask != NULL:
                for i in range(<Py_ssize_t>r0 * fo, <Py_ssize_t>r1 * fo):
                    G[net.woff[l] + i] *= mask[i]
            sgd_block(<Py_ssize_t>(r1 - r0) * fo, W + <Py_ssize_t>r0 * fo,
                      G + net.woff[l] + <Py_ssize_t>r0 * fo, V + net.woff[l] + <Py_ssize_t>r0 * fo,
                      lr, mom, oc.nesterov, wd, keep)
        _even(fo, tid, nt, &c0, &c1)
        if c1 > c0:  # the bias: its input is 1 in every row
            outer_row_update(n, 0, &one, d + c0, fo, c1 - c0, W + nw + c0,
                             V + net.woff[l] + nw + c0, NULL, lr, mom, oc.nesterov, wd, keep)
        bp_omp_barrier()
        tmp = d
        d = dn
        dn = tmp


cdef double rowsplit_step(Net *net, int nt, int n, const floating *X, const floating *T,
                          const Py_ssize_t *labels, LossConf lc, SGDConf oc, bint fused,
                          floating *P, floating *G, floating *V, floating *acts, floating *d0,
                          floating *d1, floating *partials, Py_ssize_t pstride) noexcept nogil:
    cdef double loss = 0
    cdef double *lossp = &loss
    if nt == 1:
        rowsplit_step_part(0, 1, net, n, X, T, labels, lc, oc, fused, P, G, V, acts, d0, d1,
                           partials, pstride, lossp)
        return loss
    with parallel(num_threads=nt):
        rowsplit_step_part(threadid(), bp_omp_team_size(), net, n, X, T, labels, lc, oc, fused,
                           P, G, V, acts, d0, d1, partials, pstride, lossp)
    return loss


cdef double train_step(Net *net, int n, const floating *X, const floating *T,
                       const Py_ssize_t *labels, LossConf lc, SGDConf oc, int fused_max_batch,
                       floating *P, floating *G, floating *V, floating *acts,
                       floating *d0, floating *d1, floating *partials) noexcept nogil:
    """Forward, loss, backward and SGD update for one batch; returns the loss.

    Backward runs from the top layer down. At each layer the delta of the layer below is taken
    first, with the weights the forward pass saw; then the layer is updated at once, while its
    gradient is in cache. Nothing is allocated.
    """
    cdef int l, fi, fo, L = net.L
    cdef floating *d = d0
    cdef floating *dn = d1
    cdef floating *tmp
    cdef double loss
    cdef Py_ssize_t off

    if n <= net.rowsplit_max_batch:
        return rowsplit_step(net, net.small_threads, n, X, T, labels, lc, oc,
                             n <= fused_max_batch, P, G, V, acts, d0, d1, partials, net.pstride)
    forward(net, n, X, P, acts)
    fo = net.sizes[L]
    loss = loss_and_delta(lc, n, fo, _A(net, acts, L - 1), T, labels, d)
    activation_backward(<Activation>net.act[L - 1], <Py_ssize_t>n * fo, _A(net, acts, L - 1),
                        d, d)
    for l in range(L - 1, -1, -1):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        off = net.woff[l]
        if l > 0:
            delta_below(n, fi, fo, d, P + off, _A(net, acts, l - 1), dn,
                        <Activation>net.act[l - 1])
        update_layer(n, fi, fo, X if l == 0 else _A(net, acts, l - 1), d, P + off, G + off,
                     V + off, <const floating *>net.mask[l], oc)
        tmp = d
        d = dn
        dn = tmp
    return loss


cdef void gemm_floor(Net *net, int n, const floating *X, floating *P, floating *G,
                     floating *acts, floating *d0, floating *d1, bint parts) noexcept nogil:
    """The GEMMs of one training step and nothing else: the benchmarks' floor for train_step,
    on its own buffers. Each one whole BLAS call (threaded as the BLAS itself sees fit), or
    with parts, split among bpcore's threads as the large-batch step splits them."""
    cdef int l, fi, fo, L = net.L
    cdef const floating *inp = X
    cdef floating *d = d0
    cdef floating *dn = d1
    cdef floating *tmp
    for l in range(L):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        gemm_in_parts(NoTrans, NoTrans, n, fo, fi, <floating>1, inp, fi, P + net.woff[l], fo,
                      <floating>0, _A(net, acts, l), fo, parts)
        inp = _A(net, acts, l)
    for l in range(L - 1, -1, -1):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        if l > 0:
            gemm_in_parts(NoTrans, Trans, n, fi, fo, <floating>1, d, fo, P + net.woff[l], fo,
                          <floating>0, dn, fi, parts)
        gemm_in_parts(Trans, NoTrans, fi, fo, n, <floating>1,
                      X if l == 0 else _A(net, acts, l - 1), fi, d, fo, <floating>0,
                      G + net.woff[l], fo, parts)
        tmp = d
        d = dn
        dn = tmp


cdef void gather_rows(int nrows, int width, const floating *src, const Py_ssize_t *idx,
                      floating *dst) noexcept nogil:
    """dst[r] = src[idx[r]] for r < nrows (rows of width elements)."""
    cdef Py_ssize_t r
    for r in prange(nrows, num_threads=threads_for(<Py_ssize_t>nrows * width),
                    schedule="static"):
        memcpy(&dst[r * width], &src[idx[r] * width], width * sizeof(floating))


cdef bint any_nonfinite(Py_ssize_t size, const floating *a) noexcept nogil:
    """True if any of a[0..size) is NaN or infinite (a pass over X each step: threaded)."""
    cdef Py_ssize_t blk, start, nblk = (size + CHECK_BLOCK - 1) // CHECK_BLOCK
    cdef int bad = 0
    for blk in prange(nblk, num_threads=threads_for(size), schedule="static"):
        start = blk * CHECK_BLOCK
        if floating is float:
            bad += K.nonfinite_f32(min(<Py_ssize_t>CHECK_BLOCK, size - start), a + start)
        else:
            bad += K.nonfinite_f64(min(<Py_ssize_t>CHECK_BLOCK, size - start), a + start)
    return bad != 0


cdef Py_ssize_t first_bad_label(Py_ssize_t n, const Py_ssize_t *y, int c) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if y[i] < 0 or y[i] >= c:
            return i
    return -1


cdef double run_batches(Net *net, int first, int last, int batch_size, Py_ssize_t N,
                        const floating *X, const floating *T, const Py_ssize_t *labels,
                        const Py_ssize_t *idx, LossConf lc, SGDConf oc, int fused_max_batch,
                        floating *P, floating *G, floating *V, floating *acts,
                        floating *d0, floating *d1, floating *partials, floating *xb,
                        floating *tb, Py_ssize_t *lb) noexcept nogil:
    """Batches first..last-1 of an epoch over N rows (in the order idx, or in order if idx is
    NULL); returns the sum of batch losses, each weighted by its rows for mean reductions."""
    cdef int bi, rows, fi = net.sizes[0], c = net.sizes[net.L]
    cdef Py_ssize_t start, r
    cdef const floating *xs
    cdef const floating *ts = NULL
    cdef const Py_ssize_t *ls = NULL
    cdef double loss, total = 0
    for bi in range(first, last):
        start = <Py_ssize_t>bi * batch_size
        rows = <int>min(<Py_ssize_t>batch_size, N - start)
        if idx == NULL:  # in order: the batch is a slice, nothing to copy
            xs = X + start * fi
            if T != NULL:
                ts = T + start * c
            if labels != NULL:
                ls = labels + start
        else:
            gather_rows(rows, fi, X, idx + start, xb)
            xs = xb
            if T != NULL:
                gather_rows(rows, c, T, idx + start, tb)
                ts = tb
            if labels != NULL:
                for r in range(rows):
                    lb[r] = labels[idx[start + r]]
                ls = lb
        loss = train_step(net, rows, xs, ts, ls, lc, oc, fused_max_batch, P, G, V, acts, d0, d1,
                          partials)
        total += loss * rows if lc.reduction == MEAN else loss
    return total


cdef void predict_rows(Net *net, Py_ssize_t N, int chunk, const floating *X, const floating *P,
                       floating *acts, floating *out) noexcept nogil:
    cdef Py_ssize_t start
    cdef int rows, c = net.sizes[net.L]
    start = 0
    while start < N:
        rows = <int>min(<Py_ssize_t>chunk, N - start)
        forward(net, rows, X + start * net.sizes[0], P, acts)
        memcpy(out + start * c, _A(net, acts, net.L - 1), <Py_ssize_t>rows * c * sizeof(floating))
        start += rows


cdef double evaluate_rows(Net *net, Py_ssize_t N, int chunk, const floating *X,
                          const floating *T, const Py_ssize_t *labels, int loss_kind,
                          const floating *P, floating *acts, floating *d,
                          Py_ssize_t *correct) noexcept nogil:
    """Summed loss over N rows (Reduction.SUM), and the count of rows whose output argmax is
    the label (or the target's argmax)."""
    cdef LossConf lc
    cdef Py_ssize_t start, i
    cdef int rows, j, c = net.sizes[net.L], best, want
    cdef double total = 0
    cdef floating *Y
    lc.kind = loss_kind
    lc.reduction = SUM
    correct[0] = 0
    start = 0
    while start < N:
        rows = <int>min(<Py_ssize_t>chunk, N - start)
        forward(net, rows, X + start * net.sizes[0], P, acts)
        Y = _A(net, acts, net.L - 1)
        total += loss_and_delta(lc, rows, c, Y, T + start * c if T != NULL else NULL,
                                labels + start if labels != NULL else NULL, d)
        for i in range(rows):
            best = 0
            for j in range(1, c):
                if Y[i * c + j] > Y[i * c + best]:
                    best = j
            if labels != NULL:
                want = <int>labels[start + i]
            else:
                want = 0
                for j in range(1, c):
                    if T[(start + i) * c + j] > T[(start + i) * c + want]:
                        want = j
            correct[0] += best == want
        start += rows
    return total


# ---------------------------------------------------------------------------------------------
# dtype dispatch: the engine keeps untyped pointers and picks the specialisation once per call

cdef struct Buffers:
    void *P
    void *G
    void *V
    void *acts
    void *d0
    void *d1
    void *partials
    void *xb
    void *tb
    Py_ssize_t *lb


cdef double _train_step(Net *net, bint f64, int n, void *X, void *T, Py_ssize_t *labels,
                        LossConf lc, SGDConf oc, int fmb, Buffers *B) noexcept nogil:
    if f64:
        return train_step(net, n, <double *>X, <double *>T, labels, lc, oc, fmb, <double *>B.P,
                          <double *>B.G, <double *>B.V, <double *>B.acts, <double *>B.d0,
                          <double *>B.d1, <double *>B.partials)
    return train_step(net, n, <float *>X, <float *>T, labels, lc, oc, fmb, <float *>B.P,
                      <float *>B.G, <float *>B.V, <float *>B.acts, <float *>B.d0, <float *>B.d1,
                      <float *>B.partials)


cdef double _run_batches(Net *net, bint f64, int first, int last, int bs, Py_ssize_t N,
                         void *X, void *T, Py_ssize_t *labels, Py_ssize_t *idx, LossConf lc,
                         SGDConf oc, int fmb, Buffers *B) noexcept nogil:
    if f64:
        return run_batches(net, first, last, bs, N, <double *>X, <double *>T, labels, idx, lc,
                           oc, fmb, <double *>B.P, <double *>B.G, <double *>B.V,
                           <double *>B.acts, <double *>B.d0, <double *>B.d1,
                           <double *>B.partials, <double *>B.xb, <double *>B.tb, B.lb)
    return run_batches(net, first, last, bs, N, <float *>X, <float *>T, labels, idx, lc,
                       oc, fmb, <float *>B.P, <float *>B.G, <float *>B.V,
                       <float *>B.acts, <float *>B.d0, <float *>B.d1,
                       <float *>B.partials, <float *>B.xb, <float *>B.tb, B.lb)


cdef bint _any_nonfinite(bint f64, Py_ssize_t size, void *a) noexcept nogil:
    if f64:
        return any_nonfinite(size, <double *>a)
    return any_nonfinite(size, <float *>a)


# ---------------------------------------------------------------------------------------------
# the Python-facing engine

cdef inline void _target_pointers(cnp.ndarray T, int loss_kind, void **values,
                                  Py_ssize_t **labels) noexcept:
    """Point `labels` (class labels) or `values` (target rows) at T, as the loss reads it."""
    if loss_kind == LOSS_XENT_LABELS:
        labels[0] = <Py_ssize_t *>cnp.PyArray_DATA(T)
    else:
        values[0] = cnp.PyArray_DATA(T)


_TYPENAMES = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT64: "float64", cnp.NPY_INTP: "intp"}


cdef inline cnp.ndarray _arr(object a, str name, int typenum, int ndim, Py_ssize_t rows,
                             Py_ssize_t cols, bint writable=False):
    """a as an ndarray of exactly this type, rank, layout and shape (-1: any); else raise."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, got {type(a).__name__}")
    cdef cnp.ndarray arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum:
        raise TypeError(f"{name}: expected dtype {_TYPENAMES[typenum]}, got {a.dtype.name}")
    if arr.ndim != ndim or not cnp.PyArray_IS_C_CONTIGUOUS(arr):
        raise ValueError(f"{name}: expected a C-contiguous {ndim}-D array, got shape {a.shape}")
    if (rows >= 0 and arr.shape[0] != rows) or (ndim == 2 and cols >= 0 and arr.shape[1] != cols):
        want = f"({rows if rows >= 0 else 'n'}" + (f", {cols})" if ndim == 2 else ",)")
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
    if writable and not cnp.PyArray_ISWRITEABLE(arr):
        raise ValueError(f"{name}: expected a writable array")
    return arr


cdef class Engine:
    """The native training state of one network: its layout, and workspaces for a batch.

    sizes: layer widths; acts: the Activation after each Dense; params/grads: the network's
    flat buffers (W_l then b_l for each layer, in order); masks: per layer, a (fan_in, fan_out)
    array or None. Not safe to use from two threads at once (it says so if tried).
    """
    cdef Net net
    cdef Buffers buf
    cdef readonly object dtype
    cdef int typenum
    cdef bint f64
    cdef object params, grads, masks, acts_ws, delta_ws, part_ws, xbuf, tbuf, lbuf
    cdef int part_threads       # threads the partial-sum workspace has room for
    cdef Py_ssize_t work_per_row  # parameters + activations touched per row, for thread choice
    cdef public int fused_max_batch
    cdef bint busy

    def __cinit__(self, sizes, acts, params, grads, masks, int fused_max_batch=1,
                  int rowsplit_max_batch=128):
        cdef int L = len(sizes) - 1
        if L < 1 or len(acts) != L or len(masks) != L:
            raise ValueError(f"sizes/acts/masks: expected L + 1 sizes and L of each, got "
                             f"{len(sizes)}, {len(acts)}, {len(masks)}")
        self.net.L = L
        self.net.sizes = <int *>calloc(L + 1, sizeof(int))
        self.net.act = <int *>calloc(L, sizeof(int))
        self.net.woff = <Py_ssize_t *>calloc(L, sizeof(Py_ssize_t))
        self.net.aoff = <Py_ssize_t *>calloc(L, sizeof(Py_ssize_t))
        self.net.mask = <void **>calloc(L, sizeof(void *))
        self.net.capacity = 0
        if (self.net.sizes == NULL or self.net.act == NULL or self.net.woff == NULL
                or self.net.aoff == NULL or self.net.mask == NULL):
            raise MemoryError()

    def __init__(self, sizes, acts, params, grads, masks, int fused_max_batch=1,
                 int rowsplit_max_batch=128):
        cdef int l, L = self.net.L
        cdef Py_ssize_t off = 0
        self.dtype = np.dtype(params.dtype)
        if self.dtype == np.float32:
            self.typenum, self.f64 = cnp.NPY_FLOAT32, False
        elif self.dtype == np.float64:
            self.typenum, self.f64 = cnp.NPY_FLOAT64, True
        else:
            raise TypeError(f"params: expected float32 or float64, got {self.dtype.name}")
        for l in range(L + 1):
            if not 0 < sizes[l] < 2**31:
                raise ValueError(f"sizes[{l}]: expected a positive 32-bit size, got {sizes[l]}")
            self.net.sizes[l] = sizes[l]
        for l in range(L):
            if not 0 <= acts[l] <= 3:
                raise ValueError(f"acts[{l}]: expected an Activation, got {acts[l]}")
            self.net.act[l] = acts[l]
            self.net.woff[l] = off
            off += <Py_ssize_t>sizes[l] * sizes[l + 1] + sizes[l + 1]
        self.work_per_row = off
        self.params = _arr(params, "params", self.typenum, 1, off, -1, True)
        self.grads = _arr(grads, "grads", self.typenum, 1, off, -1, True)
        self.buf.P = cnp.PyArray_DATA(self.params)
        self.buf.G = cnp.PyArray_DATA(self.grads)
        self.masks = [None if m is None else
                      _arr(m, f"masks[{l}]", self.typenum, 2, sizes[l], sizes[l + 1])
                      for l, m in enumerate(masks)]
        for l in range(L):
            if self.masks[l] is not None:
                self.net.mask[l] = cnp.PyArray_DATA(self.masks[l])
        self.fused_max_batch = fused_max_batch
        self.rowsplit_max_batch = rowsplit_max_batch

    def __dealloc__(self):
        free(self.net.sizes)
        free(self.net.act)
        free(self.net.woff)
        free(self.net.aoff)
        free(self.net.mask)

    @property
    def rowsplit_max_batch(self):
        """Batches up to this size take the row-split step (weights split by rows among the
        threads for the whole step); larger ones split the batch rows instead."""
        return self.net.rowsplit_max_batch

    @rowsplit_max_batch.setter
    def rowsplit_max_batch(self, int value):
        self.net.rowsplit_max_batch = max(value, 0)
        self.part_threads = 0  # re-size the partial sums at the next reserve

    @property
    def capacity(self):
        """Rows the workspaces hold now (the largest batch seen)."""
        return self.net.capacity

    cdef int reserve(self, Py_ssize_t n) except -1:
        """Grow the workspaces to hold n rows (and partial sums for every thread); no-op when
        they already do."""
        cdef int l, L = self.net.L, widest = 0
        cdef Py_ssize_t off = 0
        cdef int nt = max(pool_threads(), 1)
        if n <= self.net.capacity and nt <= self.part_threads:
            return 0
        n = max(n, <Py_ssize_t>self.net.capacity)
        if n > 2**31 - 1:
            raise ValueError(f"X: expected at most {2**31 - 1} rows per batch, got {n}")
        for l in range(L):
            self.net.aoff[l] = off
            off += n * self.net.sizes[l + 1]
            widest = max(widest, self.net.sizes[l + 1])
        self.acts_ws = np.empty(off, self.dtype)
        # zeros, not garbage: gemm_floor reads deltas no step has written yet
        self.delta_ws = np.zeros(2 * n * widest, self.dtype)
        self.xbuf = np.empty(n * self.net.sizes[0], self.dtype)
        self.tbuf = np.empty(n * self.net.sizes[L], self.dtype)
        self.lbuf = np.empty(n, np.intp)
        self.buf.acts = cnp.PyArray_DATA(self.acts_ws)
        self.buf.d0 = cnp.PyArray_DATA(self.delta_ws)
        cdef Py_ssize_t itemsize = 8 if self.f64 else 4
        self.buf.d1 = <void *>((<char *>self.buf.d0) + n * widest * itemsize)
        self.buf.xb = cnp.PyArray_DATA(self.xbuf)
        self.buf.tb = cnp.PyArray_DATA(self.tbuf)
        self.buf.lb = <Py_ssize_t *>cnp.PyArray_DATA(self.lbuf)
        # partial sums of the row-split step: one (rows, widest) block per thread
        rows = min(n, <Py_ssize_t>self.net.rowsplit_max_batch)
        self.part_ws = np.zeros(max(nt * rows * widest, 1), self.dtype)
        self.buf.partials = cnp.PyArray_DATA(self.part_ws)
        self.net.pstride = rows * widest
        self.part_threads = nt
        self.net.capacity = <int>n
        return 0

    cdef int _chunk_rows(self, Py_ssize_t N) except -1:
        """Rows per chunk for a pass over N rows (predict, evaluate): the workspaces' capacity,
        grown to PREDICT_CHUNK rows at most."""
        self.reserve(min(N, <Py_ssize_t>PREDICT_CHUNK))
        return self.net.capacity

    cdef int _enter(self) except -1:
        if self.busy:
            raise RuntimeError("this model is already training or predicting in another thread")
        self.busy = True
        return 0

    cdef cnp.ndarray _X(self, X, bint check=True):
        cdef cnp.ndarray Xa = _arr(X, "X", self.typenum, 2, -1, self.net.sizes[0])
        if Xa.shape[0] == 0:
            raise ValueError(f"X: expected at least one row, got shape {X.shape}")
        if check and _any_nonfinite(self.f64, Xa.size, cnp.PyArray_DATA(Xa)):
            raise ValueError("X: expected finite values, got NaN or infinity")
        return Xa

    cdef cnp.ndarray _target(self, target, Py_ssize_t n, int loss_kind, bint check=True):
        """target checked for the loss kind: finite values, or labels in range."""
        cdef int c = self.net.sizes[self.net.L]
        cdef cnp.ndarray T
        cdef Py_ssize_t bad
        if loss_kind == LOSS_XENT_LABELS:
            T = _arr(target, "target", cnp.NPY_INTP, 1, n, -1)
            bad = first_bad_label(n, <Py_ssize_t *>cnp.PyArray_DATA(T), c) if check else -1
            if bad >= 0:
                raise ValueError(f"target: expected class labels in [0, {c}), "
                                 f"got {T[bad]} at index {bad}")
        elif loss_kind == LOSS_MSE or loss_kind == LOSS_XENT_PROBS:
            T = _arr(target, "target", self.typenum, 2, n, c)
            if check and _any_nonfinite(self.f64, T.size, cnp.PyArray_DATA(T)):
                raise ValueError("target: expected finite values, got NaN or infinity")
        else:
            raise ValueError(f"loss_kind: expected 0, 1 or 2, got {loss_kind}")
        return T

    cdef int _configure(self, LossConf *lc, SGDConf *oc, int loss_kind, int reduction, velocity,
                        double lr, double momentum, bint nesterov, double weight_decay,
                        double decay) except -1:
        cdef cnp.ndarray V = _arr(velocity, "velocity", self.typenum, 1,
                                  cnp.PyArray_SIZE(self.params), -1, True)
        if not 0 <= reduction <= 2 or (reduction == HALF_SUM and loss_kind != LOSS_MSE):
            raise ValueError(f"reduction: expected a Reduction valid for the loss, got {reduction}")
        self.buf.V = cnp.PyArray_DATA(V)
        # a small-batch step touches every weight a few times: worth threads only for big nets
        self.net.small_threads = (pool_threads()
                                  if self.work_per_row * 4 >= PARALLEL_MIN_WORK else 1)
        lc.kind, lc.reduction = loss_kind, reduction
        oc.lr, oc.momentum, oc.nesterov = lr, momentum, nesterov
        oc.weight_decay, oc.decay = weight_decay, decay
        return 0

    def train_step(self, X, target, int loss_kind, int reduction, velocity, double lr,
                   double momentum, bint nesterov, double weight_decay, double decay):
        """One fused step on the batch X; returns the loss (of the weights before the step)."""
        cdef cnp.ndarray Xa = self._X(X)
        cdef Py_ssize_t n = Xa.shape[0]
        cdef cnp.ndarray T = self._target(target, n, loss_kind)
        cdef void *pX = cnp.PyArray_DATA(Xa)
        cdef void *pT = NULL
        cdef Py_ssize_t *pl = NULL
        cdef LossConf lc
        cdef SGDConf oc
        cdef double loss
        cdef int pinned
        _target_pointers(T, loss_kind, &pT, &pl)
        self._enter()
        try:
            self._configure(&lc, &oc, loss_kind, reduction, velocity, lr, momentum, nesterov,
                            weight_decay, decay)
            self.reserve(n)
            with nogil:
                pinned = blas_pin()
                loss = _train_step(&self.net, self.f64, <int>n, pX, pT, pl, lc, oc,
                                   self.fused_max_batch, &self.buf)
                blas_unpin(pinned)
        finally:
            self.busy = False
        return loss

    def check_data(self, X, target, int loss_kind):
        """Raise unless X and target fit this network and the loss, with finite values and
        labels in range (fit checks once, then runs its epochs with check=False)."""
        Xa = self._X(X)
        self._target(target, Xa.shape[0], loss_kind)

    def run_epoch(self, X, target, int loss_kind, int reduction, order, int batch_size,
                  velocity, double lr, double momentum, bint nesterov, double weight_decay,
                  double decay, bint check=True):
        """Train one epoch over the rows of X in the given order (an intp permutation, or None
        for the stored order); returns the summed batch losses, each weighted by its rows for
        mean reductions. Between every few batches it checks for Ctrl-C, raising
        KeyboardInterrupt with the model consistent (only whole batches are applied).
        check=False skips the pass over the data for finite values and labels in range."""
        cdef cnp.ndarray Xa = self._X(X, check)
        cdef Py_ssize_t N = Xa.shape[0]
        cdef cnp.ndarray T = self._target(target, N, loss_kind, check)
        cdef cnp.ndarray idx
        cdef void *pX = cnp.PyArray_DATA(Xa)
        cdef void *pT = NULL
        cdef Py_ssize_t *pl = NULL
        cdef Py_ssize_t *pidx = NULL
        cdef LossConf lc
        cdef SGDConf oc
        cdef int first, last, nb, pinned
        cdef double total = 0
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        if order is not None:
            idx = _arr(order, "order", cnp.NPY_INTP, 1, N, -1)
            pidx = <Py_ssize_t *>cnp.PyArray_DATA(idx)
            if first_bad_label(N, pidx, <int>N) >= 0:
                raise ValueError("order: expected row indices in [0, n)")
        _target_pointers(T, loss_kind, &pT, &pl)
        nb = <int>((N + batch_size - 1) // batch_size)
        self._enter()
        try:
            self._configure(&lc, &oc, loss_kind, reduction, velocity, lr, momentum, nesterov,
                            weight_decay, decay)
            self.reserve(min(<Py_ssize_t>batch_size, N))
            first = 0
            while first < nb:
                last = min(first + SIGNAL_EVERY, nb)
                with nogil:
                    pinned = blas_pin()
                    total += _run_batches(&self.net, self.f64, first, last, batch_size, N, pX,
                                          pT, pl, pidx, lc, oc, self.fused_max_batch, &self.buf)
                    blas_unpin(pinned)
                first = last
                PyErr_CheckSignals()  # raises KeyboardInterrupt after a whole batch
        finally:
            self.busy = False
        return total

    def gemm_floor(self, X, bint parts=False):
        """Run only the GEMMs of a train_step on X (for benchmarks): forward products, dW and
        dX, on the engine's workspaces, with the BLAS's own threading (or, with parts, split
        among bpcore's threads with the BLAS pinned, as a large-batch step runs them).
        Changes no weights."""
        cdef cnp.ndarray Xa = self._X(X, False)
        cdef Py_ssize_t n = Xa.shape[0]
        cdef void *pX = cnp.PyArray_DATA(Xa)
        cdef int pinned = 0
        self._enter()
        try:
            self.reserve(n)
            with nogil:
                if parts:
                    pinned = blas_pin()
                if self.f64:
                    gemm_floor(&self.net, <int>n, <double *>pX, <double *>self.buf.P,
                               <double *>self.buf.G, <double *>self.buf.acts,
                               <double *>self.buf.d0, <double *>self.buf.d1, parts)
                else:
                    gemm_floor(&self.net, <int>n, <float *>pX, <float *>self.buf.P,
                               <float *>self.buf.G, <float *>self.buf.acts,
                               <float *>self.buf.d0, <float *>self.buf.d1, parts)
                if parts:
                    blas_unpin(pinned)
        finally:
            self.busy = False

    def predict(self, X, out):
        """out (n, outputs) = the network's output for X, computed in chunks of rows."""
        cdef cnp.ndarray Xa = self._X(X)
        cdef Py_ssize_t N = Xa.shape[0]
        cdef cnp.ndarray O = _arr(out, "out", self.typenum, 2, N,
                                  self.net.sizes[self.net.L], True)
        cdef void *pX = cnp.PyArray_DATA(Xa)
        cdef void *pO = cnp.PyArray_DATA(O)
        cdef int chunk, pinned
        self._enter()
        try:
            chunk = self._chunk_rows(N)
            with nogil:
                pinned = blas_pin()
                if self.f64:
                    predict_rows(&self.net, N, chunk, <double *>pX, <double *>self.buf.P,
                                 <double *>self.buf.acts, <double *>pO)
                else:
                    predict_rows(&self.net, N, chunk, <float *>pX, <float *>self.buf.P,
                                 <float *>self.buf.acts, <float *>pO)
                blas_unpin(pinned)
        finally:
            self.busy = False
        return out

    def evaluate(self, X, target, int loss_kind):
        """(summed loss, correct argmax count) over all rows of X, in chunks."""
        cdef cnp.ndarray Xa = self._X(X)
        cdef Py_ssize_t N = Xa.shape[0], correct = 0
        cdef cnp.ndarray T = self._target(target, N, loss_kind)
        cdef void *pX = cnp.PyArray_DATA(Xa)
        cdef void *pT = NULL
        cdef Py_ssize_t *pl = NULL
        cdef int chunk, pinned
        cdef double total
        _target_pointers(T, loss_kind, &pT, &pl)
        self._enter()
        try:
            chunk = self._chunk_rows(N)
            with nogil:
                pinned = blas_pin()
                if self.f64:
                    total = evaluate_rows(&self.net, N, chunk, <double *>pX, <double *>pT, pl,
                                          loss_kind, <double *>self.buf.P,
                                          <double *>self.buf.acts, <double *>self.buf.d0,
                                          &correct)
                else:
                    total = evaluate_rows(&self.net, N, chunk, <float *>pX, <float *>pT, pl,
                                          loss_kind, <float *>self.buf.P,
                                          <float *>self.buf.acts, <float *>self.buf.d0,
                                          &correct)
                blas_unpin(pinned)
        finally:
            self.busy = False
        return total, correct


# the loss kinds, for the Python layer
MSE_KIND = LOSS_MSE
XENT_LABELS_KIND = LOSS_XENT_LABELS
XENT_PROBS_KIND = LOSS_XENT_PROBS
