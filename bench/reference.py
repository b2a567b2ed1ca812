"""torch.nn rebuilds of the cnnkit zoo models the bench times (torchvision is not installable beside torch 2.13).

Each mirrors ``cnnkit.models.create(name, ...)`` layer for layer under the same state_dict keys, so
cnnkit's initial weights load strictly into it (``matched_pair`` checks keys, shapes and counts).
"""
from __future__ import annotations

import numpy as np


def _modules(torch):
    tnn = torch.nn

    def conv_bn_act(in_channels, out_channels, kernel=3, stride=1, groups=1, activation=tnn.ReLU):
        """torchvision's Conv2dNormActivation: Sequential(conv (no bias), BN, activation)."""
        return tnn.Sequential(tnn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups,
                                         bias=False), tnn.BatchNorm2d(out_channels), activation(inplace=True))

    class BasicBlock(tnn.Module):
        def __init__(self, inplanes, planes, stride=1):
            super().__init__()
            self.conv1 = tnn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = tnn.BatchNorm2d(planes)
            self.relu = tnn.ReLU(inplace=True)
            self.conv2 = tnn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = tnn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                 tnn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x))))) + identity)

    class ResNet18(tnn.Module):
        """torchvision's resnet18; ``small_input``: 3x3 stride-1 stem and no stem max-pool (cnnkit's CIFAR variant)."""

        def __init__(self, num_classes=1000, small_input=False):
            super().__init__()
            if small_input:
                self.conv1 = tnn.Conv2d(3, 64, 3, 1, 1, bias=False)
            else:
                self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = tnn.BatchNorm2d(64)
            self.relu = tnn.ReLU(inplace=True)
            self.maxpool = tnn.Identity() if small_input else tnn.MaxPool2d(3, 2, 1)
            inplanes = 64
            for index, planes in enumerate((64, 128, 256, 512)):
                stride = 1 if index == 0 else 2
                setattr(self, f"layer{index + 1}", tnn.Sequential(BasicBlock(inplanes, planes, stride),
                                                                  BasicBlock(planes, planes)))
                inplanes = planes
            self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
            self.fc = tnn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(torch.flatten(self.avgpool(x), 1))

    class InvertedResidual(tnn.Module):
        def __init__(self, inp, oup, stride, expand_ratio):
            super().__init__()
            hidden = int(round(inp * expand_ratio))
            self.use_res_connect = stride == 1 and inp == oup
            layers = [conv_bn_act(inp, hidden, 1, activation=tnn.ReLU6)] if expand_ratio != 1 else []
            layers += [conv_bn_act(hidden, hidden, 3, stride, groups=hidden, activation=tnn.ReLU6),
                       tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False), tnn.BatchNorm2d(oup)]
            self.conv = tnn.Sequential(*layers)

        def forward(self, x):
            return x + self.conv(x) if self.use_res_connect else self.conv(x)

    class MobileNetV2(tnn.Module):
        """torchvision's mobilenet_v2; ``small_input``: stride 1 in the stem and in the first strided stage."""

        def __init__(self, num_classes=1000, small_input=False):
            super().__init__()
            features, channels = [conv_bn_act(3, 32, 3, 1 if small_input else 2, activation=tnn.ReLU6)], 32
            first_stride_done = False
            for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                               (6, 160, 3, 2), (6, 320, 1, 1)]:
                if small_input and s == 2 and not first_stride_done:
                    s, first_stride_done = 1, True
                for i in range(n):
                    features.append(InvertedResidual(channels, c, s if i == 0 else 1, t))
                    channels = c
            features.append(conv_bn_act(channels, 1280, 1, activation=tnn.ReLU6))
            self.features = tnn.Sequential(*features)
            self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

        def forward(self, x):
            return self.classifier(self.features(x).mean((2, 3)))

    class LeNet5(tnn.Module):
        """cnnkit's lenet5 (28x28): conv 6 5x5 pad 2, conv 16 5x5, fc 120, 84, classes; its activation and pool."""

        def __init__(self, num_classes=10, activation="relu", pool="max"):
            super().__init__()
            act = {"relu": tnn.ReLU, "sigmoid": tnn.Sigmoid, "tanh": tnn.Tanh}[activation]
            pooling = {"max": tnn.MaxPool2d, "avg": tnn.AvgPool2d}[pool]
            self.features = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), act(), pooling(2, 2),
                                           tnn.Conv2d(6, 16, 5), act(), pooling(2, 2))
            self.classifier = tnn.Sequential(tnn.Flatten(), tnn.Linear(400, 120), act(), tnn.Linear(120, 84),
                                             act(), tnn.Linear(84, num_classes))

        def forward(self, x):
            return self.classifier(self.features(x))

    return {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2, "lenet5": LeNet5}


# name -> (options for cnnkit.models.create, options for the torch class)
CONFIGS = {
    "lenet5": ({"num_classes": 10, "in_channels": 1}, {"num_classes": 10}),
    # LeNet-5 as LeCun built it (and as the d2l course teaches it): sigmoid activations, average pooling
    "lenet5_historical": ({"num_classes": 10, "in_channels": 1, "activation": "sigmoid", "pool": "avg"},
                          {"num_classes": 10, "activation": "sigmoid", "pool": "avg"}),
    "resnet18_cifar": ({"num_classes": 10, "small_input": True}, {"num_classes": 10, "small_input": True}),
    "mobilenet_v2_cifar": ({"num_classes": 10, "small_input": True}, {"num_classes": 10, "small_input": True}),
    "resnet18": ({"num_classes": 1000}, {"num_classes": 1000}),
    "mobilenet_v2": ({"num_classes": 1000}, {"num_classes": 1000}),
}


def _zoo_name(config):
    return config.removesuffix("_cifar").removesuffix("_historical")


def cnnkit_model(config):
    """The cnnkit zoo model of ``config`` (a key of CONFIGS)."""
    from cnnkit.models import create

    return create(_zoo_name(config), **CONFIGS[config][0])


def torch_model(torch, config):
    """The torch.nn rebuild of ``config``, initialised as torch would (weights are replaced by matched_pair)."""
    return _modules(torch)[_zoo_name(config)](**CONFIGS[config][1])


def count_parameters(params):
    """Total number of scalars in an iterable of parameters (cnnkit or torch)."""
    total = 0
    for param in params:
        total += int(param.numel())
    return total


def matched_pair(torch, config):
    """(cnnkit model, torch model) with identical weights; raises if the layouts or parameter counts differ."""
    ours = cnnkit_model(config)
    theirs = torch_model(torch, config)
    ours_count = count_parameters(ours.parameters())
    theirs_count = count_parameters(theirs.parameters())
    if ours_count != theirs_count:
        raise RuntimeError(f"{config}: cnnkit has {ours_count:,} parameters, the torch reference {theirs_count:,}; "
                           "the reference in bench/reference.py no longer matches the zoo")
    state = {key: torch.from_numpy(np.array(value)) for key, value in ours.state_dict().items()}
    theirs.load_state_dict(state, strict=True)  # same keys and shapes, or a clear error from torch
    return ours, theirs, ours_count
