"""``pad`` with PyTorch's semantics: (left, right, top, bottom, ...) pairs from the last dimension backwards."""
from __future__ import annotations

import numbers

from ..autograd import Function
from ..backend import get_array_module
from ..kernels.copy import assign
from .activation import as_float_tensor

__all__ = ["pad"]

_MODES = ("constant", "reflect", "replicate", "circular")


def _source_index(mode, before, after, size):
    """For each output position along one axis, the input position it copies (reflect/replicate/circular)."""
    xp = get_array_module()
    position = xp.arange(-before, size + after)
    if mode == "replicate":
        return xp.clip(position, 0, size - 1)
    if mode == "circular":
        return position % size
    # reflect about the edge pixels without repeating them: -1 -> 1, size -> size - 2
    position = xp.abs(position)
    return xp.where(position >= size, 2 * (size - 1) - position, position)


class _ConstantPad(Function):
    """Constant padding; negative amounts crop. ``pads`` holds (before, after) per axis, first axis first."""

    def forward(self, x):
        xp = get_array_module()
        out_shape = tuple(size + before + after for size, (before, after) in zip(x.shape, self.pads))
        out = xp.full(out_shape, self.value, dtype=x.dtype)
        self.out_region, self.in_region = [], []
        for size, (before, after) in zip(x.shape, self.pads):
            self.in_region.append(slice(max(-before, 0), size - max(-after, 0)))
            self.out_region.append(slice(max(before, 0), max(before, 0) + size - max(-before, 0) - max(-after, 0)))
        self.in_region, self.out_region = tuple(self.in_region), tuple(self.out_region)
        self.in_shape = x.shape
        assign(out[self.out_region], x[self.in_region])
        return out

    def backward(self, grad):
        grad_x = get_array_module().zeros(self.in_shape, dtype=grad.dtype)
        assign(grad_x[self.in_region], grad[self.out_region])
        return (grad_x,)


class _IndexPad(Function):
    """Reflect, replicate or circular padding: a gather along each padded axis (scatter-add backward)."""

    def forward(self, x):
        xp = get_array_module()
        self.steps = []
        for axis, (before, after) in enumerate(self.pads):
            if before == 0 and after == 0:
                continue
            index = _source_index(self.mode, before, after, x.shape[axis])
            self.steps.append((axis, before, x.shape[axis], index))
            x = xp.take(x, index, axis=axis)
        return x

    def backward(self, grad):
        xp = get_array_module()
        for axis, before, size, index in reversed(self.steps):
            moved = xp.moveaxis(grad, axis, 0)
            grad_axis = moved[before:before + size].copy()
            # the padded positions are few (pads are small): add each copied row back to its source
            for position in list(range(before)) + list(range(before + size, len(index))):
                grad_axis[int(index[position])] += moved[position]
            grad = xp.moveaxis(grad_axis, 0, axis)
        return (grad,)


def _check_pads(x, pad, mode):
    if not isinstance(pad, (tuple, list)) or len(pad) % 2 or not all(isinstance(p, numbers.Integral) for p in pad):
        raise ValueError(f"pad: pad must be a tuple of an even number of ints (left, right, top, bottom, ...), "
                         f"got {pad!r}")
    dims = len(pad) // 2
    if dims > x.ndim:
        raise ValueError(f"pad: pad {tuple(pad)} pads {dims} dimensions but the input of shape {tuple(x.shape)} has "
                         f"only {x.ndim}")
    pairs = [(0, 0)] * (x.ndim - dims) + [(int(pad[2 * i]), int(pad[2 * i + 1])) for i in reversed(range(dims))]
    for axis, (before, after) in enumerate(pairs):
        size = x.shape[axis]
        if mode == "constant":
            if size + before + after < 0:
                raise ValueError(f"pad: padding ({before}, {after}) of dimension {axis} (size {size}) gives a "
                                 "negative size")
            continue
        if min(before, after) < 0:
            raise ValueError(f"pad: mode {mode!r} needs non-negative padding, got {tuple(pad)}")
        if before + after == 0:
            continue
        # reflect mirrors about the edge (pad < size); circular wraps once (pad <= size); replicate repeats
        limit = {"reflect": size - 1, "circular": size, "replicate": None}[mode]
        if size == 0:
            raise ValueError(f"pad: {mode} padding cannot pad the empty dimension {axis} of shape {tuple(x.shape)}")
        if limit is not None and max(before, after) > limit:
            raise ValueError(f"pad: {mode} padding ({before}, {after}) of dimension {axis} must be at most "
                             f"{'size - 1' if mode == 'reflect' else 'size'} = {limit} for an input of shape "
                             f"{tuple(x.shape)}; use smaller padding or mode='constant'")
    return tuple(pairs)


def pad(input, pad, mode="constant", value=None):
    """Pad the last len(pad)//2 dimensions: pad = (left, right) of the last, then (top, bottom) of the one before, ...

    Modes: 'constant' (``value``, default 0; negative amounts crop), 'reflect' (mirror without
    repeating the edge), 'replicate' (repeat the edge), 'circular' (wrap around).
    """
    x = as_float_tensor("pad", input)
    if mode not in _MODES:
        raise ValueError(f"pad: mode must be one of {', '.join(map(repr, _MODES))}, got {mode!r}")
    if value is not None and mode != "constant":
        raise ValueError(f"pad: value is only used with mode='constant', got value={value!r} with mode={mode!r}")
    pads = _check_pads(x, pad, mode)
    if mode == "constant":
        return _ConstantPad.apply(x, pads=pads, value=0.0 if value is None else float(value))
    return _IndexPad.apply(x, pads=pads, mode=mode)
