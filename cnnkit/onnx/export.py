"""``export(model, input_size, path)``: trace a cnnkit model and write it as an ONNX graph with a dynamic batch."""
from __future__ import annotations

import os

import numpy as np

from .converters import CONVERTERS
from .errors import OnnxError, onnx_package
from .trace import example_input, trace

TRACE_BATCH = 2  # traced batch size; dimension 0 of that size is written as the symbolic "batch"
INPUT_NAME, OUTPUT_NAME = "input", "output"


class GraphBuilder:
    """Collects nodes and initializers; names tensors by state_dict key, graph input/output or a counter."""

    def __init__(self, onnx, opset, batch):
        self.onnx, self.helper, self.opset, self.batch = onnx, onnx.helper, opset, batch
        self.nodes, self.initializers, self.names, self._count = [], [], {}, 0
        # set by build_graph: the model's state_dict keys, and state_array(array, hint) -> name for raw arrays
        self.state_order, self.state_array = [], None
        # id of a max pooling's indices array -> the name of the MaxPool node's Indices output (for MaxUnpool)
        self.pool_indices = {}

    def fresh(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def constant(self, array, hint="const"):
        """Add ``array`` as an initializer and return its name."""
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(np.asarray(array), name))
        return name

    def ints(self, values, hint="shape"):
        return self.constant(np.asarray(values, dtype=np.int64), hint)

    def node(self, op_type, inputs, outputs=1, **attributes):
        """Append one node; returns its output name (or a list of names when ``outputs`` > 1)."""
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, name=names[0], **attributes))
        return names[0] if outputs == 1 else names

    def reduce(self, op_type, x, axes, keepdims):
        """Reduce* with ``axes`` as an attribute (opset < 18) or an input (opset >= 18; ReduceSum from 13)."""
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.node(op_type, [x, self.ints(axes, "axes")], keepdims=int(keepdims))
        return self.node(op_type, [x], axes=list(axes), keepdims=int(keepdims))

    def dynamic_shape(self, shape, input_shape):
        """A Reshape/Expand target where a leading batch dimension kept from the input becomes 0 ("copy")."""
        shape = list(shape)
        if shape and input_shape and shape[0] == input_shape[0] == self.batch:
            shape[0] = 0
        return shape


def _state_names(model):
    """Names of the model's parameters and buffers by tensor id and by array id (BatchNorm passes arrays)."""
    by_tensor, by_array = {}, {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        by_tensor[id(tensor)] = key
        by_array[id(tensor.data)] = key
    return by_tensor, by_array


def build_graph(model, input_size, opset=17):
    """The ``onnx.ModelProto`` of ``model`` (traced in eval mode) for inputs of shape ``(batch, *input_size)``."""
    onnx = onnx_package()
    input_size = tuple(int(s) for s in input_size)
    was_training = model.training
    model.eval()
    try:
        x, output, ops = trace(model, example_input(model, input_size, TRACE_BATCH))
    finally:
        model.train(was_training)
    builder = GraphBuilder(onnx, opset, TRACE_BATCH)
    by_tensor, by_array = _state_names(model)
    state = model.state_dict()
    builder.state_order = list(state)
    builder.names[id(x)] = INPUT_NAME
    used = {}

    def name_of(tensor):
        if tensor is None:
            return ""
        key = id(tensor)
        if key not in builder.names:
            if key in by_tensor:  # a parameter or buffer: an initializer under its state_dict key
                builder.names[key] = by_tensor[key]
                used[by_tensor[key]] = state[by_tensor[key]]
            else:  # a constant built inside forward (or a number), baked into the graph
                builder.names[key] = builder.constant(tensor.data)
        return builder.names[key]

    def state_array(array, hint):
        """Name of a raw array argument: its state_dict key when it is a buffer, else a new constant."""
        key = by_array.get(id(array))
        if key is None:
            return builder.constant(array, hint)
        used[key] = state[key]
        return key

    builder.state_array = state_array
    for fn, out in ops:
        convert = CONVERTERS.get(type(fn))
        if convert is None:
            supported = ", ".join(sorted(kind.__name__ for kind in CONVERTERS))
            raise OnnxError(f"export: {type(model).__name__} uses the op {type(fn).__name__} (output shape "
                            f"{tuple(out.shape)}), which has no ONNX conversion; supported: {supported}")
        raw = getattr(fn, "raw_inputs", fn.inputs)
        inputs = [name_of(t) if t is not None or value is None else builder.constant(value)
                  for t, value in zip(fn.inputs, raw)]
        builder.names[id(out)] = convert(builder, fn, inputs, fn.inputs, out)
    result = builder.names.get(id(output), name_of(output))
    builder.nodes.append(onnx.helper.make_node("Identity", [result], [OUTPUT_NAME], name=OUTPUT_NAME))
    return _model_proto(onnx, builder, used, x, output, type(model).__name__)


def _model_proto(onnx, builder, used, x, output, graph_name):
    helper = onnx.helper
    element = helper.np_dtype_to_tensor_dtype(x.dtype)
    graph = helper.make_graph(
        builder.nodes, graph_name,
        [helper.make_tensor_value_info(INPUT_NAME, element, ["batch", *x.shape[1:]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, element, ["batch", *output.shape[1:]])],
        initializer=builder.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", builder.opset)],
                              producer_name="cnnkit")
    # Weights go straight into the model (make_graph and make_model would copy VGG's 0.5 GB twice more),
    # in the state_dict's order so that an import lists them as the model does.
    order = {key: index for index, key in enumerate(builder.state_order)}
    for key in sorted(used, key=order.get):
        array = np.ascontiguousarray(used[key])
        tensor = model.graph.initializer.add()
        tensor.name, tensor.data_type = key, helper.np_dtype_to_tensor_dtype(array.dtype)
        tensor.dims.extend(array.shape)
        tensor.raw_data = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
    return model


def export(model, input_size, path, opset=17, metadata=None):
    """Write ``model`` as ONNX to ``path``: input "input" of shape ``(batch, *input_size)``, output "output".

    ``metadata``: string key/values stored in the file's ``metadata_props`` (``cnnkit export`` stores the
    training data's description there, so ``cnnkit predict model.onnx`` normalizes and names classes).
    """
    onnx = onnx_package()
    if not 13 <= int(opset) <= 21:
        raise ValueError(f"export: opset must be between 13 and 21, got {opset}")
    if len(tuple(input_size)) not in (2, 3, 4):
        raise ValueError(f"export: input_size is one sample's (channels, height, width) (or (channels, length), "
                         f"(channels, depth, height, width) for 1-D and 3-D models), got {tuple(input_size)}; "
                         "for MNIST-size digits use (1, 28, 28)")
    proto = build_graph(model, input_size, int(opset))
    if metadata:
        onnx.helper.set_model_props(proto, {str(key): str(value) for key, value in metadata.items()})
    data = proto.SerializeToString()  # once, for the checker and the file (VGG's is 0.5 GB)
    onnx.checker.check_model(data)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as file:
        file.write(data)
    return path
