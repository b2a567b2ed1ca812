"""How each kind of layer changes the receptive field and how many MACs it costs.

Rules, by what a layer is (recognised by its attributes, so any module shaped like torch's works):

- window layers (``kernel_size``: Conv2d, DeformConv2d at zero offset, Max/Avg/LP pooling):
  rf += (k_eff - 1)*jump, jump *= stride;
- transposed layers (ConvTranspose2d, MaxUnpool2d): rf += (ceil(k_eff/s) - 1)*jump, jump /= s;
- adaptive pooling: a window of the largest cell, stride W/O; to 1x1 it sees the whole input;
- Linear, and any layer that reduces a spatial map to 1x1 or to a vector: sees the whole input
  (``is_global``, shown as 'all'; the reported rf is max(local rf, image size), and the local field of the
  conv path is kept so that, e.g., a squeeze-and-excitation product does not inflate later fields);
- anything else with the same spatial size (BatchNorm, activations, Dropout, Flatten...): rf unchanged;
  an unknown layer that resizes the map is treated as k = s = in/out (shrinking) or jump *= in/out
  (growing), and a note says so.

Every rule runs per spatial axis, so 1-D (N, C, L) and 3-D (N, C, D, H, W) models follow the same
rules as images.

MACs: conv C_out*H_out*W_out*(C_in/groups)*kh*kw, transposed conv C_in*H_in*W_in*(C_out/groups)*kh*kw
(L or D*H*W and the matching kernel in 1-D and 3-D), Linear in*out per row, everything else 0
(normalisation, activations and pooling are not multiply-adds of weights; bias additions are not
counted). All per batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..functional.windows import AXIS_LETTERS, leaves_pixels_unused, ntuple, resolve_padding
from .receptive_field import AxisField, adaptive_window


@dataclass(frozen=True)
class Field:
    """Receptive field of the units of one tensor along each spatial axis ((h, w) for images), and whether they
    see the whole input."""

    axes: tuple = (AxisField(), AxisField())
    is_global: bool = False

    @classmethod
    def blank(cls, dims):
        """The field of the input itself, with ``dims`` spatial axes."""
        return cls((AxisField(),) * dims)

    @property
    def h(self):
        """The field along the height (the second-last axis; a 1-D signal has a height of 1)."""
        return self.axes[-2] if len(self.axes) >= 2 else AxisField()

    @property
    def w(self):
        """The field along the width (the last axis, the length of a 1-D signal)."""
        return self.axes[-1]

    def merge(self, other):
        if other is None:
            return self
        return Field(tuple(mine.merge(theirs) for mine, theirs in zip(self.axes, other.axes)),
                     self.is_global or other.is_global)

    def globalised(self):
        """Every unit now depends on the whole input; the local field (the conv path) is kept for later layers."""
        return replace(self, is_global=True)

    def reported(self, image_size):
        """The rf per axis to show: the local field, at least the whole input once the field is global."""
        if not self.is_global:
            return tuple(axis.rf for axis in self.axes)
        return tuple(max(axis.rf, size) for axis, size in zip(self.axes, image_size))


def spatial(tensor, dims=2):
    """The ``dims`` spatial sizes of an ``(N, C, *spatial)`` tensor ((H, W) of N x C x H x W by default), else None."""
    return tuple(tensor.shape[2:]) if tensor is not None and tensor.ndim == dims + 2 else None


def kind(module):
    """'transposed', 'adaptive', 'window', 'linear' or 'other' (see the module docstring)."""
    name = type(module).__name__
    if "ConvTranspose" in name or name.startswith("MaxUnpool"):
        return "transposed"
    if name.startswith("Adaptive") and hasattr(module, "output_size"):
        return "adaptive"
    if hasattr(module, "kernel_size"):
        return "window"
    if hasattr(module, "in_features") and hasattr(module, "out_features"):
        return "linear"
    return "other"


def _window_params(module, in_size):
    dims, name = len(in_size), type(module).__name__
    kernel = ntuple(tuple(module.kernel_size) if isinstance(module.kernel_size, list) else module.kernel_size, dims,
                    "kernel_size", name)
    stride = getattr(module, "stride", None)
    stride = kernel if stride is None or stride == () else ntuple(stride, dims, "stride", name)
    dilation = ntuple(getattr(module, "dilation", 1), dims, "dilation", name)
    pads = resolve_padding(getattr(module, "padding", 0), in_size, kernel, stride, dilation, type(module).__name__)
    return kernel, stride, pads, dilation


@dataclass
class LayerEffect:
    """What one call of a layer did: the output field, MACs, unused-pixel flag (with the formula) and notes."""

    field: Field
    macs: int = 0
    unused_pixels: bool = False
    unused_detail: str = ""
    note: str = ""


def layer_effect(module, in_field, input_tensor, output_tensor, image_size):
    """Apply the rule for ``module`` to the field of its input; count its MACs."""
    dims = len(in_field.axes)
    in_size, out_size = spatial(input_tensor, dims), spatial(output_tensor, dims)
    layer_kind = kind(module)
    effect = LayerEffect(in_field, macs=_macs(module, layer_kind, input_tensor, output_tensor))
    if layer_kind == "linear":
        effect.field = in_field.globalised()
        return effect
    if in_size is None:
        return effect
    if layer_kind == "window":
        kernel, stride, pads, dilation = _window_params(module, in_size)
        effect.field = replace(in_field, axes=tuple(field.window(kernel[a], stride[a], pads[a][0], dilation[a])
                                                    for a, field in enumerate(in_field.axes)))
        if not getattr(module, "ceil_mode", False):
            details = [_unused_detail(in_size[a], kernel[a], stride[a], pads[a], dilation[a]) for a in range(dims)]
            if any(details):
                effect.unused_pixels = True
                letters = AXIS_LETTERS[dims]
                if dims > 1 and all(detail == details[0] for detail in details):
                    effect.unused_detail = f"{' and '.join(letters)}: {details[0]}"
                else:
                    effect.unused_detail = "; ".join(f"{axis}: {detail}" for axis, detail in zip(letters, details)
                                                     if detail)
    elif layer_kind == "transposed":
        kernel, stride, pads, dilation = _window_params(module, in_size)
        effect.field = replace(in_field, axes=tuple(field.transposed(kernel[a], stride[a], pads[a][0], dilation[a])
                                                    for a, field in enumerate(in_field.axes)))
    elif out_size is not None and set(out_size) == {1} and set(in_size) != {1}:
        effect.field = in_field.globalised()
    elif layer_kind == "adaptive":
        axes = []
        for axis, field in enumerate(in_field.axes):
            largest, stride = adaptive_window(in_size[axis], out_size[axis])
            axes.append(AxisField(field.rf + (largest - 1) * field.jump, field.jump * stride,
                                  field.start + (largest - 1) / 2 * field.jump))
        effect.field = replace(in_field, axes=tuple(axes))
    elif out_size is None and output_tensor is not None and _numel(output_tensor) < _numel(input_tensor):
        effect.field = in_field.globalised()
        effect.note = f"{type(module).__name__} reduces the map to a vector: taken as seeing the whole input"
    elif out_size is not None and out_size != in_size:
        effect.field, effect.note = resized_field(in_field, in_size, out_size, type(module).__name__)
    return effect


def _unused_detail(size, kernel, stride, pads, dilation):
    """'' when the windows tile the padded input, else the formula and which trailing pixels are skipped."""
    if not leaves_pixels_unused(size, kernel, stride, pads[0] + pads[1], dilation):
        return ""
    effective = dilation * (kernel - 1) + 1
    out = (size + pads[0] + pads[1] - effective) // stride + 1
    last_covered = (out - 1) * stride + effective - 1  # in padded coordinates
    lost = pads[0] + size - 1 - last_covered
    formula = (f"({size} - {effective} + {pads[0] + pads[1]}) / {stride} + 1 = "
               f"{(size - effective + pads[0] + pads[1]) / stride + 1:g}")
    if lost > 0:
        return f"{formula}, the last {lost} input pixel(s) are never used"
    return f"{formula}, only padding is skipped"


def resized_field(in_field, in_size, out_size, what):
    """Field after an unrecognised resize: k = s = in/out when shrinking, jump *= in/out when growing."""
    axes = []
    for axis, field in enumerate(in_field.axes):
        ratio = in_size[axis] / out_size[axis]
        if ratio > 1:
            axes.append(AxisField(field.rf + (ratio - 1) * field.jump, field.jump * ratio, field.start))
        else:
            axes.append(AxisField(field.rf, field.jump * ratio, field.start))
    note = (f"{what} resizes {'x'.join(map(str, in_size))} -> {'x'.join(map(str, out_size))} without a known rule: "
            "receptive field estimated as a window with kernel = stride = in/out")
    return replace(in_field, axes=tuple(axes)), note


def _numel(tensor):
    count = 1
    for size in tensor.shape[1:]:
        count *= size
    return count


def _macs(module, layer_kind, input_tensor, output_tensor):
    weight = getattr(module, "weight", None)
    if weight is None or output_tensor is None or not hasattr(weight, "shape"):
        return 0
    if layer_kind == "window" and 3 <= len(weight.shape) <= 5:
        return int(output_tensor.data.size) * math.prod(weight.shape[1:])
    if layer_kind == "transposed" and 3 <= len(weight.shape) <= 5 and input_tensor is not None:
        # weight is (C_in, C_out/groups, *kernel): every input value is spread over C_out/groups * prod(kernel)
        # outputs.
        return int(input_tensor.data.size) * math.prod(weight.shape[1:])
    if layer_kind == "linear" and len(weight.shape) == 2:
        return int(output_tensor.data.size) * weight.shape[1]
    return 0
