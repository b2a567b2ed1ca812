"""The generator random transforms draw from: the DataLoader's per-sample one inside a loader, else the global one.

A DataLoader installs a generator seeded from ``(loader seed, epoch, sample index)`` around each sample it loads
(thread-locally, so its prefetch thread never races the model's dropout on the global generator). Outside
a loader, transforms use ``cnnkit.backend.get_rng()``, which ``cnnkit.manual_seed`` resets.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager

from .. import backend

_local = threading.local()


def get_data_rng():
    """Return the generator for data augmentation in this thread (the loader's, else the global one)."""
    rng = getattr(_local, "rng", None)
    return rng if rng is not None else backend.get_rng()


@contextmanager
def use_data_rng(rng):
    """Make ``rng`` this thread's augmentation generator inside the ``with`` block."""
    previous = getattr(_local, "rng", None)
    _local.rng = rng
    try:
        yield rng
    finally:
        _local.rng = previous
