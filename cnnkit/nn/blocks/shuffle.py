"""ShuffleNet units: v1 (grouped 1x1 convs + channel shuffle) and v2 (channel split + shuffle)."""
from __future__ import annotations

from ... import functional as F
from ...autograd import cat
from .. import AvgPool2d, BatchNorm2d, Conv2d, ReLU
from ..containers import Sequential
from ..module import Module

__all__ = ["ShuffleV1Unit", "ShuffleV2Unit"]


def _depthwise(channels, stride):
    return Conv2d(channels, channels, kernel_size=3, stride=stride, padding=1, groups=channels, bias=False)


class ShuffleV1Unit(Module):
    """GConv1x1 -> BN -> ReLU -> DWConv3x3 -> BN -> shuffle -> GConv1x1 -> BN, then add (stride 1) or concat.

    Zhang, Zhou, Lin and Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network
    for Mobile Devices" (CVPR 2018). Names follow the authors' release (megvii-model
    ShuffleNet-Series): ``branch_main_1``, ``branch_main_2`` and, at stride 2, ``branch_proj``
    (3x3 average pool, concatenated so the unit outputs ``out_channels``). The shuffle comes after
    the depthwise conv, which is per channel, so this equals the paper's order. ``first_group=True``
    keeps the first 1x1 dense (the paper does so for the first unit, whose input is narrow).
    """

    def __init__(self, in_channels, out_channels, groups, stride=1, mid_channels=None, first_group=False):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleV1Unit: stride should be 1 or 2, got {stride}")
        if stride == 1 and in_channels != out_channels:
            raise ValueError(f"ShuffleV1Unit: a stride-1 unit adds its input, so in_channels ({in_channels}) must "
                             f"equal out_channels ({out_channels})")
        branch_channels = out_channels - in_channels if stride == 2 else out_channels
        mid_channels = out_channels // 4 if mid_channels is None else mid_channels
        for name, value in (("mid_channels", mid_channels), ("branch output channels", branch_channels)):
            if value % groups:
                raise ValueError(f"ShuffleV1Unit: {name} ({value}) must be divisible by groups ({groups})")
        self.stride = stride
        self.groups = groups
        self.branch_main_1 = Sequential(
            Conv2d(in_channels, mid_channels, 1, 1, 0, groups=1 if first_group else groups, bias=False),
            BatchNorm2d(mid_channels), ReLU(inplace=True),
            _depthwise(mid_channels, stride), BatchNorm2d(mid_channels),
        )
        self.branch_main_2 = Sequential(
            Conv2d(mid_channels, branch_channels, 1, 1, 0, groups=groups, bias=False), BatchNorm2d(branch_channels),
        )
        self.branch_proj = AvgPool2d(kernel_size=3, stride=2, padding=1) if stride == 2 else None
        self.relu = ReLU(inplace=True)

    def forward(self, x):
        out = self.branch_main_1(x)
        if self.groups > 1:
            out = F.channel_shuffle(out, self.groups)
        out = self.branch_main_2(out)
        if self.stride == 1:
            return self.relu(out + x)
        return cat([self.branch_proj(x), self.relu(out)], 1)


class ShuffleV2Unit(Module):
    """Split channels in half, transform one half, concatenate, shuffle with 2 groups (stride 1).

    Ma, Zhang, Zheng and Sun, "ShuffleNet V2: Practical Guidelines for Efficient CNN
    Architecture Design" (ECCV 2018); torchvision's ``InvertedResidual`` names. At stride 2 both
    branches see the whole input (``branch1``: DW3x3 + BN + 1x1 + BN + ReLU) and the output has
    ``oup`` channels; ``branch2`` is 1x1 + BN + ReLU + DW3x3 + BN + 1x1 + BN + ReLU.
    """

    def __init__(self, inp, oup, stride):
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"ShuffleV2Unit: illegal stride value {stride}, expected 1, 2 or 3")
        self.stride = stride
        branch_features = oup // 2
        if stride == 1 and inp != branch_features * 2:
            raise ValueError(f"ShuffleV2Unit: with stride 1, inp ({inp}) must equal oup ({oup}) rounded to even, "
                             "since half the input passes through unchanged")
        if stride > 1:
            self.branch1 = Sequential(
                _depthwise(inp, stride), BatchNorm2d(inp),
                Conv2d(inp, branch_features, 1, 1, 0, bias=False), BatchNorm2d(branch_features), ReLU(inplace=True),
            )
        else:
            self.branch1 = Sequential()
        self.branch2 = Sequential(
            Conv2d(inp if stride > 1 else branch_features, branch_features, 1, 1, 0, bias=False),
            BatchNorm2d(branch_features), ReLU(inplace=True),
            _depthwise(branch_features, stride), BatchNorm2d(branch_features),
            Conv2d(branch_features, branch_features, 1, 1, 0, bias=False), BatchNorm2d(branch_features),
            ReLU(inplace=True),
        )

    def forward(self, x):
        if self.stride == 1:
            half = x.shape[1] // 2
            out = cat([x[:, :half], self.branch2(x[:, half:])], 1)
        else:
            out = cat([self.branch1(x), self.branch2(x)], 1)
        return F.channel_shuffle(out, 2)
