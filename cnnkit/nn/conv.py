"""Convolution layers: ``Conv2d`` and ``ConvTranspose2d`` with PyTorch's arguments, init and state_dict keys."""
from __future__ import annotations

import numbers

from .. import backend
from .. import functional as F
from ..functional.conv import conv2d_layer, conv_transpose2d_layer, conv_transpose_geometry, on_batch
from ..functional.windows import check_input, pair, positive_pair, resolve_padding
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Conv2d", "ConvTranspose2d"]

_PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _positive_int(layer, name, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer, got {value!r}")
    return int(value)


def _normalise_padding(layer, padding, allow_strings=True):
    """Keep ``padding`` as torch shows it: 'same'/'valid', (ph, pw), or per-side ((t, b), (l, r))."""
    if isinstance(padding, str):
        if not allow_strings:
            raise ValueError(f"{layer}: padding must be an int, a pair or ((top, bottom), (left, right)), "
                             f"got {padding!r} (string padding is only defined for Conv2d)")
        # resolve_padding validates the string; sizes are irrelevant for the check itself
        resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1), layer)
        return padding.lower()
    sides = resolve_padding(padding, (1, 1), (1, 1), (1, 1), (1, 1), layer)
    if sides[0][0] == sides[0][1] and sides[1][0] == sides[1][1]:
        return sides[0][0], sides[1][0]
    return sides


def _pad_by_mode(input, pads, mode, layer):
    """Reflect / replicate / circular padding with ``F.pad``, after checking the sizes as torch does."""
    for (before, after), size, axis in zip(pads, input.shape[2:], ("height", "width")):
        if mode == "circular" and max(before, after) > size:
            raise ValueError(f"{layer}: circular padding {before, after} must not exceed the input {axis} {size}")
        if mode == "reflect" and max(before, after) >= size:
            raise ValueError(f"{layer}: reflect padding {before, after} must be smaller than the input {axis} {size}")
    (top, bottom), (left, right) = pads
    return F.pad(input, (left, right, top, bottom), mode=mode)


class _ConvNd(Module):
    """Shared arguments, validation, parameters and repr of Conv2d and ConvTranspose2d."""

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
        self.kernel_size = positive_pair(kernel_size, "kernel_size", layer)
        self.stride = positive_pair(stride, "stride", layer)
        self.dilation = positive_pair(dilation, "dilation", layer)
        self.padding = _normalise_padding(layer, padding, allow_string_padding)
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
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        if self.padding_mode != "zeros":
            text += f", padding_mode={self.padding_mode}"
        return text


class Conv2d(_ConvNd):
    """y = conv2d(x, W, b): x (N, C_in, H, W) -> (N, C_out, H_out, W_out), H_out = floor((H + P - d(k-1) - 1)/s) + 1.

    ``weight`` is (out_channels, in_channels/groups, kh, kw). ``padding`` also takes per-side
    ((top, bottom), (left, right)), 'valid' and 'same' (output = ceil(input / stride), any stride).
    ``strict=True`` rejects hyper-parameters that leave input pixels unused.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 padding_mode="zeros", strict=False):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                    lambda cin, cout, g, k: (cout, cin // g) + k)
        self.strict = bool(strict)

    def forward(self, input):
        check_input(self.layer_name, tuple(input.shape), self.in_channels, unbatched=True)
        return on_batch(input, self._forward_batch)

    def _forward_batch(self, input):
        padding = self.padding
        if self.padding_mode != "zeros":
            input = _pad_by_mode(input, self._pads_for(input), self.padding_mode, self.layer_name)
            padding = 0
        return conv2d_layer(input, self.weight, self.bias, self.stride, padding, self.dilation, self.groups,
                            self.strict, self.layer_name)

    def _pads_for(self, input):
        return resolve_padding(self.padding, tuple(input.shape[2:]), self.kernel_size, self.stride, self.dilation,
                               self.layer_name)

    def extra_repr(self):
        return super().extra_repr() + (", strict=True" if self.strict else "")


class ConvTranspose2d(_ConvNd):
    """The adjoint of Conv2d: H_out = (H - 1)*s - 2p + d(k - 1) + output_padding + 1.

    ``weight`` is (in_channels, out_channels/groups, kh, kw) as in PyTorch. ``forward(x, output_size)``
    picks the output_padding that gives ``output_size`` (H, W) (or (N, C, H, W)).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, padding_mode="zeros"):
        super().__init__()
        self._setup(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode,
                    lambda cin, cout, g, k: (cin, cout // g) + k, allow_string_padding=False)
        self.output_padding = pair(output_padding, "output_padding", self.layer_name)
        for extra, stride_, dilation_ in zip(self.output_padding, self.stride, self.dilation):
            if extra < 0 or (extra >= stride_ and extra >= dilation_):
                raise ValueError(f"{self.layer_name}: output_padding {self.output_padding} must be >= 0 and smaller "
                                 f"than either stride {self.stride} or dilation {self.dilation}")

    def _output_padding_for(self, input, output_size):
        """output_padding that makes the output ``output_size`` (torch's ``forward(x, output_size)``)."""
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)[-2:]
        if len(size) != 2:
            raise ValueError(f"{self.layer_name}: output_size must give (H, W), got {output_size!r}")
        smallest = conv_transpose_geometry(tuple(input.shape), tuple(self.weight.shape), self.stride, self.padding,
                                           0, self.dilation, self.groups, self.layer_name).in_size
        extra = tuple(want - got for want, got in zip(size, smallest))
        limit = tuple(max(s, d) - 1 for s, d in zip(self.stride, self.dilation))
        if any(e < 0 or e > lim for e, lim in zip(extra, limit)):
            largest = tuple(s + lim for s, lim in zip(smallest, limit))
            raise ValueError(f"{self.layer_name}: requested output_size {size} for input {tuple(input.shape)} is "
                             f"not reachable; it must lie between {smallest} and {largest}")
        return extra

    def forward(self, input, output_size=None):
        check_input(self.layer_name, tuple(input.shape), self.in_channels, unbatched=True)
        return on_batch(input, lambda batch: self._forward_batch(batch, output_size))

    def _forward_batch(self, input, output_size):
        output_padding = self._output_padding_for(input, output_size)
        return conv_transpose2d_layer(input, self.weight, self.bias, self.stride, self.padding, output_padding,
                                      self.groups, self.dilation, self.layer_name)
