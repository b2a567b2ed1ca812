"""MobileNet blocks: the depthwise-separable convolution (v1) and the inverted residual (v2)."""
from __future__ import annotations

from .. import BatchNorm2d, Conv2d, ReLU, ReLU6
from ..containers import Sequential
from ..module import Module
from .conv_norm import Conv2dNormActivation

__all__ = ["DepthwiseSeparableConv", "InvertedResidual"]


class DepthwiseSeparableConv(Module):
    """pointwise(depthwise(x)): 3x3 per-channel conv + BN + ReLU, then 1x1 conv + BN + ReLU.

    Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision
    Applications" (2017). Costs ``9 C + C C'`` weights instead of ``9 C C'``.
    """

    def __init__(self, in_channels, out_channels, stride=1, activation_layer=ReLU):
        super().__init__()
        self.depthwise = Conv2dNormActivation(in_channels, in_channels, kernel_size=3, stride=stride,
                                              groups=in_channels, activation_layer=activation_layer)
        self.pointwise = Conv2dNormActivation(in_channels, out_channels, kernel_size=1,
                                              activation_layer=activation_layer)
        self.stride = stride
        self.out_channels = out_channels

    def forward(self, x):
        return self.pointwise(self.depthwise(x))


class InvertedResidual(Module):
    """x + project(depthwise(expand(x))) with a linear bottleneck (torchvision's MobileNetV2 names).

    Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks" (CVPR 2018).
    ``conv`` holds [1x1 expand + BN + ReLU6 (when ``expand_ratio != 1``), 3x3 depthwise + BN +
    ReLU6, 1x1 projection conv, BN]; the shortcut is used when stride is 1 and channels match.
    """

    def __init__(self, inp, oup, stride, expand_ratio, norm_layer=BatchNorm2d):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual: stride should be 1 or 2, got {stride}")
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(Conv2dNormActivation(inp, hidden_dim, kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=ReLU6))
        layers.extend([
            Conv2dNormActivation(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim, norm_layer=norm_layer,
                                 activation_layer=ReLU6),
            Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            norm_layer(oup),
        ])
        self.conv = Sequential(*layers)
        self.out_channels = oup

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)
