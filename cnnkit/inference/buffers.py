"""Buffer planning: every value a compiled call computes gets an array made once, shared by values whose lives
do not overlap (a value's life runs from the step that writes it to the last step that reads it)."""
from __future__ import annotations

import math

from ..backend import get_array_module


class BufferPool:
    """Flat arrays handed out as shaped views; ``give`` returns one for reuse by a later value."""

    def __init__(self):
        self.free = []  # flat arrays nobody reads any more
        self.allocated = 0  # bytes made by this pool

    def take(self, shape, dtype):
        """(view of the given shape, its flat array): the smallest free array that fits, else a new one."""
        size = math.prod(shape)
        fits = [(flat.size, index) for index, flat in enumerate(self.free) if flat.dtype == dtype and flat.size >= size]
        if fits:
            flat = self.free.pop(min(fits)[1])
        else:
            flat = get_array_module().empty(max(size, 1), dtype)
            self.allocated += flat.nbytes
        return flat[:size].reshape(shape), flat

    def give(self, flat):
        self.free.append(flat)


def last_reads(graph, views):
    """{root value: index of the last node reading it or any view of it}; the graph output never dies.

    ``views`` maps a value that is a view of another to that other value (its root).
    """
    last = {}
    for index, node in enumerate(graph.nodes):
        for value in node.refs():
            last[root_of(value, views)] = index
    last[root_of(graph.output, views)] = math.inf
    return last


def root_of(value, views):
    while value in views:
        value = views[value]
    return value
