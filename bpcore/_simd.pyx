# cython: language_level=3
"""The vector width of bpcore's elementwise loops: the widest this CPU runs, chosen at import.

Levels: 0 portable (the wheel's SSE2 baseline on x86-64), 1 AVX2+FMA, 2 AVX-512. Every native
module reaches the loops through the one table here, so ``set_level`` switches them all (the
tests run each level the machine supports and compare).
"""

cdef extern from "bp_simd.h":
    int bp_simd_best_level() noexcept nogil
    int bp_simd_fill(bp_simd_table *table, int level) noexcept nogil

cdef bp_simd_table TABLE
bp_simd_fill(&TABLE, bp_simd_best_level())


cdef bp_simd_table *simd() noexcept nogil:
    return &TABLE


LEVEL_NAMES = {0: "portable", 1: "AVX2+FMA", 2: "AVX-512"}


def level():
    """The level in use: 0 portable, 1 AVX2+FMA, 2 AVX-512."""
    return TABLE.level


def best_level():
    """The widest level this CPU runs."""
    return bp_simd_best_level()


def set_level(int level):
    """Use `level` (clamped to what the CPU runs); returns the level now in use."""
    return bp_simd_fill(&TABLE, level)
