"""cnnkit.onnx: every zoo model exports (checker + onnxruntime agree), torch.onnx.export files load, run and
fine-tune, damaged files and unknown operators fail clearly, and the export/predict commands work."""
import json
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
from test_models import TORCHVISION_LAYOUTS, _randomise_batch_norm, _skip_init
from zoo_init import cheap_random_init as _cheap_random_init
from zoo_init import randomise_statistics as _randomise_statistics

import cnnkit
from cnnkit import functional as F
from cnnkit import io
from cnnkit import onnx as cnnkit_onnx
from cnnkit.cli import main
from cnnkit.models import create, list_models
from cnnkit.onnx import OnnxError

torch = pytest.importorskip("torch")
tnn = torch.nn

# Smallest native sizes (un-padded stems need more than 32 pixels); every other model runs at 32x32.
SIZES = {"alexnet": 64, "nin": 72, "lenet5": 28}


def _relative_error(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _session(path):
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # faster loads
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


# Every zoo model, the VGGs included: each VGG carries a 0.5 GB graph (its 25088 x 4096 classifier), ~10 s apiece
# on 2 cores, 85 s for all eight; the whole suite still runs in well under 10 minutes.
ZOO = list_models()


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_exports_and_matches_onnxruntime(name, tmp_path, monkeypatch):
    """10-class native variant with random weights: checker passes, onnxruntime = cnnkit at batch 1 and 3."""
    _skip_init(monkeypatch)  # weights are drawn below, directly in float32
    model = create(name, num_classes=10, in_channels=3).eval()
    _cheap_random_init(model)
    size = SIZES.get(name, 32)
    path = cnnkit_onnx.export(model, (3, size, size), tmp_path / f"{name}.onnx")
    onnx.checker.check_model(str(path))
    session = _session(path)
    assert session.get_inputs()[0].shape == ["batch", 3, size, size]

    images = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(images)).numpy()
    assert expected.std() > 0  # a constant output would make the comparison empty
    # eval mode: each sample's logits are independent of the batch, so batch 1 is row 0 of batch 3
    assert _relative_error(session.run(None, {"input": images})[0], expected) <= 1e-4
    assert _relative_error(session.run(None, {"input": images[:1]})[0], expected[:1]) <= 1e-4


@pytest.mark.parametrize("name", ["resnet18", "shufflenet_v2_x0_5", "googlenet", "lenet5"])
def test_cnnkit_export_loads_back_with_the_same_keys_and_outputs(name, tmp_path):
    model = create(name, num_classes=10, in_channels=3).eval()
    _randomise_statistics(model)
    size = SIZES.get(name, 32)
    loaded = cnnkit_onnx.load(cnnkit_onnx.export(model, (3, size, size), tmp_path / "m.onnx"))
    # every weight and running statistic under its own key (the unused BN counters are not in the graph)
    assert list(loaded.state_dict()) == [key for key in model.state_dict() if not key.endswith("num_batches_tracked")]
    assert [key for key, _ in loaded.named_buffers()] == [key for key, _ in model.named_buffers()
                                                          if not key.endswith("num_batches_tracked")]
    images = np.random.default_rng(1).standard_normal((2, 3, size, size)).astype(np.float32)
    with cnnkit.no_grad():
        np.testing.assert_allclose(loaded(images).numpy(), model(cnnkit.tensor(images)).numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_float64_model_exports_as_double_and_loads_back(tmp_path):
    # onnxruntime's CPU Conv has no double kernel, so the float64 graph is checked by loading it back
    model = create("resnet18", num_classes=10).double().eval()
    path = cnnkit_onnx.export(model, (3, 32, 32), tmp_path / "double.onnx")
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
    images = np.random.default_rng(0).standard_normal((2, 3, 32, 32))
    with cnnkit.no_grad():
        got = cnnkit_onnx.load(path)(images)
        assert got.dtype == np.float64
        np.testing.assert_allclose(got.numpy(), model(cnnkit.tensor(images)).numpy(), rtol=1e-10, atol=1e-12)


class ManyOps(cnnkit.nn.Module):
    """Ops beyond the zoo's: transposed conv, padding modes, Lp and uneven adaptive pooling, slicing, stacking,
    reductions, broadcasting and the rarer activations, so that each exporter conversion runs."""

    def __init__(self, gelu=False):
        super().__init__()
        self.gelu = gelu
        self.up = cnnkit.nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1)
        self.conv = cnnkit.nn.Conv2d(4, 6, 3, padding=((0, 1), (1, 0)), dilation=1, groups=2)
        self.lrn = cnnkit.nn.LocalResponseNorm(3)
        self.lp = cnnkit.nn.LPPool2d(2, 2)
        self.pool = cnnkit.nn.AdaptiveAvgPool2d((4, 3))  # from 9x8: uneven windows
        self.fc = cnnkit.nn.Linear(6, 4)

    def forward(self, x):
        x = F.leaky_relu(self.up(x), 0.1)                                   # (N, 4, 16, 16)
        x = F.pad(x, (1, 0, 0, 1), mode="reflect")                          # (N, 4, 17, 17)
        x = F.hardswish(self.conv(F.pad(x, (0, 1, 1, 0), mode="replicate")))  # (N, 6, 18, 18)
        x = F.elu(self.lrn(x)) + F.hardsigmoid(x) * F.silu(x)
        x = self.lp(x)[:, :, ::-1, 2:]                                      # (N, 6, 9, 9) -> (N, 6, 9, 7)
        x = self.pool(F.pad(x, (0, 1, 0, 0), value=0.5))                    # (N, 6, 4, 3)
        x = cnnkit.stack([x.amax(3), x.mean(3)], dim=3).sum(3)              # (N, 6, 4)
        x = ((x.permute(0, 2, 1) + 0.5) ** 2).clamp(0.0, 4.0) / 3 - 0.25        # (N, 4, 6)
        x = 1.5 - x * 2
        x = cnnkit.where(np.array([True, False, True, False, True, False]), x, -x)
        x = F.gelu(x) if self.gelu else F.tanh(x) - F.sigmoid(x)
        return F.softmax(self.fc(x), dim=-1) + F.log_softmax(x.sum(1, keepdim=True)[:, :, :4].expand(-1, 4, 4), -1)


@pytest.mark.parametrize("gelu", [False, True])
def test_ops_beyond_the_zoo_export_and_load_back(gelu, tmp_path):
    model = ManyOps(gelu).eval()
    path = cnnkit_onnx.export(model, (3, 8, 8), tmp_path / "many.onnx")
    images = _rand(3, 3, 8, 8)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(images)).numpy()
    session = _session(path)
    for batch in (1, 3):
        np.testing.assert_allclose(session.run(None, {"input": images[:batch]})[0], expected[:batch], rtol=1e-4,
                                   atol=1e-5)
    with cnnkit.no_grad():  # the exported GELU is 0.5 x (1 + Erf(x / sqrt 2)), run back through F.erf
        np.testing.assert_allclose(cnnkit_onnx.load(path)(images).numpy(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------- files from torch.onnx.export
class GroupedLRNNet(tnn.Module):
    """A grouped conv, LRN (exported with an If subgraph), a ceil-mode pool, BN, dropout and a linear head."""

    def __init__(self):
        super().__init__()
        self.conv1 = tnn.Conv2d(4, 8, 3, padding=1, groups=2)
        self.bn1 = tnn.BatchNorm2d(8)
        self.lrn = tnn.LocalResponseNorm(3, alpha=0.1)
        self.pool = tnn.MaxPool2d(2, ceil_mode=True)
        self.conv2 = tnn.Conv2d(8, 8, 3, stride=2, groups=4, bias=False)
        self.dropout = tnn.Dropout(0.3)
        self.fc = tnn.Linear(8 * 1 * 1, 5)

    def forward(self, x):
        x = self.pool(self.lrn(torch.relu(self.bn1(self.conv1(x)))))
        x = torch.nn.functional.hardswish(self.conv2(x))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def _torch_export(module, example, path, dynamo):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            batch = torch.export.Dim("batch", min=1)
            torch.onnx.export(module, (example,), str(path), dynamo=True, opset_version=17, input_names=["x"],
                              dynamic_shapes=({0: batch},), verbose=False)
        else:
            torch.onnx.export(module, (example,), str(path), dynamo=False, opset_version=17, input_names=["x"],
                              dynamic_axes={"x": {0: "batch"}})
    return path


def _torch_reference(name):
    torch.manual_seed(0)
    if name == "grouped_lrn":
        module, size, channels = GroupedLRNNet(), 7, 4
    else:
        module, size, channels = TORCHVISION_LAYOUTS[name][0](), 32, 3
    module.eval()
    _randomise_batch_norm(module)
    return module, torch.randn(3, channels, size, size)


@pytest.mark.parametrize("name,dynamo", [("resnet18", False), ("mobilenet_v2", False), ("grouped_lrn", False),
                                         ("grouped_lrn", True)])
def test_torch_exported_model_loads_and_matches_torch(name, dynamo, tmp_path):
    module, images = _torch_reference(name)
    path = _torch_export(module, images[:2], tmp_path / f"{name}.onnx", dynamo)
    model = cnnkit_onnx.load(path)
    if name == "grouped_lrn" and not dynamo:  # torch 2.13's TorchScript exporter writes LRN with shapes and If
        assert {"If", "Shape", "Gather", "ConstantOfShape", "Slice", "Cast", "Pad"} <= {n.op_type for n in
                                                                                         model.graph.nodes}
    with torch.no_grad():
        expected = module(images).numpy()
    with cnnkit.no_grad():
        got = model(images.numpy()).numpy()  # batch 3 though traced at batch 2: the batch is dynamic
        assert model(images.numpy().astype(np.float64)).dtype == np.float32  # inputs take the declared type
    assert _relative_error(got, expected) <= 1e-4


def test_torch_exported_model_fine_tunes_one_step(tmp_path):
    module, images = _torch_reference("grouped_lrn")
    model = cnnkit_onnx.load(_torch_export(module, images[:2], tmp_path / "m.onnx", dynamo=False))
    params = list(model.parameters())
    assert len(params) >= 5 and all(p.requires_grad for p in params)
    inputs, labels = cnnkit.tensor(images.numpy()), cnnkit.tensor(np.array([0, 3, 1]))
    model.train()
    F.cross_entropy(model(inputs), labels).backward()  # training mode runs (dropout, batch statistics)
    model.zero_grad()
    model.eval()
    loss = F.cross_entropy(model(inputs), labels)
    loss.backward()
    assert all(p.grad is not None and np.abs(p.grad).sum() > 0 for p in params)
    norm = np.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
    with cnnkit.no_grad():
        for param in params:
            param.data -= 0.01 / max(1.0, norm) * param.grad
        assert F.cross_entropy(model(inputs), labels).item() < loss.item()


# ---------------------------------------------------------------------------------- damaged and unsupported files
@pytest.fixture
def exported(tmp_path):
    model = create("lenet5", num_classes=4, in_channels=3).eval()
    return cnnkit_onnx.export(model, (3, 28, 28), tmp_path / "lenet.onnx")


def test_truncated_onnx_file_is_a_clear_error(exported, tmp_path):
    data = open(exported, "rb").read()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxError, match="truncated.onnx.*(not a valid ONNX|truncated|damaged)"):
        cnnkit_onnx.load(truncated)


def test_random_bytes_are_a_clear_onnx_error(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(OnnxError, match="noise.onnx"):
        cnnkit_onnx.load(path)


def test_unsupported_operator_names_the_op_and_node(tmp_path):
    helper = onnx.helper
    node = helper.make_node("Einsum", ["x", "x"], ["y"], name="my_einsum", equation="ij,ij->ij")
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2, 2])])
    path = tmp_path / "einsum.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(OnnxError, match="my_einsum.*'Einsum'"):
        cnnkit_onnx.load(path)


def test_unexportable_op_is_a_clear_error(tmp_path):
    class Odd(cnnkit.nn.Module):
        def forward(self, x):
            return F.mse_loss(x, x * 2)

    with pytest.raises(OnnxError, match="_MseLoss"):
        cnnkit_onnx.export(Odd(), (1, 2, 2), tmp_path / "odd.onnx")


# ---------------------------------------------------------------------------------- command line
def test_export_and_predict_commands(tmp_path, capsys):
    model = create("lenet5", num_classes=3, in_channels=1)
    description = {"classes": ["zero", "one", "two"], "in_channels": 1, "image_size": 28, "mean": [0.1],
                   "std": [0.3]}
    checkpoint = tmp_path / "w.safetensors"
    io.save_weights(model, checkpoint, extra={"data": description})
    out = tmp_path / "m.onnx"
    assert main(["export", str(checkpoint), str(out)]) == 0
    assert "input batch x 1x28x28" in capsys.readouterr().out
    proto = onnx.load(str(out))
    assert json.loads({p.key: p.value for p in proto.metadata_props}["cnnkit.data"])["classes"][2] == "two"

    from PIL import Image
    image = tmp_path / "digit.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (28, 28), dtype=np.uint8)).save(image)
    assert main(["predict", str(out), str(image), "--top", "3"]) == 0
    onnx_lines = capsys.readouterr().out
    assert main(["predict", str(checkpoint), str(image), "--top", "3"]) == 0
    assert capsys.readouterr().out == onnx_lines  # same classes and probabilities from both formats
    assert "zero" in onnx_lines and "two" in onnx_lines


def test_predict_with_a_damaged_onnx_file_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "bad.onnx"
    path.write_bytes(b"not an onnx model")
    image = tmp_path / "x.png"
    from PIL import Image
    Image.new("L", (8, 8)).save(image)
    assert main(["predict", str(path), str(image)]) == 2
    assert "bad.onnx" in capsys.readouterr().err


# ---------------------------------------------------------------------------------- single operators vs onnxruntime
def _rand(*shape, seed=0):
    return np.random.default_rng(seed + len(shape)).standard_normal(shape).astype(np.float32)


def _ints(*values):
    return np.array(values, dtype=np.int64)


# (op, attributes, graph inputs (x first), constant inputs (initializers, in input order after x), expected shape-less)
OPERATOR_CASES = {
    "conv_same_upper_strided": ("Conv", {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, [_rand(2, 2, 7, 7)],
                                [_rand(4, 2, 3, 3)]),
    "conv_same_lower_grouped": ("Conv", {"auto_pad": "SAME_LOWER", "strides": [2, 2], "group": 2},
                                [_rand(1, 4, 8, 8)], [_rand(6, 2, 2, 2), _rand(6)]),
    "conv_dilated_grouped": ("Conv", {"pads": [2, 2, 2, 2], "dilations": [2, 2], "group": 2},
                             [_rand(1, 4, 8, 8)], [_rand(6, 2, 3, 3), _rand(6)]),
    "conv_asymmetric_pads": ("Conv", {"pads": [0, 1, 2, 1], "strides": [1, 2]}, [_rand(1, 3, 6, 6)],
                             [_rand(2, 3, 3, 3)]),
    "conv_transpose": ("ConvTranspose", {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 0]},
                       [_rand(2, 3, 5, 5)], [_rand(3, 4, 3, 3), _rand(4)]),
    "conv_transpose_output_shape": ("ConvTranspose", {"strides": [2, 2], "output_shape": [10, 9], "group": 3},
                                    [_rand(1, 6, 5, 5)], [_rand(6, 2, 3, 3)]),
    "max_pool_dilated": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                     "dilations": [2, 2]}, [_rand(1, 2, 9, 9)], []),
    "max_pool_ceil": ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, [_rand(1, 2, 8, 8)],
                      []),
    "average_pool_ceil": ("AveragePool", {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
                          [_rand(1, 2, 5, 5)], []),
    "max_pool_same_upper": ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
                            [_rand(1, 2, 7, 7)], []),
    "average_pool_excluding_pad": ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2],
                                                   "pads": [1, 1, 1, 1]}, [_rand(2, 3, 8, 8)], []),
    "average_pool_including_pad": ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                                   "count_include_pad": 1}, [_rand(1, 2, 5, 5)], []),
    "lp_pool": ("LpPool", {"kernel_shape": [2, 2], "strides": [2, 2], "p": 2}, [_rand(1, 3, 6, 6)], []),
    "global_average_pool": ("GlobalAveragePool", {}, [_rand(2, 3, 5, 4)], []),
    "global_max_pool": ("GlobalMaxPool", {}, [_rand(2, 3, 5, 4)], []),
    "batch_normalization": ("BatchNormalization", {"epsilon": 1e-3}, [_rand(2, 3, 4, 4)],
                            [_rand(3), _rand(3, seed=5), np.float32([0.1, -0.2, 0.3]), np.float32([0.5, 1.0, 2.0])]),
    "lrn": ("LRN", {"size": 5, "alpha": 0.01, "beta": 0.6, "bias": 2.0}, [_rand(2, 7, 3, 3)], []),
    "relu": ("Relu", {}, [_rand(3, 4)], []),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}, [_rand(3, 4)], []),
    "clip": ("Clip", {}, [_rand(3, 4)], [np.float32(-0.5), np.float32(0.7)]),
    "sigmoid": ("Sigmoid", {}, [_rand(3, 4)], []),
    "tanh": ("Tanh", {}, [_rand(3, 4)], []),
    "erf": ("Erf", {}, [2 * _rand(3, 4)], []),
    "hard_swish": ("HardSwish", {}, [4 * _rand(3, 4)], []),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, [4 * _rand(3, 4)], []),
    "gemm_linear": ("Gemm", {"transB": 1}, [_rand(2, 5)], [_rand(3, 5), _rand(3)]),
    "gemm_general": ("Gemm", {"transA": 1, "alpha": 0.5, "beta": 2.0}, [_rand(5, 2)], [_rand(5, 3), _rand(1, 3)]),
    "matmul": ("MatMul", {}, [_rand(2, 3, 4)], [_rand(4, 5)]),
    "add": ("Add", {}, [_rand(2, 3, 4)], [_rand(3, 1)]),
    "sub": ("Sub", {}, [_rand(2, 3)], [_rand(3)]),
    "mul": ("Mul", {}, [_rand(2, 3)], [_rand(2, 1)]),
    "div": ("Div", {}, [_rand(2, 3)], [np.float32([1.5, -2.0, 4.0])]),
    "pow": ("Pow", {}, [np.abs(_rand(2, 3)) + 0.1], [np.float32(1.5)]),
    "concat": ("Concat", {"axis": 1}, [_rand(2, 3, 2)], [_rand(2, 1, 2)]),
    "flatten": ("Flatten", {"axis": 2}, [_rand(2, 3, 4, 5)], []),
    "reshape": ("Reshape", {}, [_rand(2, 3, 4)], [_ints(0, -1, 2)]),
    "transpose": ("Transpose", {"perm": [2, 0, 1]}, [_rand(2, 3, 4)], []),
    "squeeze": ("Squeeze", {}, [_rand(2, 1, 4, 1)], [_ints(1, -1)]),
    "unsqueeze": ("Unsqueeze", {}, [_rand(2, 4)], [_ints(0, 3)]),
    "softmax": ("Softmax", {"axis": 1}, [_rand(2, 5, 3)], []),
    "dropout": ("Dropout", {}, [_rand(2, 5)], [np.float32(0.4)]),
    "pad_constant": ("Pad", {"mode": "constant"}, [_rand(1, 2, 3, 3)], [_ints(0, 0, 1, 2, 0, 0, 2, 1),
                                                                        np.float32(0.5)]),
    "pad_reflect": ("Pad", {"mode": "reflect"}, [_rand(1, 2, 4, 4)], [_ints(0, 0, 1, 2, 0, 0, 2, 1)]),
    "pad_edge": ("Pad", {"mode": "edge"}, [_rand(1, 2, 3, 3)], [_ints(0, 0, 2, 0, 0, 0, 0, 2)]),
    "identity": ("Identity", {}, [_rand(2, 2)], []),
    "slice_reversed": ("Slice", {}, [_rand(4, 6)], [_ints(-1, 1), _ints(-9999, 5), _ints(0, 1), _ints(-1, 2)]),
    "gather": ("Gather", {"axis": 1}, [_rand(2, 5, 3)], [_ints(4, 0, -2)]),
    "expand": ("Expand", {}, [_rand(3, 1)], [_ints(2, 3, 4)]),
    "where": ("Where", {}, [_rand(2, 3)], None),  # built below: condition constant, x, y
}


def _operator_model(op_type, attributes, inputs, constants):
    helper = onnx.helper
    names = [f"in{i}" for i in range(len(inputs))]
    initializers = [onnx.numpy_helper.from_array(np.asarray(value), f"c{i}") for i, value in enumerate(constants)]
    node = helper.make_node(op_type, names + [t.name for t in initializers], ["out"], name=f"the_{op_type}",
                            **attributes)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, v.shape)
                                            for n, v in zip(names, inputs)],
                              [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)],
                              initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _declare_output_shape(proto, path, shape):
    """onnx.checker (which cnnkit_onnx.load runs) wants the output's shape declared; onnxruntime does not."""
    dims = proto.graph.output[0].type.tensor_type.shape.dim
    del dims[:]
    for size in shape:
        dims.add().dim_value = size
    onnx.save(proto, str(path))


@pytest.mark.parametrize("case", sorted(OPERATOR_CASES))
def test_operator_matches_onnxruntime(case, tmp_path):
    op_type, attributes, inputs, constants = OPERATOR_CASES[case]
    if case == "where":
        constants, inputs = [], [np.array([[True, False, True], [False, False, True]]), *inputs, _rand(1, 3)]
        proto = _operator_model("Where", {}, inputs[1:], [])
        proto.graph.node[0].input.insert(0, "condition")
        proto.graph.initializer.append(onnx.numpy_helper.from_array(inputs[0], "condition"))
        inputs = inputs[1:]
    else:
        proto = _operator_model(op_type, attributes, inputs, constants)
    path = tmp_path / f"{case}.onnx"
    onnx.save(proto, str(path))
    feeds = {f"in{i}": value for i, value in enumerate(inputs)}
    expected = _session(path).run(None, feeds)[0]
    _declare_output_shape(proto, path, expected.shape)
    model = cnnkit_onnx.load(path)
    with cnnkit.no_grad():
        got = model(*inputs)
    got = got.numpy() if hasattr(got, "numpy") else np.asarray(got)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_shape_subgraph_with_if_matches_onnxruntime(tmp_path):
    """x.reshape(N, -1) computed the way exporters write it: Shape, Gather, Unsqueeze, Concat, an If on Equal,
    ConstantOfShape, Range, Cast and Expand; plus a Constant and a Slice with a step."""
    h = onnx.helper
    c = onnx.numpy_helper.from_array
    then_graph = h.make_graph([h.make_node("Identity", ["batch_1d"], ["chosen"])], "then", [],
                              [h.make_tensor_value_info("chosen", onnx.TensorProto.INT64, [1])])
    else_graph = h.make_graph([h.make_node("Constant", [], ["chosen"], value=c(_ints(-7)))], "else", [],
                              [h.make_tensor_value_info("chosen", onnx.TensorProto.INT64, [1])])
    nodes = [
        h.make_node("Shape", ["x"], ["shape"]),
        h.make_node("Gather", ["shape", "zero"], ["batch"], axis=0),
        h.make_node("Unsqueeze", ["batch", "axis0"], ["batch_1d"]),
        h.make_node("Equal", ["batch", "batch"], ["same"]),
        h.make_node("If", ["same"], ["rows"], then_branch=then_graph, else_branch=else_graph),
        h.make_node("Constant", [], ["minus_one"], value=c(_ints(-1))),
        h.make_node("Concat", ["rows", "minus_one"], ["target"], axis=0),
        h.make_node("Reshape", ["x", "target"], ["flat"]),
        h.make_node("ConstantOfShape", ["two"], ["ones"], value=c(np.float32([1.0]))),
        h.make_node("Range", ["start", "limit", "delta"], ["steps"]),
        h.make_node("Cast", ["steps"], ["steps_float"], to=onnx.TensorProto.FLOAT),
        h.make_node("Expand", ["steps_float", "row_shape"], ["grid"]),
        h.make_node("Mul", ["ones", "grid"], ["scaled"]),
        h.make_node("Slice", ["flat", "slice_start", "slice_end", "slice_axis", "slice_step"], ["strided"]),
        h.make_node("Add", ["strided", "scaled"], ["out"]),
    ]
    initializers = [c(_ints(0), "zero"), c(_ints(0), "axis0"), c(_ints(2, 6), "two"), c(np.array(0, np.int64), "start"),
                    c(np.array(12, np.int64), "limit"), c(np.array(2, np.int64), "delta"), c(_ints(2, 6), "row_shape"),
                    c(_ints(0), "slice_start"), c(_ints(12), "slice_end"), c(_ints(1), "slice_axis"),
                    c(_ints(2), "slice_step")]
    nodes[1] = h.make_node("Gather", ["shape", "zero_scalar"], ["batch"], axis=0)
    initializers.append(c(np.array(0, dtype=np.int64), "zero_scalar"))
    graph = h.make_graph(nodes, "shapes", [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["n", 3, 2, 2])],
                         [h.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)], initializer=initializers)
    path = tmp_path / "shapes.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))
    x = _rand(2, 3, 2, 2)
    expected = _session(path).run(None, {"x": x})[0]
    _declare_output_shape(onnx.load(str(path)), path, expected.shape)
    with cnnkit.no_grad():
        np.testing.assert_allclose(cnnkit_onnx.load(path)(x).numpy(), expected, rtol=1e-6)


def test_export_command_help_and_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["export", "--help"])
    assert info.value.code == 0 and "examples:" in capsys.readouterr().out
    assert main(["export", str(tmp_path / "missing.safetensors"), str(tmp_path / "m.onnx")]) == 2
    error = capsys.readouterr().err
    assert "cnnkit export: error:" in error and "missing.safetensors" in error and "Traceback" not in error


def test_predict_runs_a_torch_exported_model(tmp_path, capsys):
    torch.manual_seed(0)
    module = tnn.Sequential(tnn.Conv2d(3, 4, 3, stride=2), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 7 * 7, 6)).eval()
    path = _torch_export(module, torch.randn(1, 3, 16, 16), tmp_path / "torch.onnx", dynamo=False)
    from PIL import Image
    image = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(image)
    assert main(["predict", str(path), str(image), "--top", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # no metadata: the image is resized to the graph's 16x16 input, scaled to [0, 1], classes are numbered
    resized = np.asarray(Image.fromarray(pixels).resize((16, 16), Image.Resampling.BILINEAR), np.float32) / 255
    with torch.no_grad():
        logits = module(torch.from_numpy(resized.transpose(2, 0, 1)[None].copy()))[0].numpy()
    assert lines[1].split()[1] == str(int(np.argmax(logits)))
