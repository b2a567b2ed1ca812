"""Pooling ops with torch.nn.functional's names, arguments and semantics (NCHW, also unbatched CHW).

The reference path is the textbook one: pad, take one strided view of every window, and reduce it.
Max pooling records its "switches" (which tap of each window won) and its backward routes each output
gradient through its switch; average and power-average pooling spread the gradient back over the window.
Faster paths for the same ops are kernels in ``cnnkit.kernels.pooling``, picked per call.
"""
from __future__ import annotations

import math
import numbers
from typing import NamedTuple

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..kernels import pick
from ..kernels.pooling import plane_positions
from .windows import pair, positive_pair, resolve_padding, window_output_size

__all__ = ["max_pool2d", "avg_pool2d", "lp_pool2d", "max_unpool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"]


# ---------------------------------------------------------------------------------------------- input and geometry
def _batched(layer, input, empty_channels=False):
    """Return the input as a 4-D tensor (a batch of one for C x H x W) and whether it was unbatched.

    Only the batch may be empty, as in PyTorch (``empty_channels`` also allows C = 0, as its adaptive average does).
    """
    x = input if isinstance(input, Tensor) else Tensor(input)
    shape = tuple(x.shape)
    if x.ndim not in (3, 4) or min(shape[-2:], default=0) < 1:
        raise ValueError(f"{layer}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input with H, W >= 1, "
                         f"got shape {shape}")
    if not empty_channels and shape[-3] == 0:
        raise ValueError(f"{layer}: input of shape {shape} has no channels; only the batch dimension may be 0")
    if x.dtype.kind != "f":
        raise TypeError(f"{layer}: expected a float32 or float64 input, got {x.dtype} (shape {shape}); "
                        "convert it with x.float()")
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)


def _shown_shape(x, was_unbatched):
    """The caller's input shape, for error messages."""
    return tuple(x.shape[1:]) if was_unbatched else tuple(x.shape)


def _unbatched(out, was_unbatched):
    return out.squeeze(0) if was_unbatched else out


class _Windows(NamedTuple):
    """Resolved pooling geometry: pads are ((top, bottom), (left, right)) and sizes are (height, width)."""

    kernel: tuple
    stride: tuple
    dilation: tuple
    pads: tuple
    in_size: tuple
    out_size: tuple

    @property
    def needed(self):
        """Rows and columns of the padded input that some window reads: (out - 1) * S + d * (F - 1) + 1."""
        return tuple((self.out_size[a] - 1) * self.stride[a] + self.dilation[a] * (self.kernel[a] - 1) + 1
                     for a in range(2))

    @property
    def overlapping(self):
        """True when two windows can share a pixel (along some axis the stride is below the window's extent)."""
        return any(self.stride[a] < self.dilation[a] * (self.kernel[a] - 1) + 1 for a in range(2))


def _windows(layer, shape, kernel_size, stride, padding, dilation=1, ceil_mode=False, strict=False):
    """Check the hyper-parameters against the input ``shape`` and resolve the output size (PyTorch's rules)."""
    kernel = positive_pair(kernel_size, "kernel_size", layer)
    # torch treats stride=None and stride=[] alike: the stride defaults to the kernel size
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else positive_pair(stride, "stride", layer)
    dilation = positive_pair(dilation, "dilation", layer)
    in_size = tuple(shape[-2:])
    pads = resolve_padding(padding, in_size, kernel, stride, dilation, layer)
    for axis, name in enumerate(("height", "width")):
        if max(pads[axis]) > kernel[axis] // 2:
            raise ValueError(f"{layer}: padding {padding!r} is more than half the kernel size {kernel} along the "
                             f"{name}; each side may pad at most kernel_size // 2 = {kernel[axis] // 2} "
                             "(as in PyTorch, so that every window holds an input pixel); "
                             "use less padding or a larger kernel")
    where = f"{layer} on input of shape {tuple(shape)}"
    out_size = tuple(window_output_size(where, name, in_size[axis], kernel[axis], stride[axis], pads[axis],
                                        dilation[axis], strict=strict, ceil_mode=ceil_mode)
                     for axis, name in enumerate(("height", "width")))
    if max(dilation) > 1:
        _check_windows_touch_input(where, kernel, stride, dilation, pads, in_size, out_size)
    return _Windows(kernel, stride, dilation, pads, in_size, out_size)


def _check_windows_touch_input(where, kernel, stride, dilation, pads, in_size, out_size):
    """Reject a dilated window whose taps all land in the padding (PyTorch returns -inf and an invalid index)."""
    xp = get_array_module()
    for axis, (name, extent) in enumerate((("row", "height"), ("column", "width"))):
        step = dilation[axis]
        start = xp.arange(out_size[axis]) * stride[axis] - pads[axis][0]
        first_inside = start + (-xp.minimum(start, 0) + step - 1) // step * step  # first tap at or after 0
        empty = (first_inside > start + (kernel[axis] - 1) * step) | (first_inside >= in_size[axis])
        if empty.any():
            position = int(xp.argmax(empty))
            taps = [int(start[position]) + i * step for i in range(kernel[axis])]
            raise ValueError(f"{where}: the window at output {name} {position} reads only padding ({name}s "
                             f"{taps} of an input of {extent} {in_size[axis]}, dilation {step}); "
                             "use less padding or dilation, or a larger input")


def _padded(x, win, fill):
    """x padded with ``fill`` by the window's pads, grown or cut at the end to the rows/columns the windows read."""
    xp = get_array_module()
    (top, _), (left, _) = win.pads
    need_h, need_w = win.needed
    height, width = win.in_size
    grow = ((0, 0), (0, 0), (top, max(0, need_h - top - height)), (left, max(0, need_w - left - width)))
    return xp.pad(x, grow, constant_values=fill)[:, :, :need_h, :need_w]


def _unpadded(grad_padded, win):
    """The input-sized part of a gradient on the padded input (zeros where no window reached)."""
    xp = get_array_module()
    (top, _), (left, _) = win.pads
    height, width = win.in_size
    grad = xp.zeros(grad_padded.shape[:2] + (height, width), dtype=grad_padded.dtype)
    rows, cols = min(height, grad_padded.shape[2] - top), min(width, grad_padded.shape[3] - left)
    grad[:, :, :rows, :cols] = grad_padded[:, :, top:top + rows, left:left + cols]
    return grad


def _window_view(padded, win):
    """The (N, C, out_h, out_w, kernel_h, kernel_w) view of every window: [n, c, i, j, a, b] = padded[n, c, i*S + a*d,
    j*S + b*d] (no copy)."""
    xp = get_array_module()
    (stride_h, stride_w), (dil_h, dil_w) = win.stride, win.dilation
    batch, channel, row, col = padded.strides
    return xp.lib.stride_tricks.as_strided(
        padded, padded.shape[:2] + tuple(win.out_size) + tuple(win.kernel),
        (batch, channel, row * stride_h, col * stride_w, row * dil_h, col * dil_w), writeable=False)


def _fold(taps, win):
    """Adjoint of ``_window_view``: each window's (kernel_h, kernel_w) values added back at the padded positions
    they came from."""
    xp = get_array_module()
    (kernel_h, kernel_w), (stride_h, stride_w), (dil_h, dil_w) = win.kernel, win.stride, win.dilation
    out_h, out_w = win.out_size
    padded = xp.zeros(taps.shape[:2] + tuple(win.needed), dtype=taps.dtype)
    for a in range(kernel_h):
        for b in range(kernel_w):
            padded[:, :, a * dil_h:a * dil_h + (out_h - 1) * stride_h + 1:stride_h,
                   b * dil_w:b * dil_w + (out_w - 1) * stride_w + 1:stride_w] += taps[..., a, b]
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
    """(out_h, out_w): the first tap of each window that lands on the input, not on the padding."""
    xp = get_array_module()
    inside = _padded(xp.ones((1, 1) + tuple(win.in_size), bool), win, False)
    return _window_view(inside, win)[0, 0].reshape(tuple(win.out_size) + (-1,)).argmax(axis=-1)


def _max_pool_indices(switch, win, all_minus_inf=None):
    """PyTorch's flat indices into each H * W plane from the winning kernel offsets.

    ``all_minus_inf`` marks windows whose max is -inf: they tie with the -inf padding, and PyTorch
    then keeps the window's first real pixel.
    """
    xp = get_array_module()
    (kernel_h, kernel_w), (stride_h, stride_w), (dil_h, dil_w) = win.kernel, win.stride, win.dilation
    (top, _), (left, _) = win.pads
    out_h, out_w = win.out_size
    width = win.in_size[1]
    offsets = xp.arange(kernel_h * kernel_w, dtype=xp.int64)
    offset_index = (offsets // kernel_w) * dil_h * width + (offsets % kernel_w) * dil_w
    start_rows = xp.arange(out_h, dtype=xp.int64) * stride_h - top
    start_cols = xp.arange(out_w, dtype=xp.int64) * stride_w - left
    indices = xp.take(offset_index, switch) + (start_rows[:, None] * width + start_cols[None, :])
    if all_minus_inf is not None:
        first_rows = start_rows + (-(xp.minimum(start_rows, 0)) + dil_h - 1) // dil_h * dil_h
        first_cols = start_cols + (-(xp.minimum(start_cols, 0)) + dil_w - 1) // dil_w * dil_w
        indices = xp.where(all_minus_inf, first_rows[:, None] * width + first_cols[None, :], indices)
    return indices


class _MaxPool2d(Function):
    """y = max of each window, s = the switch (which tap won); backward routes dy through s to that input pixel.

    With ``return_indices`` the forward has a second, integer output: the switches as flat H * W indices.
    """

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        xp = get_array_module()
        win = self.win
        self.kernel = kernel = pick("max_pool2d", win)
        if kernel is not None:
            return self._forward_kernel(kernel, x)
        windows = _window_view(_padded(x, win, -xp.inf), win)  # -inf: padding never wins over a negative input
        windows = windows.reshape(windows.shape[:4] + (win.kernel[0] * win.kernel[1],))  # the one copy: taps, row-major
        self.switch = _max_switches(windows)
        out = xp.take_along_axis(windows, self.switch[..., None], axis=-1)[..., 0]
        all_minus_inf = xp.isneginf(out)
        if all_minus_inf.any():  # a tie with the -inf padding: PyTorch picks the window's first input pixel
            self.switch = xp.where(all_minus_inf, _first_tap_inside(win), self.switch)
        if self.return_indices:
            return out, _max_pool_indices(self.switch, win)
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
        routed = xp.zeros(grad.shape + (win.kernel[0] * win.kernel[1],), dtype=grad.dtype)
        xp.put_along_axis(routed, self.switch[..., None], grad[..., None], axis=-1)  # dx_window[s] = dy
        return (_unpadded(_fold(routed.reshape(grad.shape + tuple(win.kernel)), win), win),)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, *,
               strict=False):
    """y[n,c,i,j] = max over the (dilated) window at (i*S - P, j*S - P), padding counted as -inf.

    ``padding`` also accepts per-side forms and 'same'/'valid' (see ``resolve_padding``). With
    ``return_indices`` also returns int64 flat indices into each H*W plane (for ``max_unpool2d``).
    ``strict=True`` (beyond PyTorch) raises instead of flooring when the windows do not tile the input.
    """
    return _max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, strict, "max_pool2d")


def _max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode, return_indices, strict, layer):
    x, unbatched = _batched(layer, input)
    win = _windows(layer, _shown_shape(x, unbatched), kernel_size, stride, padding, dilation, ceil_mode, strict)
    if not return_indices:
        return _unbatched(_MaxPool2d.apply(x, win=win, return_indices=False), unbatched)
    out, indices = _MaxPool2d.apply(x, win=win, return_indices=True)
    return _unbatched(out, unbatched), _unbatched(indices, unbatched)


# ---------------------------------------------------------------------------------------------- average / power
def _window_sums(x, win, kernel):
    """s[i, j] = sum of the zero-padded input over window (i, j) (on ``kernel`` when one was picked)."""
    if kernel is not None:
        return kernel.sums(x, win)
    return _window_view(_padded(x, win, 0), win).sum(axis=(-2, -1))


def _window_sums_backward(grad, win, kernel):
    """Gradient of ``_window_sums``: every input pixel of window (i, j) receives grad[i, j]."""
    if kernel is not None:
        return kernel.spread(grad, win)
    xp = get_array_module()
    taps = xp.broadcast_to(grad[..., None, None], grad.shape + tuple(win.kernel))
    return _unpadded(_fold(taps, win), win)


def _window_counts(win):
    """Per axis: (window length counting padding but not the ceil_mode overhang, length inside the input)."""
    xp = get_array_module()
    counts = []
    for axis in range(2):
        size, kernel, stride, (before, after) = win.in_size[axis], win.kernel[axis], win.stride[axis], win.pads[axis]
        start = xp.arange(win.out_size[axis], dtype=xp.int64) * stride - before
        end = xp.minimum(start + kernel, size + after)  # PyTorch clips at the padded edge, not at the kernel
        counts.append((end - start, xp.minimum(end, size) - xp.maximum(start, 0)))
    return counts


def _avg_divisor(win, count_include_pad, divisor_override, dtype):
    """The (out_h, out_w) divisors PyTorch uses for each window."""
    xp = get_array_module()
    if divisor_override:
        return xp.asarray(divisor_override, dtype=dtype)
    (padded_h, inside_h), (padded_w, inside_w) = _window_counts(win)
    if count_include_pad:
        return (padded_h[:, None] * padded_w[None, :]).astype(dtype)
    return (inside_h[:, None] * inside_w[None, :]).astype(dtype)


class _AvgPool2d(Function):
    """window sum / divisor; backward spreads grad / divisor over each window."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        self.divisor = _avg_divisor(self.win, self.count_include_pad, self.divisor_override, x.dtype)
        self.kernel = pick("window_sum", self.win)
        return _window_sums(x, self.win, self.kernel) / self.divisor

    def backward(self, grad):
        return (_window_sums_backward(grad / self.divisor, self.win, self.kernel),)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None, *, strict=False):
    """y = (sum of the window) / divisor; divisor = window area incl. padding, excl. the ceil_mode overhang.

    With ``count_include_pad=False`` the divisor counts input pixels only; ``divisor_override``
    replaces it. ``strict=True`` (beyond PyTorch) raises when the windows do not tile the input.
    """
    return _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, strict,
                       "avg_pool2d")


def _avg_pool2d(input, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, strict, layer):
    x, unbatched = _batched(layer, input)
    if divisor_override is not None and (not isinstance(divisor_override, numbers.Integral) or divisor_override == 0):
        raise ValueError(f"{layer}: divisor_override must be a non-zero integer or None, got {divisor_override!r}")
    win = _windows(layer, _shown_shape(x, unbatched), kernel_size, stride, padding, 1, ceil_mode, strict)
    out = _AvgPool2d.apply(x, win=win, count_include_pad=count_include_pad, divisor_override=divisor_override)
    return _unbatched(out, unbatched)


class _LpPool2d(Function):
    """y = (scale * sum_window |x|^p)^(1/p); dy/dx = scatter(g * y / sum) * sign(x) |x|^(p-1), 0 where sum = 0."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        xp = get_array_module()
        p = self.norm_type
        magnitude = xp.abs(x)
        powered = magnitude * magnitude if p == 2 else magnitude ** p
        self.kernel = pick("window_sum", self.win)
        self.sums = _window_sums(powered, self.win, self.kernel)
        # PyTorch computes avg_pool2d(x^p) * kernel area: a window cut by ceil_mode is scaled up by area / count
        padded_h, padded_w = (counts[0] for counts in _window_counts(self.win))
        area = self.win.kernel[0] * self.win.kernel[1]
        scale = (area / (padded_h[:, None] * padded_w[None, :])).astype(x.dtype)
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


def lp_pool2d(input, norm_type, kernel_size, stride=None, ceil_mode=False, padding=0, *, strict=False):
    """y = (sum over the window of |x|^p)^(1/p) (p = norm_type > 0; p = inf gives max |x|).

    Differs from PyTorch on purpose: PyTorch pools x^p, which is NaN for negative inputs with a
    non-integer p (and can be for odd p); we pool |x|^p, so the result is the true p-norm of each
    window and equals PyTorch's wherever PyTorch's is defined (non-negative inputs or even integer p).
    Like PyTorch (which computes avg_pool2d(x^p) * kernel area), a window cut short by ``ceil_mode``
    has its sum scaled by kernel area / (its area inside the padded input). ``padding`` (zeros; beyond PyTorch 2.13) is
    counted as in ``avg_pool2d``. The gradient is 0 where a window sums to 0, and at x = 0.
    """
    layer = "lp_pool2d"
    return _lp_pool2d(input, norm_type, kernel_size, stride, ceil_mode, padding, strict, layer)


def _lp_pool2d(input, norm_type, kernel_size, stride, ceil_mode, padding, strict, layer):
    if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or math.isnan(norm_type):
        raise TypeError(f"{layer}: norm_type must be a positive number, got {norm_type!r}")
    if norm_type <= 0:
        raise ValueError(f"{layer}: norm_type must be positive (p in (sum |x|^p)^(1/p)), got {norm_type!r}; "
                         "use 1 for a sum of magnitudes, 2 for the Euclidean norm, float('inf') for max |x|")
    x, unbatched = _batched(layer, input)
    if math.isinf(norm_type):
        out = _max_pool2d(x.abs(), kernel_size, stride, padding, 1, ceil_mode, False, strict, layer)
        return _unbatched(out, unbatched)
    win = _windows(layer, _shown_shape(x, unbatched), kernel_size, stride, padding, 1, ceil_mode, strict)
    return _unbatched(_LpPool2d.apply(x, win=win, norm_type=float(norm_type)), unbatched)


# ---------------------------------------------------------------------------------------------- unpooling
class _MaxUnpool2d(Function):
    """out.flat[indices] = x (zeros elsewhere); backward gathers grad.flat[indices]."""

    def forward(self, x):
        xp = get_array_module()
        n, c = x.shape[:2]
        plane = self.out_size[0] * self.out_size[1]
        self.positions = plane_positions(self.indices, plane)
        out = xp.zeros(n * c * plane, dtype=x.dtype)
        out[self.positions] = x.reshape(-1)
        return out.reshape((n, c) + self.out_size)

    def backward(self, grad):
        return (grad.reshape(-1)[self.positions].reshape(self.indices.shape),)


def _unpool_output_size(layer, in_size, kernel, stride, padding, output_size):
    """PyTorch's rule: default (H_in - 1) * S - 2P + F; a given size must lie strictly within S of it."""
    default = tuple((in_size[a] - 1) * stride[a] - 2 * padding[a] + kernel[a] for a in range(2))
    if output_size is None:
        if min(default) < 1:
            raise ValueError(f"{layer}: the default output size (H_in - 1) * S - 2P + F = {default} is not positive "
                             f"for an input plane {tuple(in_size)}; reduce padding or pass output_size")
        return default
    sizes = tuple(output_size.shape if isinstance(output_size, Tensor) else output_size)
    if len(sizes) == 4:
        sizes = sizes[2:]
    if len(sizes) != 2 or not all(isinstance(s, numbers.Integral) for s in sizes):
        raise ValueError(f"{layer}: output_size must hold 2 sizes (H, W) or 4 (N, C, H, W), got {output_size!r}")
    for axis, name in enumerate(("height", "width")):
        low, high = default[axis] - stride[axis], default[axis] + stride[axis]
        if not low < sizes[axis] < high:
            raise ValueError(f"{layer}: output_size {tuple(int(s) for s in sizes)} has {name} {sizes[axis]}, which "
                             f"cannot come from pooling to {in_size[axis]} with kernel {kernel[axis]}, stride "
                             f"{stride[axis]} and padding {padding[axis]}: it must lie strictly between {low} and "
                             f"{high}; pass the shape of the tensor that was pooled")
    return tuple(int(s) for s in sizes)


def max_unpool2d(input, indices, kernel_size, stride=None, padding=0, output_size=None):
    """Partial inverse of max_pool2d: out.flat[indices[n,c,i,j]] = input[n,c,i,j] in each plane, zeros elsewhere.

    Output size: (H_in - 1) * S - 2P + F unless ``output_size`` ((H, W) or (N, C, H, W)) is given.
    """
    layer = "max_unpool2d"
    xp = get_array_module()
    x, unbatched = _batched(layer, input)
    index_array = indices.data if isinstance(indices, Tensor) else xp.asarray(indices)
    if index_array.dtype.kind not in "iu":
        raise TypeError(f"{layer}: indices must be an integer tensor (as returned by max_pool2d(..., "
                        f"return_indices=True)), got dtype {index_array.dtype}")
    input_shape = tuple(x.shape[1:]) if unbatched else tuple(x.shape)
    if tuple(index_array.shape) != input_shape:
        raise ValueError(f"{layer}: indices have shape {tuple(index_array.shape)} but the input has shape "
                         f"{input_shape}; they must be the same (the pair max_pool2d returned)")
    if unbatched:
        index_array = index_array[None]
    kernel = positive_pair(kernel_size, "kernel_size", layer)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else positive_pair(stride, "stride", layer)
    padding = pair(padding, "padding", layer)
    if min(padding) < 0:
        raise ValueError(f"{layer}: padding must be non-negative, got {padding}")
    out_size = _unpool_output_size(layer, x.shape[2:], kernel, stride, padding, output_size)
    plane = out_size[0] * out_size[1]
    if index_array.size and (int(index_array.min()) < 0 or int(index_array.max()) >= plane):
        raise ValueError(f"{layer}: indices range over [{int(index_array.min())}, {int(index_array.max())}] but the "
                         f"output planes are {out_size[0]}x{out_size[1]} (flat indices 0..{plane - 1})"
                         f" for input shape {input_shape}; pass output_size=<shape of the pooled input> or use "
                         "the kernel_size/stride/padding of the max_pool2d that made the indices")
    out = _MaxUnpool2d.apply(x, indices=index_array.astype(xp.int64, copy=False), out_size=out_size)
    return _unbatched(out, unbatched)


# ---------------------------------------------------------------------------------------------- adaptive
def _adaptive_size(layer, output_size, in_size):
    """(out_h, out_w) from an int or a pair whose None entries keep the input size."""
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2 or not all(s is None or (isinstance(s, numbers.Integral) and s > 0) for s in sizes):
        raise ValueError(f"{layer}: output_size must be a positive int or a pair of positive ints/None, "
                         f"got {output_size!r}")
    return tuple(in_size[a] if sizes[a] is None else int(sizes[a]) for a in range(2))


def _adaptive_bounds(size, out):
    """PyTorch's windows: start = floor(i * H / out), end = ceil((i + 1) * H / out)."""
    xp = get_array_module()
    index = xp.arange(out, dtype=xp.int64)
    return (index * size) // out, -((-(index + 1) * size) // out)


def _averaging_matrix(size, out, dtype):
    """(out, size) matrix whose row i averages window i, so that pooling is A_h @ x @ A_w^T."""
    xp = get_array_module()
    start, end = _adaptive_bounds(size, out)
    columns = xp.arange(size)
    inside = (columns[None, :] >= start[:, None]) & (columns[None, :] < end[:, None])
    return (inside / (end - start)[:, None]).astype(dtype)


class _AdaptiveAvgPool2d(Function):
    """Mean over PyTorch's adaptive windows; reshape-mean when they tile exactly, else A_h @ x @ A_w^T."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        n, c, height, width = x.shape
        out_h, out_w = self.out_size
        self.in_shape = x.shape
        self.tiled = height % out_h == 0 and width % out_w == 0
        if self.tiled:  # includes global pooling (1 x 1)
            return x.reshape(n, c, out_h, height // out_h, out_w, width // out_w).mean(axis=(3, 5))
        self.rows = _averaging_matrix(height, out_h, x.dtype)
        self.cols = _averaging_matrix(width, out_w, x.dtype)
        return self.rows @ x @ self.cols.T

    def backward(self, grad):
        xp = get_array_module()
        n, c, height, width = self.in_shape
        out_h, out_w = self.out_size
        if self.tiled:
            share = grad / ((height // out_h) * (width // out_w))
            spread = xp.broadcast_to(share[:, :, :, None, :, None],
                                     (n, c, out_h, height // out_h, out_w, width // out_w))
            return (spread.reshape(self.in_shape),)
        return (self.rows.T @ grad @ self.cols,)


def adaptive_avg_pool2d(input, output_size):
    """y[i, j] = mean of x over rows floor(i*H/oh)..ceil((i+1)*H/oh)-1 and the same rule for columns."""
    layer = "adaptive_avg_pool2d"
    x, unbatched = _batched(layer, input, empty_channels=True)
    out_size = _adaptive_size(layer, output_size, x.shape[2:])
    return _unbatched(_AdaptiveAvgPool2d.apply(x, out_size=out_size), unbatched)


class _AdaptiveMaxPool2d(Function):
    """Max over PyTorch's adaptive windows (one gather per offset, shorter windows repeat their last pixel)."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        xp = get_array_module()
        height, width = x.shape[2:]
        out_h, out_w = self.out_size
        start_h, end_h = _adaptive_bounds(height, out_h)
        start_w, end_w = _adaptive_bounds(width, out_w)
        span_h, span_w = int((end_h - start_h).max()), int((end_w - start_w).max())
        views = []
        for i in range(span_h):
            rows = xp.minimum(start_h + i, end_h - 1)
            for j in range(span_w):
                views.append(x[:, :, rows[:, None], xp.minimum(start_w + j, end_w - 1)[None, :]])
        kernel = pick("adaptive_max_pool2d", len(views))
        if kernel is not None:
            out, switch = kernel.forward(views)
        else:
            windows = xp.stack(views, axis=-1)
            switch = _max_switches(windows)
            out = xp.take_along_axis(windows, switch[..., None], axis=-1)[..., 0]
        rows = xp.minimum(start_h[:, None] + switch // span_w, end_h[:, None] - 1)
        cols = xp.minimum(start_w[None, :] + switch % span_w, end_w[None, :] - 1)
        self.indices = rows * width + cols
        self.in_size = (height, width)
        return (out, self.indices) if self.return_indices else out

    def backward(self, grad, grad_indices=None):
        # dx[index] += dy for each window's winner (adaptive windows can overlap, so the adds accumulate)
        xp = get_array_module()
        n, c = grad.shape[:2]
        plane = self.in_size[0] * self.in_size[1]
        flat = xp.zeros(n * c * plane, dtype=grad.dtype)
        xp.add.at(flat, plane_positions(self.indices, plane), grad.reshape(-1))
        return (flat.reshape((n, c) + self.in_size),)


def adaptive_max_pool2d(input, output_size, return_indices=False):
    """y[i, j] = max of x over PyTorch's adaptive window (i, j); optionally also the flat H*W argmax indices."""
    layer = "adaptive_max_pool2d"
    x, unbatched = _batched(layer, input)
    out_size = _adaptive_size(layer, output_size, x.shape[2:])
    height, width = x.shape[2:]
    if height % out_size[0] == 0 and width % out_size[1] == 0:  # the windows tile: plain max pooling
        kernel = (height // out_size[0], width // out_size[1])
        return _max_pool2d(input, kernel, kernel, 0, 1, False, return_indices, False, layer)
    if not return_indices:
        return _unbatched(_AdaptiveMaxPool2d.apply(x, out_size=out_size, return_indices=False), unbatched)
    out, indices = _AdaptiveMaxPool2d.apply(x, out_size=out_size, return_indices=True)
    return _unbatched(out, unbatched), _unbatched(indices, unbatched)
