# Dense-layer and activation kernels: one function per layer forward and backward.
from cython cimport floating

cpdef enum Activation:
    IDENTITY = 0
    RELU = 1
    SIGMOID = 2
    TANH = 3

# Z (n, fo) = X (n, fi) @ W (fi, fo) + b (fo)
cdef void dense_forward(int n, int fi, int fo, const floating *X, const floating *W,
                        const floating *b, floating *Z) noexcept nogil

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
