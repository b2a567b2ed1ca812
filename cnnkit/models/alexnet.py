"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) in torchvision's single-tower layout.

``small_input=True`` (CIFAR-size 28-64 px images): the 11x11 stride-4 stem becomes a 3x3 stride-1
convolution and the first max-pool an ``Identity``; the other two pools and the adaptive 6x6
pool keep the classifier unchanged (a 32x32 input reaches it as 7x7).
"""
from __future__ import annotations

from .. import nn
from .registry import register_model


class AlexNet(nn.Module):
    """features (5 convs, 3 max-pools) -> AdaptiveAvgPool2d(6) -> classifier (dropout, 2 x fc 4096, fc)."""

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, dropout=0.5):
        super().__init__()
        if small_input:
            stem, first_pool = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1), nn.Identity()
        else:
            stem = nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2)
            first_pool = nn.MaxPool2d(kernel_size=3, stride=2)
        self.features = nn.Sequential(
            stem, nn.ReLU(inplace=True), first_pool,
            nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(p=dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )
        # torchvision keeps PyTorch's default layer initialisation for AlexNet.

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@register_model
def alexnet(num_classes=1000, in_channels=3, small_input=False, **options):
    """AlexNet: 61,100,840 parameters at 1000 classes (torchvision ``alexnet``)."""
    return AlexNet(num_classes, in_channels, small_input, **options)
