# The shape guard of the Python-callable native entry points (no module of its own: inline).

cdef inline void require(bint ok, str what) except *:
    """Raise ValueError(what) unless ok: a wrong call raises instead of writing out of bounds."""
    if not ok:
        raise ValueError(what)
