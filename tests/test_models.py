"""The model zoo: shapes, parameter counts against published references, one SGD step, torchvision layouts.

The torchvision layouts are rebuilt here with torch.nn (torchvision is not installable): their
state_dict keys must equal ours, weights must copy both ways strictly, and eval logits must agree.
"""
from collections import OrderedDict

import numpy as np
import pytest
from zoo_init import skip_init as _skip_init

import cnnkit
from cnnkit import functional as F
from cnnkit.analysis.shapes_only import shapes_only
from cnnkit.models import create, list_models

torch = pytest.importorskip("torch")
tnn = torch.nn


def _se_resnet_extra(stage_channels):
    """Parameters SE (r = 16) adds to a block of C output channels: fc1 C*C/16 + C/16, fc2 C/16*C + C."""
    return sum(2 * c * (c // 16) + c // 16 + c for c in stage_channels)


def _conv(in_channels, out_channels, kernel, bias=True):
    return in_channels * out_channels * kernel * kernel + (out_channels if bias else 0)


def _nin_params(num_classes):
    """The NiN of Dive into Deep Learning: blocks (in, out, kernel), each conv + two 1x1 convs, all with bias."""
    blocks = [(3, 96, 11), (96, 256, 5), (256, 384, 3), (384, num_classes, 3)]
    return sum(_conv(i, o, k) + 2 * _conv(o, o, 1) for i, o, k in blocks)


def _simple_cnn_params(width=32, num_classes=10):
    """The project's own simple_cnn: three bias-free 3x3 convs, each with a BatchNorm (2 params/channel), fc."""
    widths = (3, width, 2 * width, 4 * width)
    convs = sum(widths[i] * widths[i + 1] * 9 + 2 * widths[i + 1] for i in range(3))
    return convs + widths[3] * num_classes + num_classes


# Parameter counts, from outside this project: torchvision's published weight metadata ("num_params")
# where torchvision has the model (1000 classes, RGB), otherwise the reference named beside the entry.
REFERENCE_PARAMS = {
    # Dive into Deep Learning's LeNet-5 for 28x28 digits, 10 classes, 1 channel.
    "lenet5": 61_706,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248,
    "googlenet": 6_624_904,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnext50_32x4d": 25_028_904,
    "densenet121": 7_978_856,
    "mobilenet_v2": 3_504_872,
    "shufflenet_v2_x0_5": 1_366_792, "shufflenet_v2_x1_0": 2_278_604,
    # Keras applications MobileNet(alpha=1.0): 4,253,864 total of which 21,888 BN moving statistics.
    "mobilenet_v1": 4_253_864 - 21_888,
    # megvii-model/ShuffleNet-Series ShuffleNetV1(group=3, model_size="1.0x"), published as "1.9M":
    # stem 696 + stages 39,552 + 307,680 + 556,800 + bias-free fc 960 * 1000.
    "shufflenet_v1": 696 + 39_552 + 307_680 + 556_800 + 960 * 1000,
    # Hu et al. (2018): SE after each block's last BN, r = 16 (timm's seresnet50 has the same 28,088,024).
    "se_resnet18": 11_689_512 + _se_resnet_extra([64] * 2 + [128] * 2 + [256] * 2 + [512] * 2),
    "se_resnet50": 25_557_032 + _se_resnet_extra([256] * 3 + [512] * 4 + [1024] * 6 + [2048] * 3),
    "nin": _nin_params(1000),
    "simple_cnn": _simple_cnn_params(),  # not a published model: counted from its definition
}

# How each model is built for its reference count and native-size check; the rest use create's
# defaults (1000 classes, 3 x 224 x 224).
NATIVE = {"lenet5": ({"num_classes": 10, "in_channels": 1}, 28), "simple_cnn": ({"num_classes": 10}, 32)}


def _native(name):
    options, size = NATIVE.get(name, ({}, 224))
    return options, size


def _count(model):
    return sum(int(p.data.size) for p in model.parameters())


def _sgd_step(model, learning_rate=0.01):
    """p -= lr * g / max(1, ||g||): plain SGD with the gradient clipped to unit norm (a safe step size)."""
    grads = [param.grad for param in model.parameters()]
    assert all(grad is not None for grad in grads), "a parameter got no gradient"
    norm = float(np.sqrt(sum(float(np.dot(grad.ravel(), grad.ravel())) for grad in grads)))
    scale = learning_rate / max(1.0, norm)
    for param in model.parameters():
        param.data -= scale * param.grad


def _fast_random_init(model, seed=0):
    """Random weights drawn straight in float32 (std 1/sqrt(fan_in)), BN left at (1, 0): a cheap trainable start."""
    rng = np.random.default_rng(seed)
    for name, param in model.named_parameters():
        data = param.data
        if data.ndim > 1:
            rng.standard_normal(dtype=data.dtype, out=data)
            data *= 1.0 / np.sqrt(data[0].size)
        elif not name.endswith("weight"):  # biases (BN weights stay 1)
            data[...] = 0.01 * rng.standard_normal(data.shape)


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_params_keys_and_shapes(name, monkeypatch):
    """Parameters equal the reference; output shape at the native size and at the small_input sizes."""
    assert name in REFERENCE_PARAMS, f"{name} is registered but has no reference parameter count here"
    _skip_init(monkeypatch)
    options, size = _native(name)
    model = create(name, **options).eval()
    assert _count(model) == REFERENCE_PARAMS[name]
    channels = options.get("in_channels", 3)
    classes = options.get("num_classes", 1000)
    with cnnkit.no_grad(), shapes_only(model):  # the shapes compose at 224 without the 15 G multiply-adds
        assert model(cnnkit.zeros(1, channels, size, size)).shape == (1, classes)
    reference_keys = list(model.state_dict())
    del model

    # small_input: CIFAR/MNIST-size inputs keep the architecture and state_dict keys; in_channels=1.
    small = create(name, num_classes=10, in_channels=1, small_input=True).eval()
    assert list(small.state_dict()) == reference_keys
    with cnnkit.no_grad():
        assert small(cnnkit.randn(2, 1, 28, 28)).shape == (2, 10)
        if name != "lenet5":  # LeNet-5's classifier is sized for one image size (image_size=28)
            assert small(cnnkit.randn(1, 1, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_sgd_step_lowers_the_loss(name, monkeypatch):
    """One SGD step of the small-image variant (10 classes, 32x32 RGB; LeNet-5: 28x28 gray) lowers the loss."""
    _skip_init(monkeypatch)
    gray = name == "lenet5"
    model = create(name, num_classes=10, in_channels=1 if gray else 3, small_input=True)
    _fast_random_init(model)
    # Eval mode: dropout off and BN on its running statistics, so both losses are the same smooth function.
    # (With batch statistics, a BN over the 2 values of a 1x1 map is a sign function: steps could jump.)
    model.eval()
    images = cnnkit.randn(2, 1, 28, 28) if gray else cnnkit.randn(2, 3, 32, 32)
    labels = cnnkit.tensor(np.array([3, 7]))
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    with cnnkit.no_grad():
        _sgd_step(model)
        new_loss = F.cross_entropy(model(images), labels)
    assert new_loss.item() < loss.item()


def test_small_input_resnet18_is_the_cifar_resnet18():
    # The CIFAR ResNet-18 (3x3 stride-1 stem, no max-pool) with 10 classes has 11,173,962 parameters.
    model = create("resnet18", num_classes=10, small_input=True)
    assert _count(model) == 11_173_962
    assert model.conv1.weight.shape == (64, 3, 3, 3)


def test_in_channels_changes_only_the_first_convolution():
    rgb, gray = create("resnet18"), create("resnet18", in_channels=1)
    rgb_shapes = {k: v.shape for k, v in rgb.state_dict().items()}
    gray_shapes = {k: v.shape for k, v in gray.state_dict().items()}
    changed = [k for k in rgb_shapes if rgb_shapes[k] != gray_shapes[k]]
    assert changed == ["conv1.weight"] and gray_shapes["conv1.weight"] == (64, 1, 7, 7)


def test_googlenet_auxiliary_heads():
    # torchvision's GoogLeNet(aux_logits=True): 6,624,904 + two InceptionAux heads = 13,004,888 parameters.
    model = create("googlenet", aux_logits=True)
    assert _count(model) == 13_004_888
    outputs = model.train()(cnnkit.randn(2, 3, 32, 32))
    assert outputs._fields == ("logits", "aux_logits2", "aux_logits1")
    assert all(output.shape == (2, 1000) for output in outputs)
    with cnnkit.no_grad():
        assert model.eval()(cnnkit.randn(2, 3, 32, 32)).shape == (2, 1000)  # eval: logits only


def test_resnet_dilation_keeps_the_resolution():
    model = create("resnet50", num_classes=10, replace_stride_with_dilation=[False, True, True]).eval()
    assert model.layer4[1].conv2.dilation in (4, (4, 4))
    features = []
    model.layer4.register_forward_hook(lambda module, inputs, output: features.append(output.shape))
    with cnnkit.no_grad():
        assert model(cnnkit.randn(1, 3, 64, 64)).shape == (1, 10)
    assert features == [(1, 2048, 8, 8)]  # output stride 8 instead of 32


def test_unknown_options_are_rejected():
    with pytest.raises(TypeError):
        create("resnet18", no_such_option=1)
    with pytest.raises(ValueError, match="groups"):
        create("shufflenet_v1", groups=5)


def test_create_uses_the_models_own_defaults_unless_given():
    lenet = create("lenet5")
    assert sum(p.data.size for p in lenet.parameters()) == 61_706
    assert lenet.features[0].in_channels == 1 and lenet(cnnkit.randn(2, 1, 28, 28)).shape == (2, 10)
    assert lenet.model_config == {"num_classes": 10, "in_channels": 1}
    wide = create("lenet5", num_classes=6, in_channels=3)
    assert wide.features[0].in_channels == 3 and wide.model_config == {"num_classes": 6, "in_channels": 3}
    assert create("resnet18").model_config == {"num_classes": 1000, "in_channels": 3}


def test_the_models_command_counts_each_model_with_its_own_defaults(capsys):
    import json

    from cnnkit.cli import main

    assert main(["models", "lenet5", "--params", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["name"] == "lenet5" and row["params"] == 61_706 and row["description"].startswith("LeNet-5")
    assert main(["models", "lenet5", "--params", "--num-classes", "6", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["params"] == 61_706 - 4 * 85  # 4 fewer outputs of 84 + 1


def test_is_model_and_model_entrypoint_read_the_registry():
    from cnnkit.models import is_model, lenet5, model_entrypoint

    assert is_model("lenet5") and not is_model("lenet6")
    assert model_entrypoint("lenet5") is lenet5
    with pytest.raises(ValueError, match="unknown model 'resnet'.*resnet18"):
        model_entrypoint("resnet")
    with pytest.raises(ValueError, match="create: unknown model 'lenet6'"):
        create("lenet6")


# ---------------------------------------------------------------------- torchvision layouts in torch.nn
def _torch_cbr(in_channels, out_channels, kernel=3, stride=1, groups=1, activation=tnn.ReLU):
    """torchvision's Conv2dNormActivation: Sequential(conv (no bias), BN, activation)."""
    return tnn.Sequential(tnn.Conv2d(in_channels, out_channels, kernel, stride, (kernel - 1) // 2, groups=groups,
                                     bias=False), tnn.BatchNorm2d(out_channels), activation(inplace=True))


class TorchBasicBlock(tnn.Module):
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


class TorchBottleneck(tnn.Module):
    """torchvision's Bottleneck (stride on the 3x3), with ResNeXt's groups and width_per_group."""

    expansion = 4

    def __init__(self, inplanes, planes, stride=1, groups=1, base_width=64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = tnn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = tnn.BatchNorm2d(width)
        self.conv2 = tnn.Conv2d(width, width, 3, stride, 1, groups=groups, bias=False)
        self.bn2 = tnn.BatchNorm2d(width)
        self.conv3 = tnn.Conv2d(width, planes * 4, 1, bias=False)
        self.bn3 = tnn.BatchNorm2d(planes * 4)
        self.relu = tnn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or inplanes != planes * 4:
            self.downsample = tnn.Sequential(tnn.Conv2d(inplanes, planes * 4, 1, stride, bias=False),
                                             tnn.BatchNorm2d(planes * 4))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


TorchBasicBlock.expansion = 1


class TorchResNet(tnn.Module):
    """torchvision's ResNet: conv1/bn1/relu/maxpool/layer1-4/avgpool/fc."""

    def __init__(self, block, layers, groups=1, width_per_group=64, num_classes=1000):
        super().__init__()
        self.conv1 = tnn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = tnn.BatchNorm2d(64)
        self.relu = tnn.ReLU(inplace=True)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        options = {"groups": groups, "base_width": width_per_group} if block is TorchBottleneck else {}
        inplanes = 64
        for index, (planes, count) in enumerate(zip((64, 128, 256, 512), layers)):
            blocks = [block(inplanes, planes, 1 if index == 0 else 2, **options)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, **options) for _ in range(count - 1)]
            setattr(self, f"layer{index + 1}", tnn.Sequential(*blocks))
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.fc = tnn.Linear(512 * block.expansion, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


VGG_CONFIGS = {11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
               13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
               16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
               19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512,
                    "M"]}


class TorchVGG(tnn.Module):
    """torchvision's VGG: one flat features Sequential (cfg letters A/B/D/E), avgpool 7x7, classifier."""

    def __init__(self, depth, batch_norm, num_classes=1000):
        super().__init__()
        layers, channels = [], 3
        for v in VGG_CONFIGS[depth]:
            if v == "M":
                layers.append(tnn.MaxPool2d(2, 2))
            else:
                layers.append(tnn.Conv2d(channels, v, 3, padding=1))
                layers += [tnn.BatchNorm2d(v)] if batch_norm else []
                layers.append(tnn.ReLU(inplace=True))
                channels = v
        self.features = tnn.Sequential(*layers)
        self.avgpool = tnn.AdaptiveAvgPool2d((7, 7))
        self.classifier = tnn.Sequential(tnn.Linear(25088, 4096), tnn.ReLU(True), tnn.Dropout(),
                                         tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Dropout(),
                                         tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchAlexNet(tnn.Module):
    """torchvision's AlexNet (single-tower, 64-192-384-256-256)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = tnn.Sequential(
            tnn.Conv2d(3, 64, 11, 4, 2), tnn.ReLU(True), tnn.MaxPool2d(3, 2),
            tnn.Conv2d(64, 192, 5, padding=2), tnn.ReLU(True), tnn.MaxPool2d(3, 2),
            tnn.Conv2d(192, 384, 3, padding=1), tnn.ReLU(True), tnn.Conv2d(384, 256, 3, padding=1), tnn.ReLU(True),
            tnn.Conv2d(256, 256, 3, padding=1), tnn.ReLU(True), tnn.MaxPool2d(3, 2))
        self.avgpool = tnn.AdaptiveAvgPool2d((6, 6))
        self.classifier = tnn.Sequential(tnn.Dropout(), tnn.Linear(9216, 4096), tnn.ReLU(True), tnn.Dropout(),
                                         tnn.Linear(4096, 4096), tnn.ReLU(True), tnn.Linear(4096, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class TorchInvertedResidual(tnn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers = [_torch_cbr(inp, hidden, 1, activation=tnn.ReLU6)] if expand_ratio != 1 else []
        layers += [_torch_cbr(hidden, hidden, 3, stride, groups=hidden, activation=tnn.ReLU6),
                   tnn.Conv2d(hidden, oup, 1, 1, 0, bias=False), tnn.BatchNorm2d(oup)]
        self.conv = tnn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class TorchMobileNetV2(tnn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        features, channels = [_torch_cbr(3, 32, 3, 2, activation=tnn.ReLU6)], 32
        for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                           (6, 160, 3, 2), (6, 320, 1, 1)]:
            for i in range(n):
                features.append(TorchInvertedResidual(channels, c, s if i == 0 else 1, t))
                channels = c
        features.append(_torch_cbr(channels, 1280, 1, activation=tnn.ReLU6))
        self.features = tnn.Sequential(*features)
        self.classifier = tnn.Sequential(tnn.Dropout(0.2), tnn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x).mean((2, 3)))


class TorchDenseLayer(tnn.Module):
    def __init__(self, num_input_features, growth_rate=32, bn_size=4):
        super().__init__()
        self.norm1 = tnn.BatchNorm2d(num_input_features)
        self.relu1 = tnn.ReLU(inplace=True)
        self.conv1 = tnn.Conv2d(num_input_features, bn_size * growth_rate, 1, 1, bias=False)
        self.norm2 = tnn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = tnn.ReLU(inplace=True)
        self.conv2 = tnn.Conv2d(bn_size * growth_rate, growth_rate, 3, 1, 1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class TorchDenseBlock(tnn.ModuleDict):
    def __init__(self, num_layers, num_input_features, growth_rate=32):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", TorchDenseLayer(num_input_features + i * growth_rate))

    def forward(self, x):
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class TorchTransition(tnn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = tnn.BatchNorm2d(num_input_features)
        self.relu = tnn.ReLU(inplace=True)
        self.conv = tnn.Conv2d(num_input_features, num_output_features, 1, 1, bias=False)
        self.pool = tnn.AvgPool2d(2, 2)


class TorchDenseNet121(tnn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = tnn.Sequential(OrderedDict([
            ("conv0", tnn.Conv2d(3, 64, 7, 2, 3, bias=False)), ("norm0", tnn.BatchNorm2d(64)),
            ("relu0", tnn.ReLU(inplace=True)), ("pool0", tnn.MaxPool2d(3, 2, 1))]))
        channels = 64
        for i, num_layers in enumerate((6, 12, 24, 16)):
            self.features.add_module(f"denseblock{i + 1}", TorchDenseBlock(num_layers, channels))
            channels += num_layers * 32
            if i != 3:
                self.features.add_module(f"transition{i + 1}", TorchTransition(channels, channels // 2))
                channels //= 2
        self.features.add_module("norm5", tnn.BatchNorm2d(channels))
        self.classifier = tnn.Linear(channels, num_classes)

    def forward(self, x):
        out = torch.relu(self.features(x))
        return self.classifier(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(out, 1), 1))


class TorchShuffleUnit(tnn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        half = oup // 2
        self.branch1 = tnn.Sequential()
        if stride > 1:
            self.branch1 = tnn.Sequential(
                tnn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False), tnn.BatchNorm2d(inp),
                tnn.Conv2d(inp, half, 1, 1, 0, bias=False), tnn.BatchNorm2d(half), tnn.ReLU(inplace=True))
        self.branch2 = tnn.Sequential(
            tnn.Conv2d(inp if stride > 1 else half, half, 1, 1, 0, bias=False), tnn.BatchNorm2d(half),
            tnn.ReLU(inplace=True), tnn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False),
            tnn.BatchNorm2d(half), tnn.Conv2d(half, half, 1, 1, 0, bias=False), tnn.BatchNorm2d(half),
            tnn.ReLU(inplace=True))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        batch, channels, height, width = out.shape
        return out.view(batch, 2, channels // 2, height, width).transpose(1, 2).reshape(batch, -1, height, width)


class TorchShuffleNetV2(tnn.Module):
    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = _torch_cbr(3, 24, 3, 2)
        self.maxpool = tnn.MaxPool2d(3, 2, 1)
        channels = 24
        for name, repeats, out in zip(("stage2", "stage3", "stage4"), (4, 8, 4), (116, 232, 464)):
            setattr(self, name, tnn.Sequential(TorchShuffleUnit(channels, out, 2),
                                               *[TorchShuffleUnit(out, out, 1) for _ in range(repeats - 1)]))
            channels = out
        self.conv5 = _torch_cbr(channels, 1024, 1)
        self.fc = tnn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.stage4(self.stage3(self.stage2(self.maxpool(self.conv1(x)))))
        return self.fc(self.conv5(x).mean((2, 3)))


class TorchBasicConv2d(tnn.Module):
    def __init__(self, in_channels, out_channels, **options):
        super().__init__()
        self.conv = tnn.Conv2d(in_channels, out_channels, bias=False, **options)
        self.bn = tnn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        return torch.relu(self.bn(self.conv(x)))


class TorchInception(tnn.Module):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = TorchBasicConv2d(in_channels, ch1x1, kernel_size=1)
        self.branch2 = tnn.Sequential(TorchBasicConv2d(in_channels, ch3x3red, kernel_size=1),
                                      TorchBasicConv2d(ch3x3red, ch3x3, kernel_size=3, padding=1))
        self.branch3 = tnn.Sequential(TorchBasicConv2d(in_channels, ch5x5red, kernel_size=1),
                                      TorchBasicConv2d(ch5x5red, ch5x5, kernel_size=3, padding=1))
        self.branch4 = tnn.Sequential(tnn.MaxPool2d(3, stride=1, padding=1, ceil_mode=True),
                                      TorchBasicConv2d(in_channels, pool_proj, kernel_size=1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class TorchGoogLeNet(tnn.Module):
    """torchvision's GoogLeNet(aux_logits=False, transform_input=False)."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.conv1 = TorchBasicConv2d(3, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = TorchBasicConv2d(64, 64, kernel_size=1)
        self.conv3 = TorchBasicConv2d(64, 192, kernel_size=3, padding=1)
        self.maxpool2 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception3a = TorchInception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = TorchInception(256, 128, 128, 192, 32, 96, 64)
        self.maxpool3 = tnn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = TorchInception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = TorchInception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = TorchInception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = TorchInception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = TorchInception(528, 256, 160, 320, 32, 128, 128)
        self.maxpool4 = tnn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.inception5a = TorchInception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = TorchInception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = None
        self.aux2 = None
        self.avgpool = tnn.AdaptiveAvgPool2d((1, 1))
        self.dropout = tnn.Dropout(0.2)
        self.fc = tnn.Linear(1024, num_classes)

    def forward(self, x):
        for name in ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                     "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                     "inception5a", "inception5b", "avgpool"):
            x = getattr(self, name)(x)
        return self.fc(self.dropout(torch.flatten(x, 1)))


TORCHVISION_LAYOUTS = {  # name: (builder of the torch.nn rebuild, test image size)
    "alexnet": (TorchAlexNet, 64), "resnet18": (lambda: TorchResNet(TorchBasicBlock, [2, 2, 2, 2]), 64),
    "resnext50_32x4d": (lambda: TorchResNet(TorchBottleneck, [3, 4, 6, 3], groups=32, width_per_group=4), 32),
    "vgg11_bn": (lambda: TorchVGG(11, True), 32), "mobilenet_v2": (TorchMobileNetV2, 32),
    "densenet121": (TorchDenseNet121, 32), "shufflenet_v2_x1_0": (TorchShuffleNetV2, 32),
    "googlenet": (TorchGoogLeNet, 32),
}
# Layouts compared by keys and shapes only (built on torch's "meta" device: no memory, no init).
TORCHVISION_KEY_LAYOUTS = {
    **{f"vgg{depth}{suffix}": (lambda depth=depth, bn=bool(suffix): TorchVGG(depth, bn))
       for depth in VGG_CONFIGS for suffix in ("", "_bn")},
    "resnet34": lambda: TorchResNet(TorchBasicBlock, [3, 4, 6, 3]),
    "resnet50": lambda: TorchResNet(TorchBottleneck, [3, 4, 6, 3]),
    "resnet101": lambda: TorchResNet(TorchBottleneck, [3, 4, 23, 3]),
}


def _randomise_batch_norm(module):
    # Non-trivial running statistics and affine parameters, so eval mode is really exercised.
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, tnn.BatchNorm2d):
                size = layer.num_features
                layer.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                layer.running_var.copy_(torch.rand(size, generator=generator) * 0.5 + 0.75)
                layer.weight.copy_(torch.rand(size, generator=generator) * 0.5 + 0.75)
                layer.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                layer.num_batches_tracked.fill_(7)


@pytest.mark.parametrize("name", sorted(TORCHVISION_LAYOUTS))
def test_torchvision_layout(name, monkeypatch):
    """Same keys (in order) and shapes as torchvision; weights load strictly both ways; eval logits agree."""
    reference_class, size = TORCHVISION_LAYOUTS[name]
    torch.manual_seed(0)
    reference = reference_class().eval()
    _randomise_batch_norm(reference)
    _skip_init(monkeypatch)  # our weights are replaced by torch's below
    ours = create(name).eval()
    theirs_state = reference.state_dict()
    ours_state = ours.state_dict()
    assert list(ours_state) == list(theirs_state)
    assert all(tuple(ours_state[k].shape) == tuple(v.shape) for k, v in theirs_state.items())

    ours.load_state_dict(theirs_state, strict=True)
    images = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32))
    with torch.no_grad():
        expected = reference(images).numpy()
    with cnnkit.no_grad():
        got = ours(cnnkit.tensor(images.numpy())).numpy()
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale

    # And back: our state_dict loads strictly into the torchvision layout and gives the same function.
    with torch.no_grad():
        for value in reference.state_dict().values():
            value.zero_()
    reference.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in ours.state_dict().items()},
                              strict=True)
    with torch.no_grad():
        np.testing.assert_array_equal(reference(images).numpy(), expected)


@pytest.mark.parametrize("name", sorted(TORCHVISION_KEY_LAYOUTS))
def test_torchvision_keys_and_shapes(name, monkeypatch):
    with torch.device("meta"):
        reference = TORCHVISION_KEY_LAYOUTS[name]()
    _skip_init(monkeypatch)
    ours = create(name).state_dict()
    theirs = reference.state_dict()
    assert list(ours) == list(theirs)
    assert all(tuple(ours[key].shape) == tuple(value.shape) for key, value in theirs.items())
