"""``DeformConv2d``: a convolution whose sampling offsets (and, for DCNv2, a modulation mask) are predicted."""
from __future__ import annotations

from .. import functional as F
from ..autograd import zeros
from ..functional.windows import pair, positive_pair
from . import conv, init
from .module import Module
from .parameter import Parameter

__all__ = ["DeformConv2d"]


class DeformConv2d(Module):
    """Deformable convolution (Dai et al. 2017; ``modulated=True``: DCNv2, Zhu et al. 2019).

    Parameters and state_dict keys:

    - ``weight`` (C_out, C_in/groups, kH, kW) and ``bias`` (C_out): the deformable convolution itself,
      initialised like ``Conv2d``;
    - ``offset_conv.weight/bias``: a regular conv with the same kernel, stride, padding and dilation
      predicting 2*offset_groups*kH*kW offsets (dy, dx per tap) for every output pixel;
    - ``mask_conv.weight/bias`` (only with ``modulated``): predicts offset_groups*kH*kW mask logits;
      mask = 2 * sigmoid(logits), in (0, 2).

    Both predictors are zero-initialised, so a fresh layer has zero offsets and a mask of exactly 1
    and computes the same as a ``Conv2d`` with the same ``weight``/``bias``. (DCNv2 uses a plain
    sigmoid, which starts at 0.5; the factor 2 keeps the start equal to a regular convolution.)
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 offset_groups=1, modulated=False):
        super().__init__()
        layer = "DeformConv2d"
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = positive_pair(kernel_size, "kernel_size", layer)
        self.stride = positive_pair(stride, "stride", layer)
        self.padding = padding if isinstance(padding, str) else pair(padding, "padding", layer)
        self.dilation = positive_pair(dilation, "dilation", layer)
        self.groups, self.offset_groups, self.modulated = int(groups), int(offset_groups), bool(modulated)
        for name, value in (("groups", self.groups), ("offset_groups", self.offset_groups)):
            if value <= 0 or self.in_channels % value:
                raise ValueError(f"{layer}: in_channels={in_channels} must be divisible by {name}={value}")
        if self.out_channels % self.groups:
            raise ValueError(f"{layer}: out_channels={out_channels} must be divisible by groups={groups}")
        kh, kw = self.kernel_size
        self.weight = Parameter(zeros(self.out_channels, self.in_channels // self.groups, kh, kw))
        self.bias = Parameter(zeros(self.out_channels)) if bias else None
        if not bias:
            self.register_parameter("bias", None)
        init.default_layer_init_(self.weight, self.bias)
        taps = self.offset_groups * kh * kw
        window = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation)
        self.offset_conv = conv.Conv2d(self.in_channels, 2 * taps, **window)
        _zero_(self.offset_conv)
        if self.modulated:
            self.mask_conv = conv.Conv2d(self.in_channels, taps, **window)
            _zero_(self.mask_conv)
        else:
            self.mask_conv = None

    def forward(self, x):
        offset = self.offset_conv(x)
        mask = 2 * F.sigmoid(self.mask_conv(x)) if self.modulated else None
        return F.deform_conv2d(x, offset, self.weight, self.bias, stride=self.stride, padding=self.padding,
                               dilation=self.dilation, mask=mask)

    def extra_repr(self):
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}")
        if self.padding not in ((0, 0), 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.offset_groups != 1:
            text += f", offset_groups={self.offset_groups}"
        if self.modulated:
            text += ", modulated=True"
        if self.bias is None:
            text += ", bias=False"
        return text


def _zero_(conv):
    """Zero a predictor conv so the layer starts with zero offsets (and mask logits)."""
    init.zeros_(conv.weight)
    if conv.bias is not None:
        init.zeros_(conv.bias)
