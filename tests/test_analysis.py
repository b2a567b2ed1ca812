"""cnnkit.analysis: output sizes, receptive fields (vs gradient support), MACs, summary, FC-to-conv, CLI."""
import json
import math

import numpy as np
import pytest

import cnnkit
import cnnkit.nn as nn
from cnnkit import analysis
from cnnkit.cli.main import main


# ---------------------------------------------------------------------------------------------- output size
@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [
    (10, 3, 2, 0, 1), (224, 7, 2, 3, 1), (224, 3, 1, 1, 1), (32, 5, 1, 0, 1), (13, 3, 2, 1, 2), (7, 7, 1, 0, 1),
    (227, 11, 4, 0, 1), (28, 2, 2, 0, 1),
])
def test_output_size_matches_torch_and_flags_non_integer(size, kernel, stride, padding, dilation, torch):
    result = analysis.output_size(size, kernel, stride, padding, dilation)
    x = torch.zeros(1, 1, size, size)
    w = torch.zeros(1, 1, kernel, kernel)
    expected = torch.nn.functional.conv2d(x, w, stride=stride, padding=padding, dilation=dilation).shape[-1]
    assert result.size == int(result) == expected
    exact = (size - (dilation * (kernel - 1) + 1) + 2 * padding) / stride + 1
    assert result.exact == pytest.approx(exact)
    assert result.unused_pixels == (exact != math.floor(exact))


@pytest.mark.parametrize("stride", [0, -2])
def test_output_size_rejects_a_stride_below_one(stride):
    """A ValueError naming the argument, not a ZeroDivisionError from the formula."""
    with pytest.raises(ValueError, match=f"output_size: stride must be .*positive.*got {stride}"):
        analysis.output_size(10, 3, stride=stride)


def test_textbook_non_integer_case():
    result = analysis.output_size(10, 3, 2)
    assert (result.size, result.exact, result.unused_pixels) == (4, 4.5, True)
    assert "4.5" in str(result)
    assert not analysis.output_size(11, 3, 2).unused_pixels


@pytest.mark.parametrize("size, kernel, stride, ceil_mode", [(7, 2, 2, False), (7, 2, 2, True), (8, 3, 2, True)])
def test_pool_output_size_matches_torch(size, kernel, stride, ceil_mode, torch):
    expected = torch.nn.functional.max_pool2d(torch.zeros(1, 1, size, size), kernel, stride,
                                              ceil_mode=ceil_mode).shape[-1]
    assert analysis.pool_output_size(size, kernel, stride, ceil_mode=ceil_mode).size == expected


# ---------------------------------------------------------------------------------------------- receptive fields
def _gradient_support(model, input_size):
    """Bounding box (rows, cols) of input pixels with a nonzero gradient for the centre output unit."""
    x = cnnkit.tensor(np.random.default_rng(0).standard_normal((1, *input_size)), requires_grad=True)
    model.double()
    out = model(x)
    # All channels of the centre position (a ReLU may silence some of them).
    out[:, :, out.shape[2] // 2, out.shape[3] // 2].sum().backward()
    support = np.abs(x.grad[0]).sum(axis=0) > 0
    rows, cols = np.nonzero(support.any(axis=1))[0], np.nonzero(support.any(axis=0))[0]
    assert rows.min() > 0 and cols.min() > 0 and rows.max() < input_size[1] - 1 and cols.max() < input_size[2] - 1, \
        "the centre unit's field touches the border; use a larger test input"
    return (rows.min(), rows.max() + 1), (cols.min(), cols.max() + 1)


class Residual(nn.Module):
    def __init__(self, channels, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1)
        self.act = nn.Tanh()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.shortcut = nn.Conv2d(channels, channels, 1, stride=stride) if stride > 1 else nn.Identity()

    def forward(self, x):
        return self.act(self.conv2(self.act(self.conv1(x))) + self.shortcut(x))


class InceptionLike(nn.Module):
    """Branches 1x1, 3x3, 1x5-then-5x1 and pool-then-1x1, concatenated."""

    def __init__(self, channels):
        super().__init__()
        self.b1 = nn.Conv2d(channels, 2, 1)
        self.b3 = nn.Conv2d(channels, 2, 3, padding=1)
        self.b5 = nn.Sequential(nn.Conv2d(channels, 2, (1, 5), padding=(0, 2)), nn.Conv2d(2, 2, (5, 1), padding=(2, 0)))
        self.pool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1), nn.Conv2d(channels, 2, 1))

    def forward(self, x):
        return cnnkit.cat([self.b1(x), self.b3(x), self.b5(x), self.pool(x)], dim=1)


def _nets():
    return {
        "chain": (nn.Sequential(nn.Conv2d(1, 3, 3), nn.Tanh(), nn.Conv2d(3, 3, 3, stride=2), nn.AvgPool2d(2),
                                nn.Conv2d(3, 2, 3, dilation=2), nn.Conv2d(2, 2, (1, 3)), nn.Conv2d(2, 2, (3, 1))),
                  (1, 61, 61)),
        "residual": (nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), Residual(3), Residual(3, stride=2), Residual(3)),
                     (1, 41, 41)),
        "inception": (nn.Sequential(nn.Conv2d(1, 4, 3, stride=2, padding=1), InceptionLike(4), nn.Conv2d(8, 2, 3)),
                      (1, 45, 45)),
        "asymmetric": (nn.Sequential(nn.Conv2d(1, 2, (1, 7), padding=(0, 3)), nn.Conv2d(2, 2, (3, 1)),
                                     nn.AvgPool2d((1, 2)), nn.Conv2d(2, 2, (1, 3))), (1, 21, 41)),
        "transposed": (nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1),
                                     nn.Conv2d(2, 2, 3), nn.ConvTranspose2d(2, 1, 3, stride=3)), (1, 31, 31)),
        "deformable": (nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.DeformConv2d(2, 2, 3, dilation=2)), (1, 27, 27)),
    }


@pytest.mark.parametrize("name", ["chain", "residual", "inception", "asymmetric", "transposed", "deformable"])
def test_summary_receptive_field_equals_gradient_support(name):
    model, input_size = _nets()[name]
    last = analysis.summary(model.double(), input_size).layers[-1]
    rows, cols = _gradient_support(model, input_size)
    assert (last.rf_h, last.rf_w) == (rows[1] - rows[0], cols[1] - cols[0])


def _zoo_blocks():
    from cnnkit.nn.blocks.dense import DenseBlock
    from cnnkit.nn.blocks.inception import Inception
    from cnnkit.nn.blocks.residual import BasicBlock

    return {
        "Inception": (nn.Sequential(nn.Conv2d(3, 16, 3, stride=2), Inception(16, 4, 4, 8, 2, 4, 4)), (3, 31, 31)),
        "DenseBlock": (nn.Sequential(nn.Conv2d(3, 8, 3), DenseBlock(3, 8, bn_size=2, growth_rate=4)), (3, 25, 25)),
        "BasicBlock": (nn.Sequential(nn.Conv2d(3, 8, 3), BasicBlock(8, 8, stride=2)), (3, 29, 29)),
    }


@pytest.mark.parametrize("block", ["Inception", "DenseBlock", "BasicBlock"])
def test_zoo_blocks_receptive_field_equals_gradient_support(block):
    """The block's output field (container row) is the largest over its branches, as the gradient says."""
    model, input_size = _zoo_blocks()[block]
    model.eval().double()
    rows = analysis.summary(model, input_size, containers=True).layers
    row = next(row for row in rows if row.name == "1")
    assert row.type == block
    support_rows, support_cols = _gradient_support(model, input_size)
    assert (row.rf_h, row.rf_w) == (support_rows[1] - support_rows[0], support_cols[1] - support_cols[0])


def test_global_pooling_branch_makes_the_field_global():
    from cnnkit.nn.blocks.aspp import ASPP

    model = nn.Sequential(nn.Conv2d(3, 8, 3), ASPP(8, [2, 4], out_channels=8)).eval().double()
    result = analysis.summary(model, (3, 17, 17), containers=True).to_dict()
    block = next(layer for layer in result["layers"] if layer["name"] == "1")
    assert block["rf_global"] and block["rf_h"] >= 17
    x = cnnkit.tensor(np.random.default_rng(0).standard_normal((1, 3, 17, 17)), requires_grad=True)
    model(x)[:, :, 8, 8].sum().backward()
    assert (np.abs(x.grad).sum(axis=(0, 1)) > 0).all()  # every input pixel matters


def test_largest_branch_wins():
    """The inception block's field is its 5x5 path (not the 1x1 one that runs first or the concat order)."""
    model = nn.Sequential(InceptionLike(1))
    layers = analysis.summary(model, (1, 15, 15), containers=True).to_dict()["layers"]
    block = next(layer for layer in layers if layer["name"] == "0")
    assert (block["rf_h"], block["rf_w"]) == (5, 5)
    assert (block["jump_h"], block["jump_w"]) == (1, 1)


def test_jump_is_the_shift_of_the_field_between_neighbouring_units():
    model, input_size = _nets()["chain"]
    last = analysis.summary(model.double(), input_size).layers[-1]
    x = cnnkit.tensor(np.random.default_rng(1).standard_normal((1, *input_size)), requires_grad=True)
    model.double()
    out = model(x)
    tops = []
    for row in (out.shape[2] // 2, out.shape[2] // 2 + 1):
        x.grad = None
        model(x)[0, 0, row, out.shape[3] // 2].backward()
        tops.append(np.nonzero((np.abs(x.grad[0]).sum(axis=0) > 0).any(axis=1))[0].min())
    assert last.jump_h == tops[1] - tops[0]


def test_receptive_field_of_a_layer_list():
    # Three stride-1 3x3 convs see 7x7, as one 7x7; then a 2x2/2 pool and a dilated 3x3.
    result = analysis.receptive_field([(3, 1, 1)] * 3 + [(2, 2)] + [(3, 1, 1, 2)], input_size=(32, 32))
    assert [row.rf[0] for row in result.rows] == [3, 5, 7, 8, 8 + (2 * 2 + 1 - 1) * 2]
    assert [row.jump[0] for row in result.rows] == [1, 1, 1, 2, 2]
    assert result.rows[-1].size == (14, 14)
    assert "rf" in str(result)
    # The formula rf += (k_eff - 1) * jump agrees with the summary of the same chain built as layers.
    model = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1) for _ in range(3)], nn.MaxPool2d(2),
                          nn.Conv2d(1, 1, 3, padding=1, dilation=2))
    last = analysis.summary(model, (1, 32, 32)).layers[-1]
    assert (last.rf_h, last.jump_h) == (result.rf[0], result.jump[0])
    assert analysis.receptive_field(list(model)).rf == result.rf


def test_centre_of_first_unit():
    # A 3x3 conv without padding: the first unit is centred on pixel 1 (its centre at 1.5).
    assert analysis.receptive_field([(3, 1, 0)]).start == (1.5, 1.5)
    # With padding 1 it is centred on pixel 0.
    assert analysis.receptive_field([(3, 1, 1)]).start == (0.5, 0.5)


# ---------------------------------------------------------------------------------------------- MACs and params
def test_macs_of_a_tiny_net_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1, groups=2),
                          nn.ConvTranspose2d(6, 2, 2, stride=2), nn.Flatten(), nn.Linear(2 * 8 * 8, 5))
    layers = analysis.summary(model, (3, 8, 8), batch_size=2).layers
    macs = [layer.macs for layer in layers]
    conv1 = 4 * 4 * 4 * 3 * 3 * 3            # C_out * H_out * W_out * C_in * kh * kw
    conv2 = 6 * 4 * 4 * (4 // 2) * 3 * 3     # grouped: C_in / groups
    transposed = 6 * 4 * 4 * 2 * 2 * 2       # C_in * H_in * W_in * C_out * kh * kw
    linear = 128 * 5
    assert macs == [2 * conv1, 0, 2 * conv2, 2 * transposed, 0, 2 * linear]  # batch of 2
    assert [layer.flops for layer in layers] == [2 * m for m in macs]


def test_conv_params_and_macs_helpers_match_real_layers():
    for args, kwargs in [((10, 10, 7), {}), ((32, 64, 3), {"groups": 4}), ((8, 16, (1, 5)), {"bias": False})]:
        layer = nn.Conv2d(*args, **kwargs)
        assert analysis.conv_params(*args, **kwargs) == sum(p.numel() for p in layer.parameters())
    assert analysis.conv_macs(3, 8, 3, output_size=(5, 6)) == 8 * 5 * 6 * 3 * 9


def test_large_kernel_vs_stacked_small_kernels():
    seven = analysis.compare_stacked(10, large=7, small=3)
    assert [d.params for d in seven.designs] == [4900, 2700]
    five = analysis.compare_stacked(10, large=5, small=3)
    assert [d.params for d in five.designs] == [2500, 1800]
    # Same receptive field, and the counts are what real layers hold.
    assert seven[0].rf == seven[1].rf == (7, 7)
    stack = nn.Sequential(*[nn.Conv2d(10, 10, 3, bias=False) for _ in range(3)])
    assert seven[1].params == sum(p.numel() for p in stack.parameters())
    assert "4,900" in str(seven) and "2,700" in str(seven)
    with pytest.raises(ValueError, match="multiple"):
        analysis.compare_stacked(10, large=6, small=3)


def test_asymmetric_separable_grouped():
    asym = analysis.compare_asymmetric(64, kernel=3, spatial=(8, 8))
    assert [d.params for d in asym.designs] == [64 * 64 * 9, 2 * 64 * 64 * 3]
    assert asym[0].rf == asym[1].rf == (3, 3)
    assert asym[1].macs == asym[1].params * 64
    sep = analysis.compare_separable(32, 64, kernel=3)
    assert [d.params for d in sep.designs] == [64 * 32 * 9, 32 * 9 + 32 * 64]
    grouped = analysis.compare_grouped(64, 128, kernel=3, groups=4)
    assert grouped[1].params * 4 == grouped[0].params
    assert grouped.ratio == [1.0, 0.25]
    assert set(sep.to_dict()) == {"title", "spatial", "designs"}


# ---------------------------------------------------------------------------------------------- summary
def _small_classifier():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def test_summary_totals_and_dict():
    model = _small_classifier()
    model[0].requires_grad_(False)
    result = analysis.summary(model, (3, 20, 20), batch_size=2)
    params = list(model.parameters())
    assert result.total_params == sum(p.numel() for p in params)
    assert result.trainable_params == sum(p.numel() for p in params if p.requires_grad)
    assert result.non_trainable_params == 8 * 3 * 9 + 8
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    keys = {"name", "type", "output_shape", "params", "trainable_params", "macs", "flops", "rf", "rf_h", "rf_w",
            "jump", "jump_h", "jump_w", "memory", "unused_pixels"}
    assert all(keys <= set(layer) for layer in data["layers"])
    assert [layer["name"] for layer in data["layers"]] == [str(i) for i in range(9)]
    assert data["layers"][0]["output_shape"] == [[2, 8, 20, 20]]
    assert data["layers"][0]["memory"] == 2 * 8 * 20 * 20 * 4
    assert sum(layer["params"] for layer in data["layers"]) == data["total_params"]
    assert data["total_macs"] == sum(layer["macs"] for layer in data["layers"])
    # 10x10 map, 3x3 window, stride 2: (10 - 3)/2 + 1 = 4.5 -> the last row/column is unused.
    assert [layer["unused_pixels"] for layer in data["layers"]] == [False] * 4 + [True] + [False] * 4
    assert "4.5" in data["layers"][4]["unused_detail"] and "never used" in data["layers"][4]["unused_detail"]
    assert data["layers"][6]["rf_global"] and data["layers"][8]["rf_global"]
    assert data["param_memory"] == sum(p.data.nbytes for p in params)


def test_summary_table_and_modes():
    model = _small_classifier()
    model.train()
    text = str(analysis.summary(model, (3, 20, 20)))
    for expected in ("0 (Conv2d)", "4 (Conv2d) *", "8 (Linear)", "Total params", "Trainable params",
                     "Non-trainable params", "Total MACs", "FLOPs", "Params size", "Activation memory"):
        assert expected in text
    assert model.training and model[1].training  # summary runs in eval mode and restores the mode


def test_shared_module_counted_once():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    model = Twice()
    result = analysis.summary(model, (2, 9, 9))
    assert [layer.name for layer in result.layers] == ["conv", "conv"]
    assert [layer.params for layer in result.layers] == [2 * 2 * 9 + 2, 0]
    assert result.layers[1].repeated and result.layers[1].rf_h == 5
    assert result.total_params == 2 * 2 * 9 + 2
    assert result.total_macs == 2 * (2 * 9 * 9 * 2 * 9)


def test_block_with_its_own_parameters_and_unused_modules():
    class LayerScale(nn.Module):
        """x + gamma * conv(x): a block holding a parameter beside its child."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 3, padding=1)
            self.gamma = nn.Parameter(cnnkit.ones(1, 2, 1, 1))
            self.unused = nn.Linear(3, 3)

        def forward(self, x):
            return x + self.gamma * self.conv(x)

    model = nn.Sequential(nn.Conv2d(1, 2, 3), LayerScale(), nn.Conv2d(2, 1, 3)).double()
    result = analysis.summary(model, (1, 21, 21))
    assert [row.name for row in result.layers] == ["0", "1.conv", "1", "2"]
    assert result.layers[2].params == 2 and (result.layers[2].rf_h, result.layers[2].rf_w) == (5, 5)
    rows, cols = _gradient_support(model, (1, 21, 21))
    assert (result.layers[-1].rf_h, result.layers[-1].rf_w) == (rows[1] - rows[0], cols[1] - cols[0])
    assert result.total_params == sum(p.numel() for p in model.parameters())
    assert any("12 parameters" in note for note in result.notes)  # the unused Linear(3, 3)


def test_shapes_only_summary_equals_a_real_forward_pass():
    """Skipping the conv/linear arithmetic changes no number of the summary (zoo models and the test nets)."""
    from cnnkit.models import create

    models = [(create(name, num_classes=10, small_input=True), (3, 32, 32))
              for name in ("resnet18", "googlenet", "densenet121", "mobilenet_v2", "shufflenet_v2_x0_5")]
    models += [(_small_classifier(), (3, 20, 20))] + [_nets()[name] for name in ("inception", "asymmetric",
                                                                                  "transposed", "deformable")]
    for model, input_size in models:
        fast = analysis.summary(model, input_size, containers=True).to_dict()
        real = analysis.summary(model, input_size, containers=True, run_layers=True).to_dict()
        assert fast == real


def test_shapes_only_layers_return_zeros_and_are_restored():
    from cnnkit.analysis.shapes_only import shapes_only

    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding="same"), nn.Flatten(), nn.Linear(4 * 5 * 5, 6))
    x = cnnkit.randn(2, 3, 9, 9)
    with shapes_only(model):
        assert np.all(model[0](x).numpy() == 0) and model[0](x).shape == (2, 4, 5, 5)
        assert model(x).shape == (2, 6)
        with pytest.raises(ValueError, match="channels"):  # a wrong input still gets the layer's own error
            model(cnnkit.randn(2, 2, 9, 9))
    assert np.abs(model(x).numpy()).sum() > 0 and "forward" not in vars(model[0])


def test_summary_falls_back_to_a_real_pass_for_value_dependent_models():
    class NeedsValues(nn.Module):
        def forward(self, x):
            if not np.abs(x.numpy()).sum() > 0:
                raise ValueError("NeedsValues: an all-zero feature map")
            return x

    model = nn.Sequential(nn.Conv2d(1, 2, 3), NeedsValues(), nn.Conv2d(2, 2, 3))
    result = analysis.summary(model, (1, 9, 9))
    assert [layer.rf_h for layer in result.layers] == [3, 3, 5]
    assert "forward" not in vars(model[0])


# Multiply-accumulates at 3x224x224 as torchvision's weight metadata gives them ("_ops", in G; its docs
# table rounds to 2 decimals, e.g. shufflenet_v2_x1_0 0.145 -> 0.14).
TORCHVISION_GMACS = {"alexnet": 0.714, "vgg16": 15.47, "googlenet": 1.498, "resnet18": 1.814, "resnet50": 4.089,
                     "densenet121": 2.834, "mobilenet_v2": 0.301, "shufflenet_v2_x1_0": 0.145}


@pytest.fixture(scope="module")
def zoo_summaries():
    """Summaries at 3x224x224 of the models torchvision documents, built without drawing random weights."""
    from test_models import _skip_init

    from cnnkit.models import create

    with pytest.MonkeyPatch.context() as monkeypatch:
        _skip_init(monkeypatch)
        return {name: analysis.summary(create(name), (3, 224, 224), containers=True) for name in TORCHVISION_GMACS}


@pytest.mark.parametrize("name", sorted(TORCHVISION_GMACS))
def test_zoo_macs_match_torchvision(name, zoo_summaries):
    result = zoo_summaries[name]
    gmacs = result.total_macs / 1e9
    assert abs(gmacs - TORCHVISION_GMACS[name]) <= 0.02 * TORCHVISION_GMACS[name]
    assert result.total_flops == 2 * result.total_macs
    assert result.layers[-1].output_shape == [[1, 1000]]


def test_zoo_receptive_fields(zoo_summaries):
    def layer(name, layer_name):
        return next(row for row in zoo_summaries[name].layers if row.name == layer_name)

    pools = [row for row in zoo_summaries["alexnet"].layers if row.type == "MaxPool2d"]
    assert pools[-1].name == "features.12" and (pools[-1].rf_h, pools[-1].rf_w) == (195, 195)
    vgg = zoo_summaries["vgg16"].layers
    last_conv = [row for row in vgg if row.type == "Conv2d"][-1]
    last_pool = [row for row in vgg if row.type == "MaxPool2d"][-1]
    assert (last_conv.name, last_conv.rf, last_pool.name, last_pool.rf) == ("features.28", 196, "features.30", 212)
    assert last_pool.jump == 32
    stage = layer("resnet18", "layer4")
    assert stage.container and (stage.rf_h, stage.rf_w, stage.jump) == (435, 435, 32)
    assert layer("resnet18", "avgpool").rf_global


# ---------------------------------------------------------------------------------------------- FC-to-conv
class VGGish(nn.Module):
    """Valid convolutions and 2x2 pools (total stride 8), an identity adaptive pool, then two Linears."""

    def __init__(self, pool_to=2):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(6, 8, 3), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 8, 3), nn.ReLU(), nn.MaxPool2d(2))
        self.avgpool = nn.AdaptiveAvgPool2d(pool_to)
        self.classifier = nn.Sequential(nn.Linear(8 * pool_to * pool_to, 12), nn.ReLU(), nn.Dropout(0.5),
                                        nn.Linear(12, 5))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


@pytest.mark.parametrize("pool_to, extra_strides", [(2, 2), (1, 2), (2, 5)])
def test_fc_to_conv_same_logits_and_score_map(pool_to, extra_strides):
    """(2, 5) mirrors VGG's 224 -> 384 example (384 = 224 + 5 x 32): 5 total strides larger, a 6x6 score map."""
    model = VGGish(pool_to).eval()
    fcn = analysis.fc_to_conv(model, (3, 32, 32))
    assert fcn.score_stride == (8, 8) and fcn.window_size == (32, 32)
    x = cnnkit.randn(2, 3, 32, 32)
    logits = model(x).numpy()
    out = fcn(x)
    assert out.shape == (2, 5, 1, 1)
    np.testing.assert_allclose(out.numpy()[:, :, 0, 0], logits, rtol=1e-4, atol=1e-5)
    # k total strides larger: a (k+1)x(k+1) score map, cell (i, j) = the classifier on the crop at (8i, 8j).
    side = 32 + 8 * extra_strides
    big = cnnkit.randn(1, 3, side, side)
    scores = fcn(big).numpy()
    cells = extra_strides + 1
    assert scores.shape == (1, 5, cells, cells)
    for i in range(cells):
        for j in range(cells):
            crop = cnnkit.tensor(big.numpy()[:, :, 8 * i:8 * i + 32, 8 * j:8 * j + 32])
            np.testing.assert_allclose(scores[:, :, i, j], model(crop).numpy(), rtol=1e-4, atol=1e-5)


def test_fc_to_conv_on_a_flat_sequential_and_independence():
    model = nn.Sequential(nn.Conv2d(1, 4, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(4 * 6 * 6, 7),
                          nn.Softmax(dim=-1)).eval()
    fcn = analysis.convolutionalize(model, (1, 16, 16))
    x = cnnkit.randn(3, 1, 16, 16)
    np.testing.assert_allclose(fcn(x).numpy()[:, :, 0, 0], model(x).numpy(), rtol=1e-5, atol=1e-6)
    assert fcn(cnnkit.randn(1, 1, 20, 22)).shape == (1, 7, 3, 4)
    weights = [p.numel() for p in fcn.parameters()]
    assert sum(weights) == sum(p.numel() for p in model.parameters())
    fcn.head[0].weight.data[...] = 0  # a copy: the original is untouched
    assert np.abs(model[4].weight.numpy()).sum() > 0


def test_fc_to_conv_rejects_models_without_a_head():
    with pytest.raises(ValueError, match="no Flatten or Linear"):
        analysis.fc_to_conv(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), (1, 8, 8))


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_models_summary_rf(capsys):
    assert main(["models", "resnet*"]) == 0
    listing = capsys.readouterr().out
    assert "resnet18" in listing
    assert main(["summary", "resnet18", "--input", "3x32x32", "--small-input", "--num-classes", "10", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    model = cnnkit.models.create("resnet18", num_classes=10, small_input=True)
    assert data["total_params"] == sum(p.numel() for p in model.parameters())
    assert data["layers"][0]["name"] == "conv1" and data["layers"][-1]["name"] == "fc"
    assert main(["summary", "resnet18", "--input", "3x32x32", "--small-input"]) == 0
    table = capsys.readouterr().out
    assert "layer4.1.conv2 (Conv2d)" in table and "Total params" in table
    assert main(["rf", "resnet18", "--input", "3x32x32", "--small-input"]) == 0
    assert "layer4.1.conv2" in capsys.readouterr().out
    assert main(["summary", "resnet18", "--input", "3x32"]) == 2
    assert "--input" in capsys.readouterr().err  # errors go to stderr


def test_cli_summary_resnet18_at_224(capsys):
    assert main(["summary", "resnet18", "--input", "3x224x224"]) == 0
    table = capsys.readouterr().out
    assert "layer4.1.conv2 (Conv2d)" in table and "435x435" in table and "[1, 1000]" in table
    macs = int(table.split("Total MACs: ")[1].split()[0].replace(",", ""))
    flops = int(table.split("Total FLOPs (2 x MACs): ")[1].split()[0].replace(",", ""))
    assert abs(macs / 1e9 - TORCHVISION_GMACS["resnet18"]) <= 0.02 * TORCHVISION_GMACS["resnet18"]
    assert flops == 2 * macs and "Total params: 11,689,512" in table
