"""The one place that picks the array module, the default dtype, the random generator, the thread counts and
the kernel mode (``use_kernels``), and that reaches NumPy's BLAS.

Ops never import NumPy themselves: they call ``get_array_module()`` (``xp``), so a CuPy
backend can later be switched in here without touching an op. Importing cnnkit changes nothing
outside cnnkit: process-wide tuning (malloc, BLAS threads) is the explicit ``tune_process()``.
"""
from __future__ import annotations

import contextlib
import os
import threading

import numpy

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
# narrowed to one thread while they run (cnnkit.kernels.threads), the convolutions' GEMMs.
_num_threads = None


# the variables that set a thread count for cnnkit's ops, in the order they are read
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def blas_left_native() -> bool:
    """Whether $CNNKIT_BLAS_THREADS=native asks cnnkit never to change NumPy's BLAS thread count."""
    return os.environ.get("CNNKIT_BLAS_THREADS", "").lower() == "native"


def get_num_threads() -> int:
    """Threads an op may split its work over: set_num_threads, else $OMP_NUM_THREADS, else
    $OPENBLAS_NUM_THREADS (cnnkit's threads do the work BLAS's threads would), else the CPU count."""
    if _num_threads is not None:
        return _num_threads
    for name in THREAD_VARIABLES:
        value = os.environ.get(name)
        if not value:  # unset: skip the failing int() (an exception each call, on every op's hot path)
            continue
        try:
            return max(1, int(value))
        except ValueError:
            continue
    return max(1, os.cpu_count() or 1)


def set_num_threads(count: int) -> None:
    """Set how many threads ops split their work over (1 turns the splitting off), as torch.set_num_threads."""
    global _num_threads
    if int(count) < 1:
        raise ValueError(f"set_num_threads: expected a positive thread count, got {count!r}")
    _num_threads = int(count)


# ------------------------------------------------------------------------------------------------ kernel choice
class _KernelChoice(threading.local):
    mode = None  # a class default: reading it on a thread that never set it raises nothing


_kernel_choice = _KernelChoice()


def _check_kernel_mode(mode, where):
    if not isinstance(mode, str) or not mode:
        raise TypeError(f"{where}: expected 'auto', 'reference' or a kernel name, got {mode!r}")
    return mode


def kernel_mode() -> str:
    """How ops pick their code: 'auto' (fastest kernel that applies), 'reference', or one kernel's name.

    Set by ``use_kernels`` on this thread, else by $CNNKIT_KERNELS as it was when cnnkit was imported, else 'auto'.
    """
    mode = _kernel_choice.mode
    return _ENV_KERNEL_MODE if mode is None else mode


# read once: ops ask for the mode on every call, and an environment lookup there costs more than the choice itself
_ENV_KERNEL_MODE = _check_kernel_mode(os.environ.get("CNNKIT_KERNELS", "auto") or "auto", "CNNKIT_KERNELS")


@contextlib.contextmanager
def use_kernels(mode):
    """Context: ops inside run on ``mode`` ('auto', 'reference' or one kernel's name, see cnnkit.kernels)."""
    previous = _kernel_choice.mode
    _kernel_choice.mode = _check_kernel_mode(mode, "use_kernels")
    try:
        yield
    finally:
        _kernel_choice.mode = previous


# ------------------------------------------------------------------------------------------------ BLAS handle
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


_blas = _find_openblas()  # only looked up: nothing is changed until an op or tune_process asks


def blas_num_threads():
    """Threads NumPy's BLAS uses now (None when cnnkit cannot reach it)."""
    return _blas[1]() if _blas is not None else None


def set_blas_num_threads(count: int) -> None:
    """Set the threads of NumPy's BLAS (a no-op when cnnkit cannot reach it); ops restore what they change."""
    if _blas is not None:
        _blas[0](int(count))


# ------------------------------------------------------------------------------------------------ process tuning
_malloc_tuned = False


def _keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the kernel.

    By default every array over a (self-adjusting) threshold is mmap-ed and unmapped when freed, so the
    next one of that size page-faults all its pages in again, and a training step frees and re-makes
    hundreds of activation-sized arrays. Set CNNKIT_MALLOC_TUNING=0 to leave malloc alone.
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


def tune_process(threads=None, malloc=True, blas=True) -> dict:
    """Tune the whole process for cnnkit's training loops; returns what it changed ({} when nothing).

    An application calls this once, explicitly (the ``cnnkit`` command and bench/run.py do);
    importing cnnkit never does. It changes, each only where needed:

    * ``malloc``: glibc keeps freed memory for reuse (no page faults re-making activation-sized
      arrays); ``CNNKIT_MALLOC_TUNING=0`` opts out. Cannot be undone.
    * ``blas``: NumPy's BLAS runs on one thread for the whole process, so cnnkit's threads share
      the GEMMs without narrowing BLAS per op (NumPy's own matmul then runs on one thread too).
    * ``threads``: ``set_num_threads(threads)`` when given.

    OpenBLAS reads its idle-thread timeout (``OPENBLAS_THREAD_TIMEOUT``) only when it loads, which
    is before any cnnkit code runs; set it in the environment before Python starts, as bench/run.py does.
    Calling it again changes nothing more.
    """
    global _malloc_tuned
    changed = {}
    if malloc and not _malloc_tuned and _keep_freed_memory():
        _malloc_tuned = True
        changed["malloc"] = "freed memory kept for reuse (mmap threshold 32 MiB, trim threshold 1 GiB)"
    if blas and _blas is not None and not blas_left_native():
        before = blas_num_threads()
        if before != 1:
            set_blas_num_threads(1)
            changed["blas_threads"] = (before, 1)
    if threads is not None and int(threads) != get_num_threads():
        before = get_num_threads()
        set_num_threads(threads)
        changed["num_threads"] = (before, int(threads))
    return changed
