"""The one place that picks the array module, the default dtype and the random generator.

Ops never import NumPy themselves: they call ``get_array_module()`` (``xp``), so a CuPy
backend can later be switched in here without touching an op.
"""
from __future__ import annotations

import contextlib
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
