# The SGD update: over one flat buffer of parameters, or fused with the gradient of a layer.
from cython cimport floating

# One block of the update on the calling thread (the loop of csrc/bp_simd.c); keep = 1 - decay
cdef void sgd_block(Py_ssize_t n, floating *w, const floating *g, floating *v, floating lr,
                    floating momentum, bint nesterov, floating weight_decay,
                    floating keep) noexcept nogil

# w, g, v (size): g' = g + weight_decay * w;  with momentum the paper's eq. 9,
# v = momentum * v - lr * g';  w += v  (Nesterov: w += momentum * v - lr * g');
# without momentum w -= lr * g' (v unused, may be NULL);  then w *= 1 - decay
cdef void sgd_update(Py_ssize_t size, floating *w, const floating *g, floating *v,
                     floating lr, floating momentum, bint nesterov,
                     floating weight_decay, floating decay) noexcept nogil

# One row segment w (cols) of weights, and its velocity v (NULL if momentum == 0), updated with
# the gradient row sum_k x[k * stride] * D[k, :cols] (D's rows ld apart), never stored;
# mask (cols) or NULL
cdef void outer_row_update(int n, Py_ssize_t stride, const floating *x, const floating *D,
                           Py_ssize_t ld, int cols, floating *w, floating *v,
                           const floating *mask, floating lr, floating momentum, bint nesterov,
                           floating weight_decay, floating keep) noexcept nogil

# The same update for a Dense layer whose gradient is never stored: dW = X.T @ D and
# db = D.sum(0) are formed a block of a row at a time and applied at once. One pass over
# W, b and their velocity instead of a GEMM into dW and a second pass to apply it: for a
# small batch n the pass over memory is the cost, not the n multiply-adds per weight.
# X (n, fi), D (n, fo), W and VW (fi, fo), b and vb (fo), mask (fi, fo) or NULL
cdef void sgd_update_outer(int n, int fi, int fo, const floating *X, const floating *D,
                           floating *W, floating *b, floating *VW, floating *vb,
                           const floating *mask, floating lr, floating momentum,
                           bint nesterov, floating weight_decay, floating decay) noexcept nogil
