"""Type stubs for bpcore._spin (compiled from _spin.pyx, without OpenMP): how long idle OpenMP
threads spin, as a time turned into GOMP_SPINCOUNT before the runtime loads."""
from contextlib import AbstractContextManager
from typing import Any

BUDGET_SECONDS: float
MIN_COUNT: int
MAX_COUNT: int
WAIT_VARS: tuple[str, ...]

def step_seconds(trials: int = ..., steps: int = ...) -> float:
    """Seconds of one step of the wait loop on this CPU (the fastest of several runs)."""

def spin_count(budget: float = ...) -> int:
    """The GOMP_SPINCOUNT that spins for about `budget` seconds, within [MIN_COUNT, MAX_COUNT]."""

def sized_wait() -> AbstractContextManager[None]:
    """Load the OpenMP runtime inside: GOMP_SPINCOUNT set unless the user chose the wait."""

def setting() -> dict[str, Any]:
    """What sets the idle threads' spin: bpcore, the user, or a runtime loaded before bpcore."""
