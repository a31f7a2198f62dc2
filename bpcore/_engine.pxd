# The fused training engine: forward, loss, backward and update in one native call.
from cython cimport floating

from bpcore._blas cimport Block
from bpcore._layers cimport ActSpec, CSR, DropSpec
from bpcore._losses cimport LossSpec
cimport numpy as cnp

from bpcore._optim cimport Optimizer, OptimizerState
from bpcore._threads cimport Pace

# the network: its layout and its flat buffers; fixed once built
ctypedef struct Net:
    int L                  # number of Dense layers
    int *sizes             # (L + 1,) widths: inputs, hidden..., outputs
    ActSpec *act           # (L,) activation after each Dense (bpcore._layers.Activation)
    Py_ssize_t *woff       # (L,) offset of W_l (sizes[l], sizes[l+1]) in P and G; b_l follows
    void **mask            # (L,) mask_l (sizes[l], sizes[l+1]) or NULL
    DropSpec *drop         # (L,) dropout after activation l (p = 0: none)
    void *P                # the flat parameters
    void *G                # the flat gradients: the engine's scratch space for dW
    int itemsize           # bytes per element of P and G (4 or 8)
    Py_ssize_t size        # elements of P (and of G): all the parameters

# activations and deltas for up to `capacity` rows, and how a step uses threads
ctypedef struct Workspace:
    int capacity           # rows the buffers hold
    int rows               # rows of the batch in flight
    Py_ssize_t *aoff       # (L,) offset of A_l (capacity, sizes[l+1]) in acts
    void *acts
    Py_ssize_t *zoff       # (L,) offset of Z_l, the input of activation l, in keeps; -1 for
    void *keeps            # an activation whose derivative is taken from its output
    Py_ssize_t *doff       # (L,) offset of U_l (activation l's output before dropout) in
    void *undropped        # undropped and of its mask in masks; -1 without dropout
    unsigned char *masks
    int dropping           # a training step in flight: the dropout layers drop
    void *d0               # two deltas (capacity, widest), swapped layer by layer
    void *d1
    void *partials         # the row-split step's partial sums: one (rows, widest) per thread
    Py_ssize_t pstride     # elements between threads' partial sums
    void *xb               # a shuffled batch's gathered rows of X, of the target, its labels,
    void *tb               # its sample weights
    CSR xcsr               # the batch in flight's rows of X when X is sparse (indptr NULL: dense)
    Py_ssize_t *gather_indptr  # a shuffled sparse batch's gathered rows: (rows + 1,) and
    int *gather_indices    # the entries, room for the most entries of any batch of the epoch
    void *gather_data
    Py_ssize_t *lb
    void *wb
    int small_threads      # threads for a row-split step
    int rowsplit_max_batch # batches up to this size take the row-split step
    int fused_max_batch    # ... and form the gradient inside the update, a block at a time
    int threads            # bpcore's threads for the run in flight, before pacing
    Pace pace              # the one-thread fallback on a busy machine (bpcore._threads)
    int failure            # Failure: what the last step found not finite
    int failed_batch       # the batch of an epoch whose step failed, or -1

# what a step found not finite: its loss or its gradient (the step was not applied), or a value
# its update wrote (the parameters or the optimizer's state hold it)
cdef enum Failure:
    NO_FAILURE = 0
    LOSS_NONFINITE = 1
    GRADIENT_NONFINITE = 2
    UPDATE_NONFINITE = 3
    REDUCE_FAILED = 4      # a data-parallel step's reduction raised (nothing applied)

# a batch's targets: rows (rows, outputs) of the network's dtype, or class labels (rows,)
ctypedef struct Batch:
    const void *T
    const Py_ssize_t *labels
    const void *weights    # (rows,) of the network's dtype: the rows' sample weights, or NULL

# rows of a data set of N rows, taken in the order idx (NULL: the stored order)
ctypedef struct Rows:
    Py_ssize_t N
    const void *X          # (N, inputs), or NULL when X is sparse:
    CSR sparse             # its N rows (indptr NULL when X is dense)
    Batch all              # the targets of all N rows
    const Py_ssize_t *idx
    int batch_size         # rows per batch when trained on

# data-parallel training (bpcore.distributed): each process steps on its part of every batch;
# between the backward pass and the update, reduce(ctx) sums the flat gradient buffer over the
# processes in place (Python's side: one MPI Allreduce) and returns 0, or -1 if that failed.
# reduce NULL: one process.
ctypedef struct Team:
    int (*reduce)(void *ctx) noexcept nogil
    void *ctx
    const double *weight      # (steps,) the summed row weight of each step's whole batch
    const double *per         # (steps,) what a mean divides that batch's summed loss by
    const Py_ssize_t *first_row  # (steps,) the row of the whole batch this process's row 0 is
    int step                  # the step in flight

# how a training step runs
ctypedef struct StepConf:
    LossSpec loss
    double max_grad_norm   # 0: update each block as it forms; > 0: whole gradient, clip, update
    Team team

cdef enum JobKind:
    TRAIN_BATCHES = 0      # steps on batches first..last-1
    PREDICT = 1            # the outputs of every row into out
    EVALUATE = 2           # the summed loss and the count of right answers
    GRADIENT = 3           # the summed loss and its gradient into G, both times scale

# one native pass over rows: what to do, and what it gave
ctypedef struct Job:
    int kind               # JobKind
    StepConf conf
    Optimizer *opt         # TRAIN_BATCHES
    int first, last        # TRAIN_BATCHES
    void *out              # PREDICT: (N, outputs)
    double scale           # GRADIENT
    double total           # the summed loss (TRAIN_BATCHES: batch losses, each weighted by
                           # its rows' summed weight for mean reductions)
    double correct         # EVALUATE: the summed weight of the rows right
    int failed             # TRAIN_BATCHES: the batch whose step failed (the pass stops), or -1
    int failure            # ... and its Failure


cdef class Engine:
    cdef Net net
    cdef Workspace ws
    cdef readonly object dtype
    cdef int typenum
    cdef bint f64
    cdef object params, grads, masks, acts_ws, keep_ws, delta_ws, part_ws, xbuf, tbuf, lbuf, wbuf
    cdef object drop_states, undropped_ws, mask_ws
    cdef object gather_indptr, gather_indices, gather_data  # a shuffled sparse batch's rows
    cdef int part_threads       # threads the partial-sum workspace has room for
    cdef bint busy
    cdef readonly object failure  # None, or (what, batch) of the last training call's failure
    cdef object reducer    # a team's reduce callable while a data-parallel run uses it
    cdef int reserve(self, Py_ssize_t n) except -1
    cdef int reserve_gather(self, Rows data, int batch_size) except -1
    cdef int enter(self, Py_ssize_t rows) except -1
    cdef int run(self, Rows data, Job *job) except -1
    cdef int _pass(self, object X, cnp.ndarray T, int kind, Job *job,
                   object weights=*) except -1
    cdef double _train(self, Rows data, int batch_size, StepConf conf, OptimizerState optimizer,
                       int batches=*, object progress=*) except? -1
    cdef void leave(self) noexcept
    cdef object checked_X(self, X, bint check=*)
    cdef object checked_target(self, target, Py_ssize_t n, int kind, bint check=*)
    cdef Rows rows_of(self, object X, cnp.ndarray T, int kind, object order=*,
                      object weights=*) except *
    cdef int team_of(self, object team, int steps, StepConf *conf) except -1
    cdef Optimizer *optimizer_of(self, OptimizerState opt) except NULL
    cdef StepConf step_conf(self, int kind, int reduction, double max_grad_norm,
                            object pos_weight=*) except *
