"""ShuffleNet v1 (Zhang et al., 2018) and v2 (Ma et al., 2018).

v2 follows torchvision's ``ShuffleNetV2`` (conv1/maxpool/stage2-4/conv5/fc); v1 follows the
authors' release (megvii-model ShuffleNet-Series: first_conv/maxpool/features/globalpool/classifier,
bias-free classifier). ``small_input=True`` (CIFAR-style): the stem convolution uses stride 1 and
the stem max-pool becomes an ``Identity``, so 32x32 inputs reach the last stage at 4x4 (/8
instead of /32); no parameter changes.
"""
from __future__ import annotations

from .. import nn
from ..nn.blocks.conv_norm import Conv2dNormActivation
from ..nn.blocks.shuffle import ShuffleV1Unit, ShuffleV2Unit
from ._init import is_norm
from .registry import register_model

# Output channels of stages 2-4 at width 1.0x for each group count (Table 1 of Zhang et al.).
V1_STAGE_CHANNELS = {1: (144, 288, 576), 2: (200, 400, 800), 3: (240, 480, 960), 4: (272, 544, 1088),
                     8: (384, 768, 1536)}
V2_STAGE_CHANNELS = {  # stages 2-4 and conv5 (Table 5 of Ma et al.); the stem has 24 channels
    0.5: (48, 96, 192, 1024), 1.0: (116, 232, 464, 1024), 1.5: (176, 352, 704, 1024), 2.0: (244, 488, 976, 2048),
}
STAGE_REPEATS = (4, 8, 4)


def _stem(in_channels, small_input):
    """3x3 conv (24 channels) + BN + ReLU, indexed 0/1/2, then the max-pool (or ``Identity``)."""
    conv = Conv2dNormActivation(in_channels, 24, kernel_size=3, stride=1 if small_input else 2, padding=1)
    return conv, nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)


class ShuffleNetV1(nn.Module):
    """Stem, 16 ShuffleNet units in three stages (4, 8, 4), global pool, bias-free fc; width 1.0x."""

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, groups=3):
        super().__init__()
        if groups not in V1_STAGE_CHANNELS:
            raise ValueError(f"ShuffleNetV1: groups must be one of {sorted(V1_STAGE_CHANNELS)}, got {groups}")
        self.first_conv, self.maxpool = _stem(in_channels, small_input)
        units, channels = [], 24
        for stage, (repeats, out_channels) in enumerate(zip(STAGE_REPEATS, V1_STAGE_CHANNELS[groups])):
            for index in range(repeats):
                units.append(ShuffleV1Unit(channels, out_channels, groups, stride=2 if index == 0 else 1,
                                           first_group=stage == 0 and index == 0))
                channels = out_channels
        self.features = nn.Sequential(*units)
        self.globalpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(channels, num_classes, bias=False))
        for name, module in self.named_modules():  # the authors' initialisation
            if isinstance(module, nn.Conv2d):
                std = 0.01 if name.startswith("first") else 1.0 / module.weight.shape[1]
                nn.init.normal_(module.weight, 0.0, std)
            elif is_norm(module):
                nn.init.ones_(module.weight)
                nn.init.constant_(module.bias, 0.0001)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)

    def forward(self, x):
        x = self.features(self.maxpool(self.first_conv(x)))
        return self.classifier(self.globalpool(x).flatten(1))


class ShuffleNetV2(nn.Module):
    """Stem, stages 2-4 of ShuffleNet v2 units (4, 8, 4), 1x1 conv5, global mean, fc (torchvision layout)."""

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, width_mult=1.0):
        super().__init__()
        if width_mult not in V2_STAGE_CHANNELS:
            raise ValueError(f"ShuffleNetV2: width_mult must be one of {sorted(V2_STAGE_CHANNELS)}, got {width_mult}")
        *stage_channels, last_channels = V2_STAGE_CHANNELS[width_mult]
        self.conv1, self.maxpool = _stem(in_channels, small_input)
        channels = 24
        for name, repeats, out_channels in zip(("stage2", "stage3", "stage4"), STAGE_REPEATS, stage_channels):
            units = [ShuffleV2Unit(channels, out_channels, 2)]
            units.extend(ShuffleV2Unit(out_channels, out_channels, 1) for _ in range(repeats - 1))
            setattr(self, name, nn.Sequential(*units))
            channels = out_channels
        self.conv5 = Conv2dNormActivation(channels, last_channels, kernel_size=1)
        self.fc = nn.Linear(last_channels, num_classes)
        # torchvision keeps PyTorch's default layer initialisation for ShuffleNetV2.

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean((2, 3)))


@register_model
def shufflenet_v1(num_classes=1000, in_channels=3, small_input=False, **options):
    """ShuffleNet v1 1.0x, g = 3 by default (``groups=``): 1,864,728 parameters at 1000 classes."""
    return ShuffleNetV1(num_classes, in_channels, small_input, **options)


@register_model
def shufflenet_v2_x0_5(num_classes=1000, in_channels=3, small_input=False, **options):
    """ShuffleNet v2 0.5x: 1,366,792 parameters at 1000 classes (torchvision ``shufflenet_v2_x0_5``)."""
    return ShuffleNetV2(num_classes, in_channels, small_input, width_mult=0.5, **options)


@register_model
def shufflenet_v2_x1_0(num_classes=1000, in_channels=3, small_input=False, **options):
    """ShuffleNet v2 1.0x: 2,278,604 parameters at 1000 classes (torchvision ``shufflenet_v2_x1_0``)."""
    return ShuffleNetV2(num_classes, in_channels, small_input, width_mult=1.0, **options)
