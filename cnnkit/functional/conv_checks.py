"""conv2d's and conv_transpose2d's argument checks and geometry: clear errors that name the shapes and the fix."""
from __future__ import annotations

import numbers

from .im2col import ConvGeometry
from .windows import check_input, pair, positive_pair, resolve_padding, window_output_size


def check_dtypes(layer, input, weight, bias):
    if weight.dtype != input.dtype or (bias is not None and bias.dtype != input.dtype):
        bias_part = f", bias {bias.dtype}" if bias is not None else ""
        raise TypeError(f"{layer}: input ({input.dtype}), weight ({weight.dtype}){bias_part} must have the same "
                        "dtype; convert with .to(dtype) (or module.to(dtype)) first")
    if input.dtype.kind != "f":
        raise TypeError(f"{layer}: expected floating-point input, got {input.dtype}; convert with .to(float32)")


def _check_weight_and_groups(layer, weight_shape, layout, groups):
    """A 4-D weight with no zero size (``layout`` names its axes in the error); returns the checked groups."""
    if len(weight_shape) != 4:
        raise ValueError(f"{layer}: weight must be 4-D {layout}, got shape {tuple(weight_shape)}")
    groups = _check_groups(layer, groups)
    if min(weight_shape) <= 0:
        raise ValueError(f"{layer}: weight shape {tuple(weight_shape)} has a zero size")
    return groups


def _check_groups(layer, groups):
    if not isinstance(groups, numbers.Integral) or groups <= 0:
        raise ValueError(f"{layer}: groups must be a positive integer, got {groups!r}")
    return int(groups)


def _stride_and_dilation(layer, input_shape, stride, dilation):
    """The checked (stride, dilation) pairs, after checking that the input's height and width are not empty."""
    if input_shape[2] <= 0 or input_shape[3] <= 0:
        raise ValueError(f"{layer}: input of shape {tuple(input_shape)} has an empty height or width")
    return positive_pair(stride, "stride", layer), positive_pair(dilation, "dilation", layer)


def check_bias(layer, bias, channels):
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"{layer}: bias must have shape ({channels},) (one value per output channel), "
                         f"got {tuple(bias.shape)}")


def conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, strict=False, layer="conv2d"):
    """Validate conv2d's arguments and return its ``ConvGeometry`` (clear errors naming the shapes)."""
    check_input(layer, input_shape)
    groups = _check_weight_and_groups(layer, weight_shape, "(out_channels, in_channels/groups, kh, kw)", groups)
    batch, channels, height, width = input_shape
    out_channels, group_channels, kh, kw = weight_shape
    if out_channels % groups:
        raise ValueError(f"{layer}: out_channels={out_channels} (weight shape {tuple(weight_shape)}) is not "
                         f"divisible by groups={groups}")
    if group_channels * groups != channels:
        raise ValueError(f"{layer}: input of shape {tuple(input_shape)} has {channels} channels but weight of shape "
                         f"{tuple(weight_shape)} with groups={groups} expects {group_channels} x {groups} = "
                         f"{group_channels * groups}; fix in_channels or the previous layer's out_channels")
    stride, dilation = _stride_and_dilation(layer, input_shape, stride, dilation)
    pads = resolve_padding(padding, (height, width), (kh, kw), stride, dilation, layer)
    out_size = tuple(window_output_size(layer, axis, size, k, s, p, d, strict=strict)
                     for axis, size, k, s, p, d in zip(("height", "width"), (height, width), (kh, kw), stride,
                                                       pads, dilation))
    return ConvGeometry(batch, channels, (height, width), out_channels, (kh, kw), stride, pads, dilation, groups,
                        out_size)


def conv_transpose_geometry(input_shape, weight_shape, stride, padding, output_padding, dilation, groups,
                            layer="conv_transpose2d"):
    """Geometry of the conv2d whose input gradient conv_transpose2d computes (its input = our output)."""
    check_input(layer, input_shape)
    groups = _check_weight_and_groups(layer, weight_shape, "(in_channels, out_channels/groups, kh, kw)", groups)
    batch, channels, height, width = input_shape
    in_channels, group_out, kh, kw = weight_shape
    if in_channels != channels:
        raise ValueError(f"{layer}: input of shape {tuple(input_shape)} has {channels} channels but weight of shape "
                         f"{tuple(weight_shape)} expects {in_channels} (weight is (in_channels, out_channels/groups, "
                         "kh, kw)); fix in_channels or the previous layer's out_channels")
    if channels % groups:
        raise ValueError(f"{layer}: in_channels={channels} is not divisible by groups={groups}")
    stride, dilation = _stride_and_dilation(layer, input_shape, stride, dilation)
    if isinstance(padding, str):
        raise ValueError(f"{layer}: padding must be an int, a pair or ((top, bottom), (left, right)), got "
                         f"{padding!r} (string padding is only defined for conv2d)")
    pads = resolve_padding(padding, (height, width), (kh, kw), stride, dilation, layer)
    extra = pair(output_padding, "output_padding", layer)
    out_size = []
    for axis in range(2):
        if extra[axis] < 0 or (extra[axis] >= stride[axis] and extra[axis] >= dilation[axis]):
            raise ValueError(f"{layer}: output_padding {extra} must be >= 0 and smaller than either stride "
                             f"{stride} or dilation {dilation}")
        size = ((input_shape[2 + axis] - 1) * stride[axis] - sum(pads[axis])
                + dilation[axis] * (weight_shape[2 + axis] - 1) + extra[axis] + 1)
        if size <= 0:
            raise ValueError(f"{layer}: output {('height', 'width')[axis]} would be (H - 1) * s - P + d * (k - 1) + "
                             f"output_padding + 1 = ({input_shape[2 + axis]} - 1) * {stride[axis]} - "
                             f"{sum(pads[axis])} + {dilation[axis]} * ({weight_shape[2 + axis]} - 1) + {extra[axis]} "
                             f"+ 1 = {size} <= 0 for input {tuple(input_shape)}; use less padding")
        out_size.append(size)
    return ConvGeometry(batch, group_out * groups, out_size, channels, (kh, kw), stride, pads, dilation, groups,
                        (height, width))
