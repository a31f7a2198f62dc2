"""Type stubs for bpcore._bench (compiled from _bench.pyx): benchmark instrumentation."""
from typing import Any

import numpy.typing as npt

from bpcore._engine import Engine

def gemm_floor(engine: Engine, X: npt.NDArray[Any], parts: bool = False) -> None:
    """Run only the GEMMs of a train_step on X, on the engine's workspaces."""
