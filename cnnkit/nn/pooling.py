"""Pooling layers with torch.nn's names, arguments and reprs (no parameters, so no state_dict entries)."""
from __future__ import annotations

import math
import numbers

from ..functional import pooling as P
from ..functional.windows import pair, positive_pair
from .module import Module

__all__ = ["MaxPool2d", "AvgPool2d", "LPPool2d", "MaxUnpool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d"]


def _check_window(layer, kernel_size, stride, dilation=1):
    """Fail at construction (not at the first forward) on zero or negative sizes."""
    positive_pair(kernel_size, "kernel_size", layer)
    if stride is not None and not (isinstance(stride, (tuple, list)) and len(stride) == 0):
        positive_pair(stride, "stride", layer)
    positive_pair(dilation, "dilation", layer)


class _Pool2d(Module):
    def _name(self):
        return f"{type(self).__name__}({self.extra_repr()})"


class MaxPool2d(_Pool2d):
    """Max over each kernel_size window (dilated, stride defaults to kernel_size, padding counts as -inf).

    Output size per axis: floor((W + 2P - d(F - 1) - 1) / S) + 1 (ceil with ``ceil_mode``).
    ``strict=True`` (beyond PyTorch) raises with the formula when the windows do not tile the input
    instead of silently dropping the last rows/columns.
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, return_indices=False, ceil_mode=False, *,
                 strict=False):
        super().__init__()
        _check_window("MaxPool2d", kernel_size, stride, dilation)
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode
        self.strict = strict

    def forward(self, input):
        return P._max_pool2d(input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                             self.return_indices, self.strict, self._name())

    def extra_repr(self):
        text = (f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")
        return text + (", strict=True" if self.strict else "")


class AvgPool2d(_Pool2d):
    """Mean over each kernel_size window; see ``cnnkit.functional.avg_pool2d`` for the divisor rules.

    ``strict=True`` (beyond PyTorch) raises when the windows do not tile the input.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, *, strict=False):
        super().__init__()
        _check_window("AvgPool2d", kernel_size, stride)
        if divisor_override is not None and (not isinstance(divisor_override, numbers.Integral)
                                             or divisor_override == 0):
            raise ValueError(f"AvgPool2d: divisor_override must be a non-zero integer or None, "
                             f"got {divisor_override!r}")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override
        self.strict = strict

    def forward(self, input):
        return P._avg_pool2d(input, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                             self.count_include_pad, self.divisor_override, self.strict, self._name())

    def extra_repr(self):
        text = f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
        return text + (", strict=True" if self.strict else "")


class LPPool2d(_Pool2d):
    """(sum over each window of |x|^p)^(1/p); see ``cnnkit.functional.lp_pool2d`` (|x|, not x as PyTorch).

    ``padding`` (zeros) and ``strict`` are beyond PyTorch; the repr shows them only when set.
    """

    def __init__(self, norm_type, kernel_size, stride=None, ceil_mode=False, *, padding=0, strict=False):
        super().__init__()
        if isinstance(norm_type, bool) or not isinstance(norm_type, numbers.Real) or math.isnan(norm_type) \
                or norm_type <= 0:
            raise ValueError(f"LPPool2d: norm_type must be a positive number, got {norm_type!r}; "
                             "use 1 for a sum of magnitudes, 2 for the Euclidean norm, float('inf') for max |x|")
        _check_window("LPPool2d", kernel_size, stride)
        self.norm_type = norm_type
        self.kernel_size = kernel_size
        self.stride = stride
        self.ceil_mode = ceil_mode
        self.padding = padding
        self.strict = strict

    def forward(self, input):
        return P._lp_pool2d(input, self.norm_type, self.kernel_size, self.stride, self.ceil_mode, self.padding,
                            self.strict, self._name())

    def extra_repr(self):
        text = (f"norm_type={self.norm_type}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"ceil_mode={self.ceil_mode}")
        return text + (f", padding={self.padding}" if self.padding else "") + (", strict=True" if self.strict else "")


class MaxUnpool2d(Module):
    """Partial inverse of MaxPool2d: puts each value back at its recorded index, zeros elsewhere."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = positive_pair(kernel_size, "kernel_size", "MaxUnpool2d")
        self.stride = positive_pair(stride if stride is not None else kernel_size, "stride", "MaxUnpool2d")
        self.padding = pair(padding, "padding", "MaxUnpool2d")

    def forward(self, input, indices, output_size=None):
        return P.max_unpool2d(input, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    """Mean over windows chosen so the output is ``output_size`` (None keeps that input size); 1 = global pooling."""

    def __init__(self, output_size):
        super().__init__()
        P._adaptive_size("AdaptiveAvgPool2d", output_size, (1, 1))
        self.output_size = output_size

    def forward(self, input):
        return P.adaptive_avg_pool2d(input, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class AdaptiveMaxPool2d(Module):
    """Max over windows chosen so the output is ``output_size``; optionally also the argmax indices."""

    def __init__(self, output_size, return_indices=False):
        super().__init__()
        P._adaptive_size("AdaptiveMaxPool2d", output_size, (1, 1))
        self.output_size = output_size
        self.return_indices = return_indices

    def forward(self, input):
        return P.adaptive_max_pool2d(input, self.output_size, self.return_indices)

    def extra_repr(self):
        return f"output_size={self.output_size}"
