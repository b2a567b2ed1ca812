"""DenseNet-BC (Huang et al., 2017) in torchvision's layout: features.conv0/norm0/relu0/pool0/denseblockN/...

``small_input=True`` (as the paper's CIFAR networks): ``conv0`` becomes 3x3 stride 1 padding 1
and ``pool0`` an ``Identity``; 32x32 inputs enter ``denseblock1`` at 32x32 and ``denseblock4``
at 4x4. Blocks and transitions are unchanged.
"""
from __future__ import annotations

from collections import OrderedDict

from .. import functional as F
from .. import nn
from ..nn.blocks.dense import DenseBlock, Transition
from ._init import is_norm
from .registry import register_model


class DenseNet(nn.Module):
    """features (stem, dense blocks joined by halving transitions, norm5) -> ReLU -> global pool -> classifier."""

    def __init__(self, growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4, drop_rate=0.0,
                 num_classes=1000, in_channels=3, small_input=False):
        super().__init__()
        if small_input:
            stem = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=3, stride=1, padding=1,
                                        bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.Identity())]
        else:
            stem = [("conv0", nn.Conv2d(in_channels, num_init_features, kernel_size=7, stride=2, padding=3,
                                        bias=False)),
                    ("norm0", nn.BatchNorm2d(num_init_features)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1))]
        self.features = nn.Sequential(OrderedDict(stem))
        num_features = num_init_features
        for index, num_layers in enumerate(block_config):
            block = DenseBlock(num_layers, num_features, bn_size=bn_size, growth_rate=growth_rate,
                               drop_rate=drop_rate)
            self.features.add_module(f"denseblock{index + 1}", block)
            num_features = block.out_channels
            if index != len(block_config) - 1:
                self.features.add_module(f"transition{index + 1}", Transition(num_features, num_features // 2))
                num_features //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)
        for module in self.modules():  # torchvision: kaiming_normal_ (fan_in) convs, BN (1, 0), zero fc bias
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif is_norm(module):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)

    def forward(self, x):
        features = F.relu(self.features(x))
        return self.classifier(features.mean((2, 3)))  # = adaptive_avg_pool2d(1) + flatten


@register_model
def densenet121(num_classes=1000, in_channels=3, small_input=False, **options):
    """DenseNet-121 (k = 32, blocks 6-12-24-16): 7,978,856 parameters at 1000 classes."""
    options = {"growth_rate": 32, "block_config": (6, 12, 24, 16), "num_init_features": 64, **options}
    return DenseNet(num_classes=num_classes, in_channels=in_channels, small_input=small_input, **options)
