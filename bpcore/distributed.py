"""Data-parallel training over MPI, through mpi4py.

Each process (an MPI rank) holds a shard of the rows. ``model.fit(X_shard, y_shard, ...,
comm=MPI.COMM_WORLD)`` and ``model.train_step(..., comm=)`` then train one model together: every
step's batch is the union of the ranks' batches, its gradient is summed over the ranks by one
in-place ``Allreduce`` on the flat gradient buffer (buffer-based: no copy, no pickling), and
every rank applies the same update, so the replicas stay equal bit for bit. A mean divides by
the whole batch's summed weight on every rank, so N ranks with batch b each compute, to
round-off, what one process computes with batch N·b on the same rows.

What this module owns (the engine knows nothing of MPI; bpcore.training asks this module):

- ``shard_range(n, comm)``, ``shard(X, y, comm)``: a rank's contiguous share of n rows (sizes
  differing by at most one); X may be an array, a ``numpy.memmap`` or the path of a ``.npy``
  file (memory-mapped: a rank reads only its rows).
- ``global_orders(counts, batch_size, seed, epochs)``: the rows a data-parallel fit trains on,
  in the order one process would take them to reproduce it.
- ``Team``: one training run's view of the communicator: the agreement on arguments (an error
  on one rank is raised on all, never a hang in a collective), the broadcast of rank 0's
  weights, optimizer state and dropout streams, the seed of each rank's shuffle, each epoch's
  plan (the steps every rank takes, each whole batch's weight, where each rank's rows sit in
  it), the gradient's reduction, and sums of the epoch's loss and validation figures.
- ``install_abort_hook()``: an exception nobody catches on one rank aborts the whole job
  (``MPI.COMM_WORLD.Abort``), as ``python -m mpi4py`` does, instead of leaving the other ranks
  waiting in a collective for ever. fit and train_step install it on first use with a comm.
- ``default_threads(comm)``: each rank's share of its machine's cores
  (``usable cores // ranks on the machine``), which fit and train_step set on first use with a
  comm unless the thread count was set explicitly (``OMP_NUM_THREADS``,
  ``bpcore.set_num_threads``).
- ``check_replicas(model, comm)``: raise unless every rank holds the same weights, bit for bit.

mpi4py is imported only when a comm is used (``pip install bpcore[mpi]`` brings it and an MPI
runtime).
"""
import contextlib
import hashlib
import os
import sys
import threading

import numpy as np

from bpcore import threads as _thread_settings
from bpcore._validation import check_int
from bpcore.errors import DistributedError
from bpcore.params import as_generator, seed_value

__all__ = ["shard_range", "shard", "global_orders", "Team", "install_abort_hook",
           "default_threads", "check_replicas", "DistributedError"]


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ImportError("comm: data-parallel training needs mpi4py and an MPI runtime "
                          "(pip install 'bpcore[mpi]')") from exc
    return MPI


def check_comm(comm):
    """comm, if it is an mpi4py intracommunicator; else TypeError naming it."""
    MPI = _mpi()
    if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
        raise TypeError(f"comm: expected an mpi4py intracommunicator (e.g. MPI.COMM_WORLD), "
                        f"got {type(comm).__name__}")
    return comm


# ---------------------------------------------------------------------------------------------
# the rows of each rank

def shard_range(n, comm):
    """(start, stop): the rows of n that this rank of comm holds; contiguous, in rank order,
    sizes differing by at most one (the first n % size ranks hold one more)."""
    n = check_int(n, "n", low=0)
    comm = check_comm(comm)
    size, rank = comm.Get_size(), comm.Get_rank()
    per, extra = divmod(n, size)
    start = rank * per + min(rank, extra)
    return start, start + per + (rank < extra)


def _rows_of(a, name):
    if isinstance(a, (str, os.PathLike)):
        return np.load(os.fspath(a), mmap_mode="r", allow_pickle=False)
    if not hasattr(a, "shape") or not hasattr(a, "__getitem__"):
        a = np.asarray(a)
    if len(a.shape) == 0:
        raise ValueError(f"{name}: expected an array of rows, got a scalar")
    return a


def shard(X, y=None, comm=None, sample_weight=None):
    """This rank's rows of X (and of y and sample_weight, if given): see shard_range. X, y
    and sample_weight may be arrays (a slice is a view), ``numpy.memmap``s or paths of
    ``.npy`` files, which are memory-mapped, so a rank reads only its own rows. Returns X's
    rows alone, or a tuple (X, y[, sample_weight]) in that order."""
    comm = check_comm(comm)
    X = _rows_of(X, "X")
    n = X.shape[0]
    start, stop = shard_range(n, comm)
    out = [X[start:stop]]
    for name, a in (("y", y), ("sample_weight", sample_weight)):
        if a is None:
            continue
        a = _rows_of(a, name)
        if a.shape[0] != n:
            raise ValueError(f"{name}: expected {n} rows (as X), got {a.shape[0]}")
        out.append(a[start:stop])
    return out[0] if len(out) == 1 else tuple(out)


# ---------------------------------------------------------------------------------------------
# the job as a whole: failing fast, threads per rank, replicas

_HOOKED = False


def install_abort_hook():
    """Make an exception that nothing catches, in any thread of this process, print its
    traceback and abort the whole MPI job (``MPI.COMM_WORLD.Abort(1)``): without it the other
    ranks would wait in their next collective for ever. Idempotent."""
    global _HOOKED
    if _HOOKED:
        return
    MPI = _mpi()
    previous, previous_thread = sys.excepthook, threading.excepthook

    def abort(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

    def abort_thread(args):
        previous_thread(args)
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

    sys.excepthook, threading.excepthook = abort, abort_thread
    _HOOKED = True


def default_threads(comm):
    """This rank's share of its machine's cores: usable cores // the ranks of comm on the
    same machine (at least 1), so that N ranks on one machine do not oversubscribe it."""
    MPI = _mpi()
    local = check_comm(comm).Split_type(MPI.COMM_TYPE_SHARED)
    try:
        ranks_here = local.Get_size()
    finally:
        local.Free()
    return max(1, _thread_settings.usable_cpus() // ranks_here)


_THREADS_SET = False


def _share_cores(comm):
    """Once per process: default_threads(comm) threads, unless the user chose a count."""
    global _THREADS_SET
    if _THREADS_SET:
        return
    _THREADS_SET = True
    if _thread_settings.get_num_threads() != _thread_settings.default_threads():
        return  # chosen by the user (set_num_threads, num_threads, OMP_NUM_THREADS)
    _thread_settings.set_num_threads(default_threads(comm))


def check_replicas(model, comm):
    """Raise DistributedError unless every rank of comm holds the same weights, bit for bit
    (a digest of the flat parameter buffer compared on all ranks)."""
    comm = check_comm(comm)
    digest = hashlib.sha256(np.ascontiguousarray(model.flat_params).tobytes()).hexdigest()
    digests = comm.allgather(digest)
    differ = [r for r, d in enumerate(digests) if d != digests[0]]
    if differ:
        raise DistributedError(f"check_replicas: ranks {differ} hold weights that differ from "
                               f"rank 0's")


# ---------------------------------------------------------------------------------------------
# one training run over the ranks

def _mix(seed, rank):
    """A 64-bit seed for rank's shuffle from the run's seed (SplitMix64's finaliser of both):
    ranks get unrelated streams, the same on every run with the same seed."""
    z = (seed + 0x9E3779B97F4A7C15 * (rank + 1)) % 2**64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) % 2**64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) % 2**64
    return z ^ (z >> 31)


def global_orders(counts, batch_size, seed, epochs, shuffle=True):
    """The rows that a data-parallel fit over ranks holding ``counts`` rows each (contiguous
    shards in rank order, as shard() makes them) trains on, as one process would see them:
    one array per epoch of indices into the ranks' rows concatenated, step after step, each
    step rank 0's batch, then rank 1's, and so on. With equal shards,
    ``fit(X[order], batch_size=len(counts) * batch_size, shuffle=False, epochs=1)`` per
    epoch trains one process on the same batches (to round-off, the same weights). ``seed``
    as given to fit (an integer: seed=None draws a fresh one)."""
    counts = [check_int(c, "counts", low=0) for c in counts]
    batch_size = check_int(batch_size, "batch_size", low=1)
    epochs = check_int(epochs, "epochs", low=0)
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.intp)
    steps = -(-max(counts, default=0) // batch_size)
    orders = [np.arange(n, dtype=np.intp) for n in counts]
    rngs = [as_generator(_mix(seed_value(seed), r)) if shuffle else None
            for r in range(len(counts))]
    out = []
    for _ in range(epochs):
        for order, rng in zip(orders, rngs):
            if rng is not None:
                rng.shuffle(order)
        out.append(np.concatenate(
            [starts[r] + orders[r][k * batch_size:(k + 1) * batch_size]
             for k in range(steps) for r in range(len(counts))]))
    return out


class Team:
    """One data-parallel run's use of comm (see the module's description). Collective: every
    rank constructs it and calls its methods in the same order."""

    def __init__(self, comm, grads):
        self.comm = check_comm(comm)
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.root = self.rank == 0
        self.grads = grads
        self.error = None
        self._in_place, self._sum = _mpi().IN_PLACE, _mpi().SUM
        # the current plan, which the engine reads (bpcore._engine.Engine.team_of)
        self.weight = self.per = self.first_row = None
        install_abort_hook()
        _share_cores(self.comm)

    # -- agreement ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def agreement(self):
        """``with team.agreement(): checks``: if the block raises on any rank, every rank
        raises (that rank its own exception, the others DistributedError naming it) instead
        of some going on to a collective the others never reach."""
        try:
            yield
        except Exception as exc:
            self.comm.allgather(f"{type(exc).__name__}: {exc}")
            raise
        for rank, message in enumerate(self.comm.allgather(None)):
            if message is not None:
                raise DistributedError(f"rank {rank} of {self.size} refused its arguments: "
                                       f"{message}")

    # -- the start: everyone from rank 0's state ----------------------------------------------

    def broadcast_start(self, params, optimizer, streams=()):
        """Rank 0's weights (the flat parameter buffer), optimizer state (settings and step
        count included) and dropout streams (their state arrays) on every rank."""
        self.comm.Bcast(params, root=0)
        if optimizer is not None:
            state = self.comm.bcast(optimizer.state_dict() if self.root else None, root=0)
            if not self.root:
                optimizer.load_state_dict(state)
        for stream in streams:
            self.comm.Bcast(stream, root=0)

    def shuffle_seed(self, seed):
        """This rank's shuffle seed: from the run's seed (None: rank 0 draws one, or draws it
        from a bpcore Generator), mixed with the rank."""
        base = None
        if self.root:
            if seed is None or isinstance(seed, (int, np.integer)):
                base = seed_value(seed)
            else:
                draw = np.empty(2)
                as_generator(seed).uniform(draw, 0, 2.0**32)
                base = (int(draw[0]) << 32) | int(draw[1])
        return _mix(self.comm.bcast(base, root=0), self.rank)

    # -- an epoch -----------------------------------------------------------------------------

    def rows_per_rank(self, n):
        """Every rank's row count (one allgather; rows do not change between epochs)."""
        return np.array(self.comm.allgather(int(n)), dtype=np.int64)

    def steps(self, counts, batch_size):
        """Steps of an epoch: as many as the rank with the most rows needs."""
        return int(-(-int(counts.max()) // batch_size))

    def plan_step(self, n, weight, per_row):
        """The plan of one step (train_step) on this rank's n rows of summed weight `weight`
        (one allgather of both)."""
        every = np.array(self.comm.allgather((int(n), float(weight))), dtype=np.float64)
        total = 0.0
        for r in range(self.size):
            total += every[r, 1]
        self.weight = np.array([total])
        self.per = np.array([1.0 / (total * per_row) if total > 0 else 0.0])
        self.first_row = np.array([int(every[:self.rank, 0].sum())], dtype=np.intp)
        return total

    def plan(self, counts, batch_size, steps, order, weights, per_row):
        """Set the epoch's plan: for each step, the whole batch's summed weight (rows without
        sample weights count 1), what its mean divides the summed loss by (that weight times
        per_row, the loss's elements per row; 0 for a weightless batch) and where this rank's
        rows start in it. weights: this rank's sample weights in stored order, or None;
        order: the epoch's order of this rank's rows, or None."""
        k = np.arange(steps, dtype=np.int64)
        taken = np.clip(counts[:, None] - k[None, :] * batch_size, 0, batch_size)  # (size, steps)
        if weights is None:
            mine = taken[self.rank].astype(np.float64)
            every = taken.astype(np.float64)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if order is not None:
                w = w[order]
            mine = np.zeros(steps)
            for s in range(steps):  # in the engine's order (weight_sum adds in row order)
                mine[s] = float(np.cumsum(w[s * batch_size:(s + 1) * batch_size])[-1]) \
                    if taken[self.rank, s] else 0.0
            every = np.empty((self.size, steps))
            self.comm.Allgather(mine, every)
        total = np.zeros(steps)
        for r in range(self.size):  # in rank order on every rank: the same sums everywhere
            total += every[r]
        self.weight = total
        with np.errstate(divide="ignore"):
            self.per = np.where(total > 0, 1.0 / (total * per_row), 0.0)
        self.first_row = np.ascontiguousarray(taken[:self.rank].sum(axis=0), dtype=np.intp)
        return total

    def reduce(self):
        """The engine's hook between backward and update: the flat gradient buffer summed
        over the ranks, in place. False (the error kept in self.error) if MPI raised."""
        try:
            self.comm.Allreduce(self._in_place, self.grads, op=self._sum)
            return True
        except BaseException as exc:  # noqa: BLE001 - handed back by the caller
            self.error = exc
            return False

    def sum(self, *values):
        """The values summed over the ranks (float64, in one allreduce)."""
        out = np.array(values, dtype=np.float64)
        self.comm.Allreduce(self._in_place, out, op=self._sum)
        return out
