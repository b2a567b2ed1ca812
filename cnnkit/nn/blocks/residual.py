"""Residual blocks of ResNet, with ResNeXt's grouped width and optional squeeze-and-excitation."""
from __future__ import annotations

from .. import BatchNorm2d, Conv2d, ReLU
from ..containers import Sequential
from ..module import Module
from .se import SqueezeExcitation

__all__ = ["BasicBlock", "Bottleneck"]


def conv3x3(in_planes, out_planes, stride=1, groups=1, dilation=1):
    """Bias-free 3x3 convolution padded by ``dilation`` (size kept at stride 1)."""
    return Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=dilation, groups=groups, bias=False,
                  dilation=dilation)


def conv1x1(in_planes, out_planes, stride=1):
    """Bias-free 1x1 convolution."""
    return Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def _projection(inplanes, outplanes, stride, norm_layer):
    # The shortcut needs a projection whenever the residual changes the shape (He et al., option B).
    if stride == 1 and inplanes == outplanes:
        return None
    return Sequential(conv1x1(inplanes, outplanes, stride), norm_layer(outplanes))


def _squeeze_excitation(channels, se, se_reduction):
    return SqueezeExcitation(channels, max(1, channels // se_reduction)) if se else None


class _Residual(Module):
    """relu(residual(x) [* SE] + shortcut(x)); subclasses build ``residual``'s layers."""

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.residual(x)
        if self.se is not None:
            out = self.se(out)
        return self.relu(out + identity)


class BasicBlock(_Residual):
    """relu(bn2(conv3x3(relu(bn1(conv3x3(x))))) + downsample(x)); ``expansion = 1``.

    He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition" (CVPR 2016).
    ``downsample`` (conv1x1 + BN) is built when the stride or the channel count changes, under
    torchvision's names. ``se=True`` rescales the residual with squeeze-and-excitation before the
    addition (Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018), r = ``se_reduction``.
    """

    expansion = 1
    fusable_pairs = (("bn1", "relu"),)  # bn1's output feeds only relu (see nn.utils.fuse)

    def __init__(self, inplanes, planes, stride=1, groups=1, base_width=64, dilation=1, norm_layer=BatchNorm2d,
                 se=False, se_reduction=16):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError(f"BasicBlock: groups={groups}, base_width={base_width} are not supported; "
                             "grouped (ResNeXt) widths need Bottleneck")
        if dilation > 1:
            raise ValueError(f"BasicBlock: dilation={dilation} is not supported; use Bottleneck for dilated stages")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.se = _squeeze_excitation(planes, se, se_reduction)
        self.downsample = _projection(inplanes, planes, stride, norm_layer)
        self.stride = stride

    def residual(self, x):
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_Residual):
    """relu(bn3(conv1x1(relu(bn2(conv3x3(relu(bn1(conv1x1(x)))))))) + downsample(x)); ``expansion = 4``.

    He et al. (2016), with the stride on the 3x3 convolution (torchvision's "ResNet v1.5").
    ``groups`` and ``base_width`` give ResNeXt's grouped bottleneck of width
    ``int(planes * base_width / 64) * groups`` (Xie et al., "Aggregated Residual Transformations
    for Deep Neural Networks", CVPR 2017); ``se=True`` adds squeeze-and-excitation (Hu et al., 2018).
    """

    expansion = 4
    fusable_pairs = (("bn1", "relu"), ("bn2", "relu"))  # each feeds only relu (see nn.utils.fuse)

    def __init__(self, inplanes, planes, stride=1, groups=1, base_width=64, dilation=1, norm_layer=BatchNorm2d,
                 se=False, se_reduction=16):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        outplanes = planes * self.expansion
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, outplanes)
        self.bn3 = norm_layer(outplanes)
        self.relu = ReLU(inplace=True)
        self.se = _squeeze_excitation(outplanes, se, se_reduction)
        self.downsample = _projection(inplanes, outplanes, stride, norm_layer)
        self.stride = stride

    def residual(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))
