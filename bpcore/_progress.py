"""fit's display within an epoch (``verbose``): a bar over the epoch's batches, tqdm's when tqdm
is installed, else a plain line on stdout, beside fit's line per epoch.

The engine calls the display every few batches, at the point where it returns to Python for
Ctrl-C anyway (bpcore._engine's SIGNAL_EVERY), so the display costs one clock reading there and
nothing per batch. An epoch shorter than INTERVAL seconds shows nothing; a longer one shows the
bar from then on, updated at most every INTERVAL seconds, and removes it at the epoch's end.
"""
import sys
import time

__all__ = ["EpochProgress"]

INTERVAL = 1.0  # seconds: before an epoch's first update, and between two updates


def _tqdm():
    """tqdm's bar class, or None when tqdm is not installed (the plain lines then)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm


class EpochProgress:
    """progress(done, batches) for the engine's epoch loop; begin(epoch) before each epoch and
    end() after it (also after an exception: the bar must not stay on the terminal)."""

    def __init__(self, epochs):
        self.epochs = epochs
        self.bar_class = _tqdm()
        self.bar = None
        self.epoch = 0
        self.start = self.next = 0.0

    def begin(self, epoch):
        self.epoch = epoch
        self.start = time.perf_counter()
        self.next = self.start + INTERVAL

    def __call__(self, done, batches):
        now = time.perf_counter()
        if now < self.next:
            return
        self.next = now + INTERVAL
        label = f"epoch {self.epoch + 1}/{self.epochs}"
        if self.bar_class is None:
            print(f"{label}  batch {done}/{batches}  ({now - self.start:.1f} s)",
                  file=sys.stdout, flush=True)
            return
        if self.bar is None:
            # made at the first update (a short epoch never pays for a bar), starting from the
            # batches already done so that its rate counts only what it saw; every update
            # drawn (mininterval 0, miniters 1): they are already INTERVAL apart
            self.bar = self.bar_class(total=batches, initial=done, desc=label, unit="batch",
                                      leave=False, file=sys.stdout, mininterval=0, miniters=1)
        else:
            self.bar.update(done - self.bar.n)

    def end(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
