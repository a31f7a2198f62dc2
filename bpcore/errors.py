"""The exceptions bpcore raises for its own conditions (everything else is a ValueError or a
TypeError naming the argument).

- ``FileFormatError``: a file bpcore reads (a checkpoint, an IDX file) that is missing data,
  truncated, corrupted or malformed; a ValueError, naming the path and what is wrong.
- ``CheckpointError``: the FileFormatError of checkpoint files.
- ``NonFiniteError``: a training step whose loss, gradient or update is NaN or infinite; the
  parameters and optimizer state are left as they were before that step.
"""
import os

__all__ = ["FileFormatError", "CheckpointError", "NonFiniteError"]


class FileFormatError(ValueError):
    """A file that cannot be read: missing data, truncated, corrupted or malformed."""

    def __init__(self, path, problem):
        super().__init__(f"{os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


class CheckpointError(FileFormatError):
    """A checkpoint file that cannot be read: missing, truncated, corrupted or malformed."""


class NonFiniteError(FloatingPointError):
    """A training step met a NaN or an infinity; the step was not applied."""


class DistributedError(RuntimeError):
    """In data-parallel training (bpcore.distributed): another rank refused or failed, or the
    gradient could not be summed over the ranks; every rank raises, none waits for ever."""
