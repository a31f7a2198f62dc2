# Dense-layer and activation kernels: one function per layer forward and backward.
from cython cimport floating

from bpcore._blas cimport Block

cpdef enum Activation:
    IDENTITY = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3

# one dense layer: its shape, its weights and gradients (of the caller's dtype), its activation
ctypedef struct DenseLayer:
    int fan_in
    int fan_out
    Activation act         # applied by dense_forward; dense_backward takes dZ after it
    const void *W          # (fan_in, fan_out)
    const void *b          # (fan_out,)
    void *dW               # (fan_in, fan_out), accumulated
    void *db               # (fan_out,), accumulated
    const void *mask       # (fan_in, fan_out) of 0/1, or NULL

# Z (n, fo) = act(X (n, fi) @ W + b)
cdef void dense_forward(const DenseLayer *layer, int n, const floating *X,
                        floating *Z) noexcept nogil

# dW += X.T @ dZ;  db += dZ.sum(0);  dX (n, fi) = dZ @ W.T unless dX is NULL;
# dW *= mask unless mask is NULL, so masked weights never move
cdef void dense_backward(const DenseLayer *layer, int n, const floating *X,
                         const floating *dZ, floating *dX) noexcept nogil

# A (size) = act(Z);  in place (A == Z) is allowed
cdef void activation_forward(Activation act, Py_ssize_t size, const floating *Z,
                             floating *A) noexcept nogil

# dZ (size) = dA * act'(.) computed from the forward output A;  in place (dZ == dA) is allowed
cdef void activation_backward(Activation act, Py_ssize_t size, const floating *A,
                              const floating *dA, floating *dZ) noexcept nogil

# the row-segment loops behind them, for the engine's fused epilogues: on the block of a
# matrix whose rows are ld apart
cdef void act_rows(Block blk, int ld, const floating *Z, const floating *b, floating *A,
                   Activation act) noexcept nogil
cdef void dact_rows(Block blk, int ld, const floating *A, const floating *dA, floating *dZ,
                    Activation act) noexcept nogil
cdef void colsum_rows(int rows, int c0, int c1, int ld, const floating *D,
                      floating *out) noexcept nogil
