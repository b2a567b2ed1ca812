"""ONNX activations and variadic elementwise operators that cnnkit composes from its differentiable ops.

Gelu, PRelu, Selu, Softplus, Mish; Sum, Mean, Max, Min over any number of broadcast inputs; DeformConv.
Integer inputs are constants (no gradient) and run in NumPy in their own type.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import stack
from .ops import _auto_pads, _require_2d, _spatial, _tensor, const, is_tensor, op, text_attr

SELU_ALPHA, SELU_GAMMA = 1.67326319217681884765625, 1.05070102214813232421875  # the ONNX defaults


@op("Gelu")
def gelu(node, x):
    return F.gelu(_tensor(x), approximate=text_attr(node, "approximate", "none"))


@op("PRelu")
def prelu(node, x, slope):
    """x where x >= 0 else slope * x, slope broadcast to x."""
    if not is_tensor(x, slope):
        x = const(x)
        return np.where(x < 0, x * const(slope), x).astype(x.dtype)
    x = _tensor(x)
    return F.relu(x) - F.relu(-x) * slope


@op("Selu")
def selu(node, x):
    """gamma * (x if x > 0 else alpha * (exp(x) - 1))."""
    alpha = float(node.attrs.get("alpha", SELU_ALPHA))
    return F.elu(_tensor(x), alpha) * float(node.attrs.get("gamma", SELU_GAMMA))


def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log(1 + exp(-|x|)), which never overflows."""
    return F.relu(x) + ((-x.abs()).exp() + 1.0).log()


@op("Softplus")
def softplus(node, x):
    return _softplus(_tensor(x))


@op("Mish")
def mish(node, x):
    """x * tanh(softplus(x))."""
    x = _tensor(x)
    return x * F.tanh(_softplus(x))


# ----------------------------------------------------------------------------------------- variadic
def _folded(pair):
    def run(node, *values):
        result = values[0]
        for value in values[1:]:
            result = pair(result, value)
        return result
    return run


def _extreme(numpy_function, reduction):
    """Elementwise max (min) of two values; tensors are stacked and reduced, so the choice stays data-dependent
    when the graph is exported again (and the gradient goes to the chosen value)."""
    def pair(a, b):
        if not is_tensor(a, b):
            return numpy_function(const(a), const(b))
        shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        a, b = (_tensor(v) if tuple(v.shape) == shape else _tensor(v).expand(*shape) for v in (a, b))
        return getattr(stack([a, b]), reduction)(0)
    return pair


def _mean(node, *values):
    total = _folded(lambda a, b: a + b)(node, *values)
    return total / len(values) if is_tensor(total) else (total / len(values)).astype(const(values[0]).dtype)


op("Sum")(_folded(lambda a, b: a + b))
op("Mean")(_mean)
op("Max")(_folded(_extreme(np.maximum, "amax")))
op("Min")(_folded(_extreme(np.minimum, "amin")))


# ----------------------------------------------------------------------------------------- deformable conv
@op("DeformConv")
def deform_conv(node, x, weight, offset, bias=None, mask=None):
    """ONNX DeformConv (opset 19) as ``F.deform_conv2d``: the same (dy, dx) offset layout and groups."""
    _require_2d(node, x)
    kernel = tuple(weight.shape[2:])
    stride, dilation = _spatial(node, x, "strides", 1), _spatial(node, x, "dilations", 1)
    pads = _auto_pads(node, x.shape[2:], kernel, stride, dilation)
    return F.deform_conv2d(_tensor(x), _tensor(offset), _tensor(weight), _tensor(bias), stride, pads, dilation,
                           _tensor(mask))
