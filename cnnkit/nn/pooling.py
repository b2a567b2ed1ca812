"""Pooling layers in 1, 2 and 3 dimensions with torch.nn's names, arguments and reprs (no state_dict entries).

Each family is one class; ``_for_dims`` makes its 1-D, 2-D and 3-D layers, which differ only in ``dims``.
"""
from __future__ import annotations

import math
import numbers

from ..functional import pooling as P
from ..functional.windows import ntuple, positive_ntuple
from .module import Module

__all__ = ["MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d", "LPPool1d", "LPPool2d",
           "LPPool3d", "MaxUnpool1d", "MaxUnpool2d", "MaxUnpool3d", "AdaptiveAvgPool1d", "AdaptiveAvgPool2d",
           "AdaptiveAvgPool3d", "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d"]


def _check_window(layer, dims, kernel_size, stride, dilation=1):
    """Fail at construction (not at the first forward) on zero or negative sizes."""
    positive_ntuple(kernel_size, dims, "kernel_size", layer)
    if stride is not None and not (isinstance(stride, (tuple, list)) and len(stride) == 0):
        positive_ntuple(stride, dims, "stride", layer)
    positive_ntuple(dilation, dims, "dilation", layer)


def _for_dims(family, dims, doc=None):
    """The layer class of ``family`` for ``dims`` spatial axes, named as torch names it (MaxPool2d, ...)."""
    name = f"{family.__name__.lstrip('_')}{dims}d"
    return type(name, (family,), {"dims": dims, "__doc__": doc or family.__doc__, "__module__": __name__,
                                  "__qualname__": name})


class _Pool(Module):
    dims = 2  # spatial axes pooled: 1 for (N, C, L), 2 for (N, C, H, W), 3 for (N, C, D, H, W)

    def _name(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class _MaxPool(_Pool):
    """Max over each kernel_size window (dilated, stride defaults to kernel_size, padding counts as -inf).

    Output size per axis: floor((W + 2P - d(F - 1) - 1) / S) + 1 (ceil with ``ceil_mode``).
    ``strict=True`` (beyond PyTorch) raises with the formula when the windows do not tile the input
    instead of silently dropping the last positions.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False, *,
                 strict=False):
        super().__init__()
        _check_window(type(self).__name__, self.dims, kernel_size, stride, dilation)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode
        self.strict = strict

    def forward(self, input):
        return P._max_pool(input, self.dims, self.kernel_size, self.stride, self.padding, self.dilation,
                           self.ceil_mode, self.return_indices, self.strict, self._name())

    def extra_repr(self):
        text = (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")
        return text + (", strict=True" if self.strict else "")


class _AvgPool(_Pool):
    """Mean over each kernel_size window; see ``cnnkit.functional.avg_pool2d`` for the divisor rules.

    ``strict=True`` (beyond PyTorch) raises when the windows do not tile the input.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, *, strict=False):
        super().__init__()
        layer = type(self).__name__
        _check_window(layer, self.dims, kernel_size, stride)
        if divisor_override is not None and (not isinstance(divisor_override, numbers.Integral)
                                             or divisor_override == 0):
            raise ValueError(f"{layer}: divisor_override must be a non-zero integer or None, "
                             f"got {divisor_override!r}")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self.strict = strict

    def forward(self, input):
        return P._avg_pool(input, self.dims, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                           self.count_include_pad, self.divisor_override, self.strict, self._name())

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return text + (", strict=True" if self.strict else "")


class AvgPool1d(_AvgPool):
    """Average pooling over (N, C, L) or (C, L); sizes are kept as 1-tuples and it has no divisor_override, as
    in torch."""

    dims = 1

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
                 strict=False):
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, strict=strict)
        self.kernel_size = ntuple(self.kernel_size, 1, "kernel_size", "AvgPool1d")
        self.stride = ntuple(self.stride, 1, "stride", "AvgPool1d")
        self.padding = ntuple(self.padding, 1, "padding", "AvgPool1d")


class _LPPool(_Pool):
    """(sum over each window of |x|^p)^(1/p); see ``cnnkit.functional.lp_pool2d`` (|x|, not x as PyTorch).

    ``padding`` (zeros) and ``strict`` are beyond PyTorch; the repr shows them only when set.
    """

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, strict=False):
        super().__init__()
        layer = type(self).__name__
        if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or math.isnan(norm_type) \
                or norm_type <= 0:
            raise ValueError(f"{layer}: norm_type must be a positive number, got {norm_type!r}; "
                             "use 1 for a sum of magnitudes, 2 for the Euclidean norm, float('inf') for max |x|")
        _check_window(layer, self.dims, kernel_size, stride)
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode
        self.padding = padding
        self.strict = strict

    def forward(self, input):
        return P._lp_pool(input, self.dims, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                          self.padding, self.strict, self._name())

    def extra_repr(self):
        text = (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")
        return text + (f", padding={self.padding}" if self.padding else "") + (", strict=True" if self.strict else "")


class _MaxUnpool(Module):
    """Partial inverse of max pooling: puts each value back at its recorded index, zeros elsewhere."""

    dims = 2

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        layer = type(self).__name__
        self.kernel_size = positive_ntuple(kernel_size, self.dims, "kernel_size", layer)
        self.stride = positive_ntuple(stride if stride is not None else kernel_size, self.dims, "stride", layer)
        self.padding = ntuple(padding, self.dims, "padding", layer)

    def forward(self, input, indices, output_size=None):
        return P._max_unpool(input, indices, self.dims, self.kernel_size, self.stride, self.padding, output_size,
                             type(self).__name__)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class _AdaptiveAvgPool(Module):
    """Mean over windows chosen so the output is ``output_size`` (None keeps that input size); 1 = global pooling."""

    dims = 2

    def __init__(self, output_size):
        super().__init__()
        P._adaptive_size(type(self).__name__, output_size, (1,) * self.dims)
        self.output_size = output_size

    def forward(self, input):
        return P._adaptive_avg_pool(input, self.output_size, self.dims, type(self).__name__)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class _AdaptiveMaxPool(Module):
    """Max over windows chosen so the output is ``output_size``; optionally also the argmax indices."""

    dims = 2

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        P._adaptive_size(type(self).__name__, output_size, (1,) * self.dims)
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        return P._adaptive_max_pool(input, self.output_size, self.return_indices, self.dims, type(self).__name__)

    def extra_repr(self):
        return f"output_size={self.output_size}"


# the layers themselves: each family for 1, 2 and 3 spatial axes (AvgPool1d, defined above, differs)
MaxPool1d = _for_dims(_MaxPool, 1, "Max pooling over (N, C, L) or (C, L); see MaxPool2d.")
MaxPool2d = _for_dims(_MaxPool, 2)
MaxPool3d = _for_dims(_MaxPool, 3, "Max pooling over (N, C, D, H, W) or (C, D, H, W); see MaxPool2d.")
AvgPool2d = _for_dims(_AvgPool, 2)
AvgPool3d = _for_dims(_AvgPool, 3, "Average pooling over (N, C, D, H, W) or (C, D, H, W); see AvgPool2d.")
LPPool1d = _for_dims(_LPPool, 1, "Power-average pooling over (N, C, L) or (C, L); see LPPool2d.")
LPPool2d = _for_dims(_LPPool, 2)
LPPool3d = _for_dims(_LPPool, 3, "Power-average pooling over (N, C, D, H, W) or (C, D, H, W); see LPPool2d.")
MaxUnpool1d = _for_dims(_MaxUnpool, 1, "Partial inverse of MaxPool1d.")
MaxUnpool2d = _for_dims(_MaxUnpool, 2)
MaxUnpool3d = _for_dims(_MaxUnpool, 3, "Partial inverse of MaxPool3d.")
AdaptiveAvgPool1d = _for_dims(_AdaptiveAvgPool, 1, "Adaptive average pooling of (N, C, L) or (C, L).")
AdaptiveAvgPool2d = _for_dims(_AdaptiveAvgPool, 2)
AdaptiveAvgPool3d = _for_dims(_AdaptiveAvgPool, 3, "Adaptive average pooling of (N, C, D, H, W) or (C, D, H, W).")
AdaptiveMaxPool1d = _for_dims(_AdaptiveMaxPool, 1, "Adaptive max pooling of (N, C, L) or (C, L).")
AdaptiveMaxPool2d = _for_dims(_AdaptiveMaxPool, 2)
AdaptiveMaxPool3d = _for_dims(_AdaptiveMaxPool, 3, "Adaptive max pooling of (N, C, D, H, W) or (C, D, H, W).")
