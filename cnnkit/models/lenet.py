"""LeNet-5 (LeCun et al., 1998) in the layout of Dive into Deep Learning: 28x28 input, 61,706 parameters."""
from __future__ import annotations

from .. import nn
from .registry import register_model

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


class LeNet5(nn.Module):
    """conv(6, 5x5, pad 2)-act-pool-conv(16, 5x5)-act-pool-flatten-fc 120-act-fc 84-act-fc ``num_classes``."""

    def __init__(self, num_classes=10, in_channels=1, activation="relu", pool="max", image_size=28):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"lenet5: activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        if pool not in _POOLS:
            raise ValueError(f"lenet5: pool must be one of {sorted(_POOLS)}, got {pool!r}")
        # 28 -> conv(pad 2) 28 -> pool 14 -> conv 10 -> pool 5: 16*5*5 = 400 features at the classic size.
        side = (image_size // 2 - 4) // 2
        if side < 1:
            raise ValueError(f"lenet5: image_size {image_size} is too small; LeNet-5 needs at least 12x12 inputs "
                             "(it was designed for 28x28 digits)")
        act, pool_layer = _ACTIVATIONS[activation], _POOLS[pool]
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5, padding=2), act(), pool_layer(kernel_size=2, stride=2),
            nn.Conv2d(6, 16, kernel_size=5), act(), pool_layer(kernel_size=2, stride=2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * side * side, 120), act(),
            nn.Linear(120, 84), act(),
            nn.Linear(84, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model
def lenet5(num_classes=10, in_channels=1, activation="relu", pool="max", image_size=28, small_input=False):
    """LeNet-5 for ``image_size`` x ``image_size`` inputs (28 for MNIST); ReLU and max-pooling train fastest.

    ``activation='sigmoid', pool='avg'`` gives the historical network. ``small_input`` is accepted and
    ignored: LeNet-5 is built for small images already.
    """
    del small_input
    return LeNet5(num_classes, in_channels, activation, pool, image_size)
