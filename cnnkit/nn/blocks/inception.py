"""GoogLeNet's Inception block: four parallel paths concatenated along channels."""
from __future__ import annotations

from ...autograd import cat
from .. import AdaptiveAvgPool2d, BatchNorm2d, Conv2d, Dropout, Linear, MaxPool2d, ReLU
from ..containers import Sequential
from ..module import Module

__all__ = ["BasicConv2d", "Inception", "InceptionAux"]


class BasicConv2d(Module):
    """relu(bn(conv(x))) with a bias-free convolution and BatchNorm eps=1e-3 (torchvision's GoogLeNet unit)."""

    def __init__(self, in_channels, out_channels, **conv_options):
        super().__init__()
        self.conv = Conv2d(in_channels, out_channels, bias=False, **conv_options)
        self.bn = BatchNorm2d(out_channels, eps=0.001)
        self.relu = ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class Inception(Module):
    """cat([1x1, 1x1 -> 3x3, 1x1 -> 5x5, maxpool3x3 -> 1x1], dim=1).

    Szegedy et al., "Going Deeper with Convolutions" (CVPR 2015). Output channels:
    ``ch1x1 + ch3x3 + ch5x5 + pool_proj``; the spatial size is kept. ``branch3_kernel_size``
    is 5 as in the paper; torchvision's GoogLeNet uses 3 there (a known quirk that its
    pretrained weights depend on), so the ``googlenet`` model passes 3.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj, branch3_kernel_size=5):
        super().__init__()
        if branch3_kernel_size % 2 != 1:
            raise ValueError(f"Inception: branch3_kernel_size must be odd to keep the size, got {branch3_kernel_size}")
        self.branch1 = BasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = Sequential(BasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                  BasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = Sequential(BasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                  BasicConv2d(ch5x5red, ch5x5, kernel_size=branch3_kernel_size,
                                              padding=branch3_kernel_size // 2))
        self.branch4 = Sequential(MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
                                  BasicConv2d(in_channels, pool_proj, kernel_size=1))
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj

    def forward(self, x):
        branches = [self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)]
        return cat(branches, 1)


class InceptionAux(Module):
    """Auxiliary classifier: avgpool to 4x4 -> 1x1 conv (128) -> fc 2048->1024 -> ReLU -> dropout 0.7 -> fc.

    Szegedy et al. (2015), section 5; names as torchvision's (``conv``, ``fc1``, ``fc2``).
    """

    def __init__(self, in_channels, num_classes, dropout=0.7):
        super().__init__()
        self.pool = AdaptiveAvgPool2d((4, 4))
        self.conv = BasicConv2d(in_channels, 128, kernel_size=1)
        self.fc1 = Linear(2048, 1024)
        self.relu = ReLU(inplace=True)
        self.dropout = Dropout(p=dropout)
        self.fc2 = Linear(1024, num_classes)

    def forward(self, x):
        x = self.conv(self.pool(x)).flatten(1)
        return self.fc2(self.dropout(self.relu(self.fc1(x))))
