"""cnnkit's own threads and NumPy's BLAS threads: share work over threads (BLAS narrowed meanwhile), lend BLAS threads.

NumPy releases the GIL inside ufunc loops, copies and BLAS calls, so independent chunks of one op can run on
Python threads at once.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading

from .. import backend
from .workers import Workers

_pool = None


# ------------------------------------------------------------------------------------------------ BLAS threads
# Two Python threads, each calling a one-thread BLAS on its own chunk, ran conv GEMMs faster than OpenBLAS's
# own two threads on one GEMM, and they also run each chunk's im2col and output copies at once. So while
# cnnkit's threads share an op's work, NumPy's BLAS is narrowed to one thread (``narrow_blas``); an op left
# with one indivisible GEMM (a batch of one image) lends BLAS the threads instead (``blas_threads``). Both
# restore the count they found, so NumPy's own matmul is left as the user set it. CNNKIT_BLAS_THREADS=native
# leaves BLAS alone altogether.
_blas_lock = threading.Lock()
_blas_open = []  # [block, its count] of every narrow_blas / blas_threads block open now, on any thread, oldest first
_blas_found = None  # the count found when the first of them opened: restored when the last one closes


CONTROLS_BLAS = backend.blas_num_threads() is not None and not backend.blas_left_native()


def splits_blas_work() -> bool:
    """Whether ops should split GEMMs over cnnkit's threads (BLAS reachable, so narrowable; more than one thread)."""
    return CONTROLS_BLAS and backend.get_num_threads() > 1


def _enter(count):
    """Open a block that sets BLAS to ``count(current)`` threads; returns it (None: BLAS is left alone)."""
    global _blas_found
    if not CONTROLS_BLAS:
        return None
    block = []
    with _blas_lock:
        current = backend.blas_num_threads()
        if not _blas_open:
            _blas_found = current
        wanted = count(current)
        block.append(wanted)
        _blas_open.append(block)
        if wanted != current:
            backend.set_blas_num_threads(wanted)
    return block


def _leave(block):
    """Close ``block``: BLAS gets the count of the newest block still open (nested ones on one thread close in
    order, so this is the enclosing block's), or the count found before the first, when none is left."""
    if block is None:
        return
    with _blas_lock:
        _blas_open[:] = [other for other in _blas_open if other is not block]
        restore = _blas_open[-1][0] if _blas_open else _blas_found
        if backend.blas_num_threads() != restore:
            backend.set_blas_num_threads(restore)


@contextlib.contextmanager
def blas_threads(count):
    """Context: BLAS may use ``count`` threads inside (for one GEMM an op cannot split); restored after."""
    block = _enter(lambda current: max(count, current))
    try:
        yield
    finally:
        _leave(block)


@contextlib.contextmanager
def narrow_blas():
    """Context: BLAS runs on one thread inside, while cnnkit's own threads share the work; restored after."""
    block = _enter(lambda current: 1)
    try:
        yield
    finally:
        _leave(block)


def blas_num_threads():
    """Threads NumPy's BLAS uses now (None when the backend cannot reach it)."""
    return backend.blas_num_threads()


# Below this many multiply-adds a product runs as one call: a thread hand-off costs tens of microseconds.
SPLIT_MATMUL_MIN_MACS = 1 << 22


def matmul(a, b, min_split_macs=SPLIT_MATMUL_MIN_MACS):
    """a @ b (NumPy's rules); one of at least ``min_split_macs`` multiply-adds is split over cnnkit's threads."""
    xp = backend.get_array_module()
    if not splits_blas_work() or a.ndim == 0 or b.ndim == 0:
        return xp.matmul(a, b)
    rows = a.shape[-2] if a.ndim > 1 else 1
    inner, cols = a.shape[-1], (b.shape[-1] if b.ndim > 1 else 1)
    batch = max(a.size // max(1, rows * inner), b.size // max(1, inner * cols))
    if batch * rows * inner * cols < min_split_macs:
        return xp.matmul(a, b)
    if a.ndim != 2 or b.ndim != 2:
        with blas_threads(backend.get_num_threads()):
            return xp.matmul(a, b)
    out = xp.empty((rows, cols), xp.result_type(a, b))
    # split the longer side of the output: each thread's GEMM then keeps a full-size inner loop
    if rows >= cols:
        parts = [(slice(start, stop), slice(None)) for start, stop in _bounds(rows, backend.get_num_threads())]
    else:
        parts = [(slice(None), slice(start, stop)) for start, stop in _bounds(cols, backend.get_num_threads())]
    parallel_map(lambda part: xp.matmul(a[part[0]], b[:, part[1]], out=out[part]), parts)
    return out


def _bounds(length, parts):
    """(start, stop) of ``parts`` nearly equal, non-empty pieces of range(length)."""
    return [(piece[0], piece[-1] + 1) for piece in split_ranges(range(length), parts)]


def _after_fork_in_child():
    """A forked child has none of its parent's threads: make a fresh pool (and BLAS lock) on first use."""
    global _pool, _blas_lock, _blas_open
    if _blas_open:  # forked inside a narrowed block: the child gets the count its parent found back
        backend.set_blas_num_threads(_blas_found)
    _pool, _blas_lock, _blas_open = None, threading.Lock(), []


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def split_ranges(items, parts):
    """``items`` cut into at most ``parts`` contiguous, non-empty, nearly equal lists."""
    items = list(items)
    parts = max(1, min(parts, len(items)))
    size, extra = divmod(len(items), parts)
    cuts, start = [], 0
    for index in range(parts):
        stop = start + size + (index < extra)
        cuts.append(items[start:stop])
        start = stop
    return cuts


_inside = threading.local()  # .share: this thread is running its own share of a parallel_map


def parallel_map(fn, tasks):
    """[fn(task) for task in tasks], on up to backend.get_num_threads() threads (inline when one is enough).

    The calling thread runs every thread-count-th task from the first itself while the resident workers run
    the others (``Workers.map``), so it never sleeps and waits to be woken for its own share (waking a thread
    costs as much as a small task); while another caller's op holds the workers, the tasks run inline. NumPy's
    BLAS runs on one thread meanwhile (see narrow_blas) and gets its count back before this returns.
    """
    global _pool
    tasks = list(tasks)
    threads = min(backend.get_num_threads(), len(tasks))
    # inside a pool thread, or inside the caller's own share, the work runs inline: nested tasks queued
    # behind their own callers would deadlock
    if threads <= 1 or getattr(_inside, "share", False) or threading.current_thread().name.startswith("cnnkit"):
        return [fn(task) for task in tasks]
    if _pool is None or _pool.count < threads - 1:
        _pool = Workers(threads - 1)  # a smaller pool's idle threads stay blocked, unused
    pool = _pool
    if not pool.busy.acquire(blocking=False):  # another caller's op holds the workers: run this one inline
        return [fn(task) for task in tasks]
    block = _enter(_one_thread)  # each share calls BLAS on one thread (see narrow_blas)
    _inside.share = True
    try:
        return pool.map(fn, tasks, threads - 1)
    finally:
        _inside.share = False
        _leave(block)
        pool.busy.release()


def _one_thread(current):
    return 1


def parallel_for(fn, tasks, scratch=dict, threads=None):
    """[fn(task, scratch) for task in tasks], on up to ``threads`` (default backend.get_num_threads()) threads, each
    taking the next task as soon as it is free.

    Each thread makes one ``scratch()`` object (buffers it reuses across its tasks). Results come back
    in task order, so a reduction over them does not depend on which thread ran what. Taking tasks as
    threads free up beats a static split, which waits on its slowest share when cores run unevenly.
    """
    tasks = list(tasks)
    threads = min(threads or backend.get_num_threads(), len(tasks))
    if threads <= 1:
        work = scratch()
        return [fn(task, work) for task in tasks]
    results = [None] * len(tasks)
    taken = itertools.count()  # next() on it is atomic under the GIL
    failed = []

    def participant(_):
        work = scratch()
        for index in taken:
            if index >= len(tasks) or failed:
                return
            try:
                results[index] = fn(tasks[index], work)
            except BaseException:
                failed.append(True)  # the others stop taking tasks
                raise

    parallel_map(participant, range(threads))
    return results
