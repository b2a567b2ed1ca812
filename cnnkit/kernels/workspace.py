"""``Workspace``: per-thread scratch arrays that a kernel's chunks reuse instead of allocating afresh."""
from __future__ import annotations

from ..backend import get_array_module


class Workspace:
    """Flat scratch arrays reused by every chunk (a fresh large array per chunk would page-fault each time),
    and the views of them that a thread's chunks of one size reuse (``views``)."""

    def __init__(self, dtype):
        self.dtype, self.arrays, self.memo = dtype, {}, {}

    def views(self, key, make):
        """make() on the first call with ``key``, the same objects after: each chunk then costs only its copies
        and products: Python time is where two threads queue for the GIL."""
        found = self.memo.get(key)
        if found is None:
            found = self.memo[key] = make()
        return found

    def get(self, name, shape, zero=False, slack=0):
        """A C-contiguous ``shape`` view of scratch ``name`` (zeroed when first made with ``zero``)."""
        xp = get_array_module()
        size = 1
        for s in shape:
            size *= s
        flat = self.arrays.get(name)
        if flat is None or flat.size < size + slack:
            flat = xp.zeros(size + slack, self.dtype) if zero else xp.empty(size + slack, self.dtype)
            self.arrays[name] = flat
        return flat[:size].reshape(shape)
