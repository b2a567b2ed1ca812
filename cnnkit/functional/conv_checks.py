"""conv1d/2d/3d's and conv_transpose1d/2d/3d's argument checks and geometry: clear errors naming the shapes and the fix.

``dims`` is the number of spatial axes (1, 2 or 3); ``layer`` names the op or layer in every message.
"""
from __future__ import annotations

import numbers

from .im2col import ConvGeometry
from .windows import (
    AXIS_NAMES,
    check_input,
    ntuple,
    per_side_form,
    positive_ntuple,
    resolve_padding,
    window_output_size,
)

# how errors name the kernel axes of a weight, by the number of spatial dimensions
_KERNEL_AXES = {1: "k", 2: "kh, kw", 3: "kd, kh, kw"}


def check_dtypes(layer, input, weight, bias):
    if weight.dtype != input.dtype or (bias is not None and bias.dtype != input.dtype):
        bias_part = f", bias {bias.dtype}" if bias is not None else ""
        raise TypeError(f"{layer}: input ({input.dtype}), weight ({weight.dtype}){bias_part} must have the same "
                        "dtype; convert with .to(dtype) (or module.to(dtype)) first")
    if input.dtype.kind != "f":
        raise TypeError(f"{layer}: expected floating-point input, got {input.dtype}; convert with .to(float32)")


def _check_weight_and_groups(layer, weight_shape, channel_axes, groups, dims):
    """A (dims + 2)-D weight with no zero size (``channel_axes`` names its first two axes in the error); returns
    the checked groups."""
    if len(weight_shape) != dims + 2:
        raise ValueError(f"{layer}: weight must be {dims + 2}-D ({channel_axes}, {_KERNEL_AXES[dims]}), got shape "
                         f"{tuple(weight_shape)}")
    groups = _check_groups(layer, groups)
    if min(weight_shape) <= 0:
        raise ValueError(f"{layer}: weight shape {tuple(weight_shape)} has a zero size")
    return groups


def _check_groups(layer, groups):
    if not isinstance(groups, numbers.Integral) or groups <= 0:
        raise ValueError(f"{layer}: groups must be a positive integer, got {groups!r}")
    return int(groups)


def _stride_and_dilation(layer, input_shape, stride, dilation, dims):
    """The checked (stride, dilation) tuples, after checking that no spatial axis of the input is empty."""
    if min(input_shape[2:]) <= 0:
        names = AXIS_NAMES[dims]
        listed = names[0] if dims == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"{layer}: input of shape {tuple(input_shape)} has an empty {listed}")
    return positive_ntuple(stride, dims, "stride", layer), positive_ntuple(dilation, dims, "dilation", layer)


def check_bias(layer, bias, channels):
    if bias is not None and tuple(bias.shape) != (channels,):
        raise ValueError(f"{layer}: bias must have shape ({channels},) (one value per output channel), "
                         f"got {tuple(bias.shape)}")


def conv_geometry(input_shape, weight_shape, stride, padding, dilation, groups, strict=False, layer="conv2d", dims=2):
    """Validate conv{dims}d's arguments and return its ``ConvGeometry`` (clear errors naming the shapes)."""
    check_input(layer, input_shape, dims=dims)
    groups = _check_weight_and_groups(layer, weight_shape, "out_channels, in_channels/groups", groups, dims)
    batch, channels, *in_size = input_shape
    out_channels, group_channels, *kernel = weight_shape
    if out_channels % groups:
        raise ValueError(f"{layer}: out_channels={out_channels} (weight shape {tuple(weight_shape)}) is not "
                         f"divisible by groups={groups}")
    if group_channels * groups != channels:
        raise ValueError(f"{layer}: input of shape {tuple(input_shape)} has {channels} channels but weight of shape "
                         f"{tuple(weight_shape)} with groups={groups} expects {group_channels} x {groups} = "
                         f"{group_channels * groups}; fix in_channels or the previous layer's out_channels")
    stride, dilation = _stride_and_dilation(layer, input_shape, stride, dilation, dims)
    pads = resolve_padding(padding, in_size, kernel, stride, dilation, layer)
    out_size = tuple(window_output_size(layer, axis, size, k, s, p, d, strict=strict)
                     for axis, size, k, s, p, d in zip(AXIS_NAMES[dims], in_size, kernel, stride, pads, dilation))
    return ConvGeometry(batch, channels, in_size, out_channels, kernel, stride, pads, dilation, groups, out_size)


def conv_transpose_geometry(input_shape, weight_shape, stride, padding, output_padding, dilation, groups,
                            layer="conv_transpose2d", dims=2):
    """Geometry of the conv{dims}d whose input gradient conv_transpose{dims}d computes (its input = our output)."""
    check_input(layer, input_shape, dims=dims)
    groups = _check_weight_and_groups(layer, weight_shape, "in_channels, out_channels/groups", groups, dims)
    batch, channels, *in_size = input_shape
    in_channels, group_out, *kernel = weight_shape
    if in_channels != channels:
        raise ValueError(f"{layer}: input of shape {tuple(input_shape)} has {channels} channels but weight of shape "
                         f"{tuple(weight_shape)} expects {in_channels} (weight is (in_channels, out_channels/groups, "
                         f"{_KERNEL_AXES[dims]})); fix in_channels or the previous layer's out_channels")
    if channels % groups:
        raise ValueError(f"{layer}: in_channels={channels} is not divisible by groups={groups}")
    stride, dilation = _stride_and_dilation(layer, input_shape, stride, dilation, dims)
    if isinstance(padding, str):
        raise ValueError(f"{layer}: padding must be an int, a tuple of {dims} ints or {per_side_form(dims)}, got "
                         f"{padding!r} (string padding is only defined for conv{dims}d)")
    pads = resolve_padding(padding, in_size, kernel, stride, dilation, layer)
    extra = ntuple(output_padding, dims, "output_padding", layer)
    out_size = []
    for axis in range(dims):
        if extra[axis] < 0 or (extra[axis] >= stride[axis] and extra[axis] >= dilation[axis]):
            raise ValueError(f"{layer}: output_padding {extra} must be >= 0 and smaller than either stride "
                             f"{stride} or dilation {dilation}")
        size = ((in_size[axis] - 1) * stride[axis] - sum(pads[axis])
                + dilation[axis] * (kernel[axis] - 1) + extra[axis] + 1)
        if size <= 0:
            raise ValueError(f"{layer}: output {AXIS_NAMES[dims][axis]} would be (H - 1) * s - P + d * (k - 1) + "
                             f"output_padding + 1 = ({in_size[axis]} - 1) * {stride[axis]} - "
                             f"{sum(pads[axis])} + {dilation[axis]} * ({kernel[axis]} - 1) + {extra[axis]} "
                             f"+ 1 = {size} <= 0 for input {tuple(input_shape)}; use less padding")
        out_size.append(size)
    return ConvGeometry(batch, group_out * groups, out_size, channels, kernel, stride, pads, dilation, groups,
                        in_size)
