# Loss kernels: each returns the loss and writes its gradient with respect to the network
# output in the same pass. Rows may carry weights w (n,) (NULL: all 1): a row's loss and
# gradient are multiplied by its weight, and a mean divides by the summed weight (rows counted
# by their weights, as scikit-learn's sample_weight) instead of the row count; a weight of 1
# changes no bit, and a batch whose weights sum to 0 has loss and gradient 0. Sums are taken in
# double over a fixed split of the rows, so the value does not depend on the thread count.
from cython cimport floating

cpdef enum Reduction:
    MEAN = 0       # over all elements for MSE, BCE and Poisson (as torch), over rows for
                   # softmax cross-entropy (torch.nn.CrossEntropyLoss)
    SUM = 1
    HALF_SUM = 2   # the 1986 paper's E = 1/2 sum over cases and outputs of (y - d)^2

cpdef enum LossKind:
    MSE = 0            # target rows (n, c)
    XENT_LABELS = 1    # softmax cross-entropy against class labels (n,)
    XENT_PROBS = 2     # softmax cross-entropy against target rows (n, c)
    BCE_LOGITS = 3     # sigmoid and binary cross-entropy, per element, against targets (n, c)
    POISSON = 4        # Poisson negative log-likelihood of log-rates against targets (n, c)

ctypedef struct LossSpec:
    int kind           # LossKind
    int reduction      # Reduction
    const void *pos_weight  # BCE_LOGITS: (c,) weights of the positive term, of the outputs'
                            # dtype; NULL: all 1

# loss of Y (n, m) against targets T (n, m);  dY (n, m) = dloss/dY
cdef double mse(int n, int m, const floating *Y, const floating *T, const floating *w,
                floating *dY, Reduction red) noexcept nogil

# softmax cross-entropy of logits Z (n, c) against integer labels (n);  dZ (n, c) = dloss/dZ
cdef double softmax_xent_labels(int n, int c, const floating *Z, const Py_ssize_t *labels,
                                const floating *w, floating *dZ, Reduction red) noexcept nogil

# the same against target distributions T (n, c) (one-hot rows, or any rows of weights)
cdef double softmax_xent_probs(int n, int c, const floating *Z, const floating *T,
                               const floating *w, floating *dZ, Reduction red) noexcept nogil

# sigmoid + binary cross-entropy of logits Z (n, c) against targets T (n, c) in [0, 1], the
# positive term of column j weighted by pos_weight[j] (NULL: 1);  dZ (n, c) = dloss/dZ
cdef double bce_logits(int n, int c, const floating *Z, const floating *T,
                       const floating *pos_weight, const floating *w, floating *dZ,
                       Reduction red) noexcept nogil

# Poisson negative log-likelihood exp(z) - t z of log-rates Z (n, c) against targets T (n, c);
# dZ = dloss/dZ
cdef double poisson_nll(int n, int c, const floating *Z, const floating *T, const floating *w,
                        floating *dZ, Reduction red) noexcept nogil

# p (c) = softmax(z) (p may be z), the row max taken out first; returns log(sum(exp(z))).
# A NaN in z makes the whole row NaN
cdef floating softmax_row(int c, const floating *z, floating *p) noexcept nogil

# the loss of `spec` over Y (n, c) against T (n, c) or labels (n,), each row weighted by
# weights (n,) (NULL: 1);  dY = dloss/dY
cdef double loss_and_delta(LossSpec spec, int n, int c, const floating *Y, const void *T,
                           const Py_ssize_t *labels, const void *weights,
                           floating *dY) noexcept nogil

# the rows' summed weight (n for NULL weights), in a fixed order
cdef double weight_sum(int n, const floating *w) noexcept nogil

# the index of the first label outside [0, c), or -1
cdef Py_ssize_t first_bad_label(Py_ssize_t n, const Py_ssize_t *y, Py_ssize_t c) noexcept nogil
