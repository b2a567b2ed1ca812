"""Network in Network (Lin, Chen and Yan, 2014) for ImageNet-size inputs, in the layout of Dive into Deep Learning.

Four NiN blocks (11x11/4 96, 5x5 256, 3x3 384, 3x3 ``num_classes``) with 3x3/2 max-pools between
them, dropout before the last block and global average pooling instead of fully connected layers.
``small_input=True``: the first block's convolution becomes 3x3 stride 1 padding 1 and the first
max-pool an ``Identity``, so 32x32 inputs reach the last block at 7x7.
"""
from __future__ import annotations

from .. import nn
from ..nn.blocks.nin import NiNBlock
from ._init import init_conv_bn_linear_
from .registry import register_model


class NiN(nn.Module):
    """features (4 NiN blocks, 3 max-pools, dropout) -> global average pool -> flatten: class scores."""

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, dropout=0.5):
        super().__init__()
        if small_input:
            first, first_pool = NiNBlock(in_channels, 96, kernel_size=3, stride=1, padding=1), nn.Identity()
        else:
            first, first_pool = NiNBlock(in_channels, 96, kernel_size=11, stride=4), nn.MaxPool2d(3, stride=2)
        self.features = nn.Sequential(
            first, first_pool,
            NiNBlock(96, 256, kernel_size=5, padding=2), nn.MaxPool2d(3, stride=2),
            NiNBlock(256, 384, kernel_size=3, padding=1), nn.MaxPool2d(3, stride=2),
            nn.Dropout(p=dropout),
            NiNBlock(384, num_classes, kernel_size=3, padding=1),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        init_conv_bn_linear_(self, conv_mode="fan_out", linear_std=None)

    def forward(self, x):
        return self.avgpool(self.features(x)).flatten(1)


@register_model
def nin(num_classes=1000, in_channels=3, small_input=False, **options):
    """NiN: 7,439,608 parameters at 1000 classes (no fully connected layer: the last block emits class maps)."""
    return NiN(num_classes, in_channels, small_input, **options)
