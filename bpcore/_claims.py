"""Which thread is using which weight buffers: one network, one thread at a time.

The training engine, the layer API and the optimizers all write the same flat buffers (a
network's parameters and gradients). A second thread writing them while the first trains
corrupts the weights silently (``zero_grad()`` from another thread during ``train_step`` did),
so every entry point that reads or writes a network's buffers claims them for its thread, and
a claim held by another thread is refused with a RuntimeError. The thread that holds a claim
may claim again (a ``fit`` callback that saves the model).
"""
import threading
import weakref

import numpy as np

__all__ = ["claim", "release", "Claimed"]

_lock = threading.Lock()
# id of a root buffer -> [holding thread's ident, what holds it, depth]: made once per buffer
# (and dropped with it), so that a claim in steady state allocates next to nothing
_records = {}


def _root(a):
    """The array that owns a's memory (a view's base, followed to the end)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _record(a):
    root = _root(a)
    key = id(root)
    record = _records.get(key)
    if record is None:
        record = _records[key] = [0, None, 0]
        weakref.finalize(root, _records.pop, key, None)
    return record


def claim(arrays, what):
    """Claim the buffers of arrays for the calling thread; returns what release() takes.
    RuntimeError, naming `what` and the holder, if another thread holds one of them."""
    me = threading.get_ident()
    records = []  # (a plain loop: tuple(map(...)) holds kilobytes while it runs)
    for a in arrays:
        records.append(_record(a))
    with _lock:
        for record in records:
            if record[2] and record[0] != me:
                raise RuntimeError(f"{what}: the network's weights are in use by {record[1]} "
                                   f"in another thread; one network is used by one thread at "
                                   f"a time (give each thread its own model)")
        for record in records:
            if not record[2]:
                record[0], record[1] = me, what
            record[2] += 1
    return records


def release(records):
    with _lock:
        for record in records:
            record[2] -= 1
            if not record[2]:
                record[0], record[1] = 0, None


class Claimed:
    """``with Claimed(arrays, "what"):`` claim for a block."""

    __slots__ = ("arrays", "what", "records")

    def __init__(self, arrays, what):
        self.arrays, self.what = arrays, what

    def __enter__(self):
        self.records = claim(self.arrays, self.what)
        return self

    def __exit__(self, *exc):
        release(self.records)
