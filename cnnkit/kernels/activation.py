"""Kernels for the activations: relu and relu6 as one chunked pass that clamps and records the gradient mask
while the chunk is in cache; sigmoid and tanh as in-place passes into one output buffer (the forward shared over
threads).

The clamp and mask helpers are shared with the fused batch norm + relu kernel (``kernels.batchnorm``).
"""
from __future__ import annotations

import numpy

from .. import backend
from ..backend import get_array_module
from . import EveryCall, Kernel, register
from .threads import parallel_for

__all__ = ["clamp_into", "inside_into", "ChunkedClamp", "ExpSigmoid", "ThreadedTanh"]

# Elements per chunk of the fused pass: the chunk stays in cache between its ufuncs, so a large input is read
# from memory once instead of once per ufunc.
CHUNK_ELEMENTS = 1 << 18

# From this size max(x, low) runs as clip(x, low, inf): NumPy's maximum against a scalar is several times
# slower on large arrays, while clip's extra per-call cost outweighs that below about this many elements.
CLIP_MIN_ELEMENTS = 1 << 16


def clamp_into(values, low, high, out):
    """out = clip(values, low, high), or max(values, low) when high is None; NaN stays NaN, as in torch."""
    xp = get_array_module()
    if high is None and values.size < CLIP_MIN_ELEMENTS:
        xp.maximum(values, low, out=out)
    else:
        xp.clip(values, low, float("inf") if high is None else high, out=out)


def inside_into(values, low, high, out, below):
    """out = low < values < high (values > low when high is None); ``below`` is bool scratch of the same shape."""
    xp = get_array_module()
    xp.greater(values, low, out=out)
    if high is not None:
        xp.less(values, high, out=below)
        out &= below


@register
class ChunkedClamp(EveryCall):
    """relu / relu6 forward as one pass over cache-sized chunks, writing the output and the gradient mask."""

    name, op = "relu.chunked", "relu"

    def forward(self, x, high):
        """(clip(x, 0, high), 0 < x < high), or (max(x, 0), x > 0) when high is None."""
        xp = get_array_module()
        x = xp.ascontiguousarray(x)  # the chunks are slices of flat views
        out = xp.empty_like(x)
        mask = xp.empty(x.shape, bool)
        flat, out_flat, mask_flat = x.reshape(-1), out.reshape(-1), mask.reshape(-1)
        below = xp.empty(min(flat.size, CHUNK_ELEMENTS), bool) if high is not None else None
        for start in range(0, flat.size, CHUNK_ELEMENTS):
            chunk = slice(start, start + CHUNK_ELEMENTS)
            values = flat[chunk]
            inside_into(values, 0, high, mask_flat[chunk], None if below is None else below[:values.size])
            clamp_into(values, 0, high, out_flat[chunk])
        return out, mask


# ------------------------------------------------------------------------------------------ sigmoid and tanh
# Elements per task of a threaded elementwise pass: a task is long enough to pay for its hand-off to a thread,
# and there are enough tasks for two threads to share them evenly.
TASK_ELEMENTS = 1 << 16

# Below this many elements the passes run on the calling thread: waking a thread would cost more than it saves.
THREADED_MIN_ELEMENTS = 1 << 17


def _flat(array):
    """A flat view of ``array`` (a flat copy when it is not C-contiguous, such as a broadcast gradient)."""
    return get_array_module().ascontiguousarray(array).reshape(-1)


def _each_span(passes, flats, threaded):
    """passes(*spans) over pieces of the flat arrays ``flats``: on several threads for a large ``threaded`` one."""
    size = flats[0].size
    if not threaded or size < THREADED_MIN_ELEMENTS or backend.get_num_threads() < 2:
        passes(*flats)
        return
    spans = [slice(start, start + TASK_ELEMENTS) for start in range(0, size, TASK_ELEMENTS)]
    parallel_for(lambda span, _: passes(*(flat[span] for flat in flats)), spans)


def _float_kernel(dtype):
    """Whether a float32 / float64 kernel serves an array of ``dtype`` (float16 keeps the reference path)."""
    return dtype in (numpy.float32, numpy.float64)


def _sigmoid_passes(x, out):
    """out = 1 / (1 + e^-x); e^-x overflows to inf for very negative x, which gives the right limit 0."""
    xp = get_array_module()
    xp.negative(x, out=out)
    with numpy.errstate(over="ignore"):  # per thread: each task sets it on the thread that runs it
        xp.exp(out, out=out)
    out += 1
    xp.divide(1, out, out=out)


def _sigmoid_grad_passes(grad, s, out):
    """out = grad * s * (1 - s)."""
    xp = get_array_module()
    xp.subtract(1, s, out=out)
    out *= s
    out *= grad


def _tanh_grad_passes(grad, t, out):
    """out = grad * (1 - t^2)."""
    xp = get_array_module()
    xp.multiply(t, t, out=out)
    xp.subtract(1, out, out=out)
    out *= grad


def _elementwise(passes, inputs, dtype, threaded):
    """A new C-contiguous array of the inputs' shape and ``dtype`` holding passes(*inputs, out)."""
    xp = get_array_module()
    out = xp.empty(inputs[-1].shape, dtype)
    _each_span(passes, [_flat(array) for array in inputs] + [out.reshape(-1)], threaded)
    return out


def _gradient(passes, grad, saved):
    """The input gradient passes(grad, saved, out) in the dtype of grad and the saved output combined; on one
    thread, since its three passes are bound by memory bandwidth, which a second core shares."""
    xp = get_array_module()
    return _elementwise(passes, [xp.broadcast_to(grad, saved.shape), saved], xp.result_type(grad, saved), False)


@register
class ExpSigmoid(Kernel):
    """sigmoid as 1 / (1 + e^-x) in place in the output (NumPy's float32 exp is faster than its tanh, so the
    tanh form 0.5 tanh(x/2) + 0.5 is slower), and its gradient dy s (1 - s) in passes over the output into one
    buffer."""

    name, op = "sigmoid.exp", "sigmoid"

    def applies(self, dtype) -> bool:
        """float32 and float64 inputs."""
        return _float_kernel(dtype)

    def forward(self, x):
        """1 / (1 + e^-x)."""
        return _elementwise(_sigmoid_passes, [x], x.dtype, True)

    def backward(self, grad, out):
        """grad * out * (1 - out)."""
        return _gradient(_sigmoid_grad_passes, grad, out)


@register
class ThreadedTanh(Kernel):
    """tanh shared over threads, and its gradient dy (1 - t^2) in passes over the output into one buffer."""

    name, op = "tanh.threaded", "tanh"

    def applies(self, dtype) -> bool:
        """float32 and float64 inputs."""
        return _float_kernel(dtype)

    def forward(self, x):
        """tanh(x)."""
        return _elementwise(lambda values, out: get_array_module().tanh(values, out=out), [x], x.dtype, True)

    def backward(self, grad, out):
        """grad * (1 - out^2)."""
        return _gradient(_tanh_grad_passes, grad, out)
