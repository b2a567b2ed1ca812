"""Kernels: faster array code for the reference ops of ``cnnkit.functional``, picked per call through one seam.

The reference op in ``functional`` is the textbook algorithm and always works. A kernel computes the same
result faster for some of the op's calls: it has a ``name`` ("family.variant"), the ``op`` it serves, and
``applies(*facts) -> bool`` saying for which calls (the facts are what the op passes, usually its geometry).
An op asks ``pick(op, *facts)``: under ``backend.use_kernels("reference")`` (or ``CNNKIT_KERNELS=reference``)
the answer is always None and the reference math runs; under ``"auto"``, the default, it is the first
registered kernel that applies; under a kernel's own name, that kernel where it applies (the op tests run
every case once per kernel this way). A GPU backend would be one more set of kernels registered here.

Kernel sets: ``kernels.conv`` (conv2d, its input gradient, its fused backward and the bias gradient; its
docstring lists each op's method), ``kernels.activation`` (relu, relu6, sigmoid, tanh), ``kernels.batchnorm`` (batch
norm, alone or with a fused relu) and ``kernels.pooling`` (max pooling, the window sums of average and Lp
pooling, adaptive max pooling). A conv kernel module holds one family: ``conv_im2col`` (chunked, threaded
im2col GEMM and col2im), ``conv_pointwise`` (1x1 without im2col), ``conv_depthwise`` (banded matrices),
``conv_dual`` (stride-1 input gradient as a correlation), ``conv_polyphase`` (strided input gradient per
phase), ``conv1d_as_2d`` (1-D convolutions run on the 2-D kernels as images of height 1; 3-D ones have no
kernels and run the reference); ``conv_plan`` holds their chunking and column layout, ``threads`` /
``workspace`` / ``copy`` the shared infrastructure. ``conv_infer`` is the inference convolution (bias and
activation fused, a batch of one: ``conv_bands``, ``conv_depthwise_direct``, ``conv_depthwise_shift``,
``conv_epilogue``); its one-image kernels also serve conv2d.
"""
from __future__ import annotations

import contextlib
import threading

from .. import backend

__all__ = ["Kernel", "EveryCall", "register", "registered", "pick", "record_picks"]

_registry: dict[str, list] = {}


class _Recording(threading.local):
    picks = None  # a class default: reading it on a thread that records nothing raises no AttributeError


_recording = _Recording()


class Kernel:
    """A fast path of one op: subclasses set ``name`` and ``op`` and implement ``applies`` and the op's methods."""

    name: str = ""
    op: str = ""

    def applies(self, *facts) -> bool:
        """Whether this kernel computes the op for a call described by ``facts``."""
        raise NotImplementedError

    def __repr__(self):
        return f"<kernel {self.name} for {self.op}>"


class EveryCall(Kernel):
    """A kernel that serves every call of its op (it replaces the reference wherever ``auto`` runs)."""

    def applies(self, *facts) -> bool:
        """True: every call."""
        return True


def register(kernel):
    """Add a kernel (an instance, or a class that is instantiated) to its op's list; returns it (a decorator)."""
    instance = kernel() if isinstance(kernel, type) else kernel
    if not instance.name or not instance.op:
        raise ValueError(f"register: kernel {instance!r} needs a name and an op")
    if any(k.name == instance.name for ks in _registry.values() for k in ks):
        raise ValueError(f"register: a kernel named {instance.name!r} is already registered")
    _registry.setdefault(instance.op, []).append(instance)
    return kernel


def registered(op=None):
    """The kernels registered for ``op`` in priority order (every kernel when ``op`` is None)."""
    if op is None:
        return [k for ks in _registry.values() for k in ks]
    return list(_registry.get(op, ()))


def pick(op, *facts):
    """The kernel to run for this call of ``op``, or None for the reference path (see the module docstring)."""
    mode = backend.kernel_mode()
    if mode == "reference":
        return None
    if mode != "auto" and not any(k.name == mode for ks in _registry.values() for k in ks):
        names = ", ".join(sorted(k.name for ks in _registry.values() for k in ks)) or "none registered"
        raise ValueError(f"use_kernels: no kernel is named {mode!r}; use 'auto', 'reference' or one of: {names}")
    for kernel in _registry.get(op, ()):
        if (mode == "auto" or mode == kernel.name) and kernel.applies(*facts):
            picks = _recording.picks
            if picks is not None:
                picks.append(kernel.name)
            return kernel
    return None


@contextlib.contextmanager
def record_picks():
    """Context: yields a list that collects the names of the kernels picked on this thread inside it."""
    previous = _recording.picks
    _recording.picks = picks = []
    try:
        yield picks
    finally:
        _recording.picks = previous


# Each family module registers its kernels when imported; importing them here makes every kernel known to
# ``registered`` and ``pick`` as soon as cnnkit.kernels is.
from . import activation  # noqa: E402,F401
from . import batchnorm  # noqa: E402,F401
from . import pooling  # noqa: E402,F401
from . import conv  # noqa: E402,F401  (the convolution kernels, in priority order)
