"""``compile_trace``: a traced call turned into a ``Program``, a flat list of steps over planned buffers."""
from __future__ import annotations

from ..autograd import ops as A
from ..backend import get_array_module
from .buffers import BufferPool, last_reads, root_of
from .graph import Graph, Ref
from .steps import evaluate, make_step


class Program:
    """The compiled call for one input shape: copy the input in, run the steps, copy the output out.

    ``names`` lists each step's op with its fusions (e.g. "Conv2d+BatchNorm+relu"; "(recorded forward)" marks
    an op run by its own Function); ``buffer_bytes`` is the memory of the planned buffers (weights and the
    kernels' own scratch not counted).
    """

    __slots__ = ("input", "output", "steps", "names", "buffer_bytes")

    def __init__(self, input, output, steps, names, buffer_bytes):
        self.input, self.output, self.steps, self.names = input, output, tuple(steps), tuple(names)
        self.buffer_bytes = buffer_bytes

    def run(self, x):
        """The output for ``x`` (same shape and dtype as the traced input) as a new array."""
        get_array_module().copyto(self.input, x)
        for step in self.steps:
            step()
        return self.output.copy()


def compile_trace(x, output, ops):
    """The ``Program`` of a traced call (``cnnkit.autograd.recording.record``'s result)."""
    graph = Graph(x, output, ops).fuse()
    # a reshape of a planned (contiguous) buffer is a view of it: no step, and it keeps that buffer alive
    views = {node.output: node.inputs[0].value for node in graph.nodes
             if type(node.fn) is A.Reshape and isinstance(node.inputs[0], Ref)}
    last = last_reads(graph, views)
    pool = BufferPool()
    arrays, flats = {}, {}
    arrays[graph.input], flats[graph.input] = pool.take(x.shape, x.dtype)
    steps, names = [], []
    for index, node in enumerate(graph.nodes):
        inputs = [arrays[item.value] if isinstance(item, Ref) else item for item in node.inputs]
        view = inputs[0].reshape(node.shape) if node.output in views else None
        if view is not None and get_array_module().shares_memory(view, inputs[0]):
            arrays[node.output] = view
        elif not node.refs():  # reads no value: the same on every call
            arrays[node.output] = evaluate(node, inputs)
        else:
            arrays[node.output], flats[node.output] = pool.take(node.shape, node.dtype)
            step, fell_back = make_step(node, inputs, arrays[node.output])
            steps.append(step)
            names.append(node.name + (" (recorded forward)" if fell_back else ""))
        for value in set(node.refs()):
            root = root_of(value, views)
            if last[root] == index and root in flats:
                pool.give(flats.pop(root))
    result = arrays[graph.output] if graph.output in arrays else output.data
    return Program(arrays[graph.input], result, steps, names, pool.allocated)
