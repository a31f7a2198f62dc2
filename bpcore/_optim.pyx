# cython: language_level=3
"""The optimizers' update rules over flat buffers: SGD (the 1986 paper's eq. 9) and Adam.

An optimizer is one struct (bpcore._optim.Optimizer): its rule, its parameter groups' settings,
and flat state buffers laid out like the parameters, so the state of the weights at offset k of
the flat parameter buffer sits at offset k of every state buffer. The engine calls
``update_block`` on each block of a layer's gradient as it forms it; ``OptimizerState.step``
runs the same update over whole runs of parameters for the layer API.
"""
from cython.parallel cimport prange
from libc.math cimport fabs, isfinite, isinf, pow, sqrt
from libc.stdlib cimport calloc, free

import numpy as np

from bpcore import _buffers

from bpcore._simd cimport bp_simd_table, simd
from bpcore._threads cimport threads_for

cdef bp_simd_table *K = simd()  # the loops, at this CPU's vector width

cdef enum:
    BLOCK = 256          # gradient elements formed at once by the fused update: stack and L1
    FLAT_BLOCK = 4096    # elements per task of the flat update
    NCHUNK = 64          # a sum of squares is taken in this many fixed pieces, then serially


cdef void begin_step(Optimizer *o, double batch_weight) noexcept nogil:
    cdef int g
    cdef const Settings *s
    cdef double bc1, bc2, l2
    o.t += 1
    o.nonfinite[0] = 0
    for g in range(o.ngroups):
        s = &o.settings[g]
        l2 = s.weight_decay
        if o.sklearn_decay:  # a batch whose weights are all zero adds nothing, its L2 neither
            l2 = l2 / batch_weight if batch_weight > 0 else 0.0
        if o.rule == SGD_RULE:
            o.sgd[g].lr, o.sgd[g].momentum = s.lr, s.momentum
            o.sgd[g].weight_decay, o.sgd[g].nesterov = l2, s.nesterov
            o.sgd[g].keep = 1 - s.decay
            continue
        bc1 = 1 - pow(s.beta1, <double>o.t)
        bc2 = 1 - pow(s.beta2, <double>o.t)
        o.adam[g].beta1, o.adam[g].beta2, o.adam[g].eps = s.beta1, s.beta2, s.eps
        o.adam[g].amsgrad = o.amsgrad
        if o.sklearn_eps:
            o.adam[g].step, o.adam[g].inv_sqrt_bc2 = s.lr * sqrt(bc2) / bc1, 1.0
        else:
            o.adam[g].step, o.adam[g].inv_sqrt_bc2 = s.lr / bc1, 1 / sqrt(bc2)
        if o.decoupled:
            o.adam[g].weight_decay, o.adam[g].keep = 0.0, 1 - s.lr * s.weight_decay
        else:
            o.adam[g].weight_decay, o.adam[g].keep = l2, 1.0


cdef void cancel_step(Optimizer *o) noexcept nogil:
    o.t -= 1


cdef inline floating *_state(void *buffer, Py_ssize_t at, floating *like) noexcept nogil:
    return <floating *>buffer + at if buffer != NULL else NULL


cdef inline void _flag(const Optimizer *o, int bad) noexcept nogil:
    # threads only ever store 1 here, so their racing stores agree
    if bad:
        o.nonfinite[0] = 1


cdef void update_block(const Optimizer *o, int group, Py_ssize_t at, Py_ssize_t n, floating *w,
                       const floating *g) noexcept nogil:
    cdef int bad
    if o.rule == SGD_RULE:
        if floating is float:
            bad = K.sgd_f32(n, w, g, _state(o.s0, at, w), &o.sgd[group])
        else:
            bad = K.sgd_f64(n, w, g, _state(o.s0, at, w), &o.sgd[group])
    elif floating is float:
        bad = K.adam_f32(n, w, g, _state(o.s0, at, w), _state(o.s1, at, w), _state(o.s2, at, w),
                         &o.adam[group])
    else:
        bad = K.adam_f64(n, w, g, _state(o.s0, at, w), _state(o.s1, at, w), _state(o.s2, at, w),
                         &o.adam[group])
    _flag(o, bad)


cdef void update_run(const Optimizer *o, int group, Py_ssize_t at, Py_ssize_t n, floating *w,
                     const floating *g) noexcept nogil:
    cdef Py_ssize_t blk, start, nblk = (n + FLAT_BLOCK - 1) // FLAT_BLOCK
    for blk in prange(nblk, num_threads=threads_for(n), schedule="static"):
        start = blk * FLAT_BLOCK
        update_block(o, group, at + start, min(<Py_ssize_t>FLAT_BLOCK, n - start), w + start,
                     g + start)


cdef void outer_rows_update(const Optimizer *o, int group, Py_ssize_t at, int rows, int cols,
                            OuterRow src, floating *w, const floating *mask) noexcept nogil:
    cdef floating g[BLOCK]
    cdef const floating *x = <const floating *>src.x
    cdef const floating *D = <const floating *>src.D
    cdef int r, j0, jj, bw
    cdef Py_ssize_t row
    if src.rows == 1 and mask == NULL:
        # a batch of one: each row's gradient x[r] * D formed as it is used, all rows in one call
        if floating is float:
            _flag(o, K.sgd1_f32(rows, cols, w, x, D, _state(o.s0, at, w), &o.sgd[group])
                  if o.rule == SGD_RULE else
                  K.adam1_f32(rows, cols, w, x, D, _state(o.s0, at, w), _state(o.s1, at, w),
                              _state(o.s2, at, w), &o.adam[group]))
        else:
            _flag(o, K.sgd1_f64(rows, cols, w, x, D, _state(o.s0, at, w), &o.sgd[group])
                  if o.rule == SGD_RULE else
                  K.adam1_f64(rows, cols, w, x, D, _state(o.s0, at, w), _state(o.s1, at, w),
                              _state(o.s2, at, w), &o.adam[group]))
        return
    for r in range(rows):
        row = <Py_ssize_t>r * cols
        j0 = 0
        while j0 < cols:
            bw = min(<int>BLOCK, cols - j0)
            for jj in range(bw):
                g[jj] = 0
            if floating is float:
                K.outer_f32(bw, src.rows, src.stride, x + r, D + j0, src.ld, g)
            else:
                K.outer_f64(bw, src.rows, src.stride, x + r, D + j0, src.ld, g)
            if mask != NULL:
                for jj in range(bw):
                    g[jj] *= mask[row + j0 + jj]
            update_block(o, group, at + row + j0, bw, w + row + j0, g)
            j0 += BLOCK


cdef double sum_of_squares(Py_ssize_t size, const floating *x) noexcept nogil:
    cdef double part[NCHUNK]
    cdef double total = 0
    cdef Py_ssize_t ch, lo, hi
    for ch in prange(NCHUNK, num_threads=threads_for(size), schedule="static"):
        lo = ch * size // NCHUNK
        hi = (ch + 1) * size // NCHUNK
        if floating is float:
            part[ch] = K.sumsq_f32(hi - lo, x + lo)
        else:
            part[ch] = K.sumsq_f64(hi - lo, x + lo)
    for ch in range(NCHUNK):
        total = total + part[ch]
    return total


cpdef double clip_factor(double norm, double max_norm) noexcept nogil:
    """What gradients of global norm `norm` are scaled by to a norm of at most max_norm, as
    torch.nn.utils.clip_grad_norm_ (whose 1e-6 guards a zero norm); 1 when within it, and for
    a norm that is not finite (scaling by 0 would turn an infinity into NaN and hide it)."""
    cdef double coef = max_norm / (norm + 1e-6)
    if not isfinite(norm):
        return 1.0
    return coef if coef < 1 else 1.0


cdef double global_norm(Py_ssize_t size, const floating *x) noexcept nogil:
    cdef double total = sum_of_squares(size, x), top = 0, a
    cdef Py_ssize_t i
    if not isinf(total):
        return sqrt(total)
    for i in range(size):  # rare: only where the squares overflow
        a = fabs(<double>x[i])
        if a > top:
            top = a
    if isinf(top):
        return top
    total = 0
    for i in range(size):
        a = <double>x[i] / top
        total += a * a
    return top * sqrt(total)


cdef void scale_run(Py_ssize_t size, floating *x, double scale) noexcept nogil:
    cdef Py_ssize_t i
    cdef floating s = <floating>scale
    for i in prange(size, num_threads=threads_for(size), schedule="static"):
        x[i] = x[i] * s


# ---------------------------------------------------------------------------------------------
# the Python-facing owner of one Optimizer

# state buffers by rule, in the order of Optimizer.s0, s1, s2 (names as torch.optim's state)
_STATE_NAMES = {SGD_RULE: ("momentum_buffer",),
                ADAM_RULE: ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}


cdef class OptimizerState:
    """The native state of one optimizer: rule, groups, flat state buffers and step count.

    rule: Rule; dtype: float32 or float64; runs: (data, grad, group) for each run of parameters
    that sit back to back in one flat buffer (1-D, C-contiguous views), in parameter order;
    group_of: the group of every parameter, in order; sizes: every parameter's element count.
    """

    def __cinit__(self):
        self.o.settings = NULL
        self.o.sgd = NULL
        self.o.adam = NULL
        self.o.group_of = NULL
        self.o.nonfinite = &self.nonfinite_flag

    def __init__(self, int rule, dtype, runs, group_of, int ngroups, bint decoupled=False,
                 bint amsgrad=False, bint sklearn_eps=False, bint sklearn_decay=False):
        cdef Py_ssize_t at = 0
        cdef int i
        if rule != SGD_RULE and rule != ADAM_RULE:
            raise ValueError(f"rule: expected SGD_RULE or ADAM_RULE, got {rule}")
        if ngroups < 1 or not group_of or any(not 0 <= g < ngroups for g in group_of):
            raise ValueError(f"group_of: expected group indices in [0, {ngroups}), got {group_of}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype: expected float32 or float64, got {self.dtype.name}")
        self.runs = []
        for data, grad, group in runs:
            for name, arr in (("data", data), ("grad", grad)):
                if (not isinstance(arr, np.ndarray) or arr.dtype != self.dtype or arr.ndim != 1
                        or not arr.flags.c_contiguous or not arr.flags.writeable):
                    raise ValueError(f"runs: expected writable C-contiguous 1-D {self.dtype.name} "
                                     f"{name} arrays")
            if grad.shape[0] != data.shape[0] or not 0 <= group < ngroups:
                raise ValueError("runs: expected a gradient as long as its data and a valid group")
            self.runs.append((data, grad, at, group))
            at += data.shape[0]
        self.o.rule, self.o.decoupled, self.o.amsgrad = rule, decoupled, amsgrad
        self.o.sklearn_eps, self.o.t, self.o.size = sklearn_eps, 0, at
        self.o.sklearn_decay = sklearn_decay
        self.o.ngroups, self.o.nparams = ngroups, len(group_of)
        self.o.settings = <Settings *>calloc(ngroups, sizeof(Settings))
        self.o.sgd = <bp_sgd_args *>calloc(ngroups, sizeof(bp_sgd_args))
        self.o.adam = <bp_adam_args *>calloc(ngroups, sizeof(bp_adam_args))
        self.o.group_of = <int *>calloc(len(group_of), sizeof(int))
        if (self.o.settings == NULL or self.o.sgd == NULL or self.o.adam == NULL
                or self.o.group_of == NULL):
            raise MemoryError()
        for i in range(self.o.nparams):
            self.o.group_of[i] = group_of[i]
        names = _STATE_NAMES[rule] if rule == SGD_RULE or amsgrad else _STATE_NAMES[rule][:2]
        # on a cache line, like the parameters: the update loops load whole vectors of both
        self.buffers = [_buffers.aligned_zeros(at, self.dtype) for _ in names]
        cdef void **slots[3]
        slots[0], slots[1], slots[2] = &self.o.s0, &self.o.s1, &self.o.s2
        for i in range(3):
            slots[i][0] = (<void *>(<size_t>self.buffers[i].ctypes.data)
                           if i < len(self.buffers) else NULL)

    def __dealloc__(self):
        free(self.o.settings)
        free(self.o.sgd)
        free(self.o.adam)
        free(self.o.group_of)

    cdef Optimizer *get(self) except NULL:
        return &self.o

    def configure(self, int group, double lr, double momentum=0, double weight_decay=0,
                  double decay=0, double beta1=0.9, double beta2=0.999, double eps=1e-8,
                  bint nesterov=False):
        """Set one group's settings (checked by bpcore.optim); they apply from the next step."""
        if not 0 <= group < self.o.ngroups:
            raise ValueError(f"group: expected an index in [0, {self.o.ngroups}), got {group}")
        cdef Settings *s = &self.o.settings[group]
        s.lr, s.momentum, s.weight_decay, s.decay = lr, momentum, weight_decay, decay
        s.beta1, s.beta2, s.eps, s.nesterov = beta1, beta2, eps, nesterov

    @property
    def steps(self):
        """Steps taken."""
        return self.o.t

    @steps.setter
    def steps(self, long long value):
        if value < 0:
            raise ValueError(f"steps: expected a count >= 0, got {value}")
        self.o.t = value

    @property
    def size(self):
        return self.o.size

    def state(self):
        """{name: flat state buffer} (the arrays themselves, not copies)."""
        names = _STATE_NAMES[self.o.rule]
        return {names[i]: buf for i, buf in enumerate(self.buffers)}

    @property
    def nonfinite(self):
        """True if the last step's update wrote a NaN or an infinity."""
        return bool(self.nonfinite_flag)

    def step(self, double batch_weight=1.0):
        """One update of every run from its gradient (that of a batch of summed weight
        batch_weight, which only scikit-learn's form of L2 reads). Returns None, or what was
        not finite: "gradient" (a gradient value; nothing was updated) or "update" (a value
        the update wrote: the parameters or the state now hold it)."""
        cdef Py_ssize_t at, n
        cdef int group
        cdef void *w
        cdef void *g
        cdef bint f64 = self.dtype == np.float64
        for data, grad, at, group in self.runs:
            g = <void *>(<size_t>grad.ctypes.data)
            n = grad.shape[0]
            if n and (K.nonfinite_f64(n, <const double *>g) if f64
                      else K.nonfinite_f32(n, <const float *>g)):
                return "gradient"
        begin_step(&self.o, batch_weight)
        for data, grad, at, group in self.runs:
            n = data.shape[0]
            if n == 0:
                continue
            w = <void *>(<size_t>data.ctypes.data)
            g = <void *>(<size_t>grad.ctypes.data)
            _update_any(&self.o, group, at, n, w, g, f64)
        return "update" if self.nonfinite_flag else None


cdef void _update_any(const Optimizer *o, int group, Py_ssize_t at, Py_ssize_t n, void *w,
                      void *g, bint f64) noexcept:
    with nogil:
        if f64:
            update_run(o, group, at, n, <double *>w, <const double *>g)
        else:
            update_run(o, group, at, n, <float *>w, <const float *>g)


def py_global_norm(const floating[::1] x not None):
    """The L2 norm of x (the native global_norm: overflow-safe)."""
    if x.shape[0] == 0:
        return 0.0
    cdef double norm
    with nogil:
        norm = global_norm(x.shape[0], &x[0])
    return norm


def py_scale(floating[::1] x not None, double scale):
    """x *= scale, in place."""
    if x.shape[0] == 0:
        return
    with nogil:
        scale_run(x.shape[0], &x[0], scale)
