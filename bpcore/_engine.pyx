# cython: language_level=3
"""The fused training engine.

One native call runs a whole training step (forward, loss, backward, update) without the GIL;
``run_epoch`` runs many, gathering shuffled rows into the batch buffer itself. The state is
three structs (bpcore/_engine.pxd, bpcore/_optim.pxd): the network (layout and flat buffers),
its workspace (activations and deltas for the largest batch seen, so a step in steady state
allocates nothing) and the optimizer, whose update the backward pass calls on each block of a
layer's gradient as it forms it.

The Python layer (bpcore.training) converts dtypes and layouts and checks values; the engine
still checks the shapes and labels it relies on, so nothing it is given can make it read or
write out of bounds.
"""
cimport numpy as cnp
from cpython.exc cimport PyErr_CheckSignals
from cython.parallel cimport parallel, prange, threadid
from libc.math cimport NAN, isfinite
from libc.stdlib cimport calloc, free
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset

import numpy as np

from bpcore._blas cimport (Block, NoTrans, Trans, matmul, matmul_act, matmul_part,
                           small_batch)
from bpcore._layers cimport (ActSpec, CSR, DenseLayer, DropSpec, SOFTMAX, activation_backward,
                             act_rows, begin_drop, colsum_rows, csr_backward, csr_forward,
                             csr_forward_rows, csr_gradient_rows, dact_rows, dense_backward,
                             dense_forward, drop_rows, drop_spec, softmax_rows, undrop_rows)
from bpcore._simd cimport bp_act_needs_input
from bpcore._losses cimport (BCE_LOGITS, MSE, POISSON, XENT_LABELS, XENT_PROBS, MEAN, SUM,
                             loss_and_delta, weight_sum)
from bpcore._optim cimport (OptimizerState, OuterRow, begin_step, cancel_step, clip_factor,
                            global_norm, outer_rows_update, scale_run, update_block,
                            update_run)
from bpcore._simd cimport bp_simd_table, simd
from bpcore._threads cimport (blas_pin, blas_unpin, bp_omp_barrier, bp_omp_max_threads,
                              bp_omp_set_threads, bp_omp_team_size, bp_omp_wtime, even_share,
                              gemm_parts, pace_begin, pace_end, pool_threads, team_for,
                              threads_for,
                              PARALLEL_MIN_WORK)

from bpcore._losses import (check_labels as _check_labels, check_targets as _check_targets,
                            valid_reduction as _valid_reduction)

cnp.import_array()

cdef bp_simd_table *K = simd()

cdef enum:
    # the epoch loop goes back for the GIL every this many batches, to let Ctrl-C through
    SIGNAL_EVERY = 16
    PREDICT_CHUNK = 1024
    CHECK_BLOCK = 65536
    CHECK_PARALLEL_MIN = 1 << 21
    # the row-split step's gradient rows formed and updated at a time on bpcore's kernels:
    # half of a 32 KiB L1
    GRADIENT_CHUNK_BYTES = 16384
    GRADIENT_CHUNK_ROWS = 24


# ---------------------------------------------------------------------------------------------
# forward and loss

cdef inline floating *_A(const Net *net, const Workspace *ws, int l,
                         const floating *X) noexcept nogil:
    """A_l (rows, sizes[l+1]) in the workspace; A_{-1} is the batch X."""
    if l < 0:
        return <floating *>X
    return <floating *>ws.acts + ws.aoff[l]


cdef inline floating *_Z(const Net *net, const Workspace *ws, int l,
                         const floating *X) noexcept nogil:
    """Z_l (rows, sizes[l+1]), the input of activation l kept for its derivative, or NULL when
    the derivative is taken from the output (and for the batch, l < 0). (X picks the dtype.)"""
    if l < 0 or ws.zoff[l] < 0:
        return NULL
    return <floating *>ws.keeps + ws.zoff[l]


cdef inline bint _sparse_input(const Workspace *ws, int l) noexcept nogil:
    """Whether layer l reads the batch's sparse rows (ws.xcsr) instead of a dense input: the
    first layer of a sparse X. (X is then NULL: only these branches read the input.)"""
    return l == 0 and ws.xcsr.indptr != NULL


cdef inline int _group(const Optimizer *opt, int l, bint bias) noexcept nogil:
    """The parameter group of W_l (bias False) or b_l: the parameters are W_0, b_0, W_1, ..."""
    return opt.group_of[2 * l + bias]


cdef inline bint _drops(const Net *net, const Workspace *ws, int l) noexcept nogil:
    """Whether layer l's dropout acts now: a training step, and a dropout after the layer."""
    return l >= 0 and ws.dropping and ws.doff[l] >= 0


cdef inline floating *_U(const Net *net, const Workspace *ws, int l,
                         const floating *X) noexcept nogil:
    """Activation l's output (rows, sizes[l+1]) before its dropout: what its derivative is
    taken from; A_l itself when nothing is dropped."""
    if _drops(net, ws, l):
        return <floating *>ws.undropped + ws.doff[l]
    return _A(net, ws, l, X)


cdef inline void _through(const Net *net, const Workspace *ws, int l, Block blk, int ld,
                          floating *d, const floating *X) noexcept nogil:
    """d = d * dA_l/dZ_l on the block: back through layer l's dropout and activation."""
    if _drops(net, ws, l):
        undrop_rows(blk, ld, ws.masks + ws.doff[l], &net.drop[l], d)
    dact_rows(blk, ld, _U(net, ws, l, X), _Z(net, ws, l, X), d, d, &net.act[l])


cdef inline void _through_rows(const Net *net, const Workspace *ws, int l, floating *d,
                               const floating *X) noexcept nogil:
    """The same over all rows, row-wise activations (softmax) included."""
    cdef int c = net.sizes[l + 1]
    if _drops(net, ws, l):
        undrop_rows(_block(0, ws.rows, 0, c), c, ws.masks + ws.doff[l], &net.drop[l], d)
    activation_backward(&net.act[l], ws.rows, c, _U(net, ws, l, X), _Z(net, ws, l, X), d, d)


cdef inline DenseLayer _layer(const Net *net, const Workspace *ws, int l) noexcept nogil:
    """Layer l of the network: its W and b in P, dW and db in G (the engine's scratch), where
    it keeps its activation's input in the workspace."""
    cdef DenseLayer layer
    cdef Py_ssize_t nw = <Py_ssize_t>net.sizes[l] * net.sizes[l + 1], item = net.itemsize
    layer.fan_in, layer.fan_out, layer.act = net.sizes[l], net.sizes[l + 1], &net.act[l]
    layer.keep = NULL if ws.zoff[l] < 0 else <char *>ws.keeps + ws.zoff[l] * item
    layer.drop, layer.undropped, layer.drop_mask = NULL, NULL, NULL
    if ws.dropping and ws.doff[l] >= 0:
        layer.drop = &net.drop[l]
        layer.undropped = <char *>ws.undropped + ws.doff[l] * item
        layer.drop_mask = ws.masks + ws.doff[l]
    layer.W = <const char *>net.P + net.woff[l] * item
    layer.b = <const char *>layer.W + nw * item
    layer.dW = <char *>net.G + net.woff[l] * item
    layer.db = <char *>layer.dW + nw * item
    layer.mask = net.mask[l]
    return layer


cdef inline Block _block(int r0, int r1, int c0, int c1) noexcept nogil:
    cdef Block blk
    blk.r0, blk.r1, blk.c0, blk.c1 = r0, r1, c0, c1
    return blk


cdef void forward(const Net *net, Workspace *ws, const floating *X) noexcept nogil:
    """A_l (rows, sizes[l+1]) = act_l(A_{l-1} @ W_l + b_l) for every layer."""
    cdef int l
    cdef DenseLayer layer
    for l in range(net.L):
        layer = _layer(net, ws, l)
        if _sparse_input(ws, l):
            csr_forward(&layer, ws.rows, ws.xcsr, _A(net, ws, l, X))
        else:
            dense_forward(&layer, ws.rows, _A(net, ws, l - 1, X), _A(net, ws, l, X))


cdef double output_delta(const Net *net, Workspace *ws, LossSpec loss, Batch b,
                         const floating *X) noexcept nogil:
    """The loss of the last forward pass, and its delta dZ (rows, outputs) into d0."""
    cdef int c = net.sizes[net.L]
    cdef floating *Y = _A(net, ws, net.L - 1, X)
    cdef floating *d = <floating *>ws.d0
    cdef double value = loss_and_delta(loss, ws.rows, c, Y, b.T, b.labels, b.weights, d)
    _through_rows(net, ws, net.L - 1, d, X)
    return value


# ---------------------------------------------------------------------------------------------
# the large-batch step: each GEMM split among the threads by blocks of its output

cdef inline void _delta_below_part(int part, int nparts, const Net *net, const Workspace *ws,
                                   int l, const floating *d, floating *dn,
                                   const floating *X) noexcept nogil:
    """dn = (d @ W_l.T) * act'(A_{l-1}): the delta of the layer below, this part's block."""
    cdef int fi = net.sizes[l], fo = net.sizes[l + 1]
    cdef Block blk = matmul_part(NoTrans, Trans, ws.rows, fi, fo, <floating>1, d, fo,
                                 <const floating *>net.P + net.woff[l], fo, <floating>0, dn, fi,
                                 part, nparts)
    _through(net, ws, l - 1, blk, fi, dn, X)


cdef void _sparse_update_rows(const Net *net, const Workspace *ws, const Optimizer *opt,
                             int r0, int r1, const floating *d) noexcept nogil:
    """Rows r0..r1-1 of the first layer's dW = X.T @ d (X the batch's sparse rows) into G,
    masked, then (given an optimizer) the update of those rows of W_0. The gradient is dense:
    a row of W whose feature no row of the batch has gets a zero gradient, and its update
    still runs (weight decay, momentum, Adam's moments), as in the dense path."""
    cdef int fo = net.sizes[1]
    cdef Py_ssize_t i, at = <Py_ssize_t>r0 * fo, count = <Py_ssize_t>(r1 - r0) * fo
    cdef floating *W = <floating *>net.P + net.woff[0]
    cdef floating *G = <floating *>net.G + net.woff[0]
    cdef const floating *mask = <const floating *>net.mask[0]
    if count <= 0:
        return
    memset(G + at, 0, count * sizeof(floating))
    csr_gradient_rows(ws.xcsr, ws.rows, fo, r0, r1, d, G)
    if mask != NULL:
        for i in range(at, at + count):
            G[i] *= mask[i]
    if opt != NULL:
        update_block(opt, _group(opt, 0, False), net.woff[0] + at, count, W + at, G + at)


cdef inline void _update_part(int part, int nparts, const Net *net, const Workspace *ws,
                              const Optimizer *opt, int l, const floating *d,
                              const floating *X) noexcept nogil:
    """Rows of dW_l = A_{l-1}.T @ d into G, then the update of those rows of W_l at once; and
    of this part's share of the bias (after W_l in the flat buffers)."""
    cdef int fi = net.sizes[l], fo = net.sizes[l + 1], c0, c1, r0, r1
    cdef Py_ssize_t nw = <Py_ssize_t>fi * fo, woff = net.woff[l], r, j, at
    cdef floating *W = <floating *>net.P + woff
    cdef floating *G = <floating *>net.G + woff
    cdef const floating *mask = <const floating *>net.mask[l]
    cdef Block blk
    if _sparse_input(ws, l):  # this part's rows of W, each formed whole
        even_share(fi, part, nparts, &r0, &r1)
        _sparse_update_rows(net, ws, opt, r0, r1, d)
    else:
        blk = matmul_part(Trans, NoTrans, fi, fo, ws.rows, <floating>1, _A(net, ws, l - 1, X),
                          fi, d, fo, <floating>0, G, fo, part, nparts)
        for r in range(blk.r0, blk.r1):
            at = r * fo + blk.c0
            if mask != NULL:
                for j in range(blk.c1 - blk.c0):
                    G[at + j] *= mask[at + j]
            update_block(opt, _group(opt, l, False), woff + at, blk.c1 - blk.c0, W + at,
                         G + at)
    even_share(fo, part, nparts, &c0, &c1)
    for j in range(c0, c1):
        G[nw + j] = 0
    colsum_rows(ws.rows, c0, c1, fo, d, G + nw)
    update_block(opt, _group(opt, l, True), woff + nw + c0, c1 - c0, W + nw + c0, G + nw + c0)


cdef double step_batchsplit(const Net *net, Workspace *ws, const Optimizer *opt, LossSpec loss,
                            Batch b, const floating *X) noexcept nogil:
    """Forward, loss, then from the top layer down: the delta of the layer below (with the
    weights the forward pass saw), then the layer's update while its gradient is in cache."""
    cdef int l, p, parts, team, n = ws.rows
    cdef floating *d = <floating *>ws.d0
    cdef floating *dn = <floating *>ws.d1
    cdef floating *tmp
    cdef double value
    forward(net, ws, X)
    value = output_delta(net, ws, loss, b, X)
    if not isfinite(value):
        ws.failure = LOSS_NONFINITE
        return value
    for l in range(net.L - 1, -1, -1):
        # the parts are bpcore's count whatever the team (see team_for): the same rounding
        if l > 0:
            parts = gemm_parts(n, net.sizes[l], net.sizes[l + 1])
            if team_for(parts) == 1:
                for p in range(parts):
                    _delta_below_part(p, parts, net, ws, l, d, dn, X)
            else:
                with parallel(num_threads=team_for(parts)):
                    p, team = threadid(), bp_omp_team_size()
                    while p < parts:
                        _delta_below_part(p, parts, net, ws, l, d, dn, X)
                        p = p + team
        parts = gemm_parts(net.sizes[l], net.sizes[l + 1], n)
        if team_for(parts) == 1:
            for p in range(parts):
                _update_part(p, parts, net, ws, opt, l, d, X)
        else:
            with parallel(num_threads=team_for(parts)):
                p, team = threadid(), bp_omp_team_size()
                while p < parts:
                    _update_part(p, parts, net, ws, opt, l, d, X)
                    p = p + team
        tmp = d
        d = dn
        dn = tmp
    return value


# ---------------------------------------------------------------------------------------------
# the small-batch step: each layer's weights split by rows among the threads for the whole step

cdef void _rowsplit_forward(int tid, int nt, const Net *net, const Workspace *ws,
                            const floating *X) noexcept nogil:
    """The partial products X[:, rows] @ W[rows] of the weights' ws.small_threads parts of rows
    (split-K), part p by thread p mod nt; after a barrier, each thread's columns of their sum,
    in part order, with bias and activation. The parts are the configured team's even when
    pacing runs the step on fewer threads, so the sums, and the results, are the same."""
    cdef int l, p, fi, fo, r0, r1, c0, c1, n = ws.rows, parts = ws.small_threads
    cdef Py_ssize_t r
    cdef const floating *W
    cdef floating *first = <floating *>ws.partials
    cdef DenseLayer layer
    for l in range(net.L):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        W = <const floating *>net.P + net.woff[l]
        if _sparse_input(ws, l):  # no split-K: each thread forms its rows of the batch whole
            layer = _layer(net, ws, l)
            even_share(n, tid, nt, &r0, &r1)
            csr_forward_rows(&layer, r0, r1, ws.xcsr, _A(net, ws, l, X))
            bp_omp_barrier()
            continue
        # one part: the product, bias and activation in one pass of bpcore's kernels (at
        # most the crossover's rows), straight into the activation's output
        if parts == 1 and matmul_act(n, fo, fi, _A(net, ws, l - 1, X), fi, W, fo,
                                     _U(net, ws, l, X), fo, W + <Py_ssize_t>fi * fo,
                                     _Z(net, ws, l, X), &net.act[l]):
            if _drops(net, ws, l):
                drop_rows(_block(0, n, 0, fo), fo, _U(net, ws, l, X), _A(net, ws, l, X),
                          ws.masks + ws.doff[l], &net.drop[l])
            continue
        p = tid
        while p < parts:
            even_share(fi, p, parts, &r0, &r1)
            matmul(NoTrans, NoTrans, n, fo, r1 - r0, <floating>1, _A(net, ws, l - 1, X) + r0,
                   fi, W + <Py_ssize_t>r0 * fo, fo, <floating>0, first + p * ws.pstride, fo)
            p += nt
        bp_omp_barrier()
        even_share(fo, tid, nt, &c0, &c1)
        if c1 > c0:  # sum the parts into part 0's, then bias and activation
            for p in range(1, parts):
                for r in range(n):
                    colsum_rows(1, c0, c1, fo, first + p * ws.pstride + r * fo, first + r * fo)
            act_rows(_block(0, n, c0, c1), fo, first, W + <Py_ssize_t>fi * fo,
                     _U(net, ws, l, X), _Z(net, ws, l, X), &net.act[l])
            if _drops(net, ws, l):
                drop_rows(_block(0, n, c0, c1), fo, _U(net, ws, l, X), _A(net, ws, l, X),
                          ws.masks + ws.doff[l], &net.drop[l])
        bp_omp_barrier()
    # over whole rows, once they are summed; only thread 0 reads the output (output_delta)
    if tid == 0 and net.act[net.L - 1].kind == SOFTMAX:
        softmax_rows(n, net.sizes[net.L], _A(net, ws, net.L - 1, X))


cdef void _rowsplit_backward(int tid, int nt, const Net *net, const Workspace *ws,
                             const Optimizer *opt, const floating *X) noexcept nogil:
    """For each of its parts of W's rows (as in the forward pass), a thread takes the columns
    of dX that belong to them (with the layer below's activation derivative), then updates
    those rows; then its share of the bias. The gradient is formed a block at a time inside
    the update for the smallest batches, else dW[rows] = X[:, rows].T @ dZ into G and the
    update over them (a chunk of rows at a time on bpcore's kernels). Without an optimizer
    (opt NULL) the whole gradient is written into G and nothing is updated."""
    cdef int l, p, fi, fo, r0, r1, c0, c1, q0, q1, chunk, n = ws.rows, parts = ws.small_threads
    cdef Py_ssize_t i, nw, woff
    cdef const floating *Xl
    cdef const floating *mask
    cdef floating *W
    cdef floating *G
    cdef floating *d = <floating *>ws.d0
    cdef floating *dn = <floating *>ws.d1
    cdef floating *tmp
    cdef floating one = 1
    cdef OuterRow src
    cdef bint fused = n <= ws.fused_max_batch and opt != NULL
    for l in range(net.L - 1, -1, -1):
        fi, fo = net.sizes[l], net.sizes[l + 1]
        nw, woff = <Py_ssize_t>fi * fo, net.woff[l]
        W, G = <floating *>net.P + woff, <floating *>net.G + woff
        Xl = _A(net, ws, l - 1, X)
        mask = <const floating *>net.mask[l]
        p = tid
        while p < parts:
            even_share(fi, p, parts, &r0, &r1)
            p += nt
            if l > 0 and r1 > r0:  # dX[:, rows] = dZ @ W[rows].T, before those rows move
                matmul(NoTrans, Trans, n, r1 - r0, fo, <floating>1, d, fo,
                       W + <Py_ssize_t>r0 * fo, fo, <floating>0, dn + r0, fi)
                _through(net, ws, l - 1, _block(0, n, r0, r1), fi, dn, X)
            if _sparse_input(ws, l):
                _sparse_update_rows(net, ws, opt, r0, r1, d)
            elif fused:
                src.rows, src.stride, src.x, src.D, src.ld = n, fi, Xl + r0, d, fo
                i = <Py_ssize_t>r0 * fo
                outer_rows_update(opt, _group(opt, l, False), woff + i, r1 - r0, fo, src, W + i,
                                  mask + i if mask != NULL else NULL)
            else:
                # on bpcore's kernels, a few rows of the gradient at a time, each updated while
                # it is in L1 (one BLAS call per chunk would cost more than it saves)
                chunk = r1 - r0
                if small_batch(n, sizeof(floating)):  # whole tiles at every level (4, 6, 8 rows)
                    chunk = GRADIENT_CHUNK_BYTES // (fo * <int>sizeof(floating))
                    chunk = max(GRADIENT_CHUNK_ROWS, chunk - chunk % GRADIENT_CHUNK_ROWS)
                q0 = r0
                while q0 < r1:
                    q1 = min(q0 + chunk, r1)
                    matmul(Trans, NoTrans, q1 - q0, fo, n, <floating>1, Xl + q0, fi, d, fo,
                           <floating>0, G + <Py_ssize_t>q0 * fo, fo)
                    if mask != NULL:
                        for i in range(<Py_ssize_t>q0 * fo, <Py_ssize_t>q1 * fo):
                            G[i] *= mask[i]
                    if opt != NULL:
                        update_block(opt, _group(opt, l, False), woff + <Py_ssize_t>q0 * fo,
                                     <Py_ssize_t>(q1 - q0) * fo, W + <Py_ssize_t>q0 * fo,
                                     G + <Py_ssize_t>q0 * fo)
                    q0 = q1
        even_share(fo, tid, nt, &c0, &c1)
        if c1 > c0:  # the bias: its input is 1 in every row
            if opt == NULL:
                memset(G + nw + c0, 0, (c1 - c0) * sizeof(floating))
                colsum_rows(n, c0, c1, fo, d, G + nw)
            else:
                src.rows, src.stride, src.x, src.D, src.ld = n, 0, &one, d + c0, fo
                outer_rows_update(opt, _group(opt, l, True), woff + nw + c0, 1, c1 - c0, src,
                                  W + nw + c0, NULL)
        bp_omp_barrier()
        tmp = d
        d = dn
        dn = tmp


cdef double step_rowsplit(const Net *net, Workspace *ws, const Optimizer *opt, LossSpec loss,
                          Batch b, const floating *X) noexcept nogil:
    """For a few rows the cost is moving the weights, not arithmetic: every layer's weights are
    split by rows among the threads for the whole step, so each thread keeps its rows of W and
    their optimizer state in its own cache (splitting W one way for the forward pass and
    another for the update would move half of it between cores every step)."""
    cdef double value = _rowsplit_pass(net, ws, opt, loss, b, X, 1)
    if not isfinite(value):
        ws.failure = LOSS_NONFINITE
    return value


cdef double _rowsplit_pass(const Net *net, Workspace *ws, const Optimizer *opt, LossSpec loss,
                           Batch b, const floating *X, double scale) noexcept nogil:
    """The row-split forward pass, the loss and its delta times scale, and (the loss finite)
    the row-split backward pass: with opt, the step's update; with opt NULL, the gradient
    into G. Returns scale times the loss."""
    cdef double value = 0
    cdef double *out = &value  # written by thread 0 inside the parallel region
    cdef int tid = 0, nt = team_for(ws.small_threads)  # pacing may run the parts on fewer
    if nt == 1:
        _rowsplit_forward(0, 1, net, ws, X)
        value = _scaled_delta(net, ws, loss, b, X, scale)
        if isfinite(value):
            _rowsplit_backward(0, 1, net, ws, opt, X)
        return value
    with parallel(num_threads=nt):
        tid, nt = threadid(), bp_omp_team_size()
        _rowsplit_forward(tid, nt, net, ws, X)
        if tid == 0:
            out[0] = _scaled_delta(net, ws, loss, b, X, scale)
        bp_omp_barrier()
        if isfinite(out[0]):  # every thread reads the loss thread 0 wrote before the barrier
            _rowsplit_backward(tid, nt, net, ws, opt, X)
    return value


# ---------------------------------------------------------------------------------------------
# the whole gradient (clipping, L-BFGS), and the step that needs it whole

cdef double add_gradient(const Net *net, Workspace *ws, LossSpec loss, Batch b,
                         const floating *X, double scale) noexcept nogil:
    """G += scale times the gradient of the batch's loss (G accumulates, so chunks of rows add
    up); returns scale times the loss."""
    cdef int l
    cdef floating *d = <floating *>ws.d0
    cdef floating *dn = <floating *>ws.d1
    cdef floating *tmp
    cdef DenseLayer layer
    cdef double value
    forward(net, ws, X)
    value = _scaled_delta(net, ws, loss, b, X, scale)
    for l in range(net.L - 1, -1, -1):
        layer = _layer(net, ws, l)
        if _sparse_input(ws, l):
            csr_backward(&layer, ws.rows, ws.xcsr, d)
        else:
            dense_backward(&layer, ws.rows, _A(net, ws, l - 1, X), d, dn if l > 0 else NULL)
        if l > 0:
            _through_rows(net, ws, l - 1, dn, X)
        tmp = d
        d = dn
        dn = tmp
    return value


cdef double _scaled_delta(const Net *net, Workspace *ws, LossSpec loss, Batch b,
                          const floating *X, double scale) noexcept nogil:
    """output_delta, its delta and loss times scale (on the output's delta: a pass over rows x
    outputs, not over G)."""
    cdef double value = output_delta(net, ws, loss, b, X)
    if scale != 1:
        scale_run(<Py_ssize_t>ws.rows * net.sizes[net.L], <floating *>ws.d0, scale)
        value = value * scale
    return value


cdef double whole_gradient(const Net *net, Workspace *ws, LossSpec loss, Batch b,
                           const floating *X, double scale) noexcept nogil:
    """G = scale times the gradient of the batch's loss (ws.rows > 0), by the strategy the
    plain step takes at this batch; returns scale times the loss (not finite: G is left
    undefined)."""
    if ws.rows <= ws.rowsplit_max_batch:
        return _rowsplit_pass(net, ws, <const Optimizer *>NULL, loss, b, X, scale)
    memset(net.G, 0, net.size * sizeof(floating))
    return add_gradient(net, ws, loss, b, X, scale)


cdef double step_clipped(const Net *net, Workspace *ws, const Optimizer *opt, LossSpec loss,
                         Batch b, const floating *X, double max_norm) noexcept nogil:
    """The whole gradient, scaled to a global norm of at most max_norm (as
    torch.nn.utils.clip_grad_norm_), then the update of every parameter."""
    cdef Py_ssize_t size = net.size
    cdef floating *G = <floating *>net.G
    cdef double value, norm
    value = whole_gradient(net, ws, loss, b, X, 1)
    if not isfinite(value):
        ws.failure = LOSS_NONFINITE
        return value
    norm = global_norm(size, G)
    if not isfinite(norm):  # the whole gradient is known before any update: nothing applied
        ws.failure = GRADIENT_NONFINITE
        return value
    _clip_and_update(net, opt, G, norm, max_norm)
    return value


cdef void _clip_and_update(const Net *net, const Optimizer *opt, floating *G, double norm,
                           double max_norm) noexcept nogil:
    """The whole gradient G (net.G), of global norm `norm`, scaled to at most max_norm (0: as
    it is), then the update of every parameter."""
    cdef int l
    cdef Py_ssize_t nw
    cdef floating *P = <floating *>net.P
    cdef double coef = clip_factor(norm, max_norm) if max_norm > 0 else 1.0
    if coef < 1:
        scale_run(net.size, G, coef)
    for l in range(net.L):
        nw = <Py_ssize_t>net.sizes[l] * net.sizes[l + 1]
        update_run(opt, _group(opt, l, False), net.woff[l], nw, P + net.woff[l], G + net.woff[l])
        update_run(opt, _group(opt, l, True), net.woff[l] + nw, net.sizes[l + 1],
                   P + net.woff[l] + nw, G + net.woff[l] + nw)


cdef double step_reduced(const Net *net, Workspace *ws, const Optimizer *opt, StepConf *sc,
                         Batch b, const floating *X) noexcept nogil:
    """A data-parallel step: G = this process's rows' share of the whole batch's gradient (a
    mean divides by the whole batch's weight, on every process), summed over the processes
    by the team's reduce; then checked, clipped and applied as step_clipped does. Every
    decision is taken on the summed G, which is the same on every process: a loss that is not
    finite here poisons G, so all of them fail in the same step. Returns this process's share
    of the batch's loss (rows: none is a share of 0)."""
    cdef floating *G = <floating *>net.G
    cdef LossSpec summed = sc.loss
    cdef double value = 0, norm, scale = 1
    cdef bint bad
    if sc.loss.reduction == MEAN:
        summed.reduction, scale = SUM, sc.team.per[sc.team.step]
    if ws.rows > 0:
        value = whole_gradient(net, ws, summed, b, X, scale)
        if not isfinite(value):  # whatever else G holds, its sum over the ranks is then NaN
            G[0] = NAN
    else:
        memset(G, 0, net.size * sizeof(floating))
    if sc.team.reduce(sc.team.ctx) != 0:
        ws.failure = REDUCE_FAILED
        return value
    # the norm only where it clips: the check alone is a lighter pass (no sum in double)
    if sc.max_grad_norm > 0:
        norm = global_norm(net.size, G)
        bad = not isfinite(norm)
    else:
        norm, bad = 0, any_nonfinite(net.size, G)
    if bad:
        ws.failure = GRADIENT_NONFINITE
        return value
    _clip_and_update(net, opt, G, norm, sc.max_grad_norm)
    return value


cdef double train_step(const Net *net, Workspace *ws, Optimizer *opt, StepConf *sc, Batch b,
                       const floating *X) noexcept nogil:
    """Forward, loss, backward and update of the batch (ws.rows rows); returns the loss of the
    weights before the update, and sets ws.failure. A loss or gradient that is not finite
    stops the step before any update (uncounted); an update that writes a NaN or an infinity
    is reported by the optimizer's flag, set in the update's own pass. The dropout layers draw
    their masks (a step that fails has drawn them too). Nothing is allocated."""
    cdef double value
    cdef int l
    cdef bint team = sc.team.reduce != NULL
    ws.failure = NO_FAILURE
    for l in range(net.L):
        if ws.doff[l] >= 0:
            begin_drop(&net.drop[l])
            net.drop[l].first_row = sc.team.first_row[sc.team.step] if team else 0
            ws.dropping = 1
    # the batch's summed weight: only scikit-learn's form of L2 reads it (no extra pass else)
    if team:
        begin_step(opt, sc.team.weight[sc.team.step])
    else:
        begin_step(opt, weight_sum(ws.rows, <const floating *>b.weights) if opt.sklearn_decay
                   else ws.rows)
    if team:
        value = step_reduced(net, ws, opt, sc, b, X)
    elif sc.max_grad_norm > 0:
        value = step_clipped(net, ws, opt, sc.loss, b, X, sc.max_grad_norm)
    elif ws.rows <= ws.rowsplit_max_batch:
        value = step_rowsplit(net, ws, opt, sc.loss, b, X)
    else:
        value = step_batchsplit(net, ws, opt, sc.loss, b, X)
    ws.dropping = 0
    if ws.failure != NO_FAILURE:
        cancel_step(opt)
    elif opt.nonfinite[0]:
        ws.failure = UPDATE_NONFINITE
    return value


# ---------------------------------------------------------------------------------------------
# passes over many rows: an epoch of steps, predictions, evaluation, the full-data gradient

cdef void gather_rows(int nrows, int width, const floating *src, const Py_ssize_t *idx,
                      floating *dst) noexcept nogil:
    """dst[r] = src[idx[r]] for r < nrows (rows of width elements)."""
    cdef Py_ssize_t r
    for r in prange(nrows, num_threads=threads_for(<Py_ssize_t>nrows * width),
                    schedule="static"):
        memcpy(&dst[r * width], &src[idx[r] * width], width * sizeof(floating))


cdef void gather_csr(int nrows, CSR src, const Py_ssize_t *idx, Workspace *ws,
                     const floating *like) noexcept nogil:
    """ws.xcsr = rows idx[0..nrows) of src, copied into the workspace's gather buffers (sized
    by the engine for the epoch's fullest batch). (`like` only picks the dtype.)"""
    cdef Py_ssize_t *indptr = ws.gather_indptr
    cdef Py_ssize_t r, i, count
    indptr[0] = 0
    for r in range(nrows):
        i = idx[r]
        indptr[r + 1] = indptr[r] + (src.indptr[i + 1] - src.indptr[i])
    for r in prange(nrows, num_threads=threads_for(indptr[nrows] * 2), schedule="static"):
        i = idx[r]
        count = src.indptr[i + 1] - src.indptr[i]
        memcpy(ws.gather_indices + indptr[r], src.indices + src.indptr[i], count * sizeof(int))
        memcpy(<floating *>ws.gather_data + indptr[r], <const floating *>src.data + src.indptr[i],
               count * sizeof(floating))
    ws.xcsr.indptr, ws.xcsr.indices, ws.xcsr.data = indptr, ws.gather_indices, ws.gather_data


cdef Batch take_rows(const Net *net, Workspace *ws, Rows data, Py_ssize_t start, int count,
                     const floating **X) noexcept nogil:
    """Point X and the returned targets at `count` rows from `start`: slices of the data in the
    stored order, else gathered into the workspace's batch buffers. Sets ws.rows, and ws.xcsr
    for sparse rows (X is then NULL)."""
    cdef int fi = net.sizes[0], c = net.sizes[net.L], r
    cdef Batch b
    ws.rows = count
    b.T, b.labels, b.weights = NULL, NULL, NULL
    ws.xcsr.indptr = NULL
    if data.sparse.indptr != NULL:
        X[0] = NULL
        if data.idx == NULL:  # a view: the kernels read indptr's offsets as they are
            ws.xcsr = data.sparse
            ws.xcsr.indptr = data.sparse.indptr + start
        else:
            gather_csr(count, data.sparse, data.idx + start, ws, <const floating *>NULL)
    if data.idx == NULL:
        if data.sparse.indptr == NULL:
            X[0] = <const floating *>data.X + start * fi
        if data.all.T != NULL:
            b.T = <const floating *>data.all.T + start * c
        if data.all.labels != NULL:
            b.labels = data.all.labels + start
        if data.all.weights != NULL:
            b.weights = <const floating *>data.all.weights + start
        return b
    if data.sparse.indptr == NULL:
        gather_rows(count, fi, <const floating *>data.X, data.idx + start, <floating *>ws.xb)
        X[0] = <const floating *>ws.xb
    if data.all.T != NULL:
        gather_rows(count, c, <const floating *>data.all.T, data.idx + start, <floating *>ws.tb)
        b.T = ws.tb
    if data.all.labels != NULL:
        for r in range(count):
            ws.lb[r] = data.all.labels[data.idx[start + r]]
        b.labels = ws.lb
    if data.all.weights != NULL:  # the weights travel with their rows
        for r in range(count):
            (<floating *>ws.wb)[r] = (<const floating *>data.all.weights)[data.idx[start + r]]
        b.weights = ws.wb
    return b


cdef double run_batches(const Net *net, Workspace *ws, Optimizer *opt, StepConf *sc, Rows data,
                        int first, int last, const floating *like) noexcept nogil:
    """Batches first..last-1 of an epoch, of data.batch_size rows; returns the sum of batch
    losses, each weighted by its rows' summed weight for mean reductions. (`like` only picks
    the dtype.)"""
    cdef int bi, count, team
    cdef Py_ssize_t start
    cdef const floating *X
    cdef Batch b
    cdef double value, t0, total = 0
    ws.failure = NO_FAILURE
    for bi in range(first, last):
        start = <Py_ssize_t>bi * data.batch_size
        count = <int>max(0, min(<Py_ssize_t>data.batch_size, data.N - start))
        b = take_rows(net, ws, data, start, count, &X)
        if sc.team.reduce != NULL:
            # a team's step waits for the others at the reduction: its time says nothing of
            # this machine's load, so it is not paced
            sc.team.step = bi
            bp_omp_set_threads(ws.small_threads if count <= ws.rowsplit_max_batch
                               else ws.threads)
            value = train_step(net, ws, opt, sc, b, X)
            if ws.failure != NO_FAILURE:
                break
            total += value * sc.team.weight[bi] if sc.loss.reduction == MEAN else value
            continue
        ws.pace.full = ws.small_threads if count <= ws.rowsplit_max_batch else ws.threads
        team = pace_begin(&ws.pace, count)
        bp_omp_set_threads(team if team > 0 else ws.threads)
        t0 = bp_omp_wtime()
        value = train_step(net, ws, opt, sc, b, X)
        pace_end(&ws.pace, team, bp_omp_wtime() - t0)
        if ws.failure != NO_FAILURE:
            break  # the caller reads ws.failure and ws.failed_batch
        if sc.loss.reduction == MEAN:
            total += value * weight_sum(count, <const floating *>b.weights)
        else:
            total += value
    ws.failed_batch = bi if ws.failure != NO_FAILURE else -1
    return total


cdef void predict_rows(const Net *net, Workspace *ws, Rows data, floating *out) noexcept nogil:
    """out (N, outputs) = the network's output, in chunks of the workspace's capacity."""
    cdef Py_ssize_t start = 0
    cdef int c = net.sizes[net.L]
    cdef const floating *X
    while start < data.N:
        take_rows(net, ws, data, start, <int>min(<Py_ssize_t>ws.capacity, data.N - start), &X)
        forward(net, ws, X)
        memcpy(out + start * c, _A(net, ws, net.L - 1, X), <Py_ssize_t>ws.rows * c * sizeof(floating))
        start += ws.rows


cdef int _argmax(int c, const floating *y) noexcept nogil:
    cdef int j, best = 0
    for j in range(1, c):
        if y[j] > y[best]:
            best = j
    return best


cdef bint _signs_match(int c, const floating *z, const floating *t) noexcept nogil:
    """True if every output's (z > 0) is its target's (t > 0.5): a row right in every label."""
    cdef int j
    for j in range(c):
        if (z[j] > 0) != (t[j] > 0.5):
            return False
    return True


cdef double evaluate_rows(const Net *net, Workspace *ws, LossSpec loss, Rows data,
                          double *correct, const floating *like) noexcept nogil:
    """The summed loss over all rows (loss.reduction SUM, rows weighted), and the summed
    weight (the count, without weights) of rows whose output argmax is the label (or the
    target's argmax); for BCE_LOGITS, of rows whose every logit has the sign of its target's
    side of 0.5; for POISSON none are counted."""
    cdef Py_ssize_t start = 0
    cdef int i, c = net.sizes[net.L], want
    cdef double rw
    cdef double total = 0
    cdef const floating *X
    cdef const floating *Y
    cdef Batch b
    correct[0] = 0
    while start < data.N:
        b = take_rows(net, ws, data, start, <int>min(<Py_ssize_t>ws.capacity, data.N - start), &X)
        forward(net, ws, X)
        Y = _A(net, ws, net.L - 1, X)
        total += loss_and_delta(loss, ws.rows, c, Y, b.T, b.labels, b.weights,
                                <floating *>ws.d0)
        for i in range(ws.rows):
            rw = (<const floating *>b.weights)[i] if b.weights != NULL else 1
            if loss.kind == BCE_LOGITS:
                correct[0] += rw * _signs_match(c, Y + <Py_ssize_t>i * c,
                                                <const floating *>b.T + <Py_ssize_t>i * c)
                continue
            if loss.kind == POISSON:
                continue
            if b.labels != NULL:
                want = <int>b.labels[i]
            else:
                want = _argmax(c, <const floating *>b.T + <Py_ssize_t>i * c)
            correct[0] += rw * (_argmax(c, Y + <Py_ssize_t>i * c) == want)
        start += ws.rows
    return total


cdef double gradient_rows(const Net *net, Workspace *ws, LossSpec loss, Rows data,
                          const floating *like) noexcept nogil:
    """G = the gradient of the loss summed over all rows (loss.reduction SUM or HALF_SUM),
    chunk by chunk; returns that loss."""
    cdef Py_ssize_t start = 0
    cdef double total = 0
    cdef const floating *X
    cdef Batch b
    memset(net.G, 0, net.size * sizeof(floating))
    while start < data.N:
        b = take_rows(net, ws, data, start, <int>min(<Py_ssize_t>ws.capacity, data.N - start), &X)
        total += add_gradient(net, ws, loss, b, X, 1)
        start += ws.rows
    return total


cdef void run_job(const Net *net, Workspace *ws, Rows data, Job *job,
                  const floating *like) noexcept nogil:
    """Run the job over the rows (`like` only picks the dtype)."""
    if job.kind == TRAIN_BATCHES:
        job.total += run_batches(net, ws, job.opt, &job.conf, data, job.first, job.last, like)
        job.failed, job.failure = ws.failed_batch, ws.failure
    elif job.kind == PREDICT:
        predict_rows(net, ws, data, <floating *>job.out)
    elif job.kind == EVALUATE:
        job.total = evaluate_rows(net, ws, job.conf.loss, data, &job.correct, like)
    else:
        job.total = gradient_rows(net, ws, job.conf.loss, data, like) * job.scale
        if job.scale != 1:
            scale_run(net.size, <floating *>net.G, job.scale)


cdef bint any_nonfinite(Py_ssize_t size, const floating *a) noexcept nogil:
    """True if any of a[0..size) is NaN or infinite (threaded: a pass over the data)."""
    cdef Py_ssize_t blk, start, nblk = (size + CHECK_BLOCK - 1) // CHECK_BLOCK
    cdef int bad = 0
    # a scan runs at memory speed: a thread team pays only for whole data sets (fit's one
    # check), while for a batch its wake-up costs more, and on a busy machine much more
    cdef int nt = threads_for(size) if size >= CHECK_PARALLEL_MIN else 1
    for blk in prange(nblk, num_threads=nt, schedule="static"):
        start = blk * CHECK_BLOCK
        if floating is float:
            bad += K.nonfinite_f32(min(<Py_ssize_t>CHECK_BLOCK, size - start), a + start)
        else:
            bad += K.nonfinite_f64(min(<Py_ssize_t>CHECK_BLOCK, size - start), a + start)
    return bad != 0


def check_finite(cnp.ndarray a, str name):
    """Raise ValueError unless every value of the float32/float64 C-contiguous array a is
    finite: the one place of that rule (bpcore._validation uses it too)."""
    cdef bint bad
    cdef void *p = cnp.PyArray_DATA(a)
    cdef Py_ssize_t size = a.size
    if not cnp.PyArray_IS_C_CONTIGUOUS(a) or a.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected a C-contiguous float32 or float64 array")
    with nogil:
        if cnp.PyArray_TYPE(a) == cnp.NPY_FLOAT64:
            bad = any_nonfinite(size, <const double *>p)
        else:
            bad = any_nonfinite(size, <const float *>p)
    if bad:
        raise ValueError(f"{name}: expected finite values, got NaN or infinity")


# ---------------------------------------------------------------------------------------------
# the Python-facing engine

_FAILURES = {LOSS_NONFINITE: "loss", GRADIENT_NONFINITE: "gradient", UPDATE_NONFINITE: "update",
             REDUCE_FAILED: "reduce"}


cdef int _call_reduce(void *ctx) noexcept nogil:
    """A team's reduction: the Python callable ctx, which returns True once the gradient
    buffer holds the sum over the processes (it keeps its own exception, if any)."""
    with gil:
        try:
            return 0 if (<object>ctx)() else -1
        except BaseException:  # the callable's contract is to catch; this one did not
            return -1
_TYPENAMES = {cnp.NPY_FLOAT32: "float32", cnp.NPY_FLOAT64: "float64", cnp.NPY_INTP: "intp",
              cnp.NPY_UINT64: "uint64", cnp.NPY_INT32: "int32"}


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


cdef inline void *_data(cnp.ndarray a) noexcept:
    return cnp.PyArray_DATA(a)


cdef ActSpec _act_spec(object act, str name) except *:
    """An activation: its kind (bpcore._layers.Activation), or (kind, p0, p1)."""
    cdef ActSpec spec
    kind, p0, p1 = (act, 0.0, 0.0) if isinstance(act, int) else act
    if not 0 <= kind <= SOFTMAX:
        raise ValueError(f"{name}: expected an Activation, got {act}")
    spec.kind, spec.p0, spec.p1 = kind, p0, p1
    return spec


# Each buffer of the workspace, and each matrix in it, starts on a cache line: bpcore's
# small-batch kernels load and store whole vectors of their rows (see bpcore.params'
# BUFFER_ALIGN, the same for the weights)
cdef enum:
    WORKSPACE_ALIGN = 64


cdef inline Py_ssize_t _lines(Py_ssize_t count, Py_ssize_t item) noexcept:
    """count elements of item bytes, rounded up to whole WORKSPACE_ALIGN-byte lines."""
    cdef Py_ssize_t per = WORKSPACE_ALIGN // item
    return (count + per - 1) // per * per


cdef object _aligned_empty(Py_ssize_t size, dtype):
    """An empty 1-d array of size elements of dtype starting on a WORKSPACE_ALIGN boundary."""
    cdef Py_ssize_t item = np.dtype(dtype).itemsize
    raw = np.empty(size * item + WORKSPACE_ALIGN, np.uint8)
    cdef Py_ssize_t start = -raw.ctypes.data % WORKSPACE_ALIGN
    return raw[start:start + size * item].view(dtype)


cdef class CSRMatrix:
    """A sparse X (n, cols) in compressed sparse row form, as the engine takes it: ``data``
    (the values, float32 or float64), ``indices`` (their columns, int32) and ``indptr`` (intp,
    n + 1 offsets: row r's entries are indptr[r] .. indptr[r + 1] - 1), read-only views; within
    a row, columns may come in any order and repeat (repeats add up). The structure is checked
    here, once, since the kernels index W by the columns and the entries by the offsets; the
    values are checked by whoever uses them (finite, the network's dtype).
    bpcore._validation.as_sparse_matrix builds one from any scipy.sparse matrix."""
    cdef readonly object data, indices, indptr, shape

    def __init__(self, data, indices, indptr, Py_ssize_t n_cols):
        cdef cnp.ndarray values = _arr(data, "data", cnp.NPY_FLOAT64
                                       if np.asarray(data).dtype == np.float64
                                       else cnp.NPY_FLOAT32, 1, -1, -1)
        cdef Py_ssize_t nnz = values.shape[0]
        cdef cnp.ndarray columns = _arr(indices, "indices", cnp.NPY_INT32, 1, nnz, -1)
        cdef cnp.ndarray offsets = _arr(indptr, "indptr", cnp.NPY_INTP, 1, -1, -1)
        cdef Py_ssize_t n = offsets.shape[0] - 1
        if not 0 < n_cols < 2**31:
            raise ValueError(f"n_cols: expected a positive 32-bit size, got {n_cols}")
        if n < 0 or offsets[0] != 0 or offsets[n] != nnz:
            raise ValueError(f"indptr: expected n + 1 offsets from 0 to the {nnz} entries, got "
                             f"{offsets.shape[0]}: {offsets[:4]}...")
        if n > 2**31 - 1:
            raise ValueError(f"indptr: expected at most {2**31 - 1} rows, got {n}")
        if np.any(offsets[1:] < offsets[:n]):
            raise ValueError("indptr: expected non-decreasing offsets")
        if nnz and (columns.min() < 0 or columns.max() >= n_cols):
            raise ValueError(f"indices: expected columns in [0, {n_cols}), got "
                             f"{columns.min()} to {columns.max()}")
        self.data, self.indices, self.indptr = _frozen(values), _frozen(columns), _frozen(offsets)
        self.shape = (n, n_cols)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def nnz(self):
        return self.data.shape[0]

    def __repr__(self):
        return f"CSRMatrix(shape={self.shape}, nnz={self.nnz}, dtype={self.dtype.name})"


cdef object _frozen(cnp.ndarray a):
    """A read-only view of a: the checked structure cannot be written through the CSRMatrix."""
    view = a.view()
    view.flags.writeable = False
    return view


cdef class Engine:
    """The native training state of one network: its layout, and workspaces for a batch.

    sizes: layer widths; acts: the Activation after each Dense (its kind, or (kind, p0, p1):
    bpcore._layers.ActSpec); params/grads: the network's
    flat buffers (W_l then b_l for each layer, in order); masks: per layer, a (fan_in, fan_out)
    array or None. Not safe to use from two threads at once (it says so if tried).
    """

    def __cinit__(self, sizes, acts, params, grads, masks, drops=None, int fused_max_batch=1,
                  int rowsplit_max_batch=128):
        cdef int L = len(sizes) - 1
        if L < 1 or len(acts) != L or len(masks) != L:
            raise ValueError(f"sizes/acts/masks: expected L + 1 sizes and L of each, got "
                             f"{len(sizes)}, {len(acts)}, {len(masks)}")
        self.net.L = L
        self.net.sizes = <int *>calloc(L + 1, sizeof(int))
        self.net.act = <ActSpec *>calloc(L, sizeof(ActSpec))
        self.net.woff = <Py_ssize_t *>calloc(L, sizeof(Py_ssize_t))
        self.net.mask = <void **>calloc(L, sizeof(void *))
        self.ws.aoff = <Py_ssize_t *>calloc(L, sizeof(Py_ssize_t))
        self.ws.zoff = <Py_ssize_t *>calloc(L, sizeof(Py_ssize_t))
        self.ws.doff = <Py_ssize_t *>calloc(L, sizeof(Py_ssize_t))
        self.net.drop = <DropSpec *>calloc(L, sizeof(DropSpec))
        if (self.net.sizes == NULL or self.net.act == NULL or self.net.woff == NULL
                or self.net.mask == NULL or self.ws.aoff == NULL or self.ws.zoff == NULL
                or self.ws.doff == NULL or self.net.drop == NULL):
            raise MemoryError()

    def __init__(self, sizes, acts, params, grads, masks, drops=None, int fused_max_batch=1,
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
            self.net.act[l] = _act_spec(acts[l], f"acts[{l}]")
            if self.net.act[l].kind == SOFTMAX and l < L - 1:
                raise ValueError(f"acts[{l}]: softmax works on whole rows: the engine takes it "
                                 f"after the last layer only")
            self.ws.zoff[l] = -1
            self.ws.doff[l] = -1
            self.net.woff[l] = off
            off += <Py_ssize_t>sizes[l] * sizes[l + 1] + sizes[l + 1]
        self.net.size = off
        self.params = _arr(params, "params", self.typenum, 1, off, -1, True)
        self.grads = _arr(grads, "grads", self.typenum, 1, off, -1, True)
        self.net.P, self.net.G = _data(self.params), _data(self.grads)
        self.net.itemsize = self.dtype.itemsize
        self.masks = [None if m is None else
                      _arr(m, f"masks[{l}]", self.typenum, 2, sizes[l], sizes[l + 1])
                      for l, m in enumerate(masks)]
        for l in range(L):
            if self.masks[l] is not None:
                self.net.mask[l] = _data(self.masks[l])
        self.drop_states = [None] * L
        for l, drop in enumerate(drops or [None] * L):
            if drop is not None:
                self.set_dropout(l, *drop)
        self.ws.fused_max_batch = fused_max_batch
        self.ws.rowsplit_max_batch = max(rowsplit_max_batch, 0)
        self.ws.small_threads = 1

    def __dealloc__(self):
        free(self.net.sizes)
        free(self.net.act)
        free(self.net.woff)
        free(self.net.mask)
        free(self.ws.aoff)
        free(self.ws.zoff)
        free(self.ws.doff)
        free(self.net.drop)

    def set_dropout(self, int l, double p, state):
        """Dropout with probability p after layer l (its activation), drawing its masks from
        state, the Dropout layer's (seed, masks drawn) array, which the steps advance."""
        if not 0 <= l < self.net.L:
            raise ValueError(f"l: expected a layer in [0, {self.net.L}), got {l}")
        if not 0 <= p < 1:
            raise ValueError(f"p: expected a probability in [0, 1), got {p}")
        if p > 0 and self.net.act[l].kind == SOFTMAX:
            raise ValueError(f"drops[{l}]: dropout after a softmax output is not supported")
        st = _arr(state, "state", cnp.NPY_UINT64, 1, 2, -1, True)
        self.drop_states[l] = st
        self.net.drop[l] = drop_spec(p, <uint64_t *>_data(st))
        self.ws.capacity, self.part_threads = 0, 0  # the workspace grows a mask at next use

    @property
    def rowsplit_max_batch(self):
        """Batches up to this size take the row-split step (weights split by rows among the
        threads for the whole step); larger ones split the batch rows instead."""
        return self.ws.rowsplit_max_batch

    @rowsplit_max_batch.setter
    def rowsplit_max_batch(self, int value):
        self.ws.rowsplit_max_batch = max(value, 0)
        self.part_threads = 0  # re-size the partial sums at the next reserve

    @property
    def fused_max_batch(self):
        """Batches up to this size form each weight row's gradient inside its update."""
        return self.ws.fused_max_batch

    @fused_max_batch.setter
    def fused_max_batch(self, int value):
        self.ws.fused_max_batch = value

    @property
    def pace(self):
        """The busy-machine pacing state: {"rows", "solo" (seconds of the last one-thread
        step), "left" (one-thread steps still to take), "backoff"}."""
        return {"rows": self.ws.pace.rows, "solo": self.ws.pace.solo,
                "left": self.ws.pace.left, "backoff": self.ws.pace.backoff}

    @property
    def capacity(self):
        """Rows the workspaces hold now (the largest batch seen)."""
        return self.ws.capacity

    cdef int reserve(self, Py_ssize_t n) except -1:
        """Grow the workspaces to hold n rows (and partial sums for every thread); no-op when
        they already do. Also picks the threads of a row-split step."""
        cdef int l, L = self.net.L, widest = 0
        cdef Py_ssize_t off = 0, kept = 0, dropped = 0, rows
        cdef int nt = max(pool_threads(), 1)
        cdef Py_ssize_t item = self.dtype.itemsize
        # a small-batch step touches every weight a few times: worth threads only for big nets
        self.ws.small_threads = nt if self.net.size * 4 >= PARALLEL_MIN_WORK else 1
        if n <= self.ws.capacity and nt <= self.part_threads:
            return 0
        n = max(n, <Py_ssize_t>self.ws.capacity)
        if n > 2**31 - 1:
            raise ValueError(f"X: expected at most {2**31 - 1} rows per batch, got {n}")
        offsets, keep_offsets, drop_offsets = [], [], []
        for l in range(L):
            offsets.append(off)
            off += _lines(n * self.net.sizes[l + 1], item)
            widest = max(widest, self.net.sizes[l + 1])
            # the inputs of the activations whose derivative needs them: one more (n, width)
            # each (GELU, SiLU, ELU, Softplus; LeakyReLU with a negative slope)
            keep_offsets.append(kept if bp_act_needs_input(&self.net.act[l]) else -1)
            if keep_offsets[l] >= 0:
                kept += _lines(n * self.net.sizes[l + 1], item)
            # a dropout layer's undropped output and its mask (a byte per element)
            drop_offsets.append(dropped if self.net.drop[l].p > 0 else -1)
            if drop_offsets[l] >= 0:
                dropped += _lines(n * self.net.sizes[l + 1], item)
        rows = min(n, <Py_ssize_t>self.ws.rowsplit_max_batch)
        # all allocated before any is swapped in: a failure leaves the old set whole (the
        # struct's pointers never outlive their arrays)
        try:
            acts = _aligned_empty(off, self.dtype)
            keeps = _aligned_empty(max(kept, 1), self.dtype)
            undropped = _aligned_empty(max(dropped, 1), self.dtype)
            drop_masks = np.empty(max(dropped, 1), np.uint8)
            deltas = _aligned_empty(2 * _lines(n * widest, item), self.dtype)
            tbuf = np.empty(n * self.net.sizes[L], self.dtype)
            lbuf = np.empty(n, np.intp)
            wbuf = np.empty(n, self.dtype)
            parts = _aligned_empty(max(nt * _lines(rows * widest, item), 1), self.dtype)
        except MemoryError:  # the sizes grow with the batch and the threads: say which
            need = dropped + (off + kept + dropped + 2 * n * widest  # the masks: a byte each
                              + n * (self.net.sizes[L] + 1)
                              + nt * rows * widest) * item
            raise MemoryError(f"bpcore's workspace for batches of {n} rows on {nt} threads "
                              f"needs {need:,} bytes, more than this machine can allocate: use "
                              f"smaller batches or fewer threads") from None
        self.acts_ws, self.delta_ws, self.tbuf, self.lbuf = acts, deltas, tbuf, lbuf
        self.wbuf = wbuf
        self.part_ws, self.keep_ws = parts, keeps
        self.undropped_ws, self.mask_ws = undropped, drop_masks
        for l in range(L):
            self.ws.aoff[l] = offsets[l]
            self.ws.zoff[l] = keep_offsets[l]
            self.ws.doff[l] = drop_offsets[l]
        self.ws.acts = _data(self.acts_ws)
        self.ws.keeps = _data(self.keep_ws)
        self.ws.undropped = _data(self.undropped_ws)
        self.ws.masks = <unsigned char *>_data(self.mask_ws)
        self.ws.d0 = _data(self.delta_ws)
        self.ws.d1 = <void *>((<char *>self.ws.d0) + _lines(n * widest, item) * item)
        self.ws.tb = _data(self.tbuf)
        self.ws.lb = <Py_ssize_t *>_data(self.lbuf)
        self.ws.wb = _data(self.wbuf)
        self.ws.partials = _data(self.part_ws)
        self.ws.pstride = _lines(rows * widest, item)
        self.part_threads = nt
        self.ws.capacity = <int>n
        return 0

    cdef int reserve_gather(self, Rows data, int batch_size) except -1:
        """Room for a shuffled batch's gathered rows of X (none for the stored order): batch_size
        dense rows, or for sparse rows the entries of the fullest batch of data's order."""
        cdef Py_ssize_t rows = min(<Py_ssize_t>batch_size, data.N), most = 0, held, start, r, i
        if data.idx == NULL:
            return 0
        if data.sparse.indptr == NULL:
            if self.xbuf is None or self.xbuf.size < rows * self.net.sizes[0]:
                self.xbuf = None  # the old one goes first: the two together may not fit
                self.xbuf = np.empty(rows * self.net.sizes[0], self.dtype)
                self.ws.xb = _data(self.xbuf)
            return 0
        for start in range(0, data.N, batch_size):
            held = 0
            for r in range(start, min(start + batch_size, data.N)):
                i = data.idx[r]
                held += data.sparse.indptr[i + 1] - data.sparse.indptr[i]
            most = max(most, held)
        if self.gather_indptr is None or self.gather_indptr.size < rows + 1:
            self.gather_indptr = np.empty(rows + 1, np.intp)
            self.ws.gather_indptr = <Py_ssize_t *>_data(self.gather_indptr)
        if self.gather_data is None or self.gather_data.size < most:
            self.gather_indices = self.gather_data = None
            self.gather_indices = np.empty(max(most, 1), np.int32)
            self.gather_data = np.empty(max(most, 1), self.dtype)
            self.ws.gather_indices = <int *>_data(self.gather_indices)
            self.ws.gather_data = _data(self.gather_data)
        return 0

    def workspaces(self):
        """{name: array} of the workspace buffers (for the benchmarks' GEMM floor, and the
        tests of what is kept)."""
        return {"acts": self.acts_ws, "deltas": self.delta_ws, "keeps": self.keep_ws,
                "dropout_masks": self.mask_ws}

    cdef int enter(self, Py_ssize_t rows) except -1:
        """Claim the engine for one call and size its workspaces for batches of `rows`."""
        if self.busy:
            raise RuntimeError("this model is already training or predicting in another thread")
        self.busy = True
        try:
            self.reserve(rows)
        except BaseException:
            self.busy = False
            raise
        return 0

    cdef int run(self, Rows data, Job *job) except -1:
        """The one place a native pass runs: the BLAS pinned, the GIL released, the dtype's
        kernels chosen."""
        cdef int pinned, runtime = bp_omp_max_threads()
        with nogil:
            pinned = blas_pin()
            self.ws.threads = pool_threads()
            if job.kind != TRAIN_BATCHES and self.ws.pace.left > 0:
                bp_omp_set_threads(1)  # the steps are paced to one thread now: so are passes
            if self.f64:
                run_job(&self.net, &self.ws, data, job, <const double *>NULL)
            else:
                run_job(&self.net, &self.ws, data, job, <const float *>NULL)
            bp_omp_set_threads(runtime)  # pacing changes this thread's setting: put it back
            blas_unpin(pinned)
        return 0

    cdef void leave(self) noexcept:
        self.busy = False

    cdef object checked_X(self, X, bint check=True):
        """X as this network's input: a C-contiguous (n, inputs) array of its dtype, or a
        CSRMatrix of its dtype and width; n >= 1; finite values unless check is False."""
        if isinstance(X, CSRMatrix):
            if X.dtype != self.dtype:
                raise TypeError(f"X: expected dtype {self.dtype.name}, got {X.dtype.name}")
            if X.shape[1] != self.net.sizes[0] or X.shape[0] == 0:
                raise ValueError(f"X: expected shape (n, {self.net.sizes[0]}) with n >= 1, got "
                                 f"{X.shape}")
            if check:
                check_finite(X.data, "X")
            return X
        cdef cnp.ndarray Xa = _arr(X, "X", self.typenum, 2, -1, self.net.sizes[0])
        if Xa.shape[0] == 0:
            raise ValueError(f"X: expected at least one row, got shape {X.shape}")
        if check:
            check_finite(Xa, "X")
        return Xa

    cdef object checked_target(self, target, Py_ssize_t n, int kind, bint check=True):
        """target checked for the loss kind: finite values, or labels in range (always:
        a label out of range would be read out of bounds)."""
        cdef int c = self.net.sizes[self.net.L]
        if kind == XENT_LABELS:
            T = _arr(target, "target", cnp.NPY_INTP, 1, n, -1)
            _check_labels(T, c)
        elif kind == MSE or kind == XENT_PROBS:
            T = _arr(target, "target", self.typenum, 2, n, c)
            if check:
                check_finite(T, "target")
        elif kind == BCE_LOGITS or kind == POISSON:
            T = _arr(target, "target", self.typenum, 2, n, c)
            if check:
                _check_targets(T, kind)  # finite, and in the loss's range
        else:
            raise ValueError(f"loss_kind: expected a LossKind, got {kind}")
        return T

    cdef Rows rows_of(self, object X, cnp.ndarray T, int kind, object order=None,
                      object weights=None) except *:
        """The rows of X (checked_X's) with their targets and sample weights (None: 1; values
        are the caller's to check, the shape is checked here), in the given order."""
        cdef Rows r
        r.N, r.idx, r.batch_size = X.shape[0], NULL, X.shape[0]
        r.X, r.sparse.indptr, r.sparse.indices, r.sparse.data = NULL, NULL, NULL, NULL
        if isinstance(X, CSRMatrix):
            r.sparse.indptr = <const Py_ssize_t *>_data(<cnp.ndarray>X.indptr)
            r.sparse.indices = <const int *>_data(<cnp.ndarray>X.indices)
            r.sparse.data = _data(<cnp.ndarray>X.data)
        else:
            r.X = _data(<cnp.ndarray>X)
        r.all.T = _data(T) if kind != XENT_LABELS else NULL
        r.all.labels = <const Py_ssize_t *>_data(T) if kind == XENT_LABELS else NULL
        r.all.weights = NULL
        if weights is not None:
            r.all.weights = _data(_arr(weights, "sample_weight", self.typenum, 1, X.shape[0], -1))
        if order is not None:
            idx = _arr(order, "order", cnp.NPY_INTP, 1, X.shape[0], -1)
            _check_labels(idx, X.shape[0], "order")
            r.idx = <const Py_ssize_t *>_data(idx)
        return r

    cdef Optimizer *optimizer_of(self, OptimizerState opt) except NULL:
        """opt's struct, once checked to update exactly this network's flat buffers."""
        cdef Optimizer *o = opt.get()
        cdef Py_ssize_t item = self.dtype.itemsize
        fits = (opt.dtype == self.dtype and o.nparams == 2 * self.net.L
                and o.size == self.params.size)
        for data, grad, at, group in opt.runs:
            fits = fits and (<size_t>data.ctypes.data == <size_t>self.net.P + at * item
                             and <size_t>grad.ctypes.data == <size_t>self.net.G + at * item)
        if not fits:
            raise ValueError("optimizer: expected one over all of this model's parameters, in "
                             "order (e.g. SGD(model, ...)), got one over other parameters")
        return o

    cdef StepConf step_conf(self, int kind, int reduction, double max_grad_norm,
                            object pos_weight=None) except *:
        """The step's settings, checked. pos_weight (BCE_LOGITS only: None or a (outputs,)
        array of the dtype) is pointed to, not copied: the caller keeps it alive while the
        StepConf is used."""
        cdef StepConf sc
        if not _valid_reduction(kind, reduction):
            raise ValueError(f"reduction: expected a Reduction valid for the loss, got {reduction}")
        if not max_grad_norm >= 0:
            raise ValueError(f"max_grad_norm: expected a number >= 0, got {max_grad_norm}")
        sc.loss.kind, sc.loss.reduction, sc.max_grad_norm = kind, reduction, max_grad_norm
        sc.loss.pos_weight = NULL
        sc.team.reduce, sc.team.ctx, sc.team.step = NULL, NULL, 0
        sc.team.weight, sc.team.per, sc.team.first_row = NULL, NULL, NULL
        if pos_weight is not None:
            if kind != BCE_LOGITS:
                raise ValueError(f"pos_weight: expected None for loss kind {kind} (only "
                                 f"BCE_LOGITS weighs its outputs), got an array")
            sc.loss.pos_weight = _data(_arr(pos_weight, "pos_weight", self.typenum, 1,
                                            self.net.sizes[self.net.L], -1))
        return sc

    def check_data(self, X, target, int loss_kind):
        """Raise unless X and target fit this network and the loss, with finite values and
        labels in range (fit checks once, then runs its epochs with check=False)."""
        Xa = self.checked_X(X)
        self.checked_target(target, Xa.shape[0], loss_kind)

    def train_step(self, X, target, int loss_kind, int reduction, OptimizerState optimizer,
                   double max_grad_norm=0, pos_weight=None, sample_weight=None, team=None):
        """One fused step on the batch X; returns the loss (of the weights before the step).
        pos_weight: BCE_LOGITS's per-output weights of the positive term, or None;
        sample_weight: the rows' weights (n,), or None; team: see run_epoch (one step; the
        loss returned is then this process's share of the whole batch's)."""
        cdef object Xa = self.checked_X(X)
        cdef cnp.ndarray T = self.checked_target(target, Xa.shape[0], loss_kind)
        cdef Rows rows = self.rows_of(Xa, T, loss_kind, None, sample_weight)
        cdef double weight = (weight_sum(<int>rows.N, <const double *>rows.all.weights)
                              if self.f64 else
                              weight_sum(<int>rows.N, <const float *>rows.all.weights))
        cdef StepConf conf = self.step_conf(loss_kind, reduction, max_grad_norm, pos_weight)
        if team is not None:
            self.team_of(team, 1, &conf)
            weight = team.weight[0]
        cdef double total
        try:
            total = self._train(rows, <int>rows.N, conf, optimizer, 1)
        finally:
            self.reducer = None
        if reduction == MEAN:  # _train weights each batch's mean by its rows' weight
            return total / weight if weight > 0 else 0.0
        return total

    cdef int team_of(self, object team, int steps, StepConf *conf) except -1:
        """Point conf's Team at `team`, a data-parallel plan for `steps` steps: a callable
        team.reduce() (True once the flat gradient buffer holds its sum over the processes)
        and float64 arrays team.weight, team.per and intp team.first_row of `steps` values
        (bpcore/_engine.pxd: Team). The caller keeps team alive while conf is used."""
        if not callable(team.reduce):
            raise TypeError(f"team.reduce: expected a callable, got {type(team.reduce).__name__}")
        plan = [_arr(team.weight, "team.weight", cnp.NPY_FLOAT64, 1, -1, -1),
                _arr(team.per, "team.per", cnp.NPY_FLOAT64, 1, -1, -1),
                _arr(team.first_row, "team.first_row", cnp.NPY_INTP, 1, -1, -1)]
        if min([a.shape[0] for a in plan]) < steps:
            raise ValueError(f"team: expected a plan of at least {steps} steps, got "
                             f"{[a.shape[0] for a in plan]}")
        conf.team.weight = <const double *>_data(plan[0])
        conf.team.per = <const double *>_data(plan[1])
        conf.team.first_row = <const Py_ssize_t *>_data(plan[2])
        self.reducer = team.reduce  # kept: conf points at it while the run lasts
        conf.team.reduce, conf.team.ctx = _call_reduce, <void *>self.reducer
        return 0

    def run_epoch(self, X, target, int loss_kind, int reduction, order, int batch_size,
                  OptimizerState optimizer, double max_grad_norm=0, bint check=True,
                  int batches=-1, pos_weight=None, sample_weight=None, progress=None,
                  team=None):
        """Train one epoch over the rows of X in the given order (an intp permutation, or None
        for the stored order); returns the summed batch losses, each weighted by its rows for
        mean reductions. Between every few batches it checks for Ctrl-C, raising
        KeyboardInterrupt with the model consistent (only whole batches are applied), and
        calls ``progress(batches done, batches in the pass)`` if given (it runs there, where
        the loop holds the GIL anyway, so a display costs nothing while the batches run).
        check=False skips the pass over the data for finite values; batches >= 0 runs only the
        epoch's first `batches` batches (the replay of an epoch up to a failed step).
        pos_weight and sample_weight (all rows', in the stored order) as for train_step; mean
        batch losses are weighted by their rows' summed weight.

        team (bpcore.distributed's plan of a data-parallel epoch, see team_of) runs the epoch
        as one of several processes: exactly `batches` steps (a process whose rows run out
        steps on none, sharing the others' gradient), each step's gradient summed over the
        processes before its update; the loss returned is this process's share of the
        epoch's (mean batch losses weighted by each whole batch's weight)."""
        cdef object Xa = self.checked_X(X, check)
        cdef cnp.ndarray T = self.checked_target(target, Xa.shape[0], loss_kind, check)
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size}")
        cdef StepConf conf = self.step_conf(loss_kind, reduction, max_grad_norm, pos_weight)
        if team is not None:
            if batches < 0:
                raise ValueError(f"batches: expected the team's step count, got {batches}")
            self.team_of(team, batches, &conf)
        try:
            return self._train(self.rows_of(Xa, T, loss_kind, order, sample_weight),
                               batch_size, conf, optimizer, batches, progress)
        finally:
            self.reducer = None

    cdef double _train(self, Rows data, int batch_size, StepConf conf, OptimizerState optimizer,
                       int batches=-1, object progress=None) except? -1:
        """Steps over checked rows in batches of batch_size, returning to Python every
        SIGNAL_EVERY batches for Ctrl-C (and progress(done, batches), if not None). A step that meets a NaN or an infinity ends the pass;
        ``failure`` then says what and in which batch (the loss returned covers the batches
        before it)."""
        cdef Job job
        cdef int nb = <int>((data.N + batch_size - 1) // batch_size)
        if conf.team.reduce != NULL:
            nb = batches  # every process steps as often as the others
        elif batches >= 0:
            nb = min(nb, batches)
        job.kind, job.conf = TRAIN_BATCHES, conf
        job.opt, job.total, job.failed = self.optimizer_of(optimizer), 0, -1
        data.batch_size = batch_size
        self.failure = None
        self.enter(min(<Py_ssize_t>batch_size, data.N))
        try:
            self.reserve_gather(data, batch_size)
            job.first = 0
            while job.first < nb:
                job.last = min(job.first + SIGNAL_EVERY, nb)
                self.run(data, &job)
                if job.failed >= 0:
                    self.failure = (_FAILURES[job.failure], job.failed)
                    break
                job.first = job.last
                PyErr_CheckSignals()  # raises KeyboardInterrupt after a whole batch
                if progress is not None:
                    progress(job.last, nb)
        finally:
            self.leave()
        return job.total

    def predict(self, X, out):
        """out (n, outputs) = the network's output for X, computed in chunks of rows."""
        cdef object Xa = self.checked_X(X)
        cdef cnp.ndarray O = _arr(out, "out", self.typenum, 2, Xa.shape[0],
                                  self.net.sizes[self.net.L], True)
        cdef Job job
        job.kind, job.out = PREDICT, _data(O)
        self._pass(Xa, O, MSE, &job)
        return out

    def evaluate(self, X, target, int loss_kind, pos_weight=None, sample_weight=None):
        """(summed loss, summed weight of the rows right: see evaluate_rows) over all rows of
        X, in chunks; without sample weights the weight of a row is 1."""
        cdef object Xa = self.checked_X(X)
        cdef Job job
        job.kind, job.correct = EVALUATE, 0
        job.conf = self.step_conf(loss_kind, SUM, 0, pos_weight)
        self._pass(Xa, self.checked_target(target, Xa.shape[0], loss_kind), loss_kind, &job,
                   sample_weight)
        return job.total, job.correct

    def loss_and_gradient(self, X, target, int loss_kind, double scale, pos_weight=None,
                          sample_weight=None):
        """scale times the loss summed over all rows of X (each weighted by its sample weight),
        with its gradient written into the flat gradient buffer (replacing it); in chunks of
        rows, no per-row Python. (A loss's reduction is a scale of the sum: the caller's loss
        object knows which.)"""
        cdef object Xa = self.checked_X(X)
        cdef Job job
        job.kind, job.scale = GRADIENT, scale
        job.conf = self.step_conf(loss_kind, SUM, 0, pos_weight)
        self._pass(Xa, self.checked_target(target, Xa.shape[0], loss_kind), loss_kind, &job,
                   sample_weight)
        return job.total

    cdef int _pass(self, object X, cnp.ndarray T, int kind, Job *job,
                   object weights=None) except -1:
        """One job over all rows of X, in chunks of the workspace's capacity."""
        cdef Rows data = self.rows_of(X, T, kind, None, weights)
        self.enter(min(data.N, <Py_ssize_t>PREDICT_CHUNK))
        try:
            self.run(data, job)
        finally:
            self.leave()
        return 0
