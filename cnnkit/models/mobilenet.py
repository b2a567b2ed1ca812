"""MobileNet v1 (Howard et al., 2017) and v2 (Sandler et al., 2018); v2 in torchvision's layout and names.

``small_input=True`` (CIFAR-style): the stem convolution and the first strided block use
stride 1, so 32x32 inputs reach the last stage at 4x4 (overall /8 instead of /32). No layer
changes shape, so the parameters are the same as at full size.
"""
from __future__ import annotations

from .. import nn
from ..nn.blocks.conv_norm import Conv2dNormActivation
from ..nn.blocks.mobile import DepthwiseSeparableConv, InvertedResidual
from ._init import init_conv_bn_linear_
from .registry import register_model

# (output channels, stride) of the 13 depthwise-separable layers of Table 1 (Howard et al.).
V1_LAYERS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
             (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
# t (expansion), c (channels), n (repeats), s (first stride) of Table 2 (Sandler et al.).
V2_SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
              (6, 320, 1, 1)]


def _make_divisible(value, divisor=8, min_value=None):
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90% of it (torchvision's rule)."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class MobileNetV1(nn.Module):
    """features (3x3 conv stride 2, 13 depthwise-separable layers) -> global pool -> classifier (dropout, fc).

    ``width_mult`` is the paper's alpha (channels rounded to multiples of 8).
    """

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, width_mult=1.0, dropout=0.001):
        super().__init__()
        channels = _make_divisible(32 * width_mult)
        layers = [Conv2dNormActivation(in_channels, channels, stride=1 if small_input else 2)]
        first_stride_done = False
        for out_channels, stride in V1_LAYERS:
            if small_input and stride == 2 and not first_stride_done:
                stride, first_stride_done = 1, True
            out_channels = _make_divisible(out_channels * width_mult)
            layers.append(DepthwiseSeparableConv(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(channels, num_classes))
        init_conv_bn_linear_(self, conv_mode="fan_out", linear_std=0.01)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


class MobileNetV2(nn.Module):
    """features (stem, 17 inverted residuals, 1x1 conv to 1280) -> global pool -> classifier (dropout 0.2, fc)."""

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, width_mult=1.0, round_nearest=8,
                 dropout=0.2):
        super().__init__()
        input_channel = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features = [Conv2dNormActivation(in_channels, input_channel, stride=1 if small_input else 2,
                                         activation_layer=nn.ReLU6)]
        first_stride_done = False
        for expand_ratio, channels, repeats, first_stride in V2_SETTING:
            if small_input and first_stride == 2 and not first_stride_done:
                first_stride, first_stride_done = 1, True
            output_channel = _make_divisible(channels * width_mult, round_nearest)
            for index in range(repeats):
                features.append(InvertedResidual(input_channel, output_channel, first_stride if index == 0 else 1,
                                                 expand_ratio=expand_ratio))
                input_channel = output_channel
        features.append(Conv2dNormActivation(input_channel, self.last_channel, kernel_size=1,
                                             activation_layer=nn.ReLU6))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))
        init_conv_bn_linear_(self, conv_mode="fan_out", linear_std=0.01)

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))  # = adaptive_avg_pool2d(1) + flatten


@register_model
def mobilenet_v1(num_classes=1000, in_channels=3, small_input=False, **options):
    """MobileNet v1 (alpha 1): 4,231,976 parameters at 1000 classes (Keras ``MobileNet``'s trainable count)."""
    return MobileNetV1(num_classes, in_channels, small_input, **options)


@register_model
def mobilenet_v2(num_classes=1000, in_channels=3, small_input=False, **options):
    """MobileNet v2 (width 1): 3,504,872 parameters at 1000 classes (torchvision ``mobilenet_v2``)."""
    return MobileNetV2(num_classes, in_channels, small_input, **options)
