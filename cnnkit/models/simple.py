"""``simple_cnn``: a small modern CNN (conv-BN-ReLU blocks, max-pooling, global average pooling, linear)."""
from __future__ import annotations

from .. import nn
from .registry import register_model


def _conv_bn_relu(in_channels, out_channels):
    return [nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class SimpleCNN(nn.Module):
    """Three stages of conv3x3-BN-ReLU (``width``, 2x, 4x channels), max-pool between, global average pool, linear.

    Any input size of at least 4x4 works: the global pool removes the spatial size before the classifier.
    """

    def __init__(self, num_classes=10, in_channels=3, width=32, dropout=0.0):
        super().__init__()
        widths = (width, 2 * width, 4 * width)
        layers = _conv_bn_relu(in_channels, widths[0]) + [nn.MaxPool2d(2)]
        layers += _conv_bn_relu(widths[0], widths[1]) + [nn.MaxPool2d(2)]
        layers += _conv_bn_relu(widths[1], widths[2])
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(widths[2], num_classes))

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)))


@register_model
def simple_cnn(num_classes=10, in_channels=3, width=32, dropout=0.0, small_input=False):
    """A small conv-BN-ReLU network for 28x28/32x32 data sets (``small_input`` is accepted and ignored)."""
    del small_input  # the network has no stem that downsamples, so small inputs need no change
    return SimpleCNN(num_classes, in_channels, width, dropout)
