"""Atrous spatial pyramid pooling (DeepLabv3), with torchvision's names."""
from __future__ import annotations

from ...autograd import cat
from .. import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, ReLU
from ..containers import ModuleList, Sequential
from ..module import Module

__all__ = ["ASPP", "ASPPConv", "ASPPPooling"]


class ASPPConv(Sequential):
    """3x3 convolution with dilation ``rate`` (padding ``rate`` keeps the size) + BN + ReLU."""

    def __init__(self, in_channels, out_channels, dilation):
        super().__init__(Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False),
                         BatchNorm2d(out_channels), ReLU())


class ASPPPooling(Sequential):
    """Image-level features: global average pool + 1x1 conv + BN + ReLU, spread back over the input's size."""

    def __init__(self, in_channels, out_channels):
        super().__init__(AdaptiveAvgPool2d(1), Conv2d(in_channels, out_channels, 1, bias=False),
                         BatchNorm2d(out_channels), ReLU())

    def forward(self, x):
        batch, _, height, width = x.shape
        pooled = super().forward(x)
        # Bilinear upsampling of a 1x1 map is a constant map, so broadcasting is exact.
        return pooled.expand(batch, pooled.shape[1], height, width)


class ASPP(Module):
    """project(cat([1x1 conv, 3x3 convs at each atrous rate, image pooling], dim=1)).

    Chen, Papandreou, Schroff and Adam, "Rethinking Atrous Convolution for Semantic Image
    Segmentation" (DeepLabv3, 2017). ``convs.0`` is the 1x1 branch, ``convs.1..`` the dilated
    branches, the last one the pooling branch; ``project`` is 1x1 conv + BN + ReLU + Dropout(0.5).
    The output has ``out_channels`` channels and the input's size.
    """

    def __init__(self, in_channels, atrous_rates, out_channels=256):
        super().__init__()
        branches = [Sequential(Conv2d(in_channels, out_channels, 1, bias=False), BatchNorm2d(out_channels), ReLU())]
        branches.extend(ASPPConv(in_channels, out_channels, rate) for rate in tuple(atrous_rates))
        branches.append(ASPPPooling(in_channels, out_channels))
        self.convs = ModuleList(branches)
        self.project = Sequential(Conv2d(len(branches) * out_channels, out_channels, 1, bias=False),
                                  BatchNorm2d(out_channels), ReLU(), Dropout(0.5))

    def forward(self, x):
        return self.project(cat([branch(x) for branch in self.convs], 1))
