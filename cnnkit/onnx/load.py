"""``load(path)``: an ONNX file as a trainable ``Module`` that runs its graph with cnnkit ops.

Reading an ONNX file parses a protobuf message: data, never code. Float initializers become
Parameters (BatchNormalization's running statistics become buffers), registered under their
initializer names, so ``state_dict()`` keys are the names the exporter wrote.
"""
from __future__ import annotations

import os
from collections import ChainMap

import numpy as np

from ..autograd import Tensor
from ..nn import Module, Parameter
from .errors import OnnxError, onnx_package
from .ops import OPS, const, ints, runnable

STATISTICS_INPUTS = {"BatchNormalization": (3, 4)}  # inputs that are running statistics, not weights
# The most elements one tensor may have (4 GiB of float32): a model asking for more is refused by name instead
# of exhausting the machine's memory.
MAX_ELEMENTS = 2 ** 30


class Node:
    """One parsed node: its operator, names, decoded attributes and the context its op needs."""

    __slots__ = ("op_type", "name", "index", "inputs", "outputs", "attrs", "opset", "training", "run")

    def __init__(self, proto, index, opset, parse_graph):
        onnx = onnx_package()
        self.op_type, self.name, self.index = proto.op_type, proto.name or f"#{index}", index
        self.inputs, self.outputs, self.opset = list(proto.input), list(proto.output), opset
        self.attrs = {}
        for attribute in proto.attribute:
            value = onnx.helper.get_attribute_value(attribute)
            if attribute.type == onnx.AttributeProto.TENSOR:
                value = onnx.numpy_helper.to_array(value)
            elif attribute.type == onnx.AttributeProto.GRAPH:
                value = parse_graph(value)
            self.attrs[attribute.name] = value
        self.training, self.run = False, None

    def describe(self):
        return f"node {self.name!r} ({self.op_type})"


class Graph:
    """A parsed (sub)graph: nodes in order, constant initializers, and its input and output names."""

    def __init__(self, proto, opset, path):
        onnx = onnx_package()
        self.nodes = []
        for index, node_proto in enumerate(proto.node):
            if node_proto.domain not in ("", "ai.onnx"):
                raise OnnxError(f"{path}: node {node_proto.name or index!r} uses operator {node_proto.op_type!r} "
                                f"of domain {node_proto.domain!r}; cnnkit.onnx runs only the standard ONNX domain")
            if node_proto.op_type not in OPS:
                raise OnnxError(f"{path}: node {node_proto.name or f'#{index}'!r} (#{index} of graph "
                                f"{proto.name!r}) uses operator {node_proto.op_type!r}, which cnnkit.onnx does not "
                                f"implement; supported operators: {', '.join(sorted(OPS))}")
            self.nodes.append(Node(node_proto, index, opset, lambda graph: Graph(graph, opset, path)))
        self.initializers = {init.name: onnx.numpy_helper.to_array(init) for init in proto.initializer}
        self.inputs = [value.name for value in proto.input if value.name not in self.initializers]
        self.outputs = [value.name for value in proto.output]


def _read(path):
    onnx = onnx_package()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such ONNX file: {path}")
    size = os.path.getsize(path)
    try:
        proto = onnx.load(path)
        onnx.checker.check_model(path)  # the path, not the message: models over protobuf's 2 GB limit pass too
    except Exception as error:  # protobuf's DecodeError, onnx's ValidationError, external-data errors, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise OnnxError(f"{path} is not a valid ONNX model ({size} bytes): {first}. It may be truncated by an "
                        "interrupted copy, corrupted, or another format; re-export it or use another file.") from None
    if not proto.graph.node:
        raise OnnxError(f"{path} holds an ONNX model without nodes ({size} bytes); it may be truncated or empty")
    return proto


def _static_shape(value_info):
    """A graph input's shape with None for symbolic or unknown dimensions (such as the batch)."""
    dims = value_info.type.tensor_type.shape.dim
    return tuple(dim.dim_value if dim.HasField("dim_value") else None for dim in dims)


def _element_dtype(value_info):
    """The NumPy dtype a graph input declares (None when it declares none)."""
    element = value_info.type.tensor_type.elem_type
    return np.dtype(onnx_package().helper.tensor_dtype_to_np_dtype(element)) if element else None


def _opset(proto):
    return next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), 1)


class OnnxModule(Module):
    """Runs an ONNX graph with cnnkit ops; call it with the graph's inputs in order (arrays or Tensors)."""

    def __init__(self, proto, path="<onnx model>"):
        super().__init__()
        self.path = path
        self.opset = _opset(proto)
        self.graph = Graph(proto.graph, self.opset, path)
        statistics = {node.inputs[i] for node in self.graph.nodes for i in STATISTICS_INPUTS.get(node.op_type, ())
                      if i < len(node.inputs)}
        self.constants, self.state_keys = {}, {}
        for name, array in self.graph.initializers.items():
            if array.dtype.kind != "f" or array.ndim == 0:
                self.constants[name] = array  # shapes, axes, scalars: not weights
                continue
            self.state_keys[name] = self._register(name, array, buffer=name in statistics)
        self.input_names, self.output_names = self.graph.inputs, self.graph.outputs
        self.metadata = {prop.key: prop.value for prop in proto.metadata_props}
        declared = [value for value in proto.graph.input if value.name in self.input_names]
        self.input_shapes = [_static_shape(value) for value in declared]
        for value, shape in zip(declared, self.input_shapes):
            _check_size(f"{path}: graph input {value.name!r} declares shape {shape}", shape)
        self.input_dtypes = [_element_dtype(value) for value in declared]
        for value, dtype in zip(declared, self.input_dtypes):
            if dtype is not None and not runnable(dtype):
                raise OnnxError(f"{path}: graph input {value.name!r} has element type {dtype}; cnnkit.onnx runs "
                                "NumPy's bool, integer and float types (no float8, bfloat16, 4-bit or string values)")

    def _register(self, name, array, buffer):
        """Register ``array`` under the dotted ``name`` (sub-modules for the prefixes); returns its state key."""
        parts = [part for part in name.split(".") if part]
        owner = self
        for part in parts[:-1]:
            child = owner._modules.get(part)
            if child is None:
                if part in owner._parameters or part in owner._buffers:
                    return self._register(name.replace(".", "_"), array, buffer)  # a name clash: flatten it
                child = Module()
                owner.add_module(part, child)
            owner = child
        leaf = parts[-1] if parts else "_"
        if leaf in owner._modules or leaf in owner._parameters or leaf in owner._buffers:
            return self._register(name.replace(".", "_") + "_", array, buffer)
        if buffer:
            owner.register_buffer(leaf, Tensor(np.array(array)))
        else:
            owner.register_parameter(leaf, Parameter(np.array(array)))
        return ".".join(parts[:-1] + [leaf])

    def forward(self, *inputs):
        if len(inputs) != len(self.input_names):
            raise OnnxError(f"{self.path}: the graph takes {len(self.input_names)} input(s) "
                            f"({', '.join(self.input_names)}), got {len(inputs)}")
        state = {**dict(self.named_parameters()), **dict(self.named_buffers())}
        env = {name: state[key] for name, key in self.state_keys.items()}
        env.update(self.constants)
        for name, value, dtype in zip(self.input_names, inputs, self.input_dtypes):
            if not isinstance(value, Tensor):  # arrays take the graph's declared type (float64 -> float32 ...)
                value = np.asarray(value, dtype=dtype)
            # integer and boolean inputs carry no gradient: they run as constants, in their own type
            if value.dtype.kind != "f":
                value = value.data if isinstance(value, Tensor) else value
            elif not isinstance(value, Tensor):
                value = Tensor(value)
            env[name] = value
        outputs = self._run(self.graph, env)
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _run(self, graph, env):
        for node in graph.nodes:
            missing = [name for name in node.inputs if name and name not in env]
            if missing:
                raise OnnxError(f"{self.path}: {node.describe()} reads {', '.join(map(repr, missing))}, which no "
                                "earlier node, input or initializer defines; the file is damaged or incomplete")
            args = [env[name] if name else None for name in node.inputs]
            node.training, node.run = self.training, lambda sub: self._run(sub, ChainMap(dict(sub.initializers),
                                                                                             env))
            try:
                _check_size(f"{self.path}: {node.describe()} asks for an output of shape",
                            _requested_shape(node.op_type, args))
                result = OPS[node.op_type](node, *args)
            except OnnxError:
                raise
            except MemoryError:
                raise OnnxError(f"{self.path}: {node.describe()} ran out of memory on inputs of shape "
                                f"{_shapes(args)}; the model needs smaller inputs or more memory") from None
            except (ValueError, TypeError, IndexError, KeyError) as error:
                raise OnnxError(f"{self.path}: {node.describe()} failed on inputs of shape {_shapes(args)}: "
                                f"{error}") from None
            results = result if isinstance(result, tuple) else (result,)
            for name, value in zip(node.outputs, results):
                if name:
                    env[name] = value
        return [env[name] for name in graph.outputs]

    def extra_repr(self):
        return f"{self.path!r}, opset={self.opset}, nodes={len(self.graph.nodes)}"


def _shapes(args):
    return ", ".join(str(tuple(a.shape)) if a is not None else "-" for a in args)


def _requested_shape(op_type, args):
    """The output shape of an op whose size comes from its input values (not only shapes), else None."""
    try:
        if op_type == "ConstantOfShape":
            return tuple(ints(args[0]))
        if op_type == "Expand":
            return np.broadcast_shapes(tuple(args[0].shape), tuple(ints(args[1])))
        if op_type == "Range":
            start, limit, delta = (float(const(a).reshape(-1)[0]) for a in args[:3])
            return (max(0, int(np.ceil((limit - start) / delta))),) if delta else None
        if op_type == "Pad" and len(args) > 1 and args[1] is not None:
            pads, shape = ints(args[1]), tuple(args[0].shape)
            if len(pads) == 2 * len(shape):
                return tuple(size + pads[i] + pads[i + len(shape)] for i, size in enumerate(shape))
    except (ValueError, TypeError, IndexError, OverflowError):
        return None  # malformed: the op itself gives the precise error
    return None


def _check_size(what, shape):
    """Raise OnnxError when a shape (None for unknown dimensions) holds more than MAX_ELEMENTS elements."""
    if shape is None:
        return
    known = [int(size) for size in shape if size is not None]
    if any(size < 0 for size in known):
        raise OnnxError(f"{what} {tuple(shape)}, with a negative size")
    elements = int(np.prod(known, dtype=object)) if known else 1
    if elements > MAX_ELEMENTS:
        raise OnnxError(f"{what} {tuple(shape)}: {elements:,} elements, more than the {MAX_ELEMENTS:,} "
                        "cnnkit.onnx allows for one tensor; the file asks for an absurd allocation")


def load(path):
    """An ONNX file as a cnnkit ``Module`` in eval mode (``.train()`` to fine-tune it)."""
    path = os.fspath(path)
    return OnnxModule(_read(path), path).eval()
