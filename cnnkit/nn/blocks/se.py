"""Squeeze-and-excitation: channel attention from globally pooled features."""
from __future__ import annotations

from .. import AdaptiveAvgPool2d, Conv2d, ReLU, Sigmoid
from ..module import Module

__all__ = ["SqueezeExcitation"]


class SqueezeExcitation(Module):
    """x * sigmoid(fc2(relu(fc1(avgpool(x))))), with fc1/fc2 as 1x1 convolutions (torchvision.ops naming).

    Hu, Shen and Sun, "Squeeze-and-Excitation Networks" (CVPR 2018). ``squeeze_channels`` is
    ``channels // reduction`` in the paper (reduction r = 16).
    """

    def __init__(self, input_channels, squeeze_channels):
        super().__init__()
        if squeeze_channels < 1:
            raise ValueError(f"SqueezeExcitation: squeeze_channels must be >= 1, got {squeeze_channels}")
        self.avgpool = AdaptiveAvgPool2d(1)
        self.fc1 = Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = Conv2d(squeeze_channels, input_channels, 1)
        self.activation = ReLU()
        self.scale_activation = Sigmoid()

    def scale(self, x):
        """The per-channel weights in (0, 1), shape (N, C, 1, 1)."""
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))

    def forward(self, x):
        return x * self.scale(x)
