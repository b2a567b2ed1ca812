"""Convolution layers: ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` with PyTorch's arguments, init and state_dict
keys; one implementation, ``dims`` spatial axes."""
from __future__ import annotations

import numbers

from .. import backend
from .. import functional as F
from ..functional.conv import conv_layer, conv_transpose_geometry, conv_transpose_layer, on_batch
from ..functional.windows import AXIS_NAMES, check_input, ntuple, per_side_form, positive_ntuple, resolve_padding
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _positive_int(layer, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _normalise_padding(layer, padding, dims, allow_strings=True):
    """Keep ``padding`` as torch shows it: 'same'/'valid', one int per axis (ph, pw), or per-side ((t, b), (l, r))."""
    ones = (1,) * dims
    if isinstance(padding, str):
        if not allow_strings:
            raise ValueError(f"{layer}: padding must be an int, a tuple of {dims} ints or {per_side_form(dims)}, "
                             f"got {padding!r} (string padding is only defined for Conv{dims}d)")
        # resolve_padding validates the string; sizes are irrelevant for the check itself
        resolve_padding(padding, ones, ones, ones, ones, layer)
        return padding.lower()
    sides = resolve_padding(padding, ones, ones, ones, ones, layer)
    if all(before == after for before, after in sides):
        return tuple(before for before, _ in sides)
    return sides


def _pad_by_mode(input, pads, mode, layer):
    """Reflect / replicate / circular padding with ``F.pad``, after checking the sizes as torch does."""
    for (before, after), size, axis in zip(pads, input.shape[2:], AXIS_NAMES[len(pads)]):
        if mode == "circular" and max(before, after) > size:
            raise ValueError(f"{layer}: circular padding {before, after} must not exceed the input {axis} {size}")
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"{layer}: reflect padding {before, after} must be smaller than the input {axis} {size}")
    # F.pad takes (before, after) pairs from the last axis backwards
    return F.pad(input, tuple(amount for side in reversed(pads) for amount in side), mode=mode)


class _ConvNd(Module):
    """Shared arguments, validation, parameters and repr of the convolution layers (``dims`` spatial axes)."""

    dims = 2

    def _setup(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
               weight_shape_fn, allow_string_padding=True):
        layer = f"{type(self).__name__}({in_channels}, {out_channels}, kernel_size={kernel_size})"
        in_channels = _positive_int(layer, "in_channels", in_channels)
        out_channels = _positive_int(layer, "out_channels", out_channels)
        groups = _positive_int(layer, "groups", groups)
        for name, channels in (("in_channels", in_channels), ("out_channels", out_channels)):
            if channels % groups:
                raise ValueError(f"{layer}: {name}={channels} is not divisible by groups={groups}; "
                                 f"choose groups that divides both in_channels and out_channels")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        dims = self.dims
        self.kernel_size = positive_ntuple(kernel_size, dims, "kernel_size", layer)
        self.stride = positive_ntuple(stride, dims, "stride", layer)
        self.dilation = positive_ntuple(dilation, dims, "dilation", layer)
        self.padding = _normalise_padding(layer, padding, dims, allow_string_padding)
        if padding_mode not in _PADDING_MODES:
            raise ValueError(f"{layer}: padding_mode must be one of {_PADDING_MODES}, got {padding_mode!r}")
        self.padding_mode = padding_mode
        dtype = backend.get_default_dtype()
        xp = backend.get_array_module()
        self.weight = Parameter(xp.empty(weight_shape_fn(in_channels, out_channels, groups, self.kernel_size), dtype))
        if bias:
            self.bias = Parameter(xp.empty((out_channels,), dtype))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    @property
    def layer_name(self):
        """How errors name this layer, e.g. ``Conv2d(3, 64, kernel_size=(3, 3))``."""
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size})"

    def reset_parameters(self):
        """PyTorch's default: W ~ kaiming_uniform_(a=sqrt(5)), b ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        init.default_layer_init_(self.weight, self.bias)

    def extra_repr(self):
        zeros, ones = (0,) * self.dims, (1,) * self.dims
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != zeros:
            text += f", padding={self.padding}"
        if self.dilation != ones:
            text += f", dilation={self.dilation}"
        if getattr(self, "output_padding", zeros) != zeros:
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class _Conv(_ConvNd):
    """The convolution layer with ``dims`` spatial axes (Conv1d, Conv2d and Conv3d set it)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", strict=False):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                    lambda cin, cout, g, k: (cout, cin // g) + k)
        self.strict = bool(strict)

    def forward(self, input):
        check_input(self.layer_name, tuple(input.shape), self.in_channels, unbatched=True, dims=self.dims)
        return on_batch(input, self._forward_batch, self.dims)

    def _forward_batch(self, input):
        padding = self.padding
        if self.padding_mode != "zeros":
            input = _pad_by_mode(input, self._pads_for(input), self.padding_mode, self.layer_name)
            padding = 0
        return conv_layer(input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                          self.strict, self.layer_name, self.dims)

    def _pads_for(self, input):
        return resolve_padding(self.padding, tuple(input.shape[2:]), self.kernel_size, self.stride, self.dilation,
                               self.layer_name)

    def extra_repr(self):
        return super().extra_repr() + (", strict=True" if self.strict else "")


class Conv1d(_Conv):
    """y = conv1d(x, W, b): x (N, C_in, L) -> (N, C_out, L_out), L_out = floor((L + P - d(k-1) - 1)/s) + 1.

    ``weight`` is (out_channels, in_channels/groups, k). ``padding`` also takes per-side ((before, after),),
    'valid' and 'same'; ``strict=True`` rejects hyper-parameters that leave input samples unused.
    """

    dims = 1


class Conv2d(_Conv):
    """y = conv2d(x, W, b): x (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out = floor((H + P - d(k-1) - 1)/s) + 1.

    ``weight`` is (out_channels, in_channels/groups, kh, kw). ``padding`` also takes per-side
    ((top, bottom), (left, right)), 'valid' and 'same' (output = ceil(input / stride), any stride).
    ``strict=True`` rejects hyper-parameters that leave input pixels unused.
    """

    dims = 2


class Conv3d(_Conv):
    """y = conv3d(x, W, b): x (N, C_in, D, H, W) -> (N, C_out, D_out, H_out, W_out), each axis as Conv2d's.

    ``weight`` is (out_channels, in_channels/groups, kd, kh, kw); ``padding`` takes the same forms as
    Conv2d's with three axes.
    """

    dims = 3


class _ConvTranspose(_ConvNd):
    """The adjoint of the convolution with ``dims`` spatial axes (ConvTranspose1d/2d/3d set it).

    ``forward(x, output_size)`` picks the output_padding that gives ``output_size`` (the spatial sizes, or
    the whole shape).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros"):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                    lambda cin, cout, g, k: (cin, cout // g) + k, allow_string_padding=False)
        self.output_padding = ntuple(output_padding, self.dims, "output_padding", self.layer_name)
        for extra, stride_, dilation_ in zip(self.output_padding, self.stride, self.dilation):
            if extra < 0 or (extra >= stride_ and extra >= dilation_):
                raise ValueError(f"{self.layer_name}: output_padding {self.output_padding} must be >= 0 and smaller "
                                 f"than either stride {self.stride} or dilation {self.dilation}")

    def _output_padding_for(self, input, output_size):
        """output_padding that makes the output ``output_size`` (torch's ``forward(x, output_size)``)."""
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)[-self.dims:]
        if len(size) != self.dims:
            raise ValueError(f"{self.layer_name}: output_size must give the {self.dims} spatial sizes, got "
                             f"{output_size!r}")
        smallest = conv_transpose_geometry(tuple(input.shape), tuple(self.weight.shape), self.stride, self.padding,
                                           0, self.dilation, self.groups, self.layer_name, self.dims).in_size
        extra = tuple(want - got for want, got in zip(size, smallest))
        limit = tuple(max(s, d) - 1 for s, d in zip(self.stride, self.dilation))
        if any(e < 0 or e > lim for e, lim in zip(extra, limit)):
            largest = tuple(s + lim for s, lim in zip(smallest, limit))
            raise ValueError(f"{self.layer_name}: requested output_size {size} for input {tuple(input.shape)} is "
                             f"not reachable; it must lie between {smallest} and {largest}")
        return extra

    def forward(self, input, output_size=None):
        check_input(self.layer_name, tuple(input.shape), self.in_channels, unbatched=True, dims=self.dims)
        return on_batch(input, lambda batch: self._forward_batch(batch, output_size), self.dims)

    def _forward_batch(self, input, output_size):
        output_padding = self._output_padding_for(input, output_size)
        return conv_transpose_layer(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                    self.groups, self.dilation, self.layer_name, self.dims)


class ConvTranspose1d(_ConvTranspose):
    """The adjoint of Conv1d: L_out = (L - 1)*s - 2p + d(k - 1) + output_padding + 1.

    ``weight`` is (in_channels, out_channels/groups, k) as in PyTorch.
    """

    dims = 1


class ConvTranspose2d(_ConvTranspose):
    """The adjoint of Conv2d: H_out = (H - 1)*s - 2p + d(k - 1) + output_padding + 1.

    ``weight`` is (in_channels, out_channels/groups, kh, kw) as in PyTorch. ``forward(x, output_size)``
    picks the output_padding that gives ``output_size`` (H, W) (or (N, C, H, W)).
    """

    dims = 2


class ConvTranspose3d(_ConvTranspose):
    """The adjoint of Conv3d: each of D, H, W becomes (size - 1)*s - 2p + d(k - 1) + output_padding + 1.

    ``weight`` is (in_channels, out_channels/groups, kd, kh, kw) as in PyTorch.
    """

    dims = 3
