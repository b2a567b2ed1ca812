"""ResNet (He et al., 2016), ResNeXt (Xie et al., 2017) and SE-ResNet (Hu et al., 2018): one class.

Layout and names as torchvision's ``ResNet``: conv1/bn1/relu/maxpool/layer1..4/avgpool/fc.
``small_input=True`` (CIFAR-style, He et al. section 4.2): ``conv1`` becomes 3x3 stride 1
padding 1 and the stem max-pool an ``Identity``, so 32x32 inputs keep 32x32 in ``layer1`` and
reach ``layer4`` at 4x4; the four stages are unchanged.
"""
from __future__ import annotations

from .. import nn
from ..nn.blocks.residual import BasicBlock, Bottleneck
from ._init import is_norm
from .registry import register_model

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class ResNet(nn.Module):
    """Stem + four stages of residual blocks (64, 128, 256, 512 planes) + global pool + fc.

    ``block`` is ``BasicBlock``/``Bottleneck`` (or ``'basic'``/``'bottleneck'``), ``layers`` the
    blocks per stage. ``groups``/``width_per_group`` give ResNeXt; ``se=True`` adds
    squeeze-and-excitation with reduction ``se_reduction``; ``zero_init_residual`` zeroes each
    block's last BN weight (Goyal et al., 2017); ``replace_stride_with_dilation`` (3 bools)
    dilates stages 2-4 instead of striding (Bottleneck only).
    """

    fusable_pairs = (("bn1", "relu"),)  # the stem's bn1 feeds only relu (see nn.utils.fuse)

    def __init__(self, block, layers, num_classes=1000, in_channels=3, small_input=False, zero_init_residual=False,
                 groups=1, width_per_group=64, replace_stride_with_dilation=None, se=False, se_reduction=16):
        super().__init__()
        block = BLOCKS[block] if isinstance(block, str) else block
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give the blocks of 4 stages, got {list(layers)}")
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = [False, False, False]
        if len(replace_stride_with_dilation) != 3:
            raise ValueError("ResNet: replace_stride_with_dilation should be None or a 3-element tuple, "
                             f"got {replace_stride_with_dilation}")
        self.inplanes = 64
        self.dilation = 1
        self.groups = groups
        self.base_width = width_per_group
        self.block_options = {"se": se, "se_reduction": se_reduction}
        if small_input:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2, dilate=replace_stride_with_dilation[0])
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2, dilate=replace_stride_with_dilation[1])
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2, dilate=replace_stride_with_dilation[2])
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)
        for module in self.modules():  # torchvision's init; fc keeps PyTorch's default
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif is_norm(module):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if zero_init_residual:
            for module in self.modules():
                if isinstance(module, Bottleneck):
                    nn.init.zeros_(module.bn3.weight)
                elif isinstance(module, BasicBlock):
                    nn.init.zeros_(module.bn2.weight)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        layers = [block(self.inplanes, planes, stride, self.groups, self.base_width, previous_dilation,
                        **self.block_options)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, groups=self.groups, base_width=self.base_width,
                                dilation=self.dilation, **self.block_options))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def _resnet(block, layers, num_classes, in_channels, small_input, options):
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, small_input=small_input, **options)


@register_model
def resnet18(num_classes=1000, in_channels=3, small_input=False, **options):
    """ResNet-18, BasicBlock x [2, 2, 2, 2]: 11,689,512 parameters at 1000 classes."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, small_input, options)


@register_model
def resnet34(num_classes=1000, in_channels=3, small_input=False, **options):
    """ResNet-34, BasicBlock x [3, 4, 6, 3]: 21,797,672 parameters at 1000 classes."""
    return _resnet(BasicBlock, [3, 4, 6, 3], num_classes, in_channels, small_input, options)


@register_model
def resnet50(num_classes=1000, in_channels=3, small_input=False, **options):
    """ResNet-50, Bottleneck x [3, 4, 6, 3]: 25,557,032 parameters at 1000 classes."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, options)


@register_model
def resnet101(num_classes=1000, in_channels=3, small_input=False, **options):
    """ResNet-101, Bottleneck x [3, 4, 23, 3]: 44,549,160 parameters at 1000 classes."""
    return _resnet(Bottleneck, [3, 4, 23, 3], num_classes, in_channels, small_input, options)


@register_model
def resnext50_32x4d(num_classes=1000, in_channels=3, small_input=False, **options):
    """ResNeXt-50 32x4d, grouped Bottleneck x [3, 4, 6, 3]: 25,028,904 parameters at 1000 classes."""
    options = {"groups": 32, "width_per_group": 4, **options}
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, options)


@register_model
def se_resnet18(num_classes=1000, in_channels=3, small_input=False, **options):
    """SE-ResNet-18: ResNet-18 with squeeze-and-excitation (r = 16) in every block."""
    return _resnet(BasicBlock, [2, 2, 2, 2], num_classes, in_channels, small_input, {"se": True, **options})


@register_model
def se_resnet50(num_classes=1000, in_channels=3, small_input=False, **options):
    """SE-ResNet-50: ResNet-50 with squeeze-and-excitation (r = 16): 28,088,024 parameters at 1000 classes."""
    return _resnet(Bottleneck, [3, 4, 6, 3], num_classes, in_channels, small_input, {"se": True, **options})
