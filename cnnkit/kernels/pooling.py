"""Kernels for pooling: one elementwise pass per kernel offset instead of a copied window view.

``win`` is the op's resolved geometry (``kernel``, ``stride``, ``dilation``, ``pads``, ``in_size``,
``out_size``, ``needed``, ``overlapping``), as ``functional.pooling`` builds it.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import EveryCall, Kernel, register
from .copy import assign

__all__ = ["OffsetMaxPool", "SeparableWindowSum", "CompareMax", "plane_positions"]


def _padded(x, win, fill):
    """The padded input cut to the rows/columns the windows read (a view when no padding is needed)."""
    xp = get_array_module()
    (top, _), (left, _) = win.pads
    need_h, need_w = win.needed
    height, width = win.in_size
    if top == 0 and left == 0 and need_h <= height and need_w <= width:
        return x[:, :, :need_h, :need_w]
    buffer = xp.full(x.shape[:2] + (need_h, need_w), fill, dtype=x.dtype)
    rows, cols = min(height, need_h - top), min(width, need_w - left)
    assign(buffer[:, :, top:top + rows, left:left + cols], x[:, :, :rows, :cols])
    return buffer


def _unpadded(grad_buffer, win):
    """Inverse of ``_padded`` for gradients: the input-sized part, zeros where no window reached."""
    xp = get_array_module()
    (top, _), (left, _) = win.pads
    height, width = win.in_size
    if top == 0 and left == 0 and grad_buffer.shape[2:] == (height, width):
        return grad_buffer
    grad = xp.zeros(grad_buffer.shape[:2] + (height, width), dtype=grad_buffer.dtype)
    rows, cols = min(height, grad_buffer.shape[2] - top), min(width, grad_buffer.shape[3] - left)
    assign(grad[:, :, :rows, :cols], grad_buffer[:, :, top:top + rows, left:left + cols])
    return grad


def _offset_views(buffer, win, contiguous):
    """One (N, C, out_h, out_w) view per kernel offset (row-major): view[(i, j)][o] = buffer[o * S + (i, j) * d].

    With ``contiguous`` and a stride > 1 the buffer is first split into stride phases (one strided copy
    per phase used), so that the per-offset elementwise passes run over contiguous rows.
    """
    xp = get_array_module()
    (kernel_h, kernel_w), (stride_h, stride_w), (dil_h, dil_w) = win.kernel, win.stride, win.dilation
    out_h, out_w = win.out_size
    phases, views = {}, []
    for i in range(kernel_h):
        for j in range(kernel_w):
            row, col = i * dil_h, j * dil_w
            if not contiguous or (stride_h == 1 and stride_w == 1):
                views.append(buffer[:, :, row:row + (out_h - 1) * stride_h + 1:stride_h,
                                    col:col + (out_w - 1) * stride_w + 1:stride_w])
                continue
            key = (row % stride_h, col % stride_w)
            if key not in phases:
                phases[key] = xp.ascontiguousarray(buffer[:, :, key[0]::stride_h, key[1]::stride_w])
            first_row, first_col = row // stride_h, col // stride_w
            views.append(phases[key][:, :, first_row:first_row + out_h, first_col:first_col + out_w])
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
    """Input-shaped gradient: each output gradient added at its flat index in its (n, c) plane."""
    xp = get_array_module()
    n, c = grad.shape[:2]
    plane_size = plane_shape[0] * plane_shape[1]
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

    name, op = "max_pool.offsets", "max_pool2d"

    def values(self, x, win):
        """The window maxima alone (no switches: nothing will need the gradient or the indices)."""
        xp = get_array_module()
        views = _offset_views(_padded(x, win, -xp.inf), win, contiguous=False)
        out = views[0].copy()
        for view in views[1:]:
            xp.maximum(out, view, out=out)
        return out

    def forward(self, x, win):
        """(window maxima, switches): the switch is the row-major offset of the first maximum in each window."""
        xp = get_array_module()
        return _first_max(_offset_views(_padded(x, win, -xp.inf), win, contiguous=True))

    def backward(self, grad, indices, win):
        """Each output gradient written (added, where windows overlap) at its winner's flat index."""
        return _scatter_to_planes(grad, indices, win.in_size, win.overlapping)


@register
class SeparableWindowSum(Kernel):
    """Sum over each (undilated) window separably, first along the height, then along the width.

    Height first: its pass adds whole contiguous rows and leaves a map of out_h rows, so the strided pass along
    the width reads fewer elements (the width-first order reads every input row with a stride).
    """

    name, op = "window_sum.separable", "window_sum"

    def applies(self, win):
        """Any undilated window (average and power-average pooling have no dilation)."""
        return max(win.dilation) == 1

    def sums(self, x, win):
        """The window sums of x zero-padded."""
        (kernel_h, kernel_w), (stride_h, stride_w) = win.kernel, win.stride
        out_h, out_w = win.out_size
        buffer = _padded(x, win, 0)
        column_sums = _sum_axis([buffer[:, :, i:i + (out_h - 1) * stride_h + 1:stride_h] for i in range(kernel_h)])
        return _sum_axis([column_sums[..., j:j + (out_w - 1) * stride_w + 1:stride_w] for j in range(kernel_w)])

    def spread(self, grad, win):
        """Gradient of ``sums`` on the input: each output gradient spread over its window (width, then height)."""
        (kernel_h, kernel_w), (stride_h, stride_w) = win.kernel, win.stride
        out_h, out_w = win.out_size
        need_h, need_w = win.needed
        n, c = grad.shape[:2]
        column_grad = _spread_axis(grad, (n, c, out_h, need_w), -1, kernel_w, stride_w, out_w)
        return _unpadded(_spread_axis(column_grad, (n, c, need_h, need_w), 2, kernel_h, stride_h, out_h), win)


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

    name, op = "adaptive_max_pool.compare", "adaptive_max_pool2d"

    def forward(self, views):
        """(elementwise max over ``views``, index of the first view holding it; the last NaN wins)."""
        return _first_max(views)
