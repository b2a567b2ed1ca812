"""The VGG block: 3x3 convolutions (optionally batch-normalised) and a 2x2 max-pool."""
from __future__ import annotations

from .. import BatchNorm2d, Conv2d, Identity, MaxPool2d, ReLU
from ..containers import Sequential

__all__ = ["VGGBlock"]


class VGGBlock(Sequential):
    """``num_convs`` x [conv3x3(pad 1) -> (BN) -> ReLU], then MaxPool2d(2, 2) halving the size.

    Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
    (ICLR 2015). Layers are indexed as in torchvision's ``VGG.features`` so a model can splice the
    children of consecutive blocks into one flat ``features`` Sequential. ``pool=False`` puts an
    ``Identity`` in the pool's slot (same indices, no down-sampling).
    """

    def __init__(self, in_channels, out_channels, num_convs, batch_norm=False, pool=True):
        if num_convs < 1:
            raise ValueError(f"VGGBlock: num_convs must be >= 1, got {num_convs}")
        layers = []
        for index in range(num_convs):
            layers.append(Conv2d(in_channels if index == 0 else out_channels, out_channels, kernel_size=3, padding=1))
            if batch_norm:
                layers.append(BatchNorm2d(out_channels))
            layers.append(ReLU(inplace=True))
        layers.append(MaxPool2d(kernel_size=2, stride=2) if pool else Identity())
        super().__init__(*layers)
