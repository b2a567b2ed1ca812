"""VGG-11/13/16/19 with and without batch norm (Simonyan and Zisserman, 2015), torchvision's layout.

``small_input=True``: the first max-pool becomes an ``Identity`` (same indices, so checkpoints
keep their keys); a 32x32 input then reaches the adaptive 7x7 pool as 2x2 instead of 1x1 and the
classifier is unchanged. VGG has no strided stem, so nothing else changes.
"""
from __future__ import annotations

from .. import nn
from ..nn.blocks.vgg import VGGBlock
from ._init import init_conv_bn_linear_
from .registry import register_model

# (convolutions, width) per stage: configurations A, B, D and E of the paper.
STAGES = {
    11: [(1, 64), (1, 128), (2, 256), (2, 512), (2, 512)],
    13: [(2, 64), (2, 128), (2, 256), (2, 512), (2, 512)],
    16: [(2, 64), (2, 128), (3, 256), (3, 512), (3, 512)],
    19: [(2, 64), (2, 128), (4, 256), (4, 512), (4, 512)],
}


class VGG(nn.Module):
    """features (VGG blocks, flattened) -> AdaptiveAvgPool2d(7) -> classifier (fc 4096, fc 4096, fc)."""

    def __init__(self, depth=16, batch_norm=False, num_classes=1000, in_channels=3, small_input=False, dropout=0.5):
        super().__init__()
        if depth not in STAGES:
            raise ValueError(f"VGG: depth must be one of {sorted(STAGES)}, got {depth}")
        layers, channels = [], in_channels
        for index, (num_convs, width) in enumerate(STAGES[depth]):
            block = VGGBlock(channels, width, num_convs, batch_norm=batch_norm, pool=not (small_input and index == 0))
            layers.extend(block.children())  # one flat Sequential, as torchvision's state_dict keys expect
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(inplace=True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes),
        )
        init_conv_bn_linear_(self, conv_mode="fan_out", linear_std=0.01)

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def _vgg(depth, batch_norm, num_classes, in_channels, small_input, options):
    return VGG(depth, batch_norm, num_classes, in_channels, small_input, **options)


@register_model
def vgg11(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-11 (configuration A): 132,863,336 parameters at 1000 classes."""
    return _vgg(11, False, num_classes, in_channels, small_input, options)


@register_model
def vgg13(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-13 (configuration B): 133,047,848 parameters at 1000 classes."""
    return _vgg(13, False, num_classes, in_channels, small_input, options)


@register_model
def vgg16(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-16 (configuration D): 138,357,544 parameters at 1000 classes."""
    return _vgg(16, False, num_classes, in_channels, small_input, options)


@register_model
def vgg19(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-19 (configuration E): 143,667,240 parameters at 1000 classes."""
    return _vgg(19, False, num_classes, in_channels, small_input, options)


@register_model
def vgg11_bn(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-11 with batch norm after every conv: 132,868,840 parameters at 1000 classes."""
    return _vgg(11, True, num_classes, in_channels, small_input, options)


@register_model
def vgg13_bn(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-13 with batch norm: 133,053,736 parameters at 1000 classes."""
    return _vgg(13, True, num_classes, in_channels, small_input, options)


@register_model
def vgg16_bn(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-16 with batch norm: 138,365,992 parameters at 1000 classes."""
    return _vgg(16, True, num_classes, in_channels, small_input, options)


@register_model
def vgg19_bn(num_classes=1000, in_channels=3, small_input=False, **options):
    """VGG-19 with batch norm: 143,678,248 parameters at 1000 classes."""
    return _vgg(19, True, num_classes, in_channels, small_input, options)
