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
