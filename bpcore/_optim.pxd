# The optimizers' native side: one struct per optimizer, one update function the engine calls
# on each block of a layer's gradient as it is formed, and the same update over whole runs of
# parameters for optimizer.step().
from cython cimport floating

from bpcore._simd cimport bp_adam_args, bp_sgd_args

cpdef enum Rule:
    SGD_RULE = 0    # the 1986 paper's eq. 9, with Nesterov, L2 and decoupled decay
    ADAM_RULE = 1   # Adam, AdamW, AMSGrad; PyTorch's or scikit-learn's placement of eps

# one parameter group's settings, as the user set them (schedules change lr between steps)
ctypedef struct Settings:
    double lr
    double momentum        # SGD
    double weight_decay    # L2: added to the gradient (SGD, Adam); AdamW: decoupled
    double decay           # SGD: the paper's w <- (1 - decay) w after each update
    double beta1, beta2, eps
    bint nesterov

ctypedef struct Optimizer:
    int rule               # Rule
    bint decoupled         # AdamW: weight_decay shrinks w by lr * weight_decay, apart from g
    bint amsgrad
    bint sklearn_eps       # eps added to sqrt(v) before the bias correction (scikit-learn)
    bint sklearn_decay     # weight_decay is the L2 penalty of the summed loss (scikit-learn's
                           # alpha): each step divides it by the batch's summed weight
    long long t            # steps taken, the one being taken included once begin_step ran
    int ngroups
    Settings *settings     # (ngroups,)
    bp_sgd_args *sgd       # (ngroups,) per-step arguments derived by begin_step
    bp_adam_args *adam     # (ngroups,)
    int nparams
    int *group_of          # (nparams,) the group of each parameter, in order
    Py_ssize_t size        # elements of all parameters together: the length of each state buffer
    void *s0               # SGD velocity, Adam's first moment m (size,); NULL if unused
    void *s1               # Adam's second moment v
    void *s2               # AMSGrad's running maximum of v
    int *nonfinite         # set to 1 by an update that wrote a NaN or an infinity; begin_step
                           # clears it (a pointer: the engine's updates take the struct const)

# the gradient row x.T @ D of a layer's weight row, formed a block at a time, never stored:
# sum_k x[k * stride] * D[k, :], D's rows ld apart, k < rows
ctypedef struct OuterRow:
    int rows
    Py_ssize_t stride
    const void *x
    const void *D
    Py_ssize_t ld

# start a step: count it, derive each group's arguments for it, clear the non-finite flag;
# batch_weight: the batch's summed row weight (its row count without weights)
cdef void begin_step(Optimizer *o, double batch_weight) noexcept nogil

# a step begun but not applied (its loss was not finite): uncount it
cdef void cancel_step(Optimizer *o) noexcept nogil

# update w (n) from gradient g with the settings of `group`; w's state sits at `at` of the
# state buffers. On the calling thread.
cdef void update_block(const Optimizer *o, int group, Py_ssize_t at, Py_ssize_t n, floating *w,
                       const floating *g) noexcept nogil

# the same over a long run, on bpcore's threads
cdef void update_run(const Optimizer *o, int group, Py_ssize_t at, Py_ssize_t n, floating *w,
                     const floating *g) noexcept nogil

# update `rows` weight rows of cols, one after another from w (mask's and the state's alike; mask
# NULL for none), from their gradient rows: row r's is that of `src` with x moved on by r
cdef void outer_rows_update(const Optimizer *o, int group, Py_ssize_t at, int rows, int cols,
                            OuterRow src, floating *w, const floating *mask) noexcept nogil

# sum of squares of x (size), threaded, in a thread-count-free order; and x *= scale
cdef double sum_of_squares(Py_ssize_t size, const floating *x) noexcept nogil
cdef void scale_run(Py_ssize_t size, floating *x, double scale) noexcept nogil

# the L2 norm of x (size): infinite only if an element is, NaN if one is (a sum of squares that
# overflows for finite values is taken again, scaled by the largest magnitude)
cdef double global_norm(Py_ssize_t size, const floating *x) noexcept nogil

# the factor that scales gradients of global norm `norm` to at most max_norm (1 if within, and
# for a NaN or infinite norm: those gradients are left as they are)
cpdef double clip_factor(double norm, double max_norm) noexcept nogil

# the Python object that owns an Optimizer struct and its buffers (bpcore.optim holds one)
cdef class OptimizerState:
    cdef Optimizer o
    cdef readonly object dtype
    cdef list buffers          # the state buffers' arrays (keep them alive)
    cdef list runs             # (data, grad, state offset, group) for step()
    cdef int nonfinite_flag    # what o.nonfinite points at
    cdef Optimizer *get(self) except NULL
