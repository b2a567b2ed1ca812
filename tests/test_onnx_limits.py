"""ONNX files that ask for absurd allocations are refused with an error naming the node (or input) and the file."""
import importlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from cnnkit.onnx import OnnxError, load  # noqa: E402


def save(tmp_path, nodes, inputs, outputs, initializers=(), name="model.onnx"):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def value(name, shape, kind=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, kind, shape)


@pytest.mark.parametrize("shape", [[1, 3, 100000, 100000], [70000, 70000], [2 ** 31, 1], [None, 3, 2 ** 20, 2 ** 20]])
def test_a_huge_declared_input_is_refused_when_loading(tmp_path, shape):
    dims = ["batch" if size is None else size for size in shape]
    path = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], [value("x", dims)],
                [value("y", dims)])
    with pytest.raises(OnnxError, match="graph input 'x'") as caught:
        load(path)
    assert str(path) in str(caught.value) and "elements" in str(caught.value)


def shape_tensor(name, values):
    return numpy_helper.from_array(np.asarray(values, dtype=np.int64), name)


ABSURD_NODES = {
    "ConstantOfShape": ([helper.make_node("ConstantOfShape", ["shape"], ["big"], name="fill")],
                        [shape_tensor("shape", [100000, 100000, 100])], 3, TensorProto.FLOAT),
    "Expand": ([helper.make_node("Expand", ["x", "shape"], ["big"], name="grow")],
               [shape_tensor("shape", [50000, 50000, 1, 1])], 4, TensorProto.FLOAT),
    "Range": ([helper.make_node("Range", ["start", "limit", "delta"], ["big"], name="count")],
              [numpy_helper.from_array(np.array(0, np.int64), "start"),
               numpy_helper.from_array(np.array(10 ** 13, np.int64), "limit"),
               numpy_helper.from_array(np.array(1, np.int64), "delta")], 1, TensorProto.INT64),
    "Pad": ([helper.make_node("Pad", ["x", "pads"], ["big"], name="pad")],
            [shape_tensor("pads", [0, 0, 60000, 60000, 0, 0, 60000, 60000])], 4, TensorProto.FLOAT),
}


@pytest.mark.parametrize("op", list(ABSURD_NODES))
def test_shape_arithmetic_that_asks_for_an_absurd_allocation_is_refused(tmp_path, op):
    nodes, initializers, rank, kind = ABSURD_NODES[op]
    nodes = nodes + [helper.make_node("Identity", ["big"], ["y"], name="out")]
    output = value("y", [f"d{axis}" for axis in range(rank)], kind)
    path = save(tmp_path, nodes, [value("x", [1, 1, 2, 2])], [output], initializers)
    model = load(path)
    with pytest.raises(OnnxError) as caught:
        model(np.ones((1, 1, 2, 2), np.float32))
    message = str(caught.value)
    assert str(path) in message and f"node {nodes[0].name!r} ({op})" in message and "elements" in message


def test_a_memory_error_inside_an_op_is_wrapped(tmp_path, monkeypatch):
    path = save(tmp_path, [helper.make_node("Relu", ["x"], ["y"], name="relu")], [value("x", [1, 4])],
                [value("y", [1, 4])])
    model = load(path)

    def exhausted(node, x):
        raise MemoryError("Unable to allocate 1.00 TiB")

    monkeypatch.setitem(importlib.import_module("cnnkit.onnx.load").OPS, "Relu", exhausted)
    with pytest.raises(OnnxError, match="node 'relu' \\(Relu\\) ran out of memory") as caught:
        model(np.ones((1, 4), np.float32))
    assert str(path) in str(caught.value)


def test_reasonable_models_still_run(tmp_path):
    nodes = [helper.make_node("ConstantOfShape", ["shape"], ["filled"], name="fill"),
             helper.make_node("Add", ["x", "filled"], ["y"], name="add")]
    path = save(tmp_path, nodes, [value("x", [2, 3])], [value("y", [2, 3])], [shape_tensor("shape", [2, 3])])
    np.testing.assert_array_equal(load(path)(np.ones((2, 3), np.float32)).data, np.ones((2, 3)))
