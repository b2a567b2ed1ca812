"""The one place that picks the array module, the default dtype and the random generator.

Ops never import NumPy themselves: they call ``get_array_module()`` (``xp``), so a CuPy
backend can later be switched in here without touching an op.
"""
from __future__ import annotations

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
