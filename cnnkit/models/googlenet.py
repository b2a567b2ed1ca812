"""GoogLeNet / Inception v1 (Szegedy et al., 2015) in torchvision's layout and names.

``small_input=True``: ``conv1`` becomes a 3x3 stride-1 convolution and ``maxpool1`` an ``Identity``,
so a 32x32 input reaches the Inception-3 blocks at 16x16 (ImageNet: 28x28) and the final
pool at 4x4; every other layer is unchanged.
"""
from __future__ import annotations

from collections import namedtuple

from .. import nn
from ..autograd import cat
from ..nn.blocks.inception import BasicConv2d, Inception, InceptionAux
from .registry import register_model

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux_logits2", "aux_logits1"])

# Per block: in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj (Table 1 of the paper).
_INCEPTION = {
    "inception3a": (192, 64, 96, 128, 16, 32, 32), "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64), "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64), "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128), "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


def _inception(name):
    # torchvision's 3x3 (not 5x5) "5x5" branch: its parameter count and checkpoints depend on it.
    return Inception(*_INCEPTION[name], branch3_kernel_size=3)


class GoogLeNet(nn.Module):
    """Stem, nine Inception blocks with max-pools between stages, global pool, dropout 0.2, fc.

    ``aux_logits=True`` adds the two auxiliary classifiers (``aux1`` after 4a, ``aux2`` after
    4d); in training mode the model then returns ``GoogLeNetOutputs(logits, aux2, aux1)``.
    ``transform_input=True`` maps ImageNet-normalised inputs to the (x - 0.5) / 0.5 scale the
    ported TensorFlow weights expect.
    """

    def __init__(self, num_classes=1000, in_channels=3, small_input=False, aux_logits=False, transform_input=False,
                 dropout=0.2, dropout_aux=0.7):
        super().__init__()
        if transform_input and in_channels != 3:
            raise ValueError(f"GoogLeNet: transform_input re-normalises RGB inputs and needs in_channels=3, "
                             f"got {in_channels}")
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        if small_input:
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=3, stride=1, padding=1)
            self.maxpool1 = nn.Identity()
        else:
            self.conv1 = BasicConv2d(in_channels, 64, kernel_size=7, stride=2, padding=3)
            self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = BasicConv2d(64, 64, kernel_size=1)
        self.conv3 = BasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = _inception("inception3a")
        self.inception3b = _inception("inception3b")
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = _inception("inception4a")
        self.inception4b = _inception("inception4b")
        self.inception4c = _inception("inception4c")
        self.inception4d = _inception("inception4d")
        self.inception4e = _inception("inception4e")
        self.maxpool4 = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = _inception("inception5a")
        self.inception5b = _inception("inception5b")
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, dropout=dropout_aux)
            self.aux2 = InceptionAux(528, num_classes, dropout=dropout_aux)
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(1024, num_classes)
        for module in self.modules():  # torchvision: truncated N(0, 0.01^2) within +-2 for convs and linears
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.trunc_normal_(module.weight, mean=0.0, std=0.01, a=-2, b=2)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def _transform_input(self, x):
        if not self.transform_input:
            return x
        channels = [x[:, index:index + 1] * (std / 0.5) + (mean - 0.5) / 0.5
                    for index, (mean, std) in enumerate(((0.485, 0.229), (0.456, 0.224), (0.406, 0.225)))]
        return cat(channels, 1)

    def forward(self, x):
        x = self._transform_input(x)
        x = self.maxpool2(self.conv3(self.conv2(self.maxpool1(self.conv1(x)))))
        x = self.maxpool3(self.inception3b(self.inception3a(x)))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.maxpool4(self.inception4e(x))
        x = self.inception5b(self.inception5a(x))
        logits = self.fc(self.dropout(self.avgpool(x).flatten(1)))
        if self.training and self.aux_logits:
            return GoogLeNetOutputs(logits, aux2, aux1)
        return logits


@register_model
def googlenet(num_classes=1000, in_channels=3, small_input=False, **options):
    """GoogLeNet: 6,624,904 parameters at 1000 classes without the auxiliary heads (torchvision ``googlenet``)."""
    return GoogLeNet(num_classes, in_channels, small_input, **options)
