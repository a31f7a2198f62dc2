# The fused training engine: forward, loss, backward and update in one native call.
from cython cimport floating


ctypedef struct Net:
    int L                  # number of Dense layers
    int *sizes             # (L + 1,) widths: inputs, hidden..., outputs
    int *act               # (L,) activation after each Dense (bpcore._layers.Activation)
    Py_ssize_t *woff       # (L,) offset of W_l (sizes[l], sizes[l+1]) in the flat buffer; b_l follows
    void **mask            # (L,) mask_l (sizes[l], sizes[l+1]) or NULL
    Py_ssize_t *aoff       # (L,) offset of A_l (capacity, sizes[l+1]) in the activation workspace
    int capacity           # rows the workspaces hold
    int small_threads      # threads for a row-split step (set per call)
    int rowsplit_max_batch # batches up to this size take the row-split step
    Py_ssize_t pstride     # elements between threads' partial sums in the row-split step


ctypedef struct SGDConf:
    double lr
    double momentum
    double weight_decay
    double decay
    bint nesterov


ctypedef struct LossConf:
    int kind               # LOSS_MSE, LOSS_XENT_LABELS or LOSS_XENT_PROBS
    int reduction          # bpcore._losses.Reduction


cdef enum:
    LOSS_MSE = 0
    LOSS_XENT_LABELS = 1
    LOSS_XENT_PROBS = 2
