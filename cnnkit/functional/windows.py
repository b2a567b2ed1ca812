"""Window geometry shared by convolution and pooling: pairs, padding, output sizes and their errors."""
from __future__ import annotations

import math
import numbers


def pair(value, name="value", layer="op"):
    """Return ``(h, w)`` from an int or a pair, checking both are integers."""
    if isinstance(value, numbers.Integral):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, numbers.Integral) for v in value):
        return int(value[0]), int(value[1])
    raise TypeError(f"{layer}: {name} must be an int or a pair of ints, got {value!r}")


def positive_pair(value, name, layer):
    """``pair`` that also rejects zero and negative sizes."""
    result = pair(value, name, layer)
    if min(result) <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value!r}")
    return result


def conv_output_size(size, kernel, stride=1, pad_total=0, dilation=1):
    """Output length = floor((W + P_total - d*(F-1) - 1) / S) + 1."""
    return (size + pad_total - dilation * (kernel - 1) - 1) // stride + 1


def same_padding(size, kernel, stride=1, dilation=1):
    """(before, after) padding so that output = ceil(W / S), the extra pixel after (TensorFlow's 'same')."""
    out = -(-size // stride)
    total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def resolve_padding(padding, in_size, kernel, stride, dilation, layer="conv2d"):
    """Normalise ``padding`` to ``((top, bottom), (left, right))``.

    Accepts an int, a pair ``(ph, pw)``, per-side ``((top, bottom), (left, right))``,
    ``'valid'`` (no padding) or ``'same'`` (output = ceil(input / stride), as TensorFlow).
    """
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return (0, 0), (0, 0)
        if mode == "same":
            return tuple(same_padding(in_size[i], kernel[i], stride[i], dilation[i]) for i in range(2))
        raise ValueError(f"{layer}: padding must be an int, a pair, ((top, bottom), (left, right)), "
                         f"'valid' or 'same', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 2 and all(isinstance(p, (tuple, list)) for p in padding):
        sides = tuple(pair(tuple(p), "padding", layer) for p in padding)
    elif (isinstance(padding, (tuple, list)) and len(padding) == 4
          and all(isinstance(p, numbers.Integral) for p in padding)):
        top, bottom, left, right = (int(p) for p in padding)
        sides = ((top, bottom), (left, right))
    else:
        ph, pw = pair(padding, "padding", layer)
        sides = ((ph, ph), (pw, pw))
    if min(sides[0] + sides[1]) < 0:
        raise ValueError(f"{layer}: padding must be non-negative, got {padding!r}")
    return sides


def check_input(layer, x_shape, expected_channels=None, name="input", unbatched=False):
    """Raise a clear error unless the input is N x C x H x W (or C x H x W when ``unbatched``) with C channels."""
    shown = tuple(x_shape)
    if unbatched and len(x_shape) == 3:
        x_shape = (1, *x_shape)
    if len(x_shape) != 4:
        if unbatched:
            raise ValueError(f"{layer}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                             f"{tuple(x_shape)}")
        raise ValueError(f"{layer}: expected a 4-D input (N, C, H, W), got shape {tuple(x_shape)}; "
                         "add a batch dimension with x.unsqueeze(0) for a single image")
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


# ---------------------------------------------------------------------------------------------- any number of axes
def ntuple(value, dims, name="value", layer="op"):
    """``value`` as ``dims`` ints: an int repeated on every axis, or a tuple/list of ``dims`` ints."""
    if isinstance(value, numbers.Integral):
        return (int(value),) * dims
    if isinstance(value, (tuple, list)) and len(value) == dims and all(isinstance(v, numbers.Integral) for v in value):
        return tuple(int(v) for v in value)
    wanted = {1: "a 1-tuple", 2: "a pair", 3: "a triple"}.get(dims, f"a {dims}-tuple")
    raise TypeError(f"{layer}: {name} must be an int or {wanted} of ints, got {value!r}")


def positive_ntuple(value, dims, name, layer):
    """``ntuple`` that also rejects zero and negative sizes."""
    result = ntuple(value, dims, name, layer)
    if min(result) <= 0:
        raise ValueError(f"{layer}: {name} must be positive, got {value!r}")
    return result


def resolve_padding_nd(padding, in_size, kernel, stride, dilation, layer="op"):
    """``padding`` as one (before, after) pair per spatial axis of ``in_size``.

    Accepts an int, one int per axis, one (before, after) pair per axis, the 2 * dims ints of those pairs
    in axis order, ``'valid'`` (none) or ``'same'`` (output = ceil(input / stride), the odd pixel after).
    """
    dims = len(in_size)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode in ("valid", "same"):
            return tuple(same_padding(in_size[a], kernel[a], stride[a], dilation[a]) if mode == "same" else (0, 0)
                         for a in range(dims))
        raise ValueError(f"{layer}: padding must be an int, {dims} ints, {dims} (before, after) pairs, 'valid' or "
                         f"'same', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == dims and all(isinstance(p, (tuple, list))
                                                                           for p in padding):
        sides = tuple(ntuple(tuple(p), 2, "padding", layer) for p in padding)
    elif (isinstance(padding, (tuple, list)) and len(padding) == 2 * dims
          and all(isinstance(p, numbers.Integral) for p in padding)):
        sides = tuple((int(padding[2 * a]), int(padding[2 * a + 1])) for a in range(dims))
    else:
        sides = tuple((p, p) for p in ntuple(padding, dims, "padding", layer))
    if min(min(side) for side in sides) < 0:
        raise ValueError(f"{layer}: padding must be non-negative, got {padding!r}")
    return sides
