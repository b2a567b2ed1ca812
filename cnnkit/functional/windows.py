"""Window geometry shared by convolution and pooling: pairs, padding, output sizes and their errors."""
from __future__ import annotations

import math
import numbers

# what an int-or-tuple argument is called in errors, by the number of spatial dimensions
TUPLE_NAMES = {1: "a 1-tuple", 2: "a pair", 3: "a triple"}
# the spatial axes as errors name them, by the number of spatial dimensions
AXIS_NAMES = {1: ("length",), 2: ("height", "width"), 3: ("depth", "height", "width")}
# the same axes as shape letters, e.g. (N, C, D, H, W)
AXIS_LETTERS = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def ntuple(value, dims, name="value", layer="op"):
    """Return a ``dims``-tuple from an int or a sequence of ``dims`` ints (torch's _single/_pair/_triple)."""
    if isinstance(value, numbers.Integral):
        return (int(value),) * dims
    if (isinstance(value, (tuple, list)) and len(value) == dims
            and all(isinstance(v, numbers.Integral) for v in value)):
        return tuple(int(v) for v in value)
    kind = TUPLE_NAMES.get(dims, f"a {dims}-tuple")
    raise TypeError(f"{layer}: {name} must be an int or {kind} of ints, got {value!r}")


def positive_ntuple(value, dims, name, layer):
    """``ntuple`` that also rejects zero and negative sizes."""
    result = ntuple(value, dims, name, layer)
    if min(result) <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value!r}")
    return result


def pair(value, name="value", layer="op"):
    """Return ``(h, w)`` from an int or a pair, checking both are integers."""
    return ntuple(value, 2, name, layer)


def positive_pair(value, name, layer):
    """``pair`` that also rejects zero and negative sizes."""
    return positive_ntuple(value, 2, name, layer)


def conv_output_size(size, kernel, stride=1, pad_total=0, dilation=1):
    """Output length = floor((W + P_total - d*(F-1) - 1) / S) + 1."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size, kernel, stride=1, dilation=1):
    """(before, after) padding so that output = ceil(W / S), the extra pixel after (TensorFlow's 'same')."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def per_side_form(dims):
    """How errors spell the per-side padding form for ``dims`` spatial axes, e.g. ((top, bottom), (left, right))."""
    if dims == 2:
        return "((top, bottom), (left, right))"
    return "(" + ", ".join(["(before, after)"] * dims) + ")"


def resolve_padding(padding, in_size, kernel, stride, dilation, layer="conv2d"):
    """Normalise ``padding`` to one (before, after) pair per spatial axis, e.g. ``((top, bottom), (left, right))``.

    Accepts an int, one int per axis ``(ph, pw)``, per-side ``((top, bottom), (left, right))`` (or flat
    ``(top, bottom, left, right)``), ``'valid'`` (no padding) or ``'same'`` (output = ceil(input / stride),
    as TensorFlow). The number of axes is ``len(kernel)``.
    """
    dims = len(kernel)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * dims
        if mode == "same":
            return tuple(same_padding(in_size[i], kernel[i], stride[i], dilation[i]) for i in range(dims))
        raise ValueError(f"{layer}: padding must be an int, {TUPLE_NAMES.get(dims, 'a tuple')}, "
                         f"{per_side_form(dims)}, 'valid' or 'same', got {padding!r}")
    if (isinstance(padding, (tuple, list)) and len(padding) == dims
            and all(isinstance(p, (tuple, list)) for p in padding)):
        sides = tuple(pair(tuple(p), "padding", layer) for p in padding)
    elif (isinstance(padding, (tuple, list)) and len(padding) == 2 * dims
          and all(isinstance(p, numbers.Integral) for p in padding)):
        sides = tuple((int(padding[2 * a]), int(padding[2 * a + 1])) for a in range(dims))
    else:
        sides = tuple((p, p) for p in ntuple(padding, dims, "padding", layer))
    if min(min(side) for side in sides) < 0:
        raise ValueError(f"{layer}: padding must be non-negative, got {padding!r}")
    return sides


def check_input(layer, x_shape, expected_channels=None, name="input", unbatched=False, dims=2):
    """Raise a clear error unless the input is ``(N, C, *spatial)`` with ``dims`` spatial axes (or
    ``(C, *spatial)`` when ``unbatched``) and C channels."""
    shown = tuple(x_shape)
    if unbatched and len(x_shape) == dims + 1:
        x_shape = (1, *x_shape)
    axes = ", ".join(AXIS_LETTERS.get(dims, ("...",)))
    if len(x_shape) != dims + 2:
        if unbatched:
            raise ValueError(f"{layer}: expected a {dims + 1}-D (C, {axes}) or {dims + 2}-D (N, C, {axes}) input, "
                             f"got shape {tuple(x_shape)}")
        raise ValueError(f"{layer}: expected a {dims + 2}-D input (N, C, {axes}), got shape {tuple(x_shape)}; "
                         "add a batch dimension with x.unsqueeze(0) for a single sample")
    if expected_channels is not None and x_shape[1] != expected_channels:
        raise ValueError(f"{layer}: {name} has {x_shape[1]} channels (shape {shown}) but the layer "
                         f"expects in_channels={expected_channels}; "
                         "change in_channels or the previous layer's out_channels")


def window_output_size(layer, axis, size, kernel, stride, pads, dilation, strict=False, ceil_mode=False):
    """Output length along one axis, with clear errors when the window does not fit.

    ``pads`` is (before, after). With ``strict`` the window must tile the input exactly:
    (W - F_eff + P_total) / S + 1 must be an integer.
    """
    pad_total = pads[0] + pads[1]
    effective = dilation * (kernel - 1) + 1
    if effective > size + pad_total:
        raise ValueError(f"{layer}: kernel {kernel} (dilation {dilation}, effective size {effective}) is larger than "
                         f"the padded input {axis} {size} + {pad_total} = {size + pad_total}; use a smaller kernel, "
                         f"more padding or a larger input")
    exact = (size - effective + pad_total) / stride + 1
    if strict and exact != math.floor(exact):
        raise ValueError(f"{layer}: hyper-parameters do not tile the input {axis}: (W - F + P_total) / S + 1 = "
                         f"({size} - {effective} + {pad_total}) / {stride} + 1 = {exact:g} is not an integer; "
                         f"the last {int(round((exact - math.floor(exact)) * stride))} pixel(s) would be dropped. "
                         "Change padding, stride or kernel size, or pass strict=False to floor as PyTorch does")
    if ceil_mode:
        out = -(-(size + pad_total - effective) // stride) + 1
        if (out - 1) * stride >= size + pads[0]:
            out -= 1
        return out
    return (size + pad_total - effective) // stride + 1


def leaves_pixels_unused(size, kernel, stride, pad_total, dilation=1):
    """True when (W - F_eff + P_total) / S + 1 is not an integer (the window skips the last pixels)."""
    return (size - (dilation * (kernel - 1) + 1) + pad_total) % stride != 0
