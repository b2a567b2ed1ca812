"""DenseNet's dense layer, dense block and transition (torchvision's names)."""
from __future__ import annotations

from ... import functional as F
from ...autograd import Tensor, cat
from .. import AvgPool2d, BatchNorm2d, Conv2d, ReLU
from ..containers import ModuleDict, Sequential
from ..module import Module

__all__ = ["DenseLayer", "DenseBlock", "Transition"]


class DenseLayer(Module):
    """conv3x3(relu(norm2(conv1x1(relu(norm1(cat(features))))))) giving ``growth_rate`` new channels.

    Huang, Liu, van der Maaten and Weinberger, "Densely Connected Convolutional Networks"
    (CVPR 2017), the DenseNet-B bottleneck (1x1 to ``bn_size * growth_rate`` channels first).
    Accepts one tensor or the list of all earlier feature maps.
    """

    def __init__(self, num_input_features, growth_rate, bn_size=4, drop_rate=0.0):
        super().__init__()
        self.norm1 = BatchNorm2d(num_input_features)
        self.relu1 = ReLU(inplace=True)
        self.conv1 = Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = BatchNorm2d(bn_size * growth_rate)
        self.relu2 = ReLU(inplace=True)
        self.conv2 = Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)
        self.drop_rate = float(drop_rate)

    def forward(self, features):
        concatenated = features if isinstance(features, Tensor) else cat(list(features), 1)
        bottleneck = self.conv1(self.relu1(self.norm1(concatenated)))
        new_features = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class DenseBlock(ModuleDict):
    """``num_layers`` dense layers ``denselayer1..``; each sees every earlier output; returns their concatenation.

    Output channels: ``num_input_features + num_layers * growth_rate`` (Huang et al., 2017).
    """

    def __init__(self, num_layers, num_input_features, bn_size=4, growth_rate=32, drop_rate=0.0):
        super().__init__()
        for index in range(num_layers):
            layer = DenseLayer(num_input_features + index * growth_rate, growth_rate=growth_rate, bn_size=bn_size,
                               drop_rate=drop_rate)
            self.add_module(f"denselayer{index + 1}", layer)
        self.out_channels = num_input_features + num_layers * growth_rate

    def forward(self, init_features):
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return cat(features, 1)


class Transition(Sequential):
    """norm -> relu -> conv1x1 -> avgpool 2x2: shrinks channels (compression) and halves the size.

    Huang et al. (2017), the transition layer between dense blocks.
    """

    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = BatchNorm2d(num_input_features)
        self.relu = ReLU(inplace=True)
        self.conv = Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = AvgPool2d(kernel_size=2, stride=2)
