"""The recorded ops of one traced call as a graph of nodes over values, and its fusions.

A value is named by the id of the Tensor that held it during the trace; a node's inputs are ``Ref``\\ s to
values or constants (weights, buffers, numbers). Fusions rewrite the node list: a BatchNorm whose input is a
convolution's output used nowhere else is folded into that convolution, and a ReLU/ReLU6 whose input feeds
nothing else becomes the ``activation`` of the node that produced it.
"""
from __future__ import annotations

from ..autograd import ops as A
from ..functional import activation as act
from ..functional import normalization as norm
from ..functional.conv import ConvNdFunction
from ..functional.linear import _Linear

# Nodes whose step applies an activation to its output in the same pass.
ACTIVATION_HOSTS = (ConvNdFunction, norm._BatchNorm, A.Add, _Linear)
ACTIVATIONS = {act._Relu: "relu", act._Relu6: "relu6"}


class Ref:
    """A node input that is the value computed by another node (or the graph's input)."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value

    def __repr__(self):
        return f"Ref({self.value})"


class Node:
    """One recorded op: its Function (as recorded), inputs, output value, shape, dtype, and its fusions."""

    __slots__ = ("fn", "inputs", "output", "shape", "dtype", "output_index", "batch_norm", "activation")

    def __init__(self, fn, inputs, output, shape, dtype, output_index=None):
        self.fn, self.inputs, self.output = fn, inputs, output
        self.shape, self.dtype, self.output_index = tuple(shape), dtype, output_index
        self.batch_norm = None  # a folded _BatchNorm (convolutions only)
        self.activation = None  # "relu" or "relu6" applied to the output

    @property
    def name(self):
        parts = [type(self.fn).__name__.lstrip("_").removesuffix("Function")]
        if hasattr(self.fn, "geo"):  # "ConvNd" says which N: Conv1d, Conv2d, Conv3d
            parts[0] = parts[0].replace("Nd", f"{len(self.fn.geo.kernel)}d")
        if self.batch_norm is not None:
            parts.append("BatchNorm")
        if self.activation is not None:
            parts.append(self.activation)
        return "+".join(parts)

    def refs(self):
        return [item.value for item in self.inputs if isinstance(item, Ref)]


class Graph:
    """Nodes in an order where each follows its inputs' producers; ``input`` and ``output`` are value ids."""

    def __init__(self, x, output, ops):
        self.input, self.output = id(x), id(output)
        self.dtype = x.dtype
        known = {self.input}
        self.nodes = []
        for fn, tensor in ops:
            raw = getattr(fn, "raw_inputs", fn.inputs)
            inputs = []
            for recorded, value in zip(fn.inputs, raw):
                if recorded is not None and id(recorded) in known:
                    inputs.append(Ref(id(recorded)))
                else:  # a weight, a buffer or a constant made inside forward: its array at trace time
                    inputs.append(recorded.data if recorded is not None else value)
            output_ids = getattr(fn, "output_ids", None)
            index = output_ids.index(id(tensor)) if output_ids else None
            self.nodes.append(Node(fn, inputs, id(tensor), tensor.shape, tensor.dtype, index))
            known.add(id(tensor))

    def consumers(self):
        """{value: number of node inputs (and graph outputs) that read it}."""
        counts = {self.output: 1}
        for node in self.nodes:
            for value in node.refs():
                counts[value] = counts.get(value, 0) + 1
        return counts

    def fuse(self):
        """Fold BatchNorms into convolutions, then fuse ReLU/ReLU6 into their producers; returns self."""
        self._fold_batch_norms()
        self._fuse_activations()
        return self

    def _replace(self, removed, by):
        """Drop the nodes in ``removed`` (by output) and make their outputs' readers read ``by[output]``."""
        self.nodes = [node for node in self.nodes if node.output not in removed]
        for node in self.nodes:
            node.inputs = [Ref(by.get(item.value, item.value)) if isinstance(item, Ref) else item
                           for item in node.inputs]
        self.output = by.get(self.output, self.output)

    def _sole_reader(self):
        """{value: the node that reads it} for the values read by exactly one node and not the graph output."""
        counts, reader = self.consumers(), {}
        for node in self.nodes:
            for value in node.refs():
                if counts[value] == 1:
                    reader[value] = node
        return reader

    def _fold_batch_norms(self):
        reader, removed, by = self._sole_reader(), set(), {}
        for node in self.nodes:
            bn = reader.get(node.output)
            if (type(node.fn) is ConvNdFunction and bn is not None and type(bn.fn) is norm._BatchNorm
                    and not bn.fn.training and isinstance(bn.inputs[0], Ref) and bn.inputs[0].value == node.output
                    and bn.fn.running_mean is not None and bn.fn.running_var is not None):
                node.batch_norm = bn
                node.activation = _batch_norm_activation(bn.fn)
                removed.add(bn.output)
                by[bn.output] = node.output
        self._replace(removed, by)

    def _fuse_activations(self):
        reader, removed, by = self._sole_reader(), set(), {}
        for node in self.nodes:
            if type(node.fn) is norm._BatchNorm and node.activation is None:
                node.activation = _batch_norm_activation(node.fn)
            follower = reader.get(node.output)
            if (node.activation is None and type(node.fn) in ACTIVATION_HOSTS and follower is not None
                    and type(follower.fn) in ACTIVATIONS and follower.shape == node.shape):
                node.activation = ACTIVATIONS[type(follower.fn)]
                removed.add(follower.output)
                by[follower.output] = node.output
        self._replace(removed, by)


def _batch_norm_activation(fn):
    """The activation ``nn.utils.fuse`` gave a BatchNorm (``fn.relu`` is (max_value,)), or None."""
    if fn.relu is None:
        return None
    return "relu" if fn.relu[0] is None else "relu6"
