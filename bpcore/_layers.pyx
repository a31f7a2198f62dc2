# cython: language_level=3
"""Dense and activation kernels (fused float32/float64), and the Python-callable entry points
that the layer API uses. The entry points check shapes themselves, so a wrong call raises
instead of writing out of bounds; the user-facing messages come from bpcore.layers.

Each GEMM runs in parts, one per thread (see bpcore._threads), and each thread applies the
elementwise work to the block it just computed, while that block is in its cache.
"""
from cython.parallel cimport parallel, prange, threadid
from libc.stdint cimport uint32_t, uint64_t
from libc.string cimport memset

from bpcore._blas cimport Block, NoTrans, Trans, matmul_part
from bpcore._simd cimport BP_DROP_STEP, bp_act_needs_input, bp_drop_hash, bp_simd_table, simd
from bpcore._checks cimport require
from bpcore._losses cimport softmax_row
from bpcore._threads cimport (blas_pin, blas_unpin, bp_omp_team_size, even_share, gemm_parts,
                              team_for, threads_for)

cdef bp_simd_table *K = simd()

cdef enum:
    ELEMENT_BLOCK = 8192  # elements per task of a flat elementwise loop
    N_ACTIVATIONS = 11


# ---- row-segment loops over a block (rows r0:r1, columns c0:c1, row stride ld) ----

cdef void act_rows(Block blk, int ld, const floating *Z, const floating *b, floating *A,
                   floating *keep, const ActSpec *act) noexcept nogil:
    """A = act(Z + b) on the block (b indexed by column; NULL for no bias); Z + b into keep
    unless it is NULL."""
    cdef Py_ssize_t r, off
    for r in range(blk.r0, blk.r1):
        off = r * ld + blk.c0
        if floating is float:
            K.act_f32(blk.c1 - blk.c0, Z + off, b + blk.c0 if b != NULL else NULL, A + off,
                      keep + off if keep != NULL else NULL, act)
        else:
            K.act_f64(blk.c1 - blk.c0, Z + off, b + blk.c0 if b != NULL else NULL, A + off,
                      keep + off if keep != NULL else NULL, act)


cdef void dact_rows(Block blk, int ld, const floating *A, const floating *Z,
                    const floating *dA, floating *dZ, const ActSpec *act) noexcept nogil:
    """dZ = dA * act'(.) from the output A (or the kept input Z), on the block."""
    cdef Py_ssize_t r, off
    for r in range(blk.r0, blk.r1):
        off = r * ld + blk.c0
        if floating is float:
            K.dact_f32(blk.c1 - blk.c0, A + off, Z + off if Z != NULL else NULL, dA + off,
                       dZ + off, act)
        else:
            K.dact_f64(blk.c1 - blk.c0, A + off, Z + off if Z != NULL else NULL, dA + off,
                       dZ + off, act)


cdef void begin_drop(DropSpec *drop) noexcept nogil:
    # a key per (seed, mask count), each mixed twice: neighbouring seeds and steps get
    # unrelated streams
    drop.key = bp_drop_hash(bp_drop_hash(drop.state[0]) + (drop.state[1] + 1) * BP_DROP_STEP)
    drop.state[1] += 1


cdef void drop_rows(Block blk, int ld, const floating *U, floating *A, unsigned char *mask,
                    const DropSpec *drop) noexcept nogil:
    cdef Py_ssize_t r, off, first = drop.first_row * ld  # the mask's element of row 0
    cdef floating scale = <floating>(1 / (1 - drop.p))
    for r in range(blk.r0, blk.r1):
        off = r * ld + blk.c0
        if floating is float:
            K.drop_f32(blk.c1 - blk.c0, U + off, A + off, mask + off, drop.key, first + off,
                       drop.threshold, scale)
        else:
            K.drop_f64(blk.c1 - blk.c0, U + off, A + off, mask + off, drop.key, first + off,
                       drop.threshold, scale)


cdef void undrop_rows(Block blk, int ld, const unsigned char *mask, const DropSpec *drop,
                      floating *d) noexcept nogil:
    cdef Py_ssize_t r, off
    cdef floating scale = <floating>(1 / (1 - drop.p))
    for r in range(blk.r0, blk.r1):
        off = r * ld + blk.c0
        if floating is float:
            K.undrop_f32(blk.c1 - blk.c0, mask + off, scale, d + off)
        else:
            K.undrop_f64(blk.c1 - blk.c0, mask + off, scale, d + off)


cdef void colsum_rows(int rows, int c0, int c1, int ld, const floating *D,
                      floating *out) noexcept nogil:
    """out[c0:c1] += D[:rows, c0:c1].sum(0)."""
    if floating is float:
        K.colsum_f32(c1 - c0, rows, D + c0, ld, out + c0)
    else:
        K.colsum_f64(c1 - c0, rows, D + c0, ld, out + c0)


# ---- dense layer ----

cdef inline void _forward_epilogue(Block blk, const DenseLayer *layer,
                                   floating *Z) noexcept nogil:
    """Bias, activation (keeping its input where its derivative needs it) and dropout on the
    block of Z = X W just formed, while it is in cache."""
    cdef int fo = layer.fan_out
    if layer.drop == NULL:
        act_rows(blk, fo, Z, <const floating *>layer.b, Z, <floating *>layer.keep, layer.act)
        return
    act_rows(blk, fo, Z, <const floating *>layer.b, <floating *>layer.undropped,
             <floating *>layer.keep, layer.act)
    drop_rows(blk, fo, <const floating *>layer.undropped, Z, layer.drop_mask, layer.drop)


cdef inline void _forward_part(int part, int nparts, const DenseLayer *layer, int n,
                               const floating *X, floating *Z) noexcept nogil:
    cdef int fi = layer.fan_in, fo = layer.fan_out
    cdef Block blk = matmul_part(NoTrans, NoTrans, n, fo, fi, <floating>1, X, fi,
                                 <const floating *>layer.W, fo, <floating>0, Z, fo, part, nparts)
    _forward_epilogue(blk, layer, Z)


cdef void dense_forward(const DenseLayer *layer, int n, const floating *X,
                        floating *Z) noexcept nogil:
    cdef int p, team, parts = gemm_parts(n, layer.fan_out, layer.fan_in)
    if team_for(parts) == 1:
        for p in range(parts):
            _forward_part(p, parts, layer, n, X, Z)
    else:
        with parallel(num_threads=team_for(parts)):
            p, team = threadid(), bp_omp_team_size()
            while p < parts:
                _forward_part(p, parts, layer, n, X, Z)
                p = p + team
    if layer.act.kind == SOFTMAX:  # the parts are blocks of columns: rows are whole only now
        softmax_rows(n, layer.fan_out, Z)


cdef inline void _backward_part(int part, int nparts, const DenseLayer *layer, int n,
                                const floating *X, const floating *dZ,
                                floating *dX) noexcept nogil:
    cdef int fi = layer.fan_in, fo = layer.fan_out, c0, c1
    cdef floating *dW = <floating *>layer.dW
    cdef const floating *mask = <const floating *>layer.mask
    cdef Py_ssize_t r, j
    # each part writes its own rows of dW, its own columns of db and its own block of dX
    cdef Block blk = matmul_part(Trans, NoTrans, fi, fo, n, <floating>1, X, fi, dZ, fo,
                                 <floating>1, dW, fo, part, nparts)
    if mask != NULL:
        for r in range(blk.r0, blk.r1):
            for j in range(blk.c0, blk.c1):
                dW[r * fo + j] *= mask[r * fo + j]
    even_share(fo, part, nparts, &c0, &c1)
    colsum_rows(n, c0, c1, fo, dZ, <floating *>layer.db)
    if dX != NULL:
        matmul_part(NoTrans, Trans, n, fi, fo, <floating>1, dZ, fo, <const floating *>layer.W,
                    fo, <floating>0, dX, fi, part, nparts)


cdef void dense_backward(const DenseLayer *layer, int n, const floating *X,
                         const floating *dZ, floating *dX) noexcept nogil:
    cdef int p, team, parts = gemm_parts(layer.fan_in, layer.fan_out, n)
    if team_for(parts) == 1:
        for p in range(parts):
            _backward_part(p, parts, layer, n, X, dZ, dX)
        return
    with parallel(num_threads=team_for(parts)):
        p, team = threadid(), bp_omp_team_size()
        while p < parts:
            _backward_part(p, parts, layer, n, X, dZ, dX)
            p = p + team


# ---- the first layer of a sparse X (CSR rows) ----

cdef inline void _axpy(int n, floating a, const floating *x, floating *y) noexcept nogil:
    """y[:n] += a * x[:n], with the SIMD table's loop (a one-row outer product)."""
    if floating is float:
        K.outer_f32(n, 1, 0, &a, x, 0, y)
    else:
        K.outer_f64(n, 1, 0, &a, x, 0, y)


cdef void csr_forward_rows(const DenseLayer *layer, int r0, int r1, CSR x,
                           floating *Z) noexcept nogil:
    cdef int r, fo = layer.fan_out
    cdef Py_ssize_t k
    cdef const floating *W = <const floating *>layer.W
    cdef const floating *v = <const floating *>x.data
    cdef floating *z
    cdef Block blk
    if r1 <= r0:
        return
    for r in range(r0, r1):
        z = Z + <Py_ssize_t>r * fo
        memset(z, 0, fo * sizeof(floating))
        for k in range(x.indptr[r], x.indptr[r + 1]):
            _axpy(fo, v[k], W + <Py_ssize_t>x.indices[k] * fo, z)
    blk.r0, blk.r1, blk.c0, blk.c1 = r0, r1, 0, fo
    # the epilogue of the dense forward part, on these rows (dropout masks are counter-based:
    # the same whatever the split)
    _forward_epilogue(blk, layer, Z)


cdef inline void _csr_forward_share(int tid, int team, const DenseLayer *layer, int n, CSR x,
                                    floating *Z) noexcept nogil:
    cdef int r0, r1
    even_share(n, tid, team, &r0, &r1)
    csr_forward_rows(layer, r0, r1, x, Z)


cdef void csr_forward(const DenseLayer *layer, int n, CSR x, floating *Z) noexcept nogil:
    cdef int tid, team
    # the work is a multiply-add per entry and output, and the epilogue per output
    cdef int nt = threads_for((x.indptr[n] - x.indptr[0] + n) * <Py_ssize_t>layer.fan_out)
    if nt == 1:
        csr_forward_rows(layer, 0, n, x, Z)
    else:
        with parallel(num_threads=nt):
            tid, team = threadid(), bp_omp_team_size()
            _csr_forward_share(tid, team, layer, n, x, Z)
    if layer.act.kind == SOFTMAX:
        softmax_rows(n, layer.fan_out, Z)


cdef void csr_gradient_rows(CSR x, int n, int fo, int c0, int c1, const floating *dZ,
                            floating *dW) noexcept nogil:
    cdef int r, c
    cdef Py_ssize_t k
    cdef const floating *v = <const floating *>x.data
    # every thread reads all the entries and takes those of its rows of dW: no two threads
    # write one row, and each row adds its terms in the stored order whatever the split
    for r in range(n):
        for k in range(x.indptr[r], x.indptr[r + 1]):
            c = x.indices[k]
            if c0 <= c < c1:
                _axpy(fo, v[k], dZ + <Py_ssize_t>r * fo, dW + <Py_ssize_t>c * fo)


cdef inline void _csr_backward_share(int tid, int team, const DenseLayer *layer, int n, CSR x,
                                     const floating *dZ) noexcept nogil:
    cdef int fo = layer.fan_out, r0, r1, c0, c1
    cdef floating *dW = <floating *>layer.dW
    cdef const floating *mask = <const floating *>layer.mask
    cdef Py_ssize_t i
    even_share(layer.fan_in, tid, team, &r0, &r1)
    csr_gradient_rows(x, n, fo, r0, r1, dZ, dW)
    if mask != NULL:
        for i in range(<Py_ssize_t>r0 * fo, <Py_ssize_t>r1 * fo):
            dW[i] *= mask[i]
    even_share(fo, tid, team, &c0, &c1)
    colsum_rows(n, c0, c1, fo, dZ, <floating *>layer.db)


cdef void csr_backward(const DenseLayer *layer, int n, CSR x, const floating *dZ) noexcept nogil:
    cdef int tid, team
    cdef int nt = threads_for(<Py_ssize_t>layer.fan_in * layer.fan_out
                              + (x.indptr[n] - x.indptr[0]) * <Py_ssize_t>layer.fan_out)
    if nt == 1:
        _csr_backward_share(0, 1, layer, n, x, dZ)
        return
    with parallel(num_threads=nt):
        tid, team = threadid(), bp_omp_team_size()
        _csr_backward_share(tid, team, layer, n, x, dZ)


# ---- activations over whole arrays ----

cdef inline Block _flat_block(Py_ssize_t left) noexcept nogil:
    """One row of min(ELEMENT_BLOCK, left) elements."""
    cdef Block blk
    blk.r0, blk.r1, blk.c0, blk.c1 = 0, 1, 0, <int>min(<Py_ssize_t>ELEMENT_BLOCK, left)
    return blk


cdef void activation_forward(const ActSpec *act, int rows, int c, const floating *Z,
                             floating *A) noexcept nogil:
    cdef Py_ssize_t size = <Py_ssize_t>rows * c
    cdef Py_ssize_t blk, start, nblk = (size + ELEMENT_BLOCK - 1) // ELEMENT_BLOCK
    for blk in prange(nblk, num_threads=threads_for(size), schedule="static"):
        start = blk * ELEMENT_BLOCK
        act_rows(_flat_block(size - start), 0, Z + start,
                 <const floating *>NULL, A + start, <floating *>NULL, act)
    if act.kind == SOFTMAX:
        softmax_rows(rows, c, A)


cdef void activation_backward(const ActSpec *act, int rows, int c, const floating *A,
                              const floating *Z, const floating *dA,
                              floating *dZ) noexcept nogil:
    cdef Py_ssize_t size = <Py_ssize_t>rows * c
    cdef Py_ssize_t blk, start, nblk = (size + ELEMENT_BLOCK - 1) // ELEMENT_BLOCK
    if act.kind == SOFTMAX:
        softmax_backward_rows(rows, c, A, dA, dZ)
        return
    for blk in prange(nblk, num_threads=threads_for(size), schedule="static"):
        start = blk * ELEMENT_BLOCK
        dact_rows(_flat_block(size - start), 0, A + start,
                  Z + start if Z != NULL else NULL, dA + start, dZ + start, act)


cdef void softmax_rows(int rows, int c, floating *A) noexcept nogil:
    cdef Py_ssize_t i
    for i in prange(rows, num_threads=threads_for(<Py_ssize_t>rows * c * 8),
                    schedule="static"):
        softmax_row(c, A + i * c, A + i * c)


cdef void softmax_backward_rows(int rows, int c, const floating *A, const floating *dA,
                                floating *dZ) noexcept nogil:
    cdef Py_ssize_t i, at
    cdef int j
    cdef floating dot
    for i in prange(rows, num_threads=threads_for(<Py_ssize_t>rows * c * 4),
                    schedule="static"):
        at = i * c
        dot = 0
        for j in range(c):
            dot = dot + dA[at + j] * A[at + j]
        for j in range(c):
            dZ[at + j] = A[at + j] * (dA[at + j] - dot)


# ---- Python-callable entry points ----

cdef ActSpec _spec(int act, double p0, double p1) except *:
    cdef ActSpec spec
    require(0 <= act < N_ACTIVATIONS, f"act: expected 0..{N_ACTIVATIONS - 1}, got {act}")
    spec.kind, spec.p0, spec.p1 = act, p0, p1
    return spec


def needs_input(int act, double p0=0, double p1=0):
    """True if the activation's derivative is computed from its input (which the forward pass
    then keeps), False if from its output."""
    cdef ActSpec spec = _spec(act, p0, p1)
    return bool(bp_act_needs_input(&spec))


def py_dense_forward(const floating[:, ::1] X, const floating[:, ::1] W,
                     const floating[::1] b, floating[:, ::1] Z, int act=IDENTITY,
                     double p0=0, double p1=0, floating[:, ::1] keep=None):
    """Z = act(X @ W + b), written into Z; X @ W + b into keep unless it is None."""
    cdef int n = X.shape[0], fi = X.shape[1], fo = W.shape[1], pinned
    cdef ActSpec spec = _spec(act, p0, p1)
    require(W.shape[0] == fi, f"W: expected {fi} rows, got {W.shape[0]}")
    require(b.shape[0] == fo, f"b: expected length {fo}, got {b.shape[0]}")
    require(Z.shape[0] == n and Z.shape[1] == fo, f"Z: expected shape ({n}, {fo})")
    require(keep is None or (keep.shape[0] == n and keep.shape[1] == fo),
            f"keep: expected shape ({n}, {fo})")
    if n == 0 or fo == 0:
        return
    cdef const floating *pX = &X[0, 0] if fi else NULL
    cdef DenseLayer layer
    layer.fan_in, layer.fan_out, layer.act = fi, fo, &spec
    layer.W, layer.b = &W[0, 0] if fi else NULL, &b[0]
    layer.dW, layer.db, layer.mask = NULL, NULL, NULL
    layer.keep = &keep[0, 0] if keep is not None else NULL
    layer.drop, layer.undropped, layer.drop_mask = NULL, NULL, NULL
    with nogil:
        pinned = blas_pin()
        dense_forward(&layer, n, pX, &Z[0, 0])
        blas_unpin(pinned)


def py_dense_backward(const floating[:, ::1] X, const floating[:, ::1] W,
                      const floating[:, ::1] dZ, floating[:, ::1] dW, floating[::1] db,
                      floating[:, ::1] dX=None, const floating[:, ::1] mask=None):
    """Accumulate dW and db; write dX unless it is None; apply mask to dW if given."""
    cdef int n = X.shape[0], fi = X.shape[1], fo = W.shape[1], pinned
    cdef ActSpec identity = _spec(IDENTITY, 0, 0)
    require(W.shape[0] == fi, f"W: expected {fi} rows, got {W.shape[0]}")
    require(dZ.shape[0] == n and dZ.shape[1] == fo, f"dZ: expected shape ({n}, {fo})")
    require(dW.shape[0] == fi and dW.shape[1] == fo, f"dW: expected shape ({fi}, {fo})")
    require(db.shape[0] == fo, f"db: expected length {fo}")
    require(dX is None or (dX.shape[0] == n and dX.shape[1] == fi),
             f"dX: expected shape ({n}, {fi})")
    require(mask is None or (mask.shape[0] == fi and mask.shape[1] == fo),
             f"mask: expected shape ({fi}, {fo})")
    if fo == 0 or (n == 0 and mask is None):
        return
    cdef floating *pdX = NULL
    cdef const floating *pX = &X[0, 0] if n and fi else NULL
    cdef const floating *pdZ = &dZ[0, 0] if n else NULL
    cdef DenseLayer layer
    layer.fan_in, layer.fan_out, layer.act = fi, fo, &identity
    layer.W, layer.b = &W[0, 0] if fi else NULL, NULL
    layer.dW, layer.db = &dW[0, 0] if fi else NULL, &db[0]
    layer.mask = &mask[0, 0] if mask is not None and fi else NULL
    layer.keep, layer.drop, layer.undropped, layer.drop_mask = NULL, NULL, NULL, NULL
    if dX is not None and n and fi:
        pdX = &dX[0, 0]
    with nogil:
        pinned = blas_pin()
        dense_backward(&layer, n, pX, pdZ, pdX)
        blas_unpin(pinned)


def py_activation_forward(int act, const floating[:, ::1] Z, floating[:, ::1] A,
                          double p0=0, double p1=0):
    """A = act(Z) (row-wise for SOFTMAX)."""
    cdef ActSpec spec = _spec(act, p0, p1)
    require(A.shape[0] == Z.shape[0] and A.shape[1] == Z.shape[1],
            f"A: expected shape ({Z.shape[0]}, {Z.shape[1]})")
    if Z.shape[0] == 0 or Z.shape[1] == 0:
        return
    with nogil:
        activation_forward(&spec, Z.shape[0], Z.shape[1], &Z[0, 0], &A[0, 0])


def py_activation_backward(int act, const floating[:, ::1] A, const floating[:, ::1] dA,
                           floating[:, ::1] dZ, const floating[:, ::1] Z=None,
                           double p0=0, double p1=0):
    """dZ = dA * act'(.) from the forward output A, or from its input Z for an activation
    that needs it (needs_input)."""
    cdef ActSpec spec = _spec(act, p0, p1)
    cdef int n = A.shape[0], c = A.shape[1]
    require(dA.shape[0] == n and dA.shape[1] == c and dZ.shape[0] == n and dZ.shape[1] == c,
            f"dA, dZ: expected shape ({n}, {c})")
    require(Z is not None or not bp_act_needs_input(&spec),
            "Z: expected the activation's input, got None")
    require(Z is None or (Z.shape[0] == n and Z.shape[1] == c), f"Z: expected shape ({n}, {c})")
    if n == 0 or c == 0:
        return
    cdef const floating *pZ = &Z[0, 0] if Z is not None else NULL
    with nogil:
        activation_backward(&spec, n, c, &A[0, 0], pZ, &dA[0, 0], &dZ[0, 0])


cdef DropSpec drop_spec(double p, uint64_t *state) noexcept nogil:
    cdef DropSpec drop
    drop.p, drop.state, drop.key, drop.first_row = p, state, 0, 0
    drop.threshold = <uint32_t>min(p * 4294967296.0, 4294967295.0)  # P(drop) = p to 2^-32
    return drop


def py_dropout(double p, uint64_t[::1] state, const floating[:, ::1] U, floating[:, ::1] A,
               unsigned char[:, ::1] mask):
    """A = U * mask / (1 - p) with the next mask of the dropout layer whose (seed, draws) is
    state (advanced by one); the mask into mask."""
    require(0 <= p < 1, f"p: expected a probability in [0, 1), got {p}")
    require(state.shape[0] == 2, f"state: expected (seed, draws), got {state.shape[0]} values")
    cdef DropSpec drop = drop_spec(p, &state[0])
    cdef int n = U.shape[0], c = U.shape[1]
    require(A.shape[0] == n and A.shape[1] == c and mask.shape[0] == n and mask.shape[1] == c,
            f"A, mask: expected shape ({n}, {c})")
    begin_drop(&drop)
    if n == 0 or c == 0:
        return
    with nogil:
        drop_rows(_block_of(n, c), c, &U[0, 0], &A[0, 0], &mask[0, 0], &drop)


def py_undrop(double p, const unsigned char[:, ::1] mask, floating[:, ::1] d):
    """d *= mask / (1 - p), in place."""
    require(0 <= p < 1, f"p: expected a probability in [0, 1), got {p}")
    cdef DropSpec drop = drop_spec(p, NULL)  # undropping reads the scale alone
    cdef int n = d.shape[0], c = d.shape[1]
    require(mask.shape[0] == n and mask.shape[1] == c, f"mask: expected shape ({n}, {c})")
    if n == 0 or c == 0:
        return
    with nogil:
        undrop_rows(_block_of(n, c), c, &mask[0, 0], &drop, &d[0, 0])


cdef inline Block _block_of(int rows, int c) noexcept nogil:
    cdef Block blk
    blk.r0, blk.r1, blk.c0, blk.c1 = 0, rows, 0, c
    return blk
