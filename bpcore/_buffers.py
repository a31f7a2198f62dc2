"""Buffers that start on a cache line: the flat parameters and gradients, the optimizers' state."""
import numpy as np

# bpcore's small-batch kernels and its update loops load whole vectors of a row of W (and of
# its optimizer state), and a row that starts on a line is read in whole lines (measured on
# AVX2, batch 32, the 784x256 forward product: 172 us aligned, 216 us 16 bytes off)
BUFFER_ALIGN = 64


def aligned_zeros(size, dtype):
    """A 1-d array of size zeros of dtype whose data starts on a BUFFER_ALIGN-byte boundary."""
    item = np.dtype(dtype).itemsize
    raw = np.zeros(size * item + BUFFER_ALIGN, np.uint8)
    start = -raw.ctypes.data % BUFFER_ALIGN
    return raw[start:start + size * item].view(dtype)
