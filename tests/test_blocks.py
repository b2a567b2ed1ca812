"""Building blocks: output shapes, torchvision names, SE scaling, shuffle order, receptive fields, gradients."""
import re

import numpy as np
import pytest

import cnnkit
from cnnkit import nn


def _randn(*shape, requires_grad=False):
    return cnnkit.randn(*shape, requires_grad=requires_grad)


def _keys(module):
    return list(module.state_dict())


def _bn_keys(prefix):
    return [f"{prefix}.{name}" for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")]


def test_vgg_block_convs_then_pool():
    block = nn.VGGBlock(3, 8, num_convs=2, batch_norm=True)
    assert block(_randn(2, 3, 16, 16)).shape == (2, 8, 8, 8)
    assert _keys(block) == ["0.weight", "0.bias", *_bn_keys("1"), "3.weight", "3.bias", *_bn_keys("4")]
    assert nn.VGGBlock(3, 8, num_convs=1, pool=False)(_randn(2, 3, 16, 16)).shape == (2, 8, 16, 16)
    with pytest.raises(ValueError, match="num_convs"):
        nn.VGGBlock(3, 8, num_convs=0)


def test_nin_block_is_conv_and_two_pointwise_convs():
    block = nn.NiNBlock(3, 8, kernel_size=5, stride=2, padding=2)
    assert block(_randn(2, 3, 16, 16)).shape == (2, 8, 8, 8)
    kernels = [tuple(m.weight.shape[2:]) for m in block.modules() if isinstance(m, nn.Conv2d)]
    assert kernels == [(5, 5), (1, 1), (1, 1)]


def test_inception_concatenates_four_paths():
    block = nn.Inception(16, 4, 6, 8, 2, 3, 5)
    out = block(_randn(2, 16, 9, 9))
    assert out.shape == (2, 4 + 8 + 3 + 5, 9, 9) and block.out_channels == 20
    assert block.branch3[1].conv.weight.shape == (3, 2, 5, 5)  # the paper's 5x5
    assert nn.Inception(16, 4, 6, 8, 2, 3, 5, branch3_kernel_size=3).branch3[1].conv.weight.shape == (3, 2, 3, 3)
    assert "branch4.1.conv.weight" in _keys(block) and "branch2.0.bn.running_var" in _keys(block)
    # The first 4 output channels are exactly the 1x1 branch.
    x = _randn(2, 16, 9, 9)
    block.eval()
    with cnnkit.no_grad():
        np.testing.assert_allclose(block(x).numpy()[:, :4], block.branch1(x).numpy(), rtol=1e-6)


def test_inception_aux_head():
    head = nn.InceptionAux(32, num_classes=7)
    assert head(_randn(2, 32, 14, 14)).shape == (2, 7)
    assert _keys(head)[:2] == ["conv.conv.weight", "conv.bn.weight"]


def test_basic_block_shapes_and_projection():
    block = nn.BasicBlock(8, 16, stride=2)
    assert block(_randn(2, 8, 10, 10)).shape == (2, 16, 5, 5)
    assert "downsample.0.weight" in _keys(block) and "downsample.1.running_mean" in _keys(block)
    assert block.downsample[0].weight.shape == (16, 8, 1, 1)
    assert nn.BasicBlock(8, 8).downsample is None


def test_bottleneck_and_resnext_width():
    block = nn.Bottleneck(16, 8, stride=2)
    assert block(_randn(2, 16, 8, 8)).shape == (2, 32, 4, 4)
    assert [k for k in _keys(block) if k.endswith("weight") and "bn" not in k] == [
        "conv1.weight", "conv2.weight", "conv3.weight", "downsample.0.weight", "downsample.1.weight"]
    # ResNeXt 32x4d at planes 64: width int(64 * 4 / 64) * 32 = 128, grouped 3x3 with 4 channels per group.
    grouped = nn.Bottleneck(256, 64, groups=32, base_width=4)
    assert grouped.conv2.weight.shape == (128, 4, 3, 3) and grouped.conv3.weight.shape == (256, 128, 1, 1)
    assert grouped(_randn(2, 256, 4, 4)).shape == (2, 256, 4, 4)


def test_residual_gradient_reaches_both_paths():
    # Projection block: both the residual convolutions and the shortcut projection learn.
    block = nn.BasicBlock(4, 8, stride=2)
    x = _randn(2, 4, 6, 6, requires_grad=True)
    block(x).sum().backward()
    assert np.abs(block.conv1.weight.grad).sum() > 0
    assert np.abs(block.downsample[0].weight.grad).sum() > 0
    # Identity block with a dead residual (bn2 = 0, as zero_init_residual): the input gradient is exactly the
    # identity path's, relu'(x), while the residual branch still receives a gradient through bn2.
    block = nn.BasicBlock(4, 4)
    nn.init.zeros_(block.bn2.weight)
    nn.init.zeros_(block.bn2.bias)
    x = _randn(2, 4, 6, 6, requires_grad=True)
    block(x).sum().backward()
    np.testing.assert_array_equal(x.grad, (x.data > 0).astype(np.float32))
    assert np.abs(block.bn2.weight.grad).sum() > 0


def test_squeeze_excitation_scales_each_channel():
    se = nn.SqueezeExcitation(8, 2)
    x = _randn(2, 8, 5, 5)
    out = se(x).numpy()
    pooled = x.numpy().mean(axis=(2, 3))
    hidden = np.maximum(pooled @ se.fc1.weight.data[:, :, 0, 0].T + se.fc1.bias.data, 0)
    scale = 1 / (1 + np.exp(-(hidden @ se.fc2.weight.data[:, :, 0, 0].T + se.fc2.bias.data)))
    np.testing.assert_allclose(out, x.numpy() * scale[:, :, None, None], rtol=1e-5, atol=1e-6)
    assert ((scale > 0) & (scale < 1)).all()
    assert _keys(se) == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]


def test_se_is_an_option_of_the_residual_blocks():
    block = nn.Bottleneck(64, 16, se=True)  # 64 output channels, r = 16 -> 4 squeeze channels
    assert block.se.fc1.weight.shape == (4, 64, 1, 1)
    assert block(_randn(2, 64, 4, 4)).shape == (2, 64, 4, 4)
    assert nn.BasicBlock(32, 32, se=True, se_reduction=8).se.fc1.weight.shape == (4, 32, 1, 1)
    assert nn.BasicBlock(32, 32).se is None


def test_dense_block_grows_and_transition_halves():
    block = nn.DenseBlock(num_layers=3, num_input_features=8, bn_size=2, growth_rate=4)
    x = _randn(2, 8, 6, 6)
    out = block(x)
    assert out.shape == (2, 8 + 3 * 4, 6, 6) and block.out_channels == 20
    np.testing.assert_array_equal(out.numpy()[:, :8], x.numpy())  # dense connectivity keeps the input
    assert _keys(block)[:6] == _bn_keys("denselayer1.norm1") + ["denselayer1.conv1.weight"]
    assert block.denselayer3.conv1.weight.shape == (8, 16, 1, 1)
    transition = nn.Transition(20, 10)
    assert transition(out).shape == (2, 10, 3, 3)
    assert _keys(transition) == _bn_keys("norm") + ["conv.weight"]


def test_depthwise_separable_conv():
    block = nn.DepthwiseSeparableConv(8, 16, stride=2)
    assert block(_randn(2, 8, 8, 8)).shape == (2, 16, 4, 4)
    assert block.depthwise[0].weight.shape == (8, 1, 3, 3) and block.pointwise[0].weight.shape == (16, 8, 1, 1)


def test_inverted_residual_names_and_shortcut():
    expand = nn.InvertedResidual(8, 8, stride=1, expand_ratio=6)
    assert expand.use_res_connect
    assert [k for k in _keys(expand) if k.endswith("weight")] == [
        "conv.0.0.weight", "conv.0.1.weight", "conv.1.0.weight", "conv.1.1.weight", "conv.2.weight",
        "conv.3.weight"]
    assert expand.conv[1][0].weight.shape == (48, 1, 3, 3)
    x = _randn(2, 8, 6, 6)
    with cnnkit.no_grad():
        np.testing.assert_allclose(expand(x).numpy(), x.numpy() + expand.conv(x).numpy(), rtol=1e-6)
    no_expand = nn.InvertedResidual(8, 16, stride=2, expand_ratio=1)
    assert not no_expand.use_res_connect and no_expand(x).shape == (2, 16, 3, 3)
    assert "conv.1.weight" in _keys(no_expand) and "conv.0.0.weight" in _keys(no_expand)


def test_shuffle_v2_unit_split_and_shuffle_order():
    unit = nn.ShuffleV2Unit(8, 8, stride=1)
    x = _randn(2, 8, 5, 5)
    with cnnkit.no_grad():
        out = unit(x).numpy()
        transformed = unit.branch2(x[:, 4:]).numpy()
    # cat(x1, branch2(x2)) shuffled with 2 groups interleaves them: even channels pass x1 through unchanged.
    np.testing.assert_array_equal(out[:, 0::2], x.numpy()[:, :4])
    np.testing.assert_allclose(out[:, 1::2], transformed, rtol=1e-6)
    down = nn.ShuffleV2Unit(8, 16, stride=2)
    assert down(x).shape == (2, 16, 3, 3)
    assert "branch1.0.weight" in _keys(down) and _keys(unit)[0] == "branch2.0.weight"
    with pytest.raises(ValueError, match="inp"):
        nn.ShuffleV2Unit(8, 12, stride=1)


def _torch_shuffle_v1(torch, unit, x, stride, groups):
    """The v1 unit recomputed with torch.nn.functional and torch's channel shuffle, from our weights."""
    functional = torch.nn.functional

    def bn(tensor, layer):
        return functional.batch_norm(tensor, torch.from_numpy(layer.running_mean.data),
                                     torch.from_numpy(layer.running_var.data), torch.from_numpy(layer.weight.data),
                                     torch.from_numpy(layer.bias.data), eps=layer.eps)

    def conv(tensor, layer):
        return functional.conv2d(tensor, torch.from_numpy(layer.weight.data), stride=layer.stride,
                                 padding=layer.padding, groups=layer.groups)

    main1, main2 = unit.branch_main_1, unit.branch_main_2
    out = bn(conv(torch.relu(bn(conv(x, main1[0]), main1[1])), main1[3]), main1[4])
    out = bn(conv(torch.nn.ChannelShuffle(groups)(out), main2[0]), main2[1])
    if stride == 1:
        return torch.relu(out + x)
    return torch.cat([functional.avg_pool2d(x, 3, 2, 1), torch.relu(out)], 1)


@pytest.mark.parametrize("stride", [1, 2])
def test_shuffle_v1_unit_matches_torch(stride, torch):
    groups = 3
    out_channels = 48 if stride == 2 else 24
    unit = nn.ShuffleV1Unit(24, out_channels, groups=groups, stride=stride).eval()
    # Grouped 1x1 to out/4 channels; the shuffle then mixes 2 (stride 1) or 4 channels of each group.
    assert unit.branch_main_1[0].weight.shape == (out_channels // 4, 24 // groups, 1, 1)
    x = np.random.default_rng(1).standard_normal((2, 24, 6, 6)).astype(np.float32)
    with cnnkit.no_grad():
        got = unit(cnnkit.tensor(x)).numpy()
    expected = _torch_shuffle_v1(torch, unit, torch.from_numpy(x), stride, groups).numpy()
    assert got.shape == ((2, 48, 3, 3) if stride == 2 else (2, 24, 6, 6))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_shuffle_v1_unit_rejects_bad_groups():
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.ShuffleV1Unit(12, 20, groups=3, stride=2)  # 20 // 4 = 5 bottleneck channels in 3 groups
    with pytest.raises(ValueError, match="must equal out_channels"):
        nn.ShuffleV1Unit(12, 24, groups=3, stride=1)


def test_aspp_shapes_and_names():
    aspp = nn.ASPP(8, atrous_rates=(1, 2, 3), out_channels=16)
    x = _randn(2, 8, 9, 11)
    assert aspp(x).shape == (2, 16, 9, 11)
    keys = _keys(aspp)
    assert {"convs.0.0.weight", "convs.3.0.weight", "convs.4.1.weight", "project.0.weight"} <= set(keys)
    assert aspp.convs[2][0].dilation in (2, (2, 2)) and len(aspp.convs) == 5
    assert aspp.project[0].weight.shape == (16, 5 * 16, 1, 1)
    with cnnkit.no_grad():
        pooled = aspp.convs[4](x).numpy()
    assert pooled.shape == (2, 16, 9, 11)
    np.testing.assert_array_equal(pooled, np.broadcast_to(pooled[:, :, :1, :1], pooled.shape))


def test_asymmetric_conv_has_a_square_receptive_field():
    kernel = 5
    conv = nn.AsymmetricConv2d(2, 3, kernel, norm_layer=None, activation_layer=None)
    assert conv.conv_1xk[0].weight.shape == (3, 2, 1, kernel) and conv.conv_kx1[0].weight.shape == (3, 3, kernel, 1)
    x = _randn(1, 2, 11, 11, requires_grad=True)
    out = conv(x)
    assert out.shape == (1, 3, 11, 11)
    out[0, 0, 5, 5].backward()
    support = np.abs(x.grad[0]).sum(axis=0) > 0
    expected = np.zeros((11, 11), dtype=bool)
    expected[3:8, 3:8] = True  # 5x5 around the centre: 2 * 5 weights per pair reach k^2 pixels
    np.testing.assert_array_equal(support, expected)
    assert nn.AsymmetricConv2d(2, 3, 3, stride=2)(_randn(2, 2, 8, 8)).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="odd"):
        nn.AsymmetricConv2d(2, 3, 4)


def test_conv_norm_activation_bias_only_without_norm():
    with_norm = nn.Conv2dNormActivation(3, 4)
    assert with_norm[0].bias is None and len(with_norm) == 3
    plain = nn.Conv2dNormActivation(3, 4, norm_layer=None, activation_layer=None)
    assert plain[0].bias is not None and len(plain) == 1
    assert with_norm(_randn(2, 3, 7, 7)).shape == (2, 4, 7, 7)


BLOCKS = ["VGGBlock", "NiNBlock", "Inception", "InceptionAux", "BasicBlock", "Bottleneck", "DenseLayer", "DenseBlock",
          "Transition", "SqueezeExcitation", "ChannelShuffle", "ShuffleV1Unit", "ShuffleV2Unit",
          "DepthwiseSeparableConv", "InvertedResidual", "AsymmetricConv2d", "ASPP", "DeformConv2d"]


@pytest.mark.parametrize("name", BLOCKS)
def test_block_docstring_names_its_paper(name):
    """Each block cites its source: authors and a year, as 'He et al. (2016)' or '(Hu et al., 2018)'."""
    doc = getattr(nn, name).__doc__ or ""
    assert re.search(r"[A-Z][a-z]+(,| and| et al\.).{0,200}?\b(19|20)\d\d\b", doc, re.S), doc


def test_a_fused_model_exports_batchnorm_and_relu_as_their_own_onnx_nodes(tmp_path):
    """nn.utils.fuse changes how a pair runs, not what the exported graph says."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from cnnkit import onnx as cnnkit_onnx
    from cnnkit.nn.utils import fuse

    model = fuse(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.BasicBlock(4, 4),
                               nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2), nn.ReLU6())).eval()
    path = cnnkit_onnx.export(model, (3, 8, 8), tmp_path / "fused.onnx")
    kinds = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert kinds.count("BatchNormalization") == 4 and kinds.count("Relu") == 3 and kinds.count("Clip") == 1
    images = np.random.default_rng(2).standard_normal((2, 3, 8, 8)).astype(np.float32)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(images)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: images})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
