"""Parameters and the seeds that initialise them.

A Parameter is a named weight array and its gradient, both views into one flat parameter
buffer and one flat gradient buffer (``flat_data``, ``flat_grad``, at ``offset``): the
optimizers update whole runs of such buffers in one native loop.
"""
import os

import numpy as np

from bpcore._rng import Generator

__all__ = ["Parameter", "new_seed", "as_generator"]


class Parameter:
    """A named weight array and its gradient, both views into flat buffers."""

    __slots__ = ("name", "data", "grad", "flat_data", "flat_grad", "offset")

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
        self.data = data
        self.grad = grad
        self.flat_data = flat_data  # the 1-D buffers this parameter is a view of
        self.flat_grad = flat_grad
        self.offset = offset        # where it starts in them

    @property
    def shape(self):
        return self.data.shape

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        return f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype.name})"


def new_seed():
    """A fresh 64-bit seed from the operating system, for seed=None."""
    return int.from_bytes(os.urandom(8), "little")


def as_generator(seed, name="seed"):
    """A bpcore Generator for an integer seed, None (fresh entropy) or a Generator."""
    if isinstance(seed, Generator):
        return seed
    if seed is None:
        return Generator(new_seed())
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**64:
        raise TypeError(f"{name}: expected None or an integer in [0, 2**64), got {seed!r}")
    return Generator(int(seed))
