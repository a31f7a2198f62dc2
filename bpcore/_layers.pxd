# Dense-layer and activation kernels: one function per layer forward and backward.
from cython cimport floating

cpdef enum Activation:
    IDENTITY = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3

# Z (n, fo) = act(X (n, fi) @ W (fi, fo) + b (fo))
cdef void dense_forward(int n, int fi, int fo, const floating *X, const floating *W,
                        const floating *b, floating *Z, Activation act) noexcept nogil

# dW (fi, fo) += X.T @ dZ;  db (fo) += dZ.sum(0);  dX (n, fi) = dZ @ W.T unless dX is NULL;
# dW *= mask (fi, fo) unless mask is NULL, so masked weights never move
cdef void dense_backward(int n, int fi, int fo, const floating *X, const floating *W,
                         const floating *dZ, floating *dW, floating *db, floating *dX,
                         const floating *mask) noexcept nogil

# A (size) = act(Z);  in place (A == Z) is allowed
cdef void activation_forward(Activation act, Py_ssize_t size, const floating *Z,
                             floating *A) noexcept nogil

# dZ (size) = dA * act'(.) computed from the forward output A;  in place (dZ == dA) is allowed
cdef void activation_backward(Activation act, Py_ssize_t size, const floating *A,
                              const floating *dA, floating *dZ) noexcept nogil

# the row-segment loops behind them, for the engine's fused epilogues
cdef void act_rows(int r0, int r1, int c0, int c1, int ld, const floating *Z,
                   const floating *b, floating *A, Activation act) noexcept nogil
cdef void dact_rows(int r0, int r1, int c0, int c1, int ld, const floating *A,
                    const floating *dA, floating *dZ, Activation act) noexcept nogil
cdef void colsum_rows(int rows, int c0, int c1, int ld, const floating *D,
                      floating *out) noexcept nogil
