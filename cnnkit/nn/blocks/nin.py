"""The Network-in-Network block: a spatial convolution followed by two 1x1 convolutions (an MLP per pixel)."""
from __future__ import annotations

from .. import Conv2d, ReLU
from ..containers import Sequential

__all__ = ["NiNBlock"]


class NiNBlock(Sequential):
    """conv(k x k) -> ReLU -> conv1x1 -> ReLU -> conv1x1 -> ReLU ("mlpconv" layer).

    Lin, Chen and Yan, "Network In Network" (ICLR 2014). The two 1x1 convolutions act as a
    small fully connected network applied at every pixel.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__(
            Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding), ReLU(inplace=True),
            Conv2d(out_channels, out_channels, kernel_size=1), ReLU(inplace=True),
            Conv2d(out_channels, out_channels, kernel_size=1), ReLU(inplace=True),
        )
