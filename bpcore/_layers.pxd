# Dense-layer and activation kernels: one function per layer forward and backward.
from cython cimport floating
from libc.stdint cimport uint32_t, uint64_t

from bpcore._blas cimport Block
from bpcore._simd cimport bp_act

cpdef enum Activation:
    IDENTITY = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3
    LEAKY_RELU = 4     # p0: negative slope
    ELU = 5            # p0: alpha
    GELU = 6           # exact (erf) form
    GELU_TANH = 7      # tanh approximation
    SILU = 8
    SOFTPLUS = 9       # p0: beta, p1: threshold
    SOFTMAX = 10       # over each row: an output layer only

# an activation with its settings (csrc/bp_simd.h)
ctypedef bp_act ActSpec

# inverted dropout after a layer (csrc/bp_simd.h: bp_drop_hash): element i of a step's mask is
# kept when the top 32 bits of its draw are >= threshold; kept values are scaled by 1 / (1 - p)
ctypedef struct DropSpec:
    double p               # 0: none
    uint32_t threshold     # p * 2^32
    uint64_t *state        # the Dropout layer's (seed, masks drawn so far)
    uint64_t key           # the step's: set by begin_drop
    Py_ssize_t first_row   # the row of the whole batch that row 0 of this process's rows is
                           # (a data-parallel step's rows are part of one batch over all
                           # processes: their masks are the masks of those rows in that batch)

# one dense layer: its shape, its weights and gradients (of the caller's dtype), its activation
ctypedef struct DenseLayer:
    int fan_in
    int fan_out
    const ActSpec *act     # applied by dense_forward; dense_backward takes dZ after it
    const void *W          # (fan_in, fan_out)
    const void *b          # (fan_out,)
    void *dW               # (fan_in, fan_out), accumulated
    void *db               # (fan_out,), accumulated
    const void *mask       # (fan_in, fan_out) of 0/1, or NULL
    void *keep             # (n, fan_out): where dense_forward keeps X @ W + b, or NULL
    const DropSpec *drop   # dropout after the activation (training only), or NULL; then
    void *undropped        # (n, fan_out): where the activation's output is kept, and
    unsigned char *drop_mask  # (n, fan_out): the step's dropout mask

# rows of a sparse X (n, fi) in compressed sparse row form: row r's entries are
# indptr[r] .. indptr[r + 1] - 1 of indices (their columns) and data (their values, of the
# network's dtype); indptr[0] need not be 0 (a view of rows of a larger matrix). Columns may
# repeat within a row (their values add up) and come in any order.
ctypedef struct CSR:
    const Py_ssize_t *indptr   # NULL: no sparse rows (X is dense)
    const int *indices
    const void *data

# Z (n, fo) = act(X (n, fi) @ W + b); the activation's input into layer.keep unless NULL
cdef void dense_forward(const DenseLayer *layer, int n, const floating *X,
                        floating *Z) noexcept nogil

# dW += X.T @ dZ;  db += dZ.sum(0);  dX (n, fi) = dZ @ W.T unless dX is NULL;
# dW *= mask unless mask is NULL, so masked weights never move
cdef void dense_backward(const DenseLayer *layer, int n, const floating *X,
                         const floating *dZ, floating *dX) noexcept nogil

# the same for a sparse X: rows r0..r1-1 of Z, each the sum of its entries' rows of W (in the
# order stored) plus b, on the calling thread; and all n rows, rows split among the threads.
# A row's values never depend on the threads.
cdef void csr_forward_rows(const DenseLayer *layer, int r0, int r1, CSR x,
                           floating *Z) noexcept nogil
cdef void csr_forward(const DenseLayer *layer, int n, CSR x, floating *Z) noexcept nogil

# dW[c0:c1] += X[:, c0:c1].T @ dZ for a sparse X (n rows): each entry (r, c) with c0 <= c < c1
# adds data * dZ[r] to row c of dW (fo wide), entries in the order stored; the caller's thread
cdef void csr_gradient_rows(CSR x, int n, int fo, int c0, int c1, const floating *dZ,
                            floating *dW) noexcept nogil

# dense_backward for a sparse X (no dX: it is a network's input): dW += X.T @ dZ (W's rows split
# among the threads, the same sums whatever their count), db += dZ.sum(0), dW *= mask
cdef void csr_backward(const DenseLayer *layer, int n, CSR x, const floating *dZ) noexcept nogil

# A (rows, c) = act(Z), row-wise for SOFTMAX; in place (A == Z) is allowed
cdef void activation_forward(const ActSpec *act, int rows, int c, const floating *Z,
                             floating *A) noexcept nogil

# dZ (rows, c) = dA * act'(.) from the forward output A, or from its input Z where the
# activation needs it (bp_act_needs_input; Z may be NULL otherwise); dZ == dA is allowed
cdef void activation_backward(const ActSpec *act, int rows, int c, const floating *A,
                              const floating *Z, const floating *dA,
                              floating *dZ) noexcept nogil

# the row-segment loops behind them, for the engine's fused epilogues: on the block of a
# matrix whose rows are ld apart (keep: where the activation's input goes, or NULL)
cdef void act_rows(Block blk, int ld, const floating *Z, const floating *b, floating *A,
                   floating *keep, const ActSpec *act) noexcept nogil
cdef void dact_rows(Block blk, int ld, const floating *A, const floating *Z,
                    const floating *dA, floating *dZ, const ActSpec *act) noexcept nogil
cdef void colsum_rows(int rows, int c0, int c1, int ld, const floating *D,
                      floating *out) noexcept nogil

# softmax of each row of A (rows, c), in place; and dZ = A * (dA - sum(dA * A)) per row
cdef void softmax_rows(int rows, int c, floating *A) noexcept nogil
cdef void softmax_backward_rows(int rows, int c, const floating *A, const floating *dA,
                                floating *dZ) noexcept nogil

# dropout with probability p (in [0, 1)) drawing from state (seed, draws), or NULL for a use
# that draws nothing (undrop_rows); the one place of the threshold rule
cdef DropSpec drop_spec(double p, uint64_t *state) noexcept nogil
# the step's key of a dropout layer, from its state; advances the state by one mask
cdef void begin_drop(DropSpec *drop) noexcept nogil
# A = U * mask / (1 - p) on the block, the mask drawn into mask (element r * ld + c of the step)
cdef void drop_rows(Block blk, int ld, const floating *U, floating *A, unsigned char *mask,
                    const DropSpec *drop) noexcept nogil
# d *= mask / (1 - p) on the block
cdef void undrop_rows(Block blk, int ld, const unsigned char *mask, const DropSpec *drop,
                      floating *d) noexcept nogil
