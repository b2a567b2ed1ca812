"""Pooling ops with torch.nn.functional's names, arguments and semantics, in 1, 2 and 3 spatial dimensions.

One implementation serves every dimension: an input ``(N, C, *spatial)`` (also unbatched ``(C, *spatial)``) is
padded, viewed as ``(N, C, *out, *kernel)`` windows without a copy, and reduced. Max pooling records its "switches"
(which tap of each window won) and its backward routes each output gradient through its switch; average and
power-average pooling spread the gradient back over the window. Faster paths for the same ops are kernels
in ``cnnkit.kernels.pooling``, picked per call.
"""
from __future__ import annotations

import itertools
import math
import numbers
from typing import NamedTuple

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..kernels import pick
from ..kernels.pooling import plane_positions
from . import im2col
from .windows import AXIS_LETTERS, AXIS_NAMES, TUPLE_NAMES, ntuple, positive_ntuple, resolve_padding, window_output_size

__all__ = ["max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
           "lp_pool1d", "lp_pool2d", "lp_pool3d", "max_unpool1d", "max_unpool2d", "max_unpool3d",
           "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
           "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d"]

# per number of spatial axes: the shape letters and the axes' names (from windows), the name of one step along each
_LETTERS = {dims: ", ".join(letters) for dims, letters in AXIS_LETTERS.items()}
_STEPS = {1: ("position",), 2: ("row", "column"), 3: ("slice", "row", "column")}


def _product(values):
    return math.prod(int(v) for v in values)


# ---------------------------------------------------------------------------------------------- input and geometry
def _batched(layer, input, dims, empty_channels=False):
    """The input as (N, C, *spatial) with ``dims`` spatial axes (a batch of one when unbatched), and whether it was.

    Only the batch may be empty, as in PyTorch (``empty_channels`` also allows C = 0, as its adaptive average does).
    """
    x = input if isinstance(input, Tensor) else Tensor(input)
    shape = tuple(x.shape)
    if x.ndim not in (dims + 1, dims + 2) or min(shape[-dims:], default=0) < 1:
        letters = _LETTERS[dims]
        raise ValueError(f"{layer}: expected a {dims + 1}-D (C, {letters}) or {dims + 2}-D (N, C, {letters}) input "
                         f"with {letters} >= 1, got shape {shape}")
    if not empty_channels and shape[-dims - 1] == 0:
        raise ValueError(f"{layer}: input of shape {shape} has no channels; only the batch dimension may be 0")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer}: expected a float32 or float64 input, got {x.dtype} (shape {shape}); "
                        "convert it with x.float()")
    return (x.unsqueeze(0), True) if x.ndim == dims + 1 else (x, False)


def _shown_shape(x, was_unbatched):
    """The caller's input shape, for error messages."""
    return tuple(x.shape[1:]) if was_unbatched else tuple(x.shape)


def _unbatched(out, was_unbatched):
    return out.squeeze(0) if was_unbatched else out


def _default_stride(stride):
    """torch treats stride=None and stride=[] alike: the stride defaults to the kernel size."""
    return stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)


class _Windows(NamedTuple):
    """Resolved pooling geometry, one entry per spatial axis: pads are (before, after) pairs."""

    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    in_size: tuple
    out_size: tuple

    @property
    def needed(self):
        """Positions of the padded input that some window reads, per axis: (out - 1) * S + d * (F - 1) + 1."""
        return tuple((self.out_size[a] - 1) * self.stride[a] + self.dilation[a] * (self.kernel[a] - 1) + 1
                     for a in range(len(self.kernel)))

    @property
    def overlapping(self):
        """True when two windows can share a pixel (along some axis the stride is below the window's extent)."""
        return any(self.stride[a] < self.dilation[a] * (self.kernel[a] - 1) + 1 for a in range(len(self.kernel)))


def _windows(layer, shape, dims, kernel_size, stride, padding, dilation=1, ceil_mode=False, strict=False):
    """Check the hyper-parameters against the input ``shape`` and resolve the output size (PyTorch's rules)."""
    kernel = positive_ntuple(kernel_size, dims, "kernel_size", layer)
    stride = kernel if _default_stride(stride) else positive_ntuple(stride, dims, "stride", layer)
    dilation = positive_ntuple(dilation, dims, "dilation", layer)
    in_size = tuple(shape[-dims:])
    pads = resolve_padding(padding, in_size, kernel, stride, dilation, layer)
    for axis, name in enumerate(AXIS_NAMES[dims]):
        if max(pads[axis]) > kernel[axis] // 2:
            raise ValueError(f"{layer}: padding {padding!r} is more than half the kernel size {kernel} along the "
                             f"{name}; each side may pad at most kernel_size // 2 = {kernel[axis] // 2} "
                             "(as in PyTorch, so that every window holds an input pixel); "
                             "use less padding or a larger kernel")
    where = f"{layer} on input of shape {tuple(shape)}"
    out_size = tuple(window_output_size(where, name, in_size[axis], kernel[axis], stride[axis], pads[axis],
                                        dilation[axis], strict=strict, ceil_mode=ceil_mode)
                     for axis, name in enumerate(AXIS_NAMES[dims]))
    if max(dilation) > 1:
        _check_windows_touch_input(where, kernel, stride, dilation, pads, in_size, out_size)
    return _Windows(kernel, stride, dilation, pads, in_size, out_size)


def _first_inside(start, step):
    """Per window start: the first tap at or after 0 (taps at start, start + step, ...)."""
    return start + (-get_array_module().minimum(start, 0) + step - 1) // step * step


def _check_windows_touch_input(where, kernel, stride, dilation, pads, in_size, out_size):
    """Reject a dilated window whose taps all land in the padding (PyTorch returns -inf and an invalid index)."""
    xp = get_array_module()
    dims = len(kernel)
    for axis, (name, extent) in enumerate(zip(_STEPS[dims], AXIS_NAMES[dims])):
        step = dilation[axis]
        start = xp.arange(out_size[axis]) * stride[axis] - pads[axis][0]
        first_inside = _first_inside(start, step)
        empty = (first_inside > start + (kernel[axis] - 1) * step) | (first_inside >= in_size[axis])
        if empty.any():
            position = int(xp.argmax(empty))
            taps = [int(start[position]) + i * step for i in range(kernel[axis])]
            raise ValueError(f"{where}: the window at output {name} {position} reads only padding ({name}s "
                             f"{taps} of an input of {extent} {in_size[axis]}, dilation {step}); "
                             "use less padding or dilation, or a larger input")


def _padded(x, win, fill):
    """x padded with ``fill`` by the window's pads, grown or cut at the end to the positions the windows read."""
    xp = get_array_module()
    grow = [(0, 0), (0, 0)] + [(before, max(0, need - before - size))
                               for (before, _), need, size in zip(win.pads, win.needed, win.in_size)]
    return xp.pad(x, grow, constant_values=fill)[(Ellipsis,) + tuple(slice(0, need) for need in win.needed)]


def _unpadded(grad_padded, win):
    """The input-sized part of a gradient on the padded input (zeros where no window reached)."""
    xp = get_array_module()
    grad = xp.zeros(grad_padded.shape[:2] + tuple(win.in_size), dtype=grad_padded.dtype)
    kept = [min(size, have - before) for size, have, (before, _) in
            zip(win.in_size, grad_padded.shape[2:], win.pads)]
    grad[(Ellipsis,) + tuple(slice(0, k) for k in kept)] = grad_padded[
        (Ellipsis,) + tuple(slice(before, before + k) for (before, _), k in zip(win.pads, kept))]
    return grad


def _window_view(padded, win):
    """The (N, C, *out, *kernel) view of every window: [n, c, o..., t...] = padded[n, c, o*S + t*d ...] (no copy).

    It is im2col's window view (``im2col.windows``) with the output axes moved before the window axes.
    """
    dims = len(win.kernel)
    outputs_first = (0, 1) + tuple(range(2 + dims, 2 + 2 * dims)) + tuple(range(2, 2 + dims))
    return im2col.windows(padded, win).transpose(outputs_first)


def _fold(taps, win):
    """Adjoint of ``_window_view``: each window's kernel-shaped values added back at the padded positions they
    came from (one strided add per tap, as col2im does, since windows may overlap)."""
    xp = get_array_module()
    padded = xp.zeros(taps.shape[:2] + tuple(win.needed), dtype=taps.dtype)
    target = im2col.windows(padded, win, writeable=True)
    for offset in itertools.product(*(range(k) for k in win.kernel)):
        target[(slice(None), slice(None)) + offset] += taps[(Ellipsis,) + offset]
    return padded


# ---------------------------------------------------------------------------------------------- max: switches
def _max_switches(windows):
    """s = argmax over the last axis: the first maximum (PyTorch's tie rule); a NaN wins (the last NaN, as PyTorch)."""
    xp = get_array_module()
    switch = windows.argmax(axis=-1)
    is_nan = windows != windows
    if is_nan.any():
        last_nan = windows.shape[-1] - 1 - is_nan[..., ::-1].argmax(axis=-1)
        switch = xp.where(is_nan.any(axis=-1), last_nan, switch)
    return switch


def _first_tap_inside(win):
    """(*out): the first tap of each window that lands on the input, not on the padding."""
    xp = get_array_module()
    inside = _padded(xp.ones((1, 1) + tuple(win.in_size), bool), win, False)
    return _window_view(inside, win)[0, 0].reshape(tuple(win.out_size) + (-1,)).argmax(axis=-1)


def _along(vector, axis, dims):
    """A per-position vector of spatial ``axis`` shaped to broadcast over (*out)."""
    return vector.reshape((1,) * axis + (-1,) + (1,) * (dims - axis - 1))


def _plane_strides(size):
    """Flat-index steps of each axis in a row-major plane (or volume) of ``size``."""
    return tuple(_product(size[a + 1:]) for a in range(len(size)))


def _max_pool_indices(switch, win, all_minus_inf=None):
    """PyTorch's flat indices into each input plane (volume) from the winning kernel offsets.

    ``all_minus_inf`` marks windows whose max is -inf: they tie with the -inf padding, and PyTorch
    then keeps the window's first real pixel.
    """
    xp = get_array_module()
    dims = len(win.kernel)
    plane_steps = _plane_strides(win.in_size)
    offsets = xp.arange(_product(win.kernel), dtype=xp.int64)
    offset_index = xp.zeros_like(offsets)
    starts = xp.zeros(tuple(win.out_size), xp.int64)
    firsts = xp.zeros(tuple(win.out_size), xp.int64)
    for axis, tap_steps in enumerate(_plane_strides(win.kernel)):
        taps = offsets // tap_steps % win.kernel[axis]
        offset_index += taps * win.dilation[axis] * plane_steps[axis]
        start = xp.arange(win.out_size[axis], dtype=xp.int64) * win.stride[axis] - win.pads[axis][0]
        starts = starts + _along(start, axis, dims) * plane_steps[axis]
        if all_minus_inf is not None:
            firsts = firsts + _along(_first_inside(start, win.dilation[axis]), axis, dims) * plane_steps[axis]
    indices = xp.take(offset_index, switch) + starts
    if all_minus_inf is not None:
        indices = xp.where(all_minus_inf, firsts, indices)
    return indices


class _MaxPool(Function):
    """y = max of each window, s = the switch (which tap won); backward routes dy through s to that input pixel.

    With ``return_indices`` the forward has a second, integer output: the switches as flat indices into each
    input plane (volume).
    """

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        xp = get_array_module()
        win = self.win
        self.kernel = kernel = pick("max_pool", win)
        if kernel is not None:
            return self._forward_kernel(kernel, x)
        windows = _window_view(_padded(x, win, -xp.inf), win)  # -inf: padding never wins over a negative input
        windows = windows.reshape(windows.shape[:2 + len(win.kernel)] + (_product(win.kernel),))  # the one copy
        self.switch = _max_switches(windows)
        out = xp.take_along_axis(windows, self.switch[..., None], axis=-1)[..., 0]
        all_minus_inf = xp.isneginf(out)
        if all_minus_inf.any():  # a tie with the -inf padding: PyTorch picks the window's first input pixel
            self.switch = xp.where(all_minus_inf, _first_tap_inside(win), self.switch)
        if self.return_indices:  # kept: an ONNX export links a MaxUnpool to this pooling through them
            self.indices = _max_pool_indices(self.switch, win)
            return out, self.indices
        return out

    def _forward_kernel(self, kernel, x):
        xp = get_array_module()
        if not (self.needs_input_grad or self.return_indices):
            return kernel.values(x, self.win)
        out, switch = kernel.forward(x, self.win)
        all_minus_inf = xp.isneginf(out)
        all_minus_inf = all_minus_inf if all_minus_inf.any() else None
        if self.return_indices or all_minus_inf is not None:
            self.indices = _max_pool_indices(switch, self.win, all_minus_inf)
        else:  # keep the 1-byte switches for backward, not 8-byte indices
            self.switch = switch
        return (out, self.indices) if self.return_indices else out

    def backward(self, grad, grad_indices=None):
        win = self.win
        if self.kernel is not None:
            indices = self.indices if hasattr(self, "indices") else _max_pool_indices(self.switch, win)
            return (self.kernel.backward(grad, indices, win),)
        xp = get_array_module()
        routed = xp.zeros(grad.shape + (_product(win.kernel),), dtype=grad.dtype)
        xp.put_along_axis(routed, self.switch[..., None], grad[..., None], axis=-1)  # dx_window[s] = dy
        return (_unpadded(_fold(routed.reshape(grad.shape + tuple(win.kernel)), win), win),)


def _max_pool(input, dims, kernel_size, stride, padding, dilation, ceil_mode, return_indices, strict, layer):
    x, unbatched = _batched(layer, input, dims)
    win = _windows(layer, _shown_shape(x, unbatched), dims, kernel_size, stride, padding, dilation, ceil_mode,
                   strict)
    if not return_indices:
        return _unbatched(_MaxPool.apply(x, win=win, return_indices=False), unbatched)
    out, indices = _MaxPool.apply(x, win=win, return_indices=True)
    return _unbatched(out, unbatched), _unbatched(indices, unbatched)


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               strict=False):
    """y[n,c,i] = max over the (dilated) window at i*S - P of (N, C, L), padding counted as -inf; see max_pool2d."""
    return _max_pool(input, 1, kernel_size, stride, padding, dilation, ceil_mode, return_indices, strict,
                     "max_pool1d")


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               strict=False):
    """y[n,c,i,j] = max over the (dilated) window at (i*S - P, j*S - P), padding counted as -inf.

    ``padding`` also accepts per-side forms and 'same'/'valid' (see ``resolve_padding``). With
    ``return_indices`` also returns int64 flat indices into each H*W plane (for ``max_unpool2d``).
    ``strict=True`` (beyond PyTorch) raises instead of flooring when the windows do not tile the input.
    """
    return _max_pool(input, 2, kernel_size, stride, padding, dilation, ceil_mode, return_indices, strict,
                     "max_pool2d")


def max_pool3d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               strict=False):
    """y[n,c,i,j,k] = max over the (dilated) window of (N, C, D, H, W); indices are flat into each D*H*W volume."""
    return _max_pool(input, 3, kernel_size, stride, padding, dilation, ceil_mode, return_indices, strict,
                     "max_pool3d")


# ---------------------------------------------------------------------------------------------- average / power
def _window_sums(x, win, kernel):
    """s[o] = sum of the zero-padded input over window o (on ``kernel`` when one was picked)."""
    if kernel is not None:
        return kernel.sums(x, win)
    dims = len(win.kernel)
    return _window_view(_padded(x, win, 0), win).sum(axis=tuple(range(-dims, 0)))


def _window_sums_backward(grad, win, kernel):
    """Gradient of ``_window_sums``: every input pixel of window o receives grad[o]."""
    if kernel is not None:
        return kernel.spread(grad, win)
    xp = get_array_module()
    taps = xp.broadcast_to(grad[(Ellipsis,) + (None,) * len(win.kernel)], grad.shape + tuple(win.kernel))
    return _unpadded(_fold(taps, win), win)


def _window_counts(win):
    """Per axis: (window length counting padding but not the ceil_mode overhang, length inside the input)."""
    xp = get_array_module()
    counts = []
    for axis in range(len(win.kernel)):
        size, kernel, stride, (before, after) = win.in_size[axis], win.kernel[axis], win.stride[axis], win.pads[axis]
        start = xp.arange(win.out_size[axis], dtype=xp.int64) * stride - before
        end = xp.minimum(start + kernel, size + after)  # PyTorch clips at the padded edge, not at the kernel
        counts.append((end - start, xp.minimum(end, size) - xp.maximum(start, 0)))
    return counts


def _outer(vectors, dtype):
    """(*out) array of the products of one per-axis vector per spatial axis."""
    dims = len(vectors)
    result = _along(vectors[0], 0, dims)
    for axis in range(1, dims):
        result = result * _along(vectors[axis], axis, dims)
    return result.astype(dtype)


def _avg_divisor(win, count_include_pad, divisor_override, dtype):
    """The (*out) divisors PyTorch uses for each window."""
    if divisor_override:
        return get_array_module().asarray(divisor_override, dtype=dtype)
    counts = _window_counts(win)
    return _outer([padded if count_include_pad else inside for padded, inside in counts], dtype)


class _AvgPool(Function):
    """window sum / divisor; backward spreads grad / divisor over each window."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        self.divisor = _avg_divisor(self.win, self.count_include_pad, self.divisor_override, x.dtype)
        self.kernel = pick("window_sum", self.win)
        return _window_sums(x, self.win, self.kernel) / self.divisor

    def backward(self, grad):
        return (_window_sums_backward(grad / self.divisor, self.win, self.kernel),)


def _avg_pool(input, dims, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, strict,
              layer):
    x, unbatched = _batched(layer, input, dims)
    if divisor_override is not None and (not isinstance(divisor_override, numbers.Integral) or divisor_override == 0):
        raise ValueError(f"{layer}: divisor_override must be a non-zero integer or None, got {divisor_override!r}")
    win = _windows(layer, _shown_shape(x, unbatched), dims, kernel_size, stride, padding, 1, ceil_mode, strict)
    out = _AvgPool.apply(x, win=win, count_include_pad=count_include_pad, divisor_override=divisor_override)
    return _unbatched(out, unbatched)


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
               divisor_override=None, strict=False):
    """y = (sum of the window of (N, C, L)) / divisor, with avg_pool2d's divisor rules (torch's avg_pool1d has no
    ``divisor_override``; here it is keyword-only)."""
    return _avg_pool(input, 1, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, strict,
                     "avg_pool1d")


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, strict=False):
    """y = (sum of the window) / divisor; divisor = window area incl. padding, excl. the ceil_mode overhang.

    With ``count_include_pad=False`` the divisor counts input pixels only; ``divisor_override``
    replaces it. ``strict=True`` (beyond PyTorch) raises when the windows do not tile the input.
    """
    return _avg_pool(input, 2, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, strict,
                     "avg_pool2d")


def avg_pool3d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, strict=False):
    """y = (sum of the window of (N, C, D, H, W)) / divisor, with avg_pool2d's divisor rules."""
    return _avg_pool(input, 3, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, strict,
                     "avg_pool3d")


class _LpPool(Function):
    """y = (scale * sum_window |x|^p)^(1/p); dy/dx = scatter(g * y / sum) * sign(x) |x|^(p-1), 0 where sum = 0."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        xp = get_array_module()
        p = self.norm_type
        magnitude = xp.abs(x)
        powered = magnitude * magnitude if p == 2 else magnitude ** p
        self.kernel = pick("window_sum", self.win)
        self.sums = _window_sums(powered, self.win, self.kernel)
        # PyTorch computes avg_pool(x^p) * kernel volume: a window cut by ceil_mode is scaled up by volume / count
        padded = _outer([counts[0] for counts in _window_counts(self.win)], xp.float64)
        scale = (_product(self.win.kernel) / padded).astype(x.dtype)
        scaled = self.sums * scale if (scale != 1).any() else self.sums
        self.out = xp.sqrt(scaled) if p == 2 else scaled ** (1.0 / p)
        self.x = x
        return self.out

    def backward(self, grad):
        xp = get_array_module()
        p = self.norm_type
        nonzero = self.sums > 0
        # where a window sums to zero every |x| is 0: the gradient is set to 0 (as PyTorch documents)
        per_window = xp.where(nonzero, grad * self.out / xp.where(nonzero, self.sums, 1), 0).astype(grad.dtype)
        spread = _window_sums_backward(per_window, self.win, self.kernel)
        x = self.x
        if p == 1:
            local = xp.sign(x)
        elif p == 2:
            local = x
        else:
            with xp.errstate(divide="ignore", invalid="ignore"):
                local = xp.where(x != 0, xp.sign(x) * xp.abs(x) ** (p - 1), 0).astype(x.dtype)
        return (spread * local,)


def _lp_pool(input, dims, norm_type, kernel_size, stride, ceil_mode, padding, strict, layer):
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or math.isnan(norm_type):
        raise TypeError(f"{layer}: norm_type must be a positive number, got {norm_type!r}")
    if norm_type <= 0:
        raise ValueError(f"{layer}: norm_type must be positive (p in (sum |x|^p)^(1/p)), got {norm_type!r}; "
                         "use 1 for a sum of magnitudes, 2 for the Euclidean norm, float('inf') for max |x|")
    x, unbatched = _batched(layer, input, dims)
    if math.isinf(norm_type):
        out = _max_pool(x.abs(), dims, kernel_size, stride, padding, 1, ceil_mode, False, strict, layer)
        return _unbatched(out, unbatched)
    win = _windows(layer, _shown_shape(x, unbatched), dims, kernel_size, stride, padding, 1, ceil_mode, strict)
    return _unbatched(_LpPool.apply(x, win=win, norm_type=float(norm_type)), unbatched)


def lp_pool1d(input, norm_type, kernel_size, stride=None, ceil_mode=False, padding=0, *, strict=False):
    """y = (sum over the window of ``|x|^p``)^(1/p) on (N, C, L); see lp_pool2d."""
    return _lp_pool(input, 1, norm_type, kernel_size, stride, ceil_mode, padding, strict, "lp_pool1d")


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, padding=0, *, strict=False):
    """y = (sum over the window of |x|^p)^(1/p) (p = norm_type > 0; p = inf gives max |x|).

    Differs from PyTorch on purpose: PyTorch pools x^p, which is NaN for negative inputs with a
    non-integer p (and can be for odd p); we pool |x|^p, so the result is the true p-norm of each
    window and equals PyTorch's wherever PyTorch's is defined (non-negative inputs or even integer p).
    Like PyTorch (which computes avg_pool2d(x^p) * kernel area), a window cut short by ``ceil_mode``
    has its sum scaled by kernel area / (its area inside the padded input). ``padding`` (zeros; beyond
    PyTorch 2.13) is counted as in ``avg_pool2d``.
    The gradient is 0 where a window sums to 0, and at x = 0.
    """
    return _lp_pool(input, 2, norm_type, kernel_size, stride, ceil_mode, padding, strict, "lp_pool2d")


def lp_pool3d(input, norm_type, kernel_size, stride=None, ceil_mode=False, padding=0, *, strict=False):
    """y = (sum over the window of ``|x|^p``)^(1/p) on (N, C, D, H, W); see lp_pool2d."""
    return _lp_pool(input, 3, norm_type, kernel_size, stride, ceil_mode, padding, strict, "lp_pool3d")


def window_sum(input, kernel_size, stride=None, dilation=1):
    """s[n, c, o] = sum of the (dilated) window o of an unpadded ``(N, C, *spatial)`` input (1 to 3 spatial axes).

    The building block of ONNX's dilated AveragePool and LpPool, whose padding and divisors cnnkit's pools
    do not take; differentiable.
    """
    layer = "window_sum"
    x = input if isinstance(input, Tensor) else Tensor(input)
    dims = x.ndim - 2
    if dims not in _LETTERS:
        raise ValueError(f"{layer}: expected an (N, C, L), (N, C, H, W) or (N, C, D, H, W) input, got shape "
                         f"{tuple(x.shape)}")
    x, _ = _batched(layer, x, dims)
    win = _windows(layer, tuple(x.shape), dims, kernel_size, stride, 0, dilation)
    return _AvgPool.apply(x, win=win, count_include_pad=True, divisor_override=1)


# ---------------------------------------------------------------------------------------------- unpooling
class _MaxUnpool(Function):
    """out.flat[indices] = x (zeros elsewhere); backward gathers grad.flat[indices]."""

    def forward(self, x):
        xp = get_array_module()
        n, c = x.shape[:2]
        plane = _product(self.out_size)
        self.positions = plane_positions(self.indices, plane)
        out = xp.zeros(n * c * plane, dtype=x.dtype)
        out[self.positions] = x.reshape(-1)
        return out.reshape((n, c) + self.out_size)

    def backward(self, grad):
        return (grad.reshape(-1)[self.positions].reshape(self.indices.shape),)


def _unpool_output_size(layer, in_size, kernel, stride, padding, output_size):
    """PyTorch's rule: default (L_in - 1) * S - 2P + F per axis; a given size must lie strictly within S of it."""
    dims = len(in_size)
    letters = _LETTERS[dims]
    default = tuple((in_size[a] - 1) * stride[a] - 2 * padding[a] + kernel[a] for a in range(dims))
    if output_size is None:
        if min(default) < 1:
            raise ValueError(f"{layer}: the default output size (L_in - 1) * S - 2P + F = {default} is not positive "
                             f"for an input of spatial size {tuple(in_size)}; reduce padding or pass output_size")
        return default
    sizes = tuple(output_size.shape if isinstance(output_size, Tensor) else output_size)
    if len(sizes) == dims + 2:
        sizes = sizes[2:]
    if len(sizes) != dims or not all(isinstance(s, numbers.Integral) for s in sizes):
        raise ValueError(f"{layer}: output_size must hold {dims} size{'s' if dims > 1 else ''} ({letters}) or "
                         f"{dims + 2} (N, C, {letters}), got {output_size!r}")
    for axis, name in enumerate(AXIS_NAMES[dims]):
        low, high = default[axis] - stride[axis], default[axis] + stride[axis]
        if not low < sizes[axis] < high:
            raise ValueError(f"{layer}: output_size {tuple(int(s) for s in sizes)} has {name} {sizes[axis]}, which "
                             f"cannot come from pooling to {in_size[axis]} with kernel {kernel[axis]}, stride "
                             f"{stride[axis]} and padding {padding[axis]}: it must lie strictly between {low} and "
                             f"{high}; pass the shape of the tensor that was pooled")
    return tuple(int(s) for s in sizes)


def _max_unpool(input, indices, dims, kernel_size, stride, padding, output_size, layer):
    xp = get_array_module()
    x, unbatched = _batched(layer, input, dims)
    pool = f"max_pool{dims}d"
    index_array = indices.data if isinstance(indices, Tensor) else xp.asarray(indices)
    if index_array.dtype.kind not in "iu":
        raise TypeError(f"{layer}: indices must be an integer tensor (as returned by {pool}(..., "
                        f"return_indices=True)), got dtype {index_array.dtype}")
    input_shape = _shown_shape(x, unbatched)
    if tuple(index_array.shape) != input_shape:
        raise ValueError(f"{layer}: indices have shape {tuple(index_array.shape)} but the input has shape "
                         f"{input_shape}; they must be the same (the pair {pool} returned)")
    if unbatched:
        index_array = index_array[None]
    kernel = positive_ntuple(kernel_size, dims, "kernel_size", layer)
    stride = kernel if _default_stride(stride) else positive_ntuple(stride, dims, "stride", layer)
    padding = ntuple(padding, dims, "padding", layer)
    if min(padding) < 0:
        raise ValueError(f"{layer}: padding must be non-negative, got {padding}")
    out_size = _unpool_output_size(layer, x.shape[2:], kernel, stride, padding, output_size)
    plane = _product(out_size)
    if index_array.size and (int(index_array.min()) < 0 or int(index_array.max()) >= plane):
        raise ValueError(f"{layer}: indices range over [{int(index_array.min())}, {int(index_array.max())}] but the "
                         f"output planes are {'x'.join(str(s) for s in out_size)} (flat indices 0..{plane - 1})"
                         f" for input shape {input_shape}; pass output_size=<shape of the pooled input> or use "
                         f"the kernel_size/stride/padding of the {pool} that made the indices")
    out = _MaxUnpool.apply(x, indices=index_array.astype(xp.int64, copy=False), out_size=out_size, kernel=kernel,
                           stride=stride, padding=padding)
    return _unbatched(out, unbatched)


def max_unpool1d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool1d: out.flat[indices[n,c,i]] = input[n,c,i] in each row, zeros elsewhere."""
    return _max_unpool(input, indices, 1, kernel_size, stride, padding, output_size, "max_unpool1d")


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d: out.flat[indices[n,c,i,j]] = input[n,c,i,j] in each plane, zeros elsewhere.

    Output size: (H_in - 1) * S - 2P + F unless ``output_size`` ((H, W) or (N, C, H, W)) is given.
    """
    return _max_unpool(input, indices, 2, kernel_size, stride, padding, output_size, "max_unpool2d")


def max_unpool3d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool3d: each value put back at its flat index into its D*H*W volume, zeros elsewhere."""
    return _max_unpool(input, indices, 3, kernel_size, stride, padding, output_size, "max_unpool3d")


# ---------------------------------------------------------------------------------------------- adaptive
def _adaptive_size(layer, output_size, in_size):
    """The output size from an int or a tuple (one entry per axis) whose None entries keep the input size."""
    dims = len(in_size)
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size,) * dims
    if len(sizes) != dims or not all(s is None or (isinstance(s, numbers.Integral) and s > 0) for s in sizes):
        wanted = TUPLE_NAMES[dims]
        raise ValueError(f"{layer}: output_size must be a positive int or {wanted} of positive ints/None, "
                         f"got {output_size!r}")
    return tuple(in_size[a] if sizes[a] is None else int(sizes[a]) for a in range(dims))


def _adaptive_bounds(size, out):
    """PyTorch's windows: start = floor(i * L / out), end = ceil((i + 1) * L / out)."""
    xp = get_array_module()
    index = xp.arange(out, dtype=xp.int64)
    return (index * size) // out, -((-(index + 1) * size) // out)


def _averaging_matrix(size, out, dtype):
    """(out, size) matrix whose row i averages window i, so that pooling multiplies each axis by one of these."""
    xp = get_array_module()
    start, end = _adaptive_bounds(size, out)
    columns = xp.arange(size)
    inside = (columns[None, :] >= start[:, None]) & (columns[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


def _along_axes(x, matrices):
    """x with spatial axis a multiplied by matrices[a] (y_a = M_a x_a for every axis, the last one first)."""
    xp = get_array_module()
    for axis in reversed(range(len(matrices))):
        x = xp.moveaxis(xp.moveaxis(x, 2 + axis, -1) @ matrices[axis].T, -1, 2 + axis)
    return x


class _AdaptiveAvgPool(Function):
    """Mean over PyTorch's adaptive windows; reshape-mean when they tile exactly, else one matrix per axis."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        n, c, *size = x.shape
        self.in_shape = x.shape
        self.tiled = all(length % out == 0 for length, out in zip(size, self.out_size))
        if self.tiled:  # includes global pooling
            self.cells = tuple(length // out for length, out in zip(size, self.out_size))
            return x.reshape(self.split_shape()).mean(axis=tuple(range(3, 3 + 2 * len(size), 2)))
        self.matrices = [_averaging_matrix(length, out, x.dtype) for length, out in zip(size, self.out_size)]
        if len(size) == 2:  # A_h @ x @ A_w^T: two products, no axis moves
            return self.matrices[0] @ x @ self.matrices[1].T
        return _along_axes(x, self.matrices)

    def split_shape(self):
        """(N, C, out_0, cell_0, out_1, cell_1, ...): each output cell's window on an axis of its own."""
        return self.in_shape[:2] + tuple(v for pair in zip(self.out_size, self.cells) for v in pair)

    def backward(self, grad):
        xp = get_array_module()
        if self.tiled:
            share = grad / _product(self.cells)
            expanded = share.reshape(share.shape[:2] + tuple(v for out in self.out_size for v in (out, 1)))
            spread = xp.broadcast_to(expanded, self.split_shape())
            return (spread.reshape(self.in_shape),)
        if len(self.matrices) == 2:
            return (self.matrices[0].T @ grad @ self.matrices[1],)
        return (_along_axes(grad, [matrix.T for matrix in self.matrices]),)


def _adaptive_avg_pool(input, output_size, dims, layer):
    x, unbatched = _batched(layer, input, dims, empty_channels=True)
    out_size = _adaptive_size(layer, output_size, x.shape[2:])
    return _unbatched(_AdaptiveAvgPool.apply(x, out_size=out_size), unbatched)


def adaptive_avg_pool1d(input, output_size):
    """y[i] = mean of x over positions floor(i*L/o)..ceil((i+1)*L/o)-1 of (N, C, L)."""
    return _adaptive_avg_pool(input, output_size, 1, "adaptive_avg_pool1d")


def adaptive_avg_pool2d(input, output_size):
    """y[i, j] = mean of x over rows floor(i*H/oh)..ceil((i+1)*H/oh)-1 and the same rule for columns."""
    return _adaptive_avg_pool(input, output_size, 2, "adaptive_avg_pool2d")


def adaptive_avg_pool3d(input, output_size):
    """y[i, j, k] = mean of x over PyTorch's adaptive window (i, j, k) of (N, C, D, H, W)."""
    return _adaptive_avg_pool(input, output_size, 3, "adaptive_avg_pool3d")


class _AdaptiveMaxPool(Function):
    """Max over PyTorch's adaptive windows (one gather per offset, shorter windows repeat their last pixel)."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        xp = get_array_module()
        size = tuple(x.shape[2:])
        dims = len(size)
        bounds = [_adaptive_bounds(length, out) for length, out in zip(size, self.out_size)]
        spans = tuple(int((end - start).max()) for start, end in bounds)
        views = []
        for offset in itertools.product(*(range(span) for span in spans)):
            index = tuple(_along(xp.minimum(start + t, end - 1), axis, dims)
                          for axis, (t, (start, end)) in enumerate(zip(offset, bounds)))
            views.append(x[(slice(None), slice(None)) + index])
        kernel = pick("adaptive_max_pool", len(views))
        if kernel is not None:
            out, switch = kernel.forward(views)
        else:
            windows = xp.stack(views, axis=-1)
            switch = _max_switches(windows)
            out = xp.take_along_axis(windows, switch[..., None], axis=-1)[..., 0]
        self.indices = xp.zeros(switch.shape, xp.int64)
        for axis, (span_step, plane_step) in enumerate(zip(_plane_strides(spans), _plane_strides(size))):
            start, end = (_along(bound, axis, dims) for bound in bounds[axis])
            self.indices += xp.minimum(start + switch // span_step % spans[axis], end - 1) * plane_step
        self.in_size = size
        return (out, self.indices) if self.return_indices else out

    def backward(self, grad, grad_indices=None):
        # dx[index] += dy for each window's winner (adaptive windows can overlap, so the adds accumulate)
        xp = get_array_module()
        n, c = grad.shape[:2]
        plane = _product(self.in_size)
        flat = xp.zeros(n * c * plane, dtype=grad.dtype)
        xp.add.at(flat, plane_positions(self.indices, plane), grad.reshape(-1))
        return (flat.reshape((n, c) + self.in_size),)


def _adaptive_max_pool(input, output_size, return_indices, dims, layer):
    x, unbatched = _batched(layer, input, dims)
    out_size = _adaptive_size(layer, output_size, x.shape[2:])
    size = x.shape[2:]
    if all(length % out == 0 for length, out in zip(size, out_size)):  # the windows tile: plain max pooling
        kernel = tuple(length // out for length, out in zip(size, out_size))
        return _max_pool(input, dims, kernel, kernel, 0, 1, False, return_indices, False, layer)
    if not return_indices:
        return _unbatched(_AdaptiveMaxPool.apply(x, out_size=out_size, return_indices=False), unbatched)
    out, indices = _AdaptiveMaxPool.apply(x, out_size=out_size, return_indices=True)
    return _unbatched(out, unbatched), _unbatched(indices, unbatched)


def adaptive_max_pool1d(input, output_size, return_indices=False):
    """y[i] = max of x over PyTorch's adaptive window i of (N, C, L); optionally also the argmax indices."""
    return _adaptive_max_pool(input, output_size, return_indices, 1, "adaptive_max_pool1d")


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """y[i, j] = max of x over PyTorch's adaptive window (i, j); optionally also the flat H*W argmax indices."""
    return _adaptive_max_pool(input, output_size, return_indices, 2, "adaptive_max_pool2d")


def adaptive_max_pool3d(input, output_size, return_indices=False):
    """y[i, j, k] = max of x over PyTorch's adaptive window of (N, C, D, H, W); optionally the flat D*H*W argmax."""
    return _adaptive_max_pool(input, output_size, return_indices, 3, "adaptive_max_pool3d")
