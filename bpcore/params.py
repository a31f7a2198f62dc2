"""Parameters and the seeds that initialise them.

A Parameter is a named weight array and its gradient, both views into one flat parameter
buffer and one flat gradient buffer (``flat_data``, ``flat_grad``, at ``offset``): the
optimizers update whole runs of such buffers in one native loop.
"""
import os

import numpy as np

from bpcore._rng import Generator
from bpcore._validation import assign_array

__all__ = ["Parameter", "new_seed", "as_generator"]


class Parameter:
    """A named weight array and its gradient, both views into flat buffers.

    Assigning to ``data`` or ``grad`` copies into the view (same shape and dtype, finite):
    the flat buffers are what the optimizers and the training engine update, so the arrays
    are never replaced. When a layer joins a network its parameters move, as the same
    objects, into the network's buffers (``move_to``); optimizers over them follow.
    """

    __slots__ = ("name", "_data", "_grad", "_flat_data", "_flat_grad", "_offset")

    def __init__(self, name, data, grad, flat_data=None, flat_grad=None, offset=0):
        """Without flat buffers, data and grad (C-contiguous, one shape) are their own."""
        if flat_data is None:
            data, grad = np.asarray(data), np.asarray(grad)
            if not (data.flags.c_contiguous and grad.flags.c_contiguous):
                raise ValueError(f"params: Parameter {name!r} must be C-contiguous")
            if grad.shape != data.shape:
                raise ValueError(f"params: Parameter {name!r}'s gradient: expected length "
                                 f"{data.size}, got {grad.size}")
            flat_data, flat_grad = data.reshape(-1), grad.reshape(-1)
        self.name = name
        self.move_to(data, grad, flat_data, flat_grad, offset)

    def move_to(self, data, grad, flat_data, flat_grad, offset):
        """Make this parameter the views data and grad of flat_data and flat_grad at offset
        (for the layer that owns it; an optimizer over it sees the new buffers)."""
        self._data, self._grad = data, grad
        self._flat_data, self._flat_grad = flat_data, flat_grad
        self._offset = offset

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        assign_array(self._data, value, self.name)

    @property
    def grad(self):
        return self._grad

    @grad.setter
    def grad(self, value):
        assign_array(self._grad, value, f"{self.name}.grad")

    @property
    def flat_data(self):
        """The 1-D parameter buffer this parameter is a view of."""
        return self._flat_data

    @property
    def flat_grad(self):
        """The 1-D gradient buffer its gradient is a view of."""
        return self._flat_grad

    @property
    def offset(self):
        """Where it starts in them."""
        return self._offset

    @property
    def shape(self):
        return self._data.shape

    @property
    def size(self):
        return self._data.size

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.shape}, dtype={self._data.dtype.name})"


def new_seed():
    """A fresh 64-bit seed from the operating system, for seed=None."""
    return int.from_bytes(os.urandom(8), "little")


def seed_value(seed, name="seed"):
    """An integer seed in [0, 2**64), or a fresh one for None (for the streams that are keyed
    by the seed itself, as dropout's masks)."""
    if seed is None:
        return new_seed()
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise (ValueError if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool)
               else TypeError)(f"{name}: expected None or an integer in [0, 2**64), got {seed!r}")
    return int(seed)


def as_generator(seed, name="seed"):
    """A bpcore Generator for an integer seed, None (fresh entropy) or a Generator: the one
    rule for seeds (layers, MLP and fit take theirs through it)."""
    if isinstance(seed, Generator):
        return seed
    if seed is None:
        return Generator(new_seed())
    expected = f"{name}: expected None or an integer in [0, 2**64) (or a bpcore Generator)"
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{expected}, got {seed!r}")
    if not 0 <= seed < 2**64:
        raise ValueError(f"{expected}, got {seed!r}")
    return Generator(int(seed))
