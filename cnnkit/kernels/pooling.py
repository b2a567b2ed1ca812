"""Kernels for pooling: one elementwise pass per kernel offset instead of a copied window view.

``win`` is the op's resolved geometry (``kernel``, ``stride``, ``dilation``, ``pads``, ``in_size``,
``out_size``, ``needed``, ``overlapping``), as ``functional.pooling`` builds it.
"""
from __future__ import annotations

import itertools
import math

from ..backend import get_array_module
from . import EveryCall, Kernel, register
from .copy import assign

__all__ = ["OffsetMaxPool", "SeparableWindowSum", "CompareMax", "plane_positions", "padded_source", "offset_views"]


def _spatial(slices):
    """An index that keeps N and C and applies one slice per spatial axis."""
    return (slice(None), slice(None)) + tuple(slices)


def padded_source(x, win, fill):
    """(source, copy): the positions the windows read, and the (target, part of x) copy that fills it.

    Without padding ``source`` is a view of x and ``copy`` is None; otherwise ``source`` is a new buffer whose
    border holds ``fill`` and whose interior the caller fills with ``copy`` (again on each call, if it keeps it).
    """
    xp = get_array_module()
    befores = [before for before, _ in win.pads]
    needed = win.needed
    if not any(befores) and all(need <= size for need, size in zip(needed, win.in_size)):
        return x[_spatial(slice(0, need) for need in needed)], None
    buffer = xp.full(x.shape[:2] + tuple(needed), fill, dtype=x.dtype)
    kept = [min(size, need - before) for size, need, before in zip(win.in_size, needed, befores)]
    return buffer, (buffer[_spatial(slice(before, before + k) for before, k in zip(befores, kept))],
                    x[_spatial(slice(0, k) for k in kept)])


def _padded(x, win, fill):
    """The padded input cut to the positions the windows read (a view when no padding is needed)."""
    source, copy = padded_source(x, win, fill)
    if copy is not None:
        assign(*copy)
    return source


def _unpadded(grad_buffer, win):
    """Inverse of ``_padded`` for gradients: the input-sized part, zeros where no window reached."""
    xp = get_array_module()
    befores = [before for before, _ in win.pads]
    if not any(befores) and grad_buffer.shape[2:] == tuple(win.in_size):
        return grad_buffer
    grad = xp.zeros(grad_buffer.shape[:2] + tuple(win.in_size), dtype=grad_buffer.dtype)
    kept = [min(size, have - before) for size, have, before in zip(win.in_size, grad_buffer.shape[2:], befores)]
    assign(grad[_spatial(slice(0, k) for k in kept)],
           grad_buffer[_spatial(slice(before, before + k) for before, k in zip(befores, kept))])
    return grad


def _strided(start, count, stride):
    """The slice of ``count`` positions from ``start`` in steps of ``stride``."""
    return slice(start, start + (count - 1) * stride + 1, stride)


def offset_views(buffer, win, contiguous):
    """One (N, C, *out) view per kernel offset (row-major): view[t][o] = buffer[o * S + t * d].

    With ``contiguous`` and a stride > 1 the buffer is first split into stride phases (one strided copy
    per phase used), so that the per-offset elementwise passes run over contiguous rows.
    """
    xp = get_array_module()
    split = contiguous and max(win.stride) > 1
    phases, views = {}, []
    for offset in itertools.product(*(range(k) for k in win.kernel)):
        starts = [t * d for t, d in zip(offset, win.dilation)]
        if not split:
            views.append(buffer[_spatial(_strided(start, out, s)
                                         for start, out, s in zip(starts, win.out_size, win.stride))])
            continue
        key = tuple(start % s for start, s in zip(starts, win.stride))
        if key not in phases:
            phases[key] = xp.ascontiguousarray(buffer[_spatial(slice(k, None, s) for k, s in zip(key, win.stride))])
        views.append(phases[key][_spatial(slice(start // s, start // s + out)
                                          for start, s, out in zip(starts, win.stride, win.out_size))])
    return views


def _first_max(views):
    """Elementwise max over ``views`` and the position of the first view holding it (PyTorch's tie rule).

    The switch counts the leading views that differ from the max, using only vectorised compares
    (faster than argmax over a stacked copy). NaN wins, as in PyTorch (the last NaN of the window).
    """
    xp = get_array_module()
    best = views[0].copy()
    for view in views[1:]:
        xp.maximum(best, view, out=best)
    count = len(views)
    switch_dtype = xp.uint8 if count <= 256 else xp.int32
    switch = xp.zeros(best.shape, dtype=switch_dtype)
    if count > 1:
        not_found = views[0] != best
        differs = xp.empty(best.shape, dtype=bool)
        switch += not_found.view(xp.uint8)
        for view in views[1:-1]:
            xp.not_equal(view, best, out=differs)
            not_found &= differs
            switch += not_found.view(xp.uint8)
    is_nan = best != best
    if is_nan.any():
        for position, view in enumerate(views):
            switch[is_nan & (view != view)] = position
    return best, switch


def plane_positions(indices, plane_size):
    """Flat positions in the whole (N * C * plane) array from per-plane indices of shape (N, C, ...)."""
    xp = get_array_module()
    n, c = indices.shape[:2]
    offsets = (xp.arange(n * c, dtype=xp.int64) * plane_size).reshape((n, c) + (1,) * (indices.ndim - 2))
    return (indices + offsets).reshape(-1)


def _scatter_to_planes(grad, indices, plane_shape, overlapping):
    """Input-shaped gradient: each output gradient added at its flat index in its (n, c) plane (volume)."""
    xp = get_array_module()
    n, c = grad.shape[:2]
    plane_size = math.prod(plane_shape)
    flat = xp.zeros(n * c * plane_size, dtype=grad.dtype)
    positions = plane_positions(indices, plane_size)
    if overlapping:
        xp.add.at(flat, positions, grad.reshape(-1))
    else:  # every input pixel wins at most one window: a plain assignment is enough (and faster)
        flat[positions] = grad.reshape(-1)
    return flat.reshape((n, c) + tuple(plane_shape))


@register
class OffsetMaxPool(EveryCall):
    """Max pooling as a running maximum over one strided view per kernel offset; switches by counting compares."""

    name, op = "max_pool.offsets", "max_pool"

    def values(self, x, win):
        """The window maxima alone (no switches: nothing will need the gradient or the indices)."""
        xp = get_array_module()
        views = offset_views(_padded(x, win, -xp.inf), win, contiguous=False)
        out = views[0].copy()
        for view in views[1:]:
            xp.maximum(out, view, out=out)
        return out

    def forward(self, x, win):
        """(window maxima, switches): the switch is the row-major offset of the first maximum in each window."""
        xp = get_array_module()
        return _first_max(offset_views(_padded(x, win, -xp.inf), win, contiguous=True))

    def backward(self, grad, indices, win):
        """Each output gradient written (added, where windows overlap) at its winner's flat index."""
        return _scatter_to_planes(grad, indices, win.in_size, win.overlapping)


@register
class SeparableWindowSum(Kernel):
    """Sum over each (undilated) window separably, one spatial axis after another, the leading axis first.

    Leading axis first: its pass adds whole contiguous rows and leaves fewer of them, so the strided passes
    along the later axes read fewer elements (the last-axis-first order reads every input row with a stride).
    """

    name, op = "window_sum.separable", "window_sum"

    def applies(self, win):
        """Any undilated window (average and power-average pooling have no dilation)."""
        return max(win.dilation) == 1

    def sums(self, x, win):
        """The window sums of x zero-padded."""
        sums = _padded(x, win, 0)
        for axis in range(len(win.kernel)):
            kernel, stride, out = win.kernel[axis], win.stride[axis], win.out_size[axis]
            before = (slice(None),) * (2 + axis)
            sums = _sum_axis([sums[before + (_strided(t, out, stride),)] for t in range(kernel)])
        return sums

    def spread(self, grad, win):
        """Gradient of ``sums`` on the input: each output gradient spread over its window, the last axis first."""
        spread = grad
        for axis in reversed(range(len(win.kernel))):
            shape = spread.shape[:2 + axis] + (win.needed[axis],) + spread.shape[3 + axis:]
            spread = _spread_axis(spread, shape, 2 + axis, win.kernel[axis], win.stride[axis], win.out_size[axis])
        return _unpadded(spread, win)


def _sum_axis(views):
    """A new array holding the sum of ``views``: the first two are added into it in one pass, not copied first."""
    if len(views) == 1:
        return views[0].copy()
    total = views[0] + views[1]
    for view in views[2:]:
        total += view
    return total


def _spread_axis(grad, shape, axis, kernel, stride, out):
    """t of ``shape`` with t[o * stride + k] (along ``axis``) = sum of grad[o] over the windows o reaching it.

    Where windows tile the axis (stride == kernel) each position is written once, so the passes assign into an
    uninitialised array instead of adding into zeros.
    """
    xp = get_array_module()
    tiles = stride == kernel
    target = xp.empty(shape, grad.dtype) if tiles else xp.zeros(shape, grad.dtype)
    moved = xp.moveaxis(target, axis, 0)
    source = xp.moveaxis(grad, axis, 0)
    for k in range(kernel):
        window = moved[k:k + (out - 1) * stride + 1:stride]
        if tiles:
            window[...] = source
        else:
            window += source
    return target


@register
class CompareMax(EveryCall):
    """The maximum over a list of equally shaped views and its first position, by running compares."""

    name, op = "adaptive_max_pool.compare", "adaptive_max_pool"

    def forward(self, views):
        """(elementwise max over ``views``, index of the first view holding it; the last NaN wins)."""
        return _first_max(views)
