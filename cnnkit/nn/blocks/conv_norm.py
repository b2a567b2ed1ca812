"""``Conv2dNormActivation``: convolution, normalisation and activation as one indexed Sequential."""
from __future__ import annotations

from .. import BatchNorm2d, Conv2d, ReLU
from ..containers import Sequential

__all__ = ["Conv2dNormActivation"]


class Conv2dNormActivation(Sequential):
    """act(norm(conv(x))) registered as ``0``, ``1``, ``2`` (torchvision.ops.Conv2dNormActivation).

    ``padding`` defaults to ``(kernel_size - 1) // 2 * dilation`` so stride 1 keeps the size;
    the convolution has a bias only when there is no normalisation layer (``norm_layer=None``).
    The building block of MobileNet (Howard et al., 2017; Sandler et al., 2018).
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=BatchNorm2d, activation_layer=ReLU, dilation=1, bias=None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers = [Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, dilation=dilation,
                         groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels
