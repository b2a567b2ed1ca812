"""cnnkit.onnx beyond the zoo: the tracing hook, converters keyed by class, Gelu and DeformConv export, the
activations added for the node tests round-tripping through export, and clear errors for unsupported types."""
import threading

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

import cnnkit  # noqa: E402
from cnnkit import functional as F  # noqa: E402
from cnnkit import onnx as cnnkit_onnx  # noqa: E402
from cnnkit.autograd import Function  # noqa: E402
from cnnkit.autograd.function import tracing  # noqa: E402
from cnnkit.onnx import OnnxError  # noqa: E402
from cnnkit.onnx.converters import CONVERTERS  # noqa: E402

helper, TensorProto = onnx.helper, onnx.TensorProto


def _session_outputs(path, feeds):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _rand(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def test_tracing_is_per_thread_and_leaves_function_apply_alone():
    original = Function.__dict__["apply"]
    seen, other_thread = [], []
    x = cnnkit.tensor(_rand(2, 3), requires_grad=True)

    def elsewhere():
        other_thread.append(F.relu(x))

    with tracing(lambda fn, inputs: seen.append((type(fn).__name__, len(inputs)))):
        assert Function.__dict__["apply"] is original
        F.relu(x)
        worker = threading.Thread(target=elsewhere)
        worker.start()
        worker.join(timeout=30)
        with cnnkit.no_grad():  # ops are seen whether or not they record a graph
            F.sigmoid(x)
    F.tanh(x)
    assert other_thread and seen == [("_Relu", 1), ("_Sigmoid", 1)]
    assert Function.__dict__["apply"] is original


def test_converters_are_keyed_by_function_classes():
    assert all(isinstance(kind, type) and issubclass(kind, Function) for kind in CONVERTERS)
    from cnnkit.functional.normalization import _BatchNorm
    assert _BatchNorm in CONVERTERS  # the functional op, not nn's module base class of the same name


class GeluNet(cnnkit.nn.Module):
    def __init__(self, approximate):
        super().__init__()
        self.conv, self.approximate = cnnkit.nn.Conv2d(2, 3, 3, padding=1), approximate

    def forward(self, x):
        return F.gelu(self.conv(x), approximate=self.approximate)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_exports_as_one_node_from_opset_20(approximate, tmp_path):
    model = GeluNet(approximate).eval()
    images = _rand(2, 2, 5, 5)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(images)).numpy()
    for opset in (17, 20):
        path = cnnkit_onnx.export(model, (2, 5, 5), tmp_path / f"gelu{opset}.onnx", opset=opset)
        op_types = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert ("Gelu" in op_types) == (opset >= 20)
        np.testing.assert_allclose(_session_outputs(path, {"input": images})[0], expected, rtol=1e-5, atol=1e-6)
        with cnnkit.no_grad():
            np.testing.assert_allclose(cnnkit_onnx.load(path)(images).numpy(), expected, rtol=1e-5, atol=1e-6)


class DeformNet(cnnkit.nn.Module):
    """A DCNv2 block: a conv predicts offsets and mask, deform_conv2d samples with them (two offset groups)."""

    def __init__(self, bias=True, mask=True):
        super().__init__()
        self.offsets = cnnkit.nn.Conv2d(4, 2 * 2 * 9, 3, padding=1)
        self.mask = cnnkit.nn.Conv2d(4, 2 * 9, 3, padding=1) if mask else None
        rng = np.random.default_rng(1)
        self.weight = cnnkit.nn.Parameter((0.2 * rng.standard_normal((6, 2, 3, 3))).astype(np.float32))
        self.bias = cnnkit.nn.Parameter(rng.standard_normal(6).astype(np.float32)) if bias else None

    def forward(self, x):
        mask = F.sigmoid(self.mask(x)) if self.mask is not None else None
        return F.deform_conv2d(x, self.offsets(x), self.weight, self.bias, stride=1, padding=1, mask=mask)


@pytest.mark.parametrize("bias,mask", [(True, True), (False, False), (False, True)])
def test_deform_conv_exports_as_onnx_deform_conv_and_loads_back(bias, mask, tmp_path):
    model = DeformNet(bias, mask).eval()
    images = _rand(2, 4, 6, 5, seed=2)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(images)).numpy()
    path = cnnkit_onnx.export(model, (4, 6, 5), tmp_path / "deform.onnx", opset=19)
    assert "DeformConv" in {node.op_type for node in onnx.load(str(path)).graph.node}
    np.testing.assert_allclose(_session_outputs(path, {"input": images})[0], expected, rtol=1e-4, atol=1e-5)
    loaded = cnnkit_onnx.load(path)
    with cnnkit.no_grad():
        np.testing.assert_allclose(loaded(images).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert set(loaded.state_dict()) == set(model.state_dict())


def test_deform_conv_export_below_opset_19_is_a_clear_error(tmp_path):
    with pytest.raises(OnnxError, match="DeformConv.*opset 19"):
        cnnkit_onnx.export(DeformNet(), (4, 6, 5), tmp_path / "deform.onnx", opset=17)


def _activation_chain(path):
    """Mish -> Softplus -> Selu -> PRelu (per-channel slope) -> Gelu -> Max/Min/Mean/Sum with the input."""
    nodes = [helper.make_node("Mish", ["x"], ["a"]), helper.make_node("Softplus", ["a"], ["b"]),
             helper.make_node("Selu", ["b"], ["c"], alpha=1.5, gamma=0.9),
             helper.make_node("PRelu", ["x", "slope"], ["d"]), helper.make_node("Gelu", ["d"], ["e"]),
             helper.make_node("Max", ["c", "e", "x"], ["f"]), helper.make_node("Min", ["f", "d"], ["g"]),
             helper.make_node("Mean", ["g", "c"], ["h"]), helper.make_node("Sum", ["h", "x", "e"], ["y"])]
    slope = onnx.numpy_helper.from_array(np.array([0.1, -0.5, 2.0], np.float32).reshape(3, 1, 1), "slope")
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 4, 4])],
                              initializer=[slope])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)]), str(path))
    return path


def test_new_activations_match_onnxruntime_train_and_export_again(tmp_path):
    path = _activation_chain(tmp_path / "chain.onnx")
    x = 2 * _rand(2, 3, 4, 4, seed=3)
    expected = _session_outputs(path, {"x": x})[0]
    loaded = cnnkit_onnx.load(path)
    with cnnkit.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), expected, rtol=1e-5, atol=1e-6)
    loaded.train()
    loaded(x).sum().backward()  # the PRelu slope is a parameter and gets a gradient
    assert np.abs(dict(loaded.named_parameters())["slope"].grad).sum() > 0
    exported = cnnkit_onnx.export(loaded.eval(), (3, 4, 4), tmp_path / "again.onnx")
    np.testing.assert_allclose(_session_outputs(exported, {"input": x})[0], expected, rtol=1e-5, atol=1e-5)


def test_unsupported_element_types_are_clear_errors(tmp_path):
    cast = helper.make_node("Cast", ["x"], ["y"], name="to_fp8", to=TensorProto.FLOAT8E4M3FN)
    graph = helper.make_graph([cast], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT8E4M3FN, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(tmp_path / "fp8.onnx"))
    with pytest.raises(OnnxError, match="'to_fp8'.*Cast to float8_e4m3fn is not supported"):
        cnnkit_onnx.load(tmp_path / "fp8.onnx")(np.ones(2, np.float32))
    identity = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph([identity], "g", [helper.make_tensor_value_info("x", TensorProto.BFLOAT16, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [2])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(tmp_path / "bf16.onnx"))
    with pytest.raises(OnnxError, match="graph input 'x' has element type bfloat16"):
        cnnkit_onnx.load(tmp_path / "bf16.onnx")


def test_integer_inputs_keep_their_type_through_div_and_clip(tmp_path):
    nodes = [helper.make_node("Div", ["a", "b"], ["q"]), helper.make_node("Clip", ["q", "low", "high"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(name, TensorProto.INT8, [4])
                                           for name in ("a", "b", "low", "high")],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, [4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), str(tmp_path / "int.onnx"))
    a, b = np.array([7, -7, 100, -9], np.int8), np.array([2, 2, 3, 4], np.int8)
    low, high = np.array(-3, np.int8), np.array(20, np.int8)
    got = cnnkit_onnx.load(tmp_path / "int.onnx")(a, b, low, high)
    assert got.dtype == np.int8
    np.testing.assert_array_equal(got, [3, -3, 20, -2])  # truncation toward zero, then clipped


SINGLE_NODES = [  # cases the official node tests do not cover, each checked against onnx's reference evaluator
    ("GlobalLpPool", {"p": 3}, [(2, 3, 5, 4)]),
    ("GlobalLpPool", {}, [(1, 2, 3, 3)]),
    ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 2, 2, 1], "storage_order": 1},
     [(2, 3, 7, 6)]),
    ("MaxPool", {"kernel_shape": [3, 3], "pads": [2, 0, 2, 2], "storage_order": 0}, [(1, 2, 5, 6)]),
    ("AveragePool", {"kernel_shape": [3, 2], "strides": [2, 1], "dilations": [2, 3], "pads": [1, 1, 2, 0],
                     "count_include_pad": 1}, [(2, 2, 9, 8)]),
    ("AveragePool", {"kernel_shape": [3, 3], "pads": [2, 1, 2, 2], "count_include_pad": 0, "strides": [2, 2]},
     [(1, 2, 6, 7)]),
    ("LpPool", {"kernel_shape": [2, 2], "dilations": [2, 1], "pads": [1, 0, 1, 1], "p": 3}, [(1, 2, 6, 5)]),
    ("ConvTranspose", {"strides": [3, 2], "auto_pad": "SAME_LOWER"}, [(1, 2, 3, 4), (2, 3, 3, 3), (3,)]),
    ("ConvTranspose", {"strides": [2, 2], "output_shape": [8, 7]}, [(1, 2, 3, 3), (2, 1, 3, 2)]),
]


@pytest.mark.parametrize("op_type,attributes,shapes", SINGLE_NODES)
def test_single_node_matches_the_onnx_reference(op_type, attributes, shapes, tmp_path):
    """The reference where it has the op: onnxruntime refuses pads as wide as the kernel and larger output_shapes."""
    from onnx.reference import ReferenceEvaluator

    names = [f"in{i}" for i in range(len(shapes))]
    outputs = ["y", "indices"] if op_type == "MaxPool" else ["y"]
    node = helper.make_node(op_type, names, outputs, **attributes)
    inputs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in zip(names, shapes)]
    declared = [helper.make_tensor_value_info(name, element, ["n", "c", "h", "w"])
                for name, element in zip(outputs, (TensorProto.FLOAT, TensorProto.INT64))]
    graph = helper.make_graph([node], "g", inputs, declared)
    path = tmp_path / "node.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 19)]), str(path))
    values = [_rand(*shape, seed=i) for i, shape in enumerate(shapes)]
    feeds = dict(zip(names, values))
    # GlobalLpPool has no reference implementation, and the reference's MaxPool gives [2, 0, 2, 2] pads a 5x8
    # output from 5x6 where the spec's [x1_begin, x2_begin, x1_end, x2_end] order gives 7x6; onnxruntime runs both
    expected = (_session_outputs(path, feeds) if op_type in ("GlobalLpPool", "MaxPool")
                else ReferenceEvaluator(str(path)).run(None, feeds))
    with cnnkit.no_grad():
        got = cnnkit_onnx.load(path)(*values)
    got = got if isinstance(got, tuple) else (got,)
    for want, have in zip(expected, got):
        have = np.asarray(have.numpy() if isinstance(have, cnnkit.Tensor) else have)
        assert have.shape == want.shape and have.dtype == want.dtype
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
