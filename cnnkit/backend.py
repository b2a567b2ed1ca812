"""The one place that picks the array module, the default dtype and the random generator.

Ops never import NumPy themselves: they call ``get_array_module()`` (``xp``), so a CuPy
backend can later be switched in here without touching an op.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import threading

# OpenBLAS's idle workers spin for 2**28 cycles (about 0.1 s) after every call, holding a core that the
# elementwise passes and cnnkit's own threads between GEMMs need: 2**4 measured a 10-25% faster
# MobileNet-v2 training step on 2 threads (depthwise after a GEMM: 29.7 -> 22.5 ms). A default only, and
# effective only when NumPy is first imported here; torch (MKL/OpenMP) ignores it.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy  # noqa: E402


def _keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    By default every array over a (self-adjusting) threshold is mmap-ed and unmapped when freed, so
    the next one of that size page-faults all its pages in again: a training step frees and re-makes
    hundreds of activation-sized arrays. Keeping freed blocks in the heap measured 5-25% faster training
    steps on 2 threads (MobileNet-v2 CIFAR: 76,000 page faults per step -> under 100) at no cost in peak
    memory. Set CNNKIT_MALLOC_TUNING=0 to leave malloc alone; other C libraries are left alone too.
    """
    if os.environ.get("CNNKIT_MALLOC_TUNING", "1") == "0":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None)
    except OSError:
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # glibc only
        return False
    mallopt = libc.mallopt
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
    mib = 1 << 20
    # blocks up to 32 MiB (glibc's ceiling for this setting) come from the heap; larger ones are still
    # mmap-ed. Up to 1 GiB of free memory at the top of the heap is kept rather than trimmed.
    return bool(mallopt(m_mmap_threshold, 32 * mib) and mallopt(m_trim_threshold, 1024 * mib)
                and mallopt(m_top_pad, 64 * mib))


MALLOC_TUNED = _keep_freed_memory()

_xp = numpy
_default_dtype = numpy.float32
_rng = numpy.random.default_rng()


def get_array_module():
    """Return the array module every op computes with (NumPy today)."""
    return _xp


def set_array_module(module) -> None:
    """Switch the array module (for example to ``cupy``); it must mirror NumPy's API."""
    global _xp
    _xp = module


def get_default_dtype():
    """Return the dtype new floating tensors get (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the dtype new floating tensors get; only float32 and float64 are supported."""
    global _default_dtype
    dtype = numpy.dtype(dtype).type
    if dtype not in (numpy.float32, numpy.float64):
        raise TypeError(f"set_default_dtype: expected float32 or float64, got {numpy.dtype(dtype).name}")
    _default_dtype = dtype


def manual_seed(seed: int):
    """Seed cnnkit's global random generator (initialisation, dropout, shuffling)."""
    global _rng
    _rng = _xp.random.default_rng(int(seed))
    return _rng


def get_rng():
    """Return the global random generator that ``manual_seed`` resets."""
    return _rng


def get_rng_state() -> dict:
    """Return the global generator's state as plain data (for exact resume)."""
    return _rng.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore the global generator's state saved with ``get_rng_state``."""
    _rng.bit_generator.state = state


# ------------------------------------------------------------------------------------------------ threads
# NumPy releases the GIL inside ufunc loops, copies and BLAS calls, so independent chunks of one op can
# run on Python threads at once: elementwise passes, depthwise convolution's tiny GEMMs and, with BLAS
# pinned to one thread (see below), the convolutions' and large matrix products' GEMMs.
_num_threads = None
_pool = None


def get_num_threads() -> int:
    """Threads an op may split its work over: set_num_threads, else $OMP_NUM_THREADS, else
    $OPENBLAS_NUM_THREADS (cnnkit's threads do the work BLAS's threads would), else the CPU count."""
    if _num_threads is not None:
        return _num_threads
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        try:
            return max(1, int(os.environ.get(name, "")))
        except ValueError:
            continue
    return max(1, os.cpu_count() or 1)


def set_num_threads(count: int) -> None:
    """Set how many threads ops split their work over (1 turns the splitting off), as torch.set_num_threads."""
    global _num_threads, _pool
    if int(count) < 1:
        raise ValueError(f"set_num_threads: expected a positive thread count, got {count!r}")
    _num_threads = int(count)
    if _pool is not None:
        _pool.shutdown(wait=True)
        _pool = None


# ------------------------------------------------------------------------------------------------ BLAS threads
# OpenBLAS's own two threads ran these GEMMs at 115-130 GFLOP/s; two Python threads, each calling a
# one-thread BLAS on its own chunk, at 135-153 (W (128, 1152) @ cols (1152, 2048)), and they also run each
# chunk's im2col and output copies at once. So when the backend can reach NumPy's OpenBLAS it pins it to
# one thread and ops split their GEMM work over cnnkit's threads (conv2d forward + backward: 64 channels
# 32x32 1.31-1.76x -> 1.19x torch's time). An op left with one indivisible GEMM (a batch of one image)
# lends BLAS the threads for that call (``blas_threads``). This is process-wide: NumPy's own matmul runs
# on one thread while cnnkit is imported. CNNKIT_BLAS_THREADS=native before the import leaves BLAS alone.


def _find_openblas():
    """(set_num_threads, get_num_threads) of the OpenBLAS bundled in NumPy's wheel, or None if there is none."""
    import ctypes
    import glob

    root = os.path.dirname(numpy.__file__)
    paths = glob.glob(os.path.join(root, os.pardir, "numpy.libs", "*openblas*")) + glob.glob(
        os.path.join(root, ".dylibs", "*openblas*"))
    for path in paths:
        try:
            library = ctypes.CDLL(path)  # already loaded by NumPy: the same handle, the same thread pool
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                setter = getattr(library, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(library, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype, getter.restype = [ctypes.c_int], None, ctypes.c_int
                    return setter, getter
    return None


_blas = _find_openblas()
BLAS_PINNED = _blas is not None and os.environ.get("CNNKIT_BLAS_THREADS", "").lower() != "native"
_blas_lock = threading.Lock()
_blas_lenders = 0  # blas_threads blocks open now: the last one to close pins BLAS again


def splits_blas_work() -> bool:
    """Whether ops should split GEMMs over cnnkit's threads (BLAS pinned to one thread, more than one thread)."""
    return BLAS_PINNED and get_num_threads() > 1


@contextlib.contextmanager
def blas_threads(count):
    """Context: BLAS may use ``count`` threads inside (for one GEMM an op cannot split); pinned to one after."""
    global _blas_lenders
    if not BLAS_PINNED:
        yield
        return
    with _blas_lock:
        _blas_lenders += 1
        _blas[0](max(count, _blas[1]()))
    try:
        yield
    finally:
        with _blas_lock:
            _blas_lenders -= 1
            if _blas_lenders == 0:
                _blas[0](1)


def pin_blas():
    """Pin NumPy's BLAS to one thread again, after something else (threadpoolctl, a library) changed it."""
    if BLAS_PINNED:
        _blas[0](1)


def blas_num_threads():
    """Threads NumPy's BLAS uses now (None when the backend cannot reach it)."""
    return _blas[1]() if _blas is not None else None


pin_blas()


# Below this many multiply-adds a product runs as one call: a thread hand-off costs tens of microseconds.
SPLIT_MATMUL_MIN_MACS = 1 << 22


def matmul(a, b):
    """a @ b (NumPy's rules); a large one is split over cnnkit's threads when BLAS is pinned to one."""
    xp = _xp
    if not splits_blas_work() or a.ndim == 0 or b.ndim == 0:
        return xp.matmul(a, b)
    rows = a.shape[-2] if a.ndim > 1 else 1
    inner, cols = a.shape[-1], (b.shape[-1] if b.ndim > 1 else 1)
    batch = max(a.size // max(1, rows * inner), b.size // max(1, inner * cols))
    if batch * rows * inner * cols < SPLIT_MATMUL_MIN_MACS:
        return xp.matmul(a, b)
    if a.ndim != 2 or b.ndim != 2:
        with blas_threads(get_num_threads()):
            return xp.matmul(a, b)
    out = xp.empty((rows, cols), xp.result_type(a, b))
    # split the longer side of the output: each thread's GEMM then keeps a full-size inner loop
    if rows >= cols:
        parts = [(slice(start, stop), slice(None)) for start, stop in _bounds(rows, get_num_threads())]
    else:
        parts = [(slice(None), slice(start, stop)) for start, stop in _bounds(cols, get_num_threads())]
    parallel_map(lambda part: xp.matmul(a[part[0]], b[:, part[1]], out=out[part]), parts)
    return out


def assign(target, source):
    """target[...] = source; with both last axes contiguous, each row is copied as one opaque element.

    NumPy copies a run of w floats element by element, with a loop per run; viewed as one (w * itemsize)-byte
    void element per row, the same copy is a loop over whole rows (float32, 2M elements: w = 4 3.97 -> 0.63 ms,
    w = 8 1.92 -> 0.70, w = 16 1.05 -> 0.53, w = 32 0.62 -> 0.41, w = 288 0.35 -> 0.31; never slower).
    Any other case (broadcasting, strided rows, another array module) is a plain assignment.
    """
    if (_xp is numpy and type(target) is numpy.ndarray and type(source) is numpy.ndarray
            and target.shape == source.shape and target.dtype == source.dtype and target.ndim > 1
            and target.shape[-1] > 1 and target.size and target.dtype.kind in "fiub"
            and target.strides[-1] == source.strides[-1] == target.itemsize):
        row = numpy.dtype((numpy.void, target.shape[-1] * target.itemsize))
        target.view(row)[...] = source.view(row)
    else:
        target[...] = source


def _bounds(length, parts):
    """(start, stop) of ``parts`` nearly equal, non-empty pieces of range(length)."""
    return [(piece[0], piece[-1] + 1) for piece in split_ranges(range(length), parts)]


def _after_fork_in_child():
    """A forked child has none of its parent's threads: make a fresh pool (and BLAS lock) on first use."""
    global _pool, _blas_lock, _blas_lenders
    _pool, _blas_lock, _blas_lenders = None, threading.Lock(), 0
    pin_blas()


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
    """[fn(task) for task in tasks], on up to get_num_threads() threads (inline when one is enough).

    The calling thread runs the first task itself while the pool runs the rest: waking a sleeping thread
    takes 20-150 us on these virtual machines, and the caller no longer sleeps and waits to be woken for
    its share (an 8 MB copy split in two, min of 50: 622 -> 289 us; in one process, alternating, the
    depthwise bench row 20.5-23.3 -> 17.8-22.1 ms and the MobileNet-v2 step 1139-1323 -> 1054-1155 ms).
    """
    global _pool
    tasks = list(tasks)
    threads = min(get_num_threads(), len(tasks))
    # inside a pool thread, or inside the caller's own share, the work runs inline: nested tasks queued
    # behind their own callers would deadlock
    if threads <= 1 or getattr(_inside, "share", False) or threading.current_thread().name.startswith("cnnkit"):
        return [fn(task) for task in tasks]
    if _pool is None or _pool._max_workers < threads - 1:
        from concurrent.futures import ThreadPoolExecutor

        if _pool is not None:
            _pool.shutdown(wait=False)  # its idle threads exit; the larger pool replaces it
        _pool = ThreadPoolExecutor(max_workers=threads - 1, thread_name_prefix="cnnkit")
    from concurrent.futures import wait

    futures = [_pool.submit(fn, task) for task in tasks[1:]]
    _inside.share = True
    try:
        first = fn(tasks[0])
    finally:
        _inside.share = False
        wait(futures)  # the other shares write the caller's arrays: never return (or raise) while they run
    return [first] + [future.result() for future in futures]


def parallel_for(fn, tasks, scratch=dict, threads=None):
    """[fn(task, scratch) for task in tasks], on up to ``threads`` (default get_num_threads()) threads, each
    taking the next task as soon as it is free.

    Each thread makes one ``scratch()`` object (buffers it reuses across its tasks). Results come back
    in task order, so a reduction over them does not depend on which thread ran what. A static split
    waited on its slowest share: on this project's 2-core machines one core's share of a depthwise conv
    took 6.4 ms and the other's 11.5 (median gap 1.9 ms of 7.8).
    """
    tasks = list(tasks)
    threads = min(threads or get_num_threads(), len(tasks))
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


# ------------------------------------------------------------------------------------------------ kernel choice
_KERNEL_MODES = ("auto", "reference")
_kernel_choice = threading.local()


def _check_kernel_mode(mode, where):
    if not isinstance(mode, str) or not mode:
        raise TypeError(f"{where}: expected 'auto', 'reference' or a kernel name, got {mode!r}")
    return mode


def kernel_mode() -> str:
    """How ops pick their code: 'auto' (fastest kernel that applies), 'reference', or one kernel's name.

    Set by ``use_kernels`` on this thread, else by $CNNKIT_KERNELS, else 'auto'.
    """
    mode = getattr(_kernel_choice, "mode", None)
    if mode is None:
        mode = _check_kernel_mode(os.environ.get("CNNKIT_KERNELS", "auto") or "auto", "CNNKIT_KERNELS")
    return mode


@contextlib.contextmanager
def use_kernels(mode):
    """Context: ops inside run on ``mode`` ('auto', 'reference' or one kernel's name, see cnnkit.kernels)."""
    previous = getattr(_kernel_choice, "mode", None)
    _kernel_choice.mode = _check_kernel_mode(mode, "use_kernels")
    try:
        yield
    finally:
        _kernel_choice.mode = previous
