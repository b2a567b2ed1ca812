"""Shared-memory segments that carry DataLoader batches from worker processes, reused from batch to batch.

A worker packs each batch's arrays into one segment of its ring (``default_collate`` stacks samples
straight into it, so nothing is copied afterwards) and sends only a small layout (segment name, offsets,
shapes, dtypes). The main process maps a segment once, removes its name (so nothing is left
behind if any process dies) and hands out arrays that are views of it. When the last array of a batch is
gone, the segment's name goes back to its worker with the next task, and the worker fills it again: no
segment is created, mapped or faulted in per batch once the ring is warm. A worker that finds no free segment
large enough (the user still holds its batches) makes a new one, so a slow consumer never blocks a worker.
"""
from __future__ import annotations

import collections
import contextlib
import mmap
import os
import threading
import weakref
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from ..autograd import Tensor

__all__ = ["SegmentRing", "SegmentMaps", "pack_layout", "unpack_layout", "unlink_segment", "stack_output"]

_ALIGN = 64  # every array starts on a cache line
_SHM_DIRECTORY = "/dev/shm"


def _aligned(nbytes):
    return -(-nbytes // _ALIGN) * _ALIGN


def _nbytes(shape, dtype):
    """Bytes of an array of ``shape`` and ``dtype`` (an np.dtype): itemsize x prod(shape)."""
    return dtype.itemsize * int(np.prod(shape, dtype=np.int64))


_arena = threading.local()  # in a worker, while it collates: the free segment that stacks may fill


def stack_output(shape, dtype):
    """Where a collate should stack an array: a view of the worker's next segment, or None (anywhere)."""
    arena = getattr(_arena, "current", None)
    if arena is None:
        return None
    segment, used = arena
    dtype = np.dtype(dtype)
    offset = _aligned(used)
    nbytes = _nbytes(shape, dtype)
    if dtype.hasobject or offset + nbytes > segment.size:
        return None
    _arena.current = (segment, offset + nbytes)
    return np.ndarray(shape, dtype, buffer=segment.buf, offset=offset)


def pack_layout(value, place):
    """``value`` with each array replaced by (kind, offset, shape, dtype); ``place(array)`` gives the offset."""
    if isinstance(value, (Tensor, np.ndarray)):
        array = np.ascontiguousarray(value.data if isinstance(value, Tensor) else value)
        if array.dtype.hasobject:  # Python objects cannot live in shared memory: they are pickled instead
            return ("value", value)
        kind = "tensor" if isinstance(value, Tensor) else "array"
        return (kind, place(array), array.shape, array.dtype.str)
    if isinstance(value, (tuple, list)):
        return ("tuple" if isinstance(value, tuple) else "list", [pack_layout(item, place) for item in value])
    if isinstance(value, dict):
        return ("dict", [(key, pack_layout(item, place)) for key, item in value.items()])
    return ("value", value)


class _Placement:
    """Offsets for a batch's arrays in ``segment``: those already stacked into it stay, the others follow."""

    def __init__(self, segment=None, used=0):
        self.segment, self.end, self.copies = segment, used, []
        self.start = None if segment is None else np.frombuffer(segment.buf, np.uint8).ctypes.data

    def __call__(self, array):
        if self.start is not None and array.nbytes:
            address = array.ctypes.data - self.start
            if 0 <= address and address + array.nbytes <= self.segment.size:
                return address
        offset = _aligned(self.end)
        self.end = offset + array.nbytes
        self.copies.append((offset, array))
        return offset


def unpack_layout(layout, whole):
    """Rebuild a batch from ``pack_layout``'s layout; its arrays are views of the uint8 array ``whole``."""
    kind = layout[0]
    if kind in ("tensor", "array"):
        _, offset, shape, dtype = layout
        dtype = np.dtype(dtype)
        nbytes = _nbytes(shape, dtype)
        # a plain ndarray view whose base is ``whole`` keeps the batch's lease alive as long as it lives
        array = whole[offset:offset + nbytes].view(np.ndarray).view(dtype).reshape(shape)
        return Tensor(array) if kind == "tensor" else array
    if kind in ("tuple", "list"):
        items = [unpack_layout(item, whole) for item in layout[1]]
        return tuple(items) if kind == "tuple" else items
    if kind == "dict":
        return {key: unpack_layout(item, whole) for key, item in layout[1]}
    return layout[1]


class SegmentRing:
    """A worker's segments: ``collating`` lends the largest free one for default_collate to stack into,
    ``fill`` puts a batch into a segment (copying only what was not stacked there), ``give_back`` frees those
    the main process no longer uses, ``unlink_all`` removes every name when the worker ends."""

    def __init__(self):
        self.free, self.lent = {}, {}  # name -> SharedMemory
        self.retired = []  # names dropped since the last batch sent, so the main process unmaps them
        self._draft = (None, 0)  # the segment the last collate stacked into, and how many bytes it used

    def give_back(self, names):
        for name in names:
            segment = self.lent.pop(name, None)
            if segment is not None:
                self.free[name] = segment

    def _segment_for(self, nbytes):
        fitting = [segment for segment in self.free.values() if segment.size >= nbytes]
        if fitting:
            segment = min(fitting, key=lambda candidate: candidate.size)
            del self.free[segment.name]
            return segment
        for name, segment in list(self.free.items()):  # too small for batches of this size: drop them
            del self.free[name]
            _close(segment)
            unlink_segment(name)
            self.retired.append(name)
        segment = shared_memory.SharedMemory(create=True, size=max(1, nbytes))
        # the main process removes the name once it has mapped it: the worker does not track it
        resource_tracker.unregister(segment._name, "shared_memory")
        return segment

    @contextlib.contextmanager
    def collating(self):
        """Inside, ``stack_output`` hands out the largest free segment, so default_collate stacks samples
        straight into shared memory and ``fill`` has nothing left to copy."""
        draft = max(self.free.values(), key=lambda segment: segment.size, default=None)
        if draft is not None:
            del self.free[draft.name]
        _arena.current = None if draft is None else (draft, 0)
        try:
            yield
        except BaseException:
            if draft is not None:
                self.free[draft.name] = draft
            raise
        else:
            self._draft = (draft, 0 if draft is None else _arena.current[1])
        finally:
            _arena.current = None

    def fill(self, batch):
        """Put ``batch``'s arrays into a segment (those stacked into the draft stay where they are); returns
        the message (name, bytes, layout, retired names)."""
        (draft, used), self._draft = self._draft, (None, 0)
        placement = _Placement(draft, used)
        layout = pack_layout(batch, placement)
        segment = draft
        if draft is None or placement.end > draft.size:  # start over in a segment large enough
            placement = _Placement()
            layout = pack_layout(batch, placement)
            segment = self._segment_for(placement.end)
            if draft is not None:
                self.free[draft.name] = draft  # the batch's arrays in it were just copied out below
        whole = np.ndarray((segment.size,), np.uint8, buffer=segment.buf)
        try:
            for offset, array in placement.copies:
                whole[offset:offset + array.nbytes].view(array.dtype).reshape(array.shape)[...] = array
        except BaseException:
            self.free[segment.name] = segment
            raise
        finally:
            del whole
        self.lent[segment.name] = segment
        retired, self.retired = self.retired, []
        return segment.name, placement.end, layout, retired

    def unlink_all(self):
        for name, segment in list(self.free.items()) + list(self.lent.items()):
            _close(segment)
            unlink_segment(name)
        self.free, self.lent = {}, {}


def _close(segment):
    try:
        segment.close()
    except BufferError:  # arrays of the batch the worker still holds use it: the mapping goes with them
        pass


def unlink_segment(name):
    """Remove a segment's name if it is still there (the main process removes it when it maps it)."""
    try:
        segment = shared_memory.SharedMemory(name=name)
    except FileNotFoundError:
        return
    segment.close()
    segment.unlink()


class _Lease(np.ndarray):
    """The bytes of one batch in a segment; when the last array of the batch is gone, the segment is freed."""


class SegmentMaps:
    """The main process's side: segments mapped once each; ``open`` returns a batch whose arrays are views of
    its segment, ``freed(worker)`` the names of segments whose batches are gone since the last call."""

    def __init__(self, num_workers):
        self.maps = {}  # segment name -> mmap (None: the platform has no segment files; batches are copied)
        self.released = [collections.deque() for _ in range(num_workers)]

    def retire(self, names):
        for name in names:
            self.maps.pop(name, None)  # arrays still using the mapping keep it alive

    def _map(self, name):
        if name not in self.maps:
            path = os.path.join(_SHM_DIRECTORY, name.lstrip("/"))
            if os.path.isfile(path):
                descriptor = os.open(path, os.O_RDWR)
                try:
                    self.maps[name] = mmap.mmap(descriptor, os.fstat(descriptor).st_size)
                finally:
                    os.close(descriptor)
                    os.unlink(path)  # the mappings keep the memory; a crash leaves no file behind
            else:
                self.maps[name] = None
        return self.maps[name]

    def open(self, worker, message):
        """The batch in ``message`` (from ``SegmentRing.fill``); its segment returns to ``worker`` when unused."""
        name, nbytes, layout, retired = message
        self.retire(retired)
        mapping = self._map(name)
        if mapping is None:
            segment = shared_memory.SharedMemory(name=name)
            resource_tracker.unregister(segment._name, "shared_memory")  # the worker owns and removes it
            whole = np.array(segment.buf[:nbytes], dtype=np.uint8)  # a copy: the segment is free at once
            segment.close()
            self.released[worker].append(name)
            return unpack_layout(layout, whole)
        whole = np.frombuffer(mapping, np.uint8, nbytes).view(_Lease)
        # deque.append takes no lock, so it is safe wherever the last reference happens to be dropped
        weakref.finalize(whole, self.released[worker].append, name).atexit = False
        return unpack_layout(layout, whole)

    def drop(self, worker, message):
        """Free the segment of a batch that will not be used (mapping it first removes its name)."""
        self.retire(message[3])
        self._map(message[0])
        self.released[worker].append(message[0])

    def freed(self, worker):
        names, queue = [], self.released[worker]
        while queue:
            names.append(queue.popleft())
        return names
