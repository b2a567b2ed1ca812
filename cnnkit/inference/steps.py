"""Steps: each known op compiled into a closure over its input and output arrays, run with no autograd.

``make_step(node, inputs, out)`` returns a callable of no arguments that writes the node's value into
``out``. The inputs are arrays that stay the same across calls (the planned buffers, weights, constants),
so every view, folded weight and scratch array is made here, once, and a call only computes.
"""
from __future__ import annotations

from ..autograd import ops as A
from ..backend import get_array_module, get_num_threads
from ..functional import activation as act
from ..functional import normalization as norm
from ..functional import pooling
from ..functional.conv import ConvNdFunction, correlate
from ..functional.linear import _Linear
from ..functional.shuffle import _ChannelShuffle
from ..kernels.activation import clamp_into
from ..kernels.conv_epilogue import BOUNDS
from ..kernels.conv_infer import conv_forward
from ..kernels.pooling import offset_views, padded_source
from ..kernels.threads import parallel_map
from .graph import ACTIVATIONS

# Pooling inputs of at least this many elements share their channels over the threads: their passes take a
# few hundred microseconds, against the tens that handing work to a thread costs.
SPLIT_MIN_ELEMENTS = 1 << 18
STEPS = {}


def makes(*kinds):
    def register(function):
        for kind in kinds:
            STEPS[kind] = function
        return function
    return register


def make_step(node, inputs, out):
    """(step, fell_back): its op's array code, or (where there is none here) its recorded Function's forward."""
    maker = STEPS.get(type(node.fn))
    step = maker(node, inputs, out) if maker is not None else None
    return (step, False) if step is not None else (fallback_step(node, inputs, out), True)


def fallback_step(node, inputs, out):
    """out = the recorded op's own ``forward`` on arrays (a fresh copy of the op, without its recorded links)."""
    xp = get_array_module()
    fn = _fresh_copy(node.fn)
    index = node.output_index

    def run():
        result = fn.forward(*inputs)
        xp.copyto(out, result if index is None else result[index])
    return run


def _fresh_copy(fn):
    """The op with its hyper-parameters, told that no gradient is needed (so it keeps nothing for backward)."""
    copy = object.__new__(type(fn))
    copy.__dict__.update({key: value for key, value in vars(fn).items()
                          if key not in ("inputs", "raw_inputs", "needs_input_grad", "output_ids")})
    if isinstance(fn, norm._BatchNorm) and fn.training:  # batch statistics: keep the model's running ones intact
        copy.running_mean = None if fn.running_mean is None else fn.running_mean.copy()
        copy.running_var = None if fn.running_var is None else fn.running_var.copy()
    return copy


def with_activation(compute, activation, out):
    """``compute`` followed by out = clamp(out, low, high) for a fused ReLU/ReLU6 (``conv_epilogue.BOUNDS``)."""
    if activation is None:
        return compute
    low, high = BOUNDS[activation]

    def run():
        compute()
        clamp_into(out, low, high, out)
    return run


# ------------------------------------------------------------------------------------------ convolution
def batch_norm_affine(fn, weight, bias):
    """(scale, shift) per channel (float64): x * scale + shift = gamma (x - mean) / sqrt(var + eps) + beta."""
    xp = get_array_module()
    scale = 1 / xp.sqrt(fn.running_var.astype("float64") + fn.eps)
    if weight is not None:
        scale = scale * weight
    shift = -fn.running_mean.astype("float64") * scale
    if bias is not None:
        shift = shift + bias
    return scale, shift


def fold_batch_norm(weight, bias, bn_node):
    """(W', b') = (W * scale, (b - mean) * scale + beta): the convolution followed by its eval-mode BatchNorm."""
    xp = get_array_module()
    _, bn_weight, bn_bias = bn_node.inputs
    scale, shift = batch_norm_affine(bn_node.fn, bn_weight, bn_bias)
    folded_weight = (weight * scale.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(weight.dtype)
    folded_bias = shift if bias is None else shift + bias * scale
    return xp.ascontiguousarray(folded_weight), folded_bias.astype(weight.dtype)


@makes(ConvNdFunction)
def _conv(node, inputs, out):
    xp = get_array_module()
    x, weight, bias = inputs
    if node.batch_norm is not None:
        weight, bias = fold_batch_norm(weight, bias, node.batch_norm)
    weight = xp.ascontiguousarray(weight)
    geo, activation = node.fn.geo, node.activation
    if len(geo.kernel) == 2:
        return lambda: conv_forward(x, weight, bias, geo, activation, out)
    # 1-D and 3-D: the op's own forward (its kernels or the reference), then the fused activation
    return with_activation(lambda: xp.copyto(out, correlate(x, weight, geo, bias)[0]), activation, out)


@makes(norm._BatchNorm)
def _batch_norm(node, inputs, out):
    xp = get_array_module()
    x, weight, bias = inputs
    if node.fn.training or node.fn.running_mean is None or node.fn.running_var is None:
        return None  # batch statistics: the recorded op computes them
    scale, shift = batch_norm_affine(node.fn, weight, bias)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale, shift = scale.astype(x.dtype).reshape(shape), shift.astype(x.dtype).reshape(shape)

    def affine():
        xp.multiply(x, scale, out=out)
        xp.add(out, shift, out=out)
    return with_activation(affine, node.activation, out)


@makes(_Linear)
def _linear(node, inputs, out):
    xp = get_array_module()
    x, weight, bias = inputs
    transposed = weight.T

    def affine():
        xp.matmul(x, transposed, out=out)
        if bias is not None:
            xp.add(out, bias, out=out)
    return with_activation(affine, node.activation, out)


# ------------------------------------------------------------------------------------------ elementwise
@makes(act._Relu, act._Relu6)
def _relu(node, inputs, out):
    low, high = BOUNDS[ACTIVATIONS[type(node.fn)]]
    x = inputs[0]
    return lambda: clamp_into(x, low, high, out)


@makes(A.Add, A.Sub, A.Mul, A.Div)
def _binary(node, inputs, out):
    xp = get_array_module()
    ufunc = {A.Add: xp.add, A.Sub: xp.subtract, A.Mul: xp.multiply, A.Div: xp.divide}[type(node.fn)]
    a, b = inputs
    return with_activation(lambda: ufunc(a, b, out=out), node.activation, out)


@makes(A.Neg, A.Exp, A.Sqrt, A.Abs, act._Tanh)
def _unary(node, inputs, out):
    xp = get_array_module()
    ufunc = {A.Neg: xp.negative, A.Exp: xp.exp, A.Sqrt: xp.sqrt, A.Abs: xp.abs, act._Tanh: xp.tanh}[type(node.fn)]
    x = inputs[0]
    return lambda: ufunc(x, out=out)


@makes(act._Sigmoid)
def _sigmoid(node, inputs, out):
    """sigmoid(x) = (1 + tanh(x / 2)) / 2: no exponential that could overflow, no branch on the sign."""
    xp = get_array_module()
    x = inputs[0]

    def run():
        xp.multiply(x, 0.5, out=out)
        xp.tanh(out, out=out)
        xp.multiply(out, 0.5, out=out)
        xp.add(out, 0.5, out=out)
    return run


# ------------------------------------------------------------------------------------------ pooling
def _window_views(x, win, fill_value):
    """(one view per kernel tap of the padded input, (padded interior, x) to copy before each call or None).

    The border of the padded input is ``fill_value``, written once; without padding the views read x itself.
    """
    source, fill = padded_source(x, win, fill_value)
    return offset_views(source, win, contiguous=False), fill


def _reduce_windows(x, win, fill_value, ufunc, out, finish=None):
    """out = ufunc.reduce over the window taps (maximum, add), then ``finish()``; large inputs (SPLIT_MIN_ELEMENTS)
    share their channels over the threads, one range each."""
    parts = get_num_threads() if x.size >= SPLIT_MIN_ELEMENTS else 1
    width = -(-x.shape[1] // parts)
    shares = [_reduce_part(x[:, first:first + width], win, fill_value, ufunc, out[:, first:first + width])
              for first in range(0, x.shape[1], width)]

    def run():
        parallel_map(lambda reduce: reduce(), shares)
        if finish is not None:
            finish()
    return run


def _reduce_part(x, win, fill_value, ufunc, out):
    """out = ufunc.reduce over the window taps of x, as one pass per tap."""
    xp = get_array_module()
    views, fill = _window_views(x, win, fill_value)
    if len(views) == 1:
        views.append(xp.zeros((), x.dtype) if ufunc is xp.add else views[0])  # the identity of the reduction
    first, second, rest = views[0], views[1], views[2:]

    def run():
        if fill is not None:
            xp.copyto(*fill)
        ufunc(first, second, out=out)
        for view in rest:
            ufunc(out, view, out=out)
    return run


@makes(pooling._MaxPool)
def _max_pool(node, inputs, out):
    if node.fn.return_indices or node.output_index is not None or len(node.fn.win.kernel) != 2:
        return None  # indices, 1-D and 3-D: the recorded op's forward
    xp = get_array_module()
    return _reduce_windows(inputs[0], node.fn.win, -xp.inf, xp.maximum, out)  # -inf padding never wins


@makes(pooling._AvgPool)
def _avg_pool(node, inputs, out):
    if len(node.fn.win.kernel) != 2:
        return None
    xp = get_array_module()
    divisor = node.fn.divisor  # the divisors the traced call computed for these windows
    return _reduce_windows(inputs[0], node.fn.win, 0, xp.add, out, lambda: xp.divide(out, divisor, out=out))


@makes(pooling._AdaptiveAvgPool)
def _adaptive_avg_pool(node, inputs, out):
    xp = get_array_module()
    x = inputs[0]
    if x.ndim != 4:
        return None
    n, c, height, width = x.shape
    out_h, out_w = node.fn.out_size
    if (out_h, out_w) == (1, 1):
        rows, target = x.reshape(n, c, height * width), out.reshape(n, c)
        return lambda: xp.mean(rows, axis=2, out=target)
    if height % out_h == 0 and width % out_w == 0:
        tiles = x.reshape(n, c, out_h, height // out_h, out_w, width // out_w)
        return lambda: xp.mean(tiles, axis=(3, 5), out=out)
    # windows that do not tile: y = A_h @ x @ A_w^T with the averaging matrices of the reference op
    row_means = pooling._averaging_matrix(height, out_h, x.dtype)
    col_means = pooling._averaging_matrix(width, out_w, x.dtype).T.copy()
    half = xp.empty((n, c, out_h, width), x.dtype)

    def run():
        xp.matmul(row_means, x, out=half)
        xp.matmul(half, col_means, out=out)
    return run


@makes(A.Mean)
def _mean(node, inputs, out):
    xp = get_array_module()
    x, axes, keepdims = inputs[0], node.fn.axes, node.fn.keepdims
    return lambda: xp.mean(x, axis=axes, keepdims=keepdims, out=out)


# ------------------------------------------------------------------------------------------ data movement
@makes(A.Concat)
def _concat(node, inputs, out):
    xp = get_array_module()
    axis = node.fn.axis
    return lambda: xp.concatenate(inputs, axis=axis, out=out)


def _copy_from(view, out):
    xp = get_array_module()
    return lambda: xp.copyto(out, view)


@makes(A.GetItem)
def _get_item(node, inputs, out):
    xp = get_array_module()
    x = inputs[0]
    view = x[node.fn.index]
    if not xp.shares_memory(view, x):  # advanced indexing copies: it must be redone on each call
        return None
    return _copy_from(view, out)


@makes(_ChannelShuffle)
def _channel_shuffle(node, inputs, out):
    x, groups = inputs[0], node.fn.groups
    batch, channels = x.shape[:2]
    rest = x.shape[2:]
    grouped = x.reshape((batch, groups, channels // groups) + rest).swapaxes(1, 2)
    return _copy_from(grouped, out.reshape((batch, channels // groups, groups) + rest))


@makes(A.Permute)
def _permute(node, inputs, out):
    return _copy_from(inputs[0].transpose(node.fn.axes), out)


def evaluate(node, inputs):
    """The node's value computed once now, by its recorded op (constant folding of nodes that read no value)."""
    result = _fresh_copy(node.fn).forward(*inputs)
    return result if node.output_index is None else result[node.output_index]
