"""Type stubs for bpcore._simd (compiled from _simd.pyx): the vector width, chosen at import."""

LEVEL_NAMES: dict[int, str]

def level() -> int:
    """The level in use: 0 portable, 1 AVX2+FMA, 2 AVX-512."""

def best_level() -> int:
    """The widest level this CPU runs."""

def set_level(level: int) -> int:
    """Use `level` (clamped to what the CPU runs); returns the level now in use."""
