"""Asymmetric (spatially factorised) convolution: a 1xk convolution followed by a kx1 convolution."""
from __future__ import annotations

from .. import BatchNorm2d, ReLU
from ..module import Module
from .conv_norm import Conv2dNormActivation

__all__ = ["AsymmetricConv2d"]


class AsymmetricConv2d(Module):
    """conv_kx1(conv_1xk(x)): a k x k receptive field for 2k instead of k^2 weights per channel pair.

    Szegedy et al., "Rethinking the Inception Architecture for Computer Vision" (CVPR 2016),
    section 3.2. Each half is conv + BN + ReLU (as Inception-v3's ``BasicConv2d`` pairs);
    padding ``k // 2`` keeps the size at stride 1; ``stride`` applies once, to the rows in the
    first conv and to the columns in the second.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, mid_channels=None,
                 norm_layer=BatchNorm2d, activation_layer=ReLU):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 != 1:
            raise ValueError(f"AsymmetricConv2d: kernel_size must be a positive odd int to keep the size, "
                             f"got {kernel_size}")
        mid_channels = out_channels if mid_channels is None else mid_channels
        pad = kernel_size // 2
        self.conv_1xk = Conv2dNormActivation(in_channels, mid_channels, kernel_size=(1, kernel_size),
                                             stride=(1, stride), padding=(0, pad), norm_layer=norm_layer,
                                             activation_layer=activation_layer)
        self.conv_kx1 = Conv2dNormActivation(mid_channels, out_channels, kernel_size=(kernel_size, 1),
                                             stride=(stride, 1), padding=(pad, 0), norm_layer=norm_layer,
                                             activation_layer=activation_layer)

    def forward(self, x):
        return self.conv_kx1(self.conv_1xk(x))
