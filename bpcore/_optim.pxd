# The SGD update over one flat buffer of parameters.
from cython cimport floating

# w, g, v (size): g' = g + weight_decay * w;  with momentum the paper's eq. 9,
# v = momentum * v - lr * g';  w += v  (Nesterov: w += momentum * v - lr * g');
# without momentum w -= lr * g' (v unused, may be NULL);  then w *= 1 - decay
cdef void sgd_update(Py_ssize_t size, floating *w, const floating *g, floating *v,
                     floating lr, floating momentum, bint nesterov,
                     floating weight_decay, floating decay) noexcept nogil
