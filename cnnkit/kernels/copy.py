"""Fast copies: ``assign`` moves rows of short contiguous runs as single opaque elements."""
from __future__ import annotations

import numpy

from ..backend import get_array_module


def assign(target, source):
    """target[...] = source; with both last axes contiguous, each row is copied as one opaque element.

    NumPy copies a run of w floats element by element, with a loop per run; viewed as one (w * itemsize)-byte
    void element per row, the same copy is one loop over whole rows, much faster for short rows.
    Any other case (broadcasting, strided rows, another array module) is a plain assignment.
    """
    if (get_array_module() is numpy and type(target) is numpy.ndarray and type(source) is numpy.ndarray
            and target.shape == source.shape and target.dtype == source.dtype and target.ndim > 1
            and target.shape[-1] > 1 and target.size and target.dtype.kind in "fiub"
            and target.strides[-1] == source.strides[-1] == target.itemsize):
        row = numpy.dtype((numpy.void, target.shape[-1] * target.itemsize))
        target.view(row)[...] = source.view(row)
    else:
        target[...] = source
