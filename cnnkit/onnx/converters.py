"""One ONNX conversion per recorded op: ``convert(builder, fn, input_names, input_tensors, output) -> name``.

Ops are keyed by their Function class (imported from its module, so a rename is a one-line change);
their hyper-parameters are read from the attributes the op stored when it ran (geometry, axes, shapes),
so the graph is exactly what cnnkit computed.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import ops as A
from ..autograd.tensor import _Cast
from ..functional import activation as act
from ..functional import deform, padding, pooling
from ..functional import normalization as norm
from ..functional.conv import ConvNdFunction, ConvTransposeNdFunction
from ..functional.linear import _Linear
from ..functional.pooling import _averaging_matrix
from ..functional.shuffle import _ChannelShuffle
from .errors import OnnxError

CONVERTERS = {}


def converts(*kinds):
    def register(function):
        for kind in kinds:
            CONVERTERS[kind] = function
        return function
    return register


def _onnx_pads(pairs):
    """((top, bottom), (left, right)) -> ONNX's [top, left, bottom, right] (any number of axes: begins, then ends)."""
    return [int(p[0]) for p in pairs] + [int(p[1]) for p in pairs]


def _out_shape(out):
    return tuple(out.shape)


# ----------------------------------------------------------------------------------------- convolution
@converts(ConvNdFunction)
def _conv(g, fn, names, tensors, out):
    geo = fn.geo
    inputs = names if names[2] else names[:2]
    return g.node("Conv", inputs, kernel_shape=list(geo.kernel), strides=list(geo.stride),
                  pads=_onnx_pads(geo.pads), dilations=list(geo.dilation), group=int(geo.groups))


@converts(ConvTransposeNdFunction)
def _conv_transpose(g, fn, names, tensors, out):
    geo = fn.geo  # the geometry of the conv whose input gradient this is: its input is our output
    inputs = names if names[2] else names[:2]
    in_size, out_size = geo.out_size, geo.in_size
    output_padding = [out_size[a] - ((in_size[a] - 1) * geo.stride[a] - sum(geo.pads[a])
                                     + geo.dilation[a] * (geo.kernel[a] - 1) + 1) for a in range(geo.dims)]
    return g.node("ConvTranspose", inputs, kernel_shape=list(geo.kernel), strides=list(geo.stride),
                  pads=_onnx_pads(geo.pads), dilations=list(geo.dilation), group=int(geo.groups),
                  output_padding=[int(p) for p in output_padding])


@converts(_Linear)
def _linear(g, fn, names, tensors, out):
    if tensors[0].ndim == 2:
        return g.node("Gemm", names if names[2] else names[:2], transB=1)
    product = g.node("MatMul", [names[0], g.node("Transpose", [names[1]], perm=[1, 0])])
    return g.node("Add", [product, names[2]]) if names[2] else product


@converts(norm._BatchNorm)
def _batch_norm(g, fn, names, tensors, out):
    channels = tensors[0].shape[1]
    dtype = tensors[0].dtype
    scale = names[1] or g.constant(np.ones(channels, dtype), "bn_scale")
    bias = names[2] or g.constant(np.zeros(channels, dtype), "bn_bias")
    mean = g.state_array(fn.running_mean, "running_mean")
    var = g.state_array(fn.running_var, "running_var")
    if fn.training:
        raise OnnxError("export: a BatchNorm ran with batch statistics (training=True) in eval mode; "
                        "call F.batch_norm with training=self.training so the export uses the running statistics")
    normalized = g.node("BatchNormalization", [names[0], scale, bias, mean, var], epsilon=float(fn.eps))
    if fn.relu is None:
        return normalized
    max_value = fn.relu[0]  # F.batch_norm_relu: the fused activation becomes its own node again
    if max_value is None:
        return g.node("Relu", [normalized])
    x = tensors[0]
    return g.node("Clip", [normalized, _scalar(g, 0, x, "min"), _scalar(g, max_value, x, "max")])


@converts(deform._DeformConv2d)
def _deform_conv(g, fn, names, tensors, out):
    if g.opset < 19:
        raise OnnxError(f"export: deform_conv2d becomes ONNX DeformConv, which needs opset 19 or later; "
                        f"export with opset=19 (asked for {g.opset})")
    x, offset, weight, bias, mask = names
    inputs = [x, weight, offset, bias, mask]
    while not inputs[-1]:  # absent optional inputs at the end are left out, in the middle named ""
        inputs.pop()
    return g.node("DeformConv", inputs, kernel_shape=[int(k) for k in tensors[2].shape[2:]],
                  strides=list(fn.stride), pads=_onnx_pads(fn.pads), dilations=list(fn.dilation),
                  group=int(fn.groups), offset_group=int(fn.offset_groups))


@converts(norm._LocalResponseNorm)
def _lrn(g, fn, names, tensors, out):
    return g.node("LRN", names, size=int(fn.size), alpha=float(fn.alpha), beta=float(fn.beta), bias=float(fn.k))


# ----------------------------------------------------------------------------------------- pooling
def _pool_pads(win, extend):
    """ONNX pads of a pooling window; ``extend`` grows the end pads over a ceil_mode overhang."""
    pads = [list(p) for p in win.pads]
    if extend:
        for axis in range(len(win.kernel)):
            overhang = win.needed[axis] - (win.in_size[axis] + sum(win.pads[axis]))
            pads[axis][1] += max(0, overhang)
    return _onnx_pads(pads)


def _has_overhang(win):
    return any(win.needed[a] > win.in_size[a] + sum(win.pads[a]) for a in range(len(win.kernel)))


@converts(pooling._MaxPool)
def _max_pool(g, fn, names, tensors, out):
    win = fn.win  # padding is -inf for max pooling, so a ceil_mode overhang is just more end padding
    attributes = dict(kernel_shape=list(win.kernel), strides=list(win.stride), pads=_pool_pads(win, True),
                      dilations=list(win.dilation))
    if not fn.return_indices:
        return g.node("MaxPool", names, **attributes)
    values, indices = g.node("MaxPool", names, outputs=2, **attributes)
    g.pool_indices[id(fn.indices)] = indices  # ONNX's Indices, flat over the whole input, as MaxUnpool reads them
    return values


@converts(pooling._MaxUnpool)
def _max_unpool(g, fn, names, tensors, out):
    indices = g.pool_indices.get(id(fn.indices))
    if indices is None:
        raise OnnxError("export: a max_unpool's indices must come from a max pooling (return_indices=True) in the "
                        "same model, so that they can be the MaxPool node's Indices output")
    default = tuple((size - 1) * s - 2 * p + k for size, s, p, k in
                    zip(tensors[0].shape[2:], fn.stride, fn.padding, fn.kernel))
    if tuple(fn.out_size) != default:
        # ONNX's reference and onnxruntime read the indices of a larger output_shape differently
        raise OnnxError(f"export: max_unpool to {tuple(fn.out_size)} instead of its default size {default} has no "
                        "ONNX form that every runtime reads alike; pool an input whose size the windows tile")
    return g.node("MaxUnpool", [names[0], indices], kernel_shape=list(fn.kernel), strides=list(fn.stride),
                  pads=[int(p) for p in fn.padding] * 2)


@converts(pooling._AvgPool)
def _avg_pool(g, fn, names, tensors, out):
    win = fn.win
    if fn.divisor_override is not None:
        raise OnnxError("export: average pooling with divisor_override has no ONNX equivalent")
    ceil = _has_overhang(win) and fn.count_include_pad
    return g.node("AveragePool", names, kernel_shape=list(win.kernel), strides=list(win.stride),
                  pads=_pool_pads(win, not ceil), ceil_mode=int(ceil),
                  count_include_pad=int(bool(fn.count_include_pad)))


@converts(pooling._LpPool)
def _lp_pool(g, fn, names, tensors, out):
    win = fn.win
    if fn.norm_type != int(fn.norm_type):
        raise OnnxError(f"export: lp pooling with norm_type={fn.norm_type} (ONNX LpPool takes an integer p)")
    return g.node("LpPool", names, kernel_shape=list(win.kernel), strides=list(win.stride),
                  pads=_onnx_pads(win.pads), p=int(fn.norm_type))


def _averaged_along(g, name, axis, rank, matrix):
    """``name`` with spatial ``axis`` (of a rank-``rank`` tensor) multiplied by ``matrix`` (out, in)."""
    position = 2 + axis
    if position == rank - 1:  # the last axis: x @ A^T
        return g.node("MatMul", [name, g.constant(np.ascontiguousarray(matrix.T), "pool_cols")])
    if position == rank - 2:  # the one before: A @ x
        return g.node("MatMul", [g.constant(matrix, "pool_rows"), name])
    swap = list(range(rank))
    swap[position], swap[rank - 2] = swap[rank - 2], swap[position]
    moved = g.node("MatMul", [g.constant(matrix, "pool_rows"), g.node("Transpose", [name], perm=swap)])
    return g.node("Transpose", [moved], perm=swap)


@converts(pooling._AdaptiveAvgPool)
def _adaptive_avg_pool(g, fn, names, tensors, out):
    size = tuple(tensors[0].shape[2:])
    if all(cells == 1 for cells in fn.out_size):
        return g.node("GlobalAveragePool", names)
    if all(length % cells == 0 for length, cells in zip(size, fn.out_size)):
        kernel = [length // cells for length, cells in zip(size, fn.out_size)]
        return g.node("AveragePool", names, kernel_shape=kernel, strides=kernel)
    # Uneven (or repeating) windows: the pooling is linear, one constant averaging matrix per axis.
    dtype, rank, name = tensors[0].dtype, tensors[0].ndim, names[0]
    for axis in reversed(range(len(size))):
        name = _averaged_along(g, name, axis, rank, _averaging_matrix(size[axis], fn.out_size[axis], dtype))
    return name


@converts(pooling._AdaptiveMaxPool)
def _adaptive_max_pool(g, fn, names, tensors, out):
    if all(cells == 1 for cells in fn.out_size):
        return g.node("GlobalMaxPool", names)
    raise OnnxError(f"export: adaptive max pooling to {tuple(fn.out_size)} from {tuple(tensors[0].shape[2:])} "
                    "(uneven windows) has no ONNX equivalent")


# ----------------------------------------------------------------------------------------- activations
def _simple(op_type, **attributes):
    return lambda g, fn, names, tensors, out: g.node(op_type, names, **attributes)


CONVERTERS.update({
    act._Relu: _simple("Relu"), act._Sigmoid: _simple("Sigmoid"), act._Tanh: _simple("Tanh"),
    act._Hardswish: _simple("HardSwish"), act._Hardsigmoid: _simple("HardSigmoid", alpha=1 / 6, beta=0.5),
    A.Exp: _simple("Exp"), A.Log: _simple("Log"), A.Sqrt: _simple("Sqrt"), A.Abs: _simple("Abs"),
    A.Neg: _simple("Neg"), A.MatMul: _simple("MatMul"), A.Add: _simple("Add"), A.Sub: _simple("Sub"),
    A.Mul: _simple("Mul"), A.Div: _simple("Div"), A.Pow: _simple("Pow"),
})


def _scalar(g, value, like, hint="scalar"):
    return g.constant(np.asarray(value, dtype=like.dtype), hint)


@converts(act._Relu6)
def _relu6(g, fn, names, tensors, out):
    x = tensors[0]
    return g.node("Clip", [names[0], _scalar(g, 0, x, "min"), _scalar(g, 6, x, "max")])


@converts(A.Clamp)
def _clamp(g, fn, names, tensors, out):
    x = tensors[0]
    low = "" if fn.low is None else _scalar(g, fn.low, x, "min")
    high = "" if fn.high is None else _scalar(g, fn.high, x, "max")
    return g.node("Clip", [names[0], low, high])


@converts(act._LeakyRelu)
def _leaky_relu(g, fn, names, tensors, out):
    return g.node("LeakyRelu", names, alpha=float(fn.negative_slope))


@converts(act._Elu)
def _elu(g, fn, names, tensors, out):
    return g.node("Elu", names, alpha=float(fn.alpha))


@converts(act._Silu)
def _silu(g, fn, names, tensors, out):
    return g.node("Mul", [names[0], g.node("Sigmoid", names)])


@converts(act._Gelu)
def _gelu(g, fn, names, tensors, out):
    if g.opset >= 20:  # Gelu became an ONNX operator in opset 20; before, it is written out as its formula
        return g.node("Gelu", names, approximate=str(fn.approximate))
    x = tensors[0]
    if fn.approximate == "tanh":  # 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = g.node("Mul", [g.node("Mul", [names[0], names[0]]), names[0]])
        inner = g.node("Add", [names[0], g.node("Mul", [cube, _scalar(g, 0.044715, x)])])
        core = g.node("Tanh", [g.node("Mul", [inner, _scalar(g, math.sqrt(2 / math.pi), x)])])
    else:  # 0.5 x (1 + erf(x / sqrt 2))
        core = g.node("Erf", [g.node("Div", [names[0], _scalar(g, math.sqrt(2), x)])])
    half = g.node("Mul", [names[0], _scalar(g, 0.5, x)])
    return g.node("Mul", [half, g.node("Add", [core, _scalar(g, 1, x)])])


@converts(act._Softmax, act._LogSoftmax)
def _softmax(g, fn, names, tensors, out):
    return g.node("Softmax" if isinstance(fn, act._Softmax) else "LogSoftmax", names, axis=int(fn.dim))


@converts(A.PowScalar)
def _pow_scalar(g, fn, names, tensors, out):
    return g.node("Pow", [names[0], _scalar(g, fn.exponent, tensors[0], "exponent")])


@converts(_Cast)
def _cast(g, fn, names, tensors, out):
    return g.node("Cast", names, to=g.helper.np_dtype_to_tensor_dtype(np.dtype(fn.dtype)))


# ----------------------------------------------------------------------------------------- reductions
@converts(A.Mean, A.Sum)
def _mean_sum(g, fn, names, tensors, out):
    op_type = "ReduceMean" if isinstance(fn, A.Mean) else "ReduceSum"
    return g.reduce(op_type, names[0], fn.axes, fn.keepdims)


@converts(A.Max)
def _max(g, fn, names, tensors, out):
    return g.reduce("ReduceMax" if fn.largest else "ReduceMin", names[0], fn.axes, fn.keepdims)


# ----------------------------------------------------------------------------------------- shapes
@converts(A.Reshape)
def _reshape(g, fn, names, tensors, out):
    return g.node("Reshape", [names[0], g.ints(g.dynamic_shape(_out_shape(out), tensors[0].shape))])


@converts(A.Permute)
def _permute(g, fn, names, tensors, out):
    return g.node("Transpose", names, perm=[int(a) for a in fn.axes])


@converts(A.BroadcastTo)
def _broadcast(g, fn, names, tensors, out):
    shape = list(fn.shape)
    if shape and tensors[0].ndim == len(shape) and shape[0] == tensors[0].shape[0] == g.batch:
        shape[0] = 1  # Expand broadcasts both ways: 1 keeps the input's (dynamic) batch size
    return g.node("Expand", [names[0], g.ints(shape)])


@converts(A.Concat)
def _concat(g, fn, names, tensors, out):
    return g.node("Concat", names, axis=int(fn.axis))


@converts(A.Stack)
def _stack(g, fn, names, tensors, out):
    axes = g.ints([fn.axis], "axes")
    return g.node("Concat", [g.node("Unsqueeze", [name, axes]) for name in names], axis=int(fn.axis))


@converts(A.Where)
def _where(g, fn, names, tensors, out):
    return g.node("Where", [g.constant(np.asarray(fn.condition, dtype=bool), "condition"), *names])


@converts(_ChannelShuffle)
def _channel_shuffle(g, fn, names, tensors, out):
    shape = tuple(tensors[0].shape)
    groups = int(fn.groups)
    split = g.dynamic_shape((shape[0], groups, shape[1] // groups, *shape[2:]), shape)
    grouped = g.node("Reshape", [names[0], g.ints(split)])
    swapped = g.node("Transpose", [grouped], perm=[0, 2, 1, *range(3, len(shape) + 1)])
    return g.node("Reshape", [swapped, g.ints(g.dynamic_shape(shape, shape))])


@converts(padding._ConstantPad, padding._IndexPad)
def _pad(g, fn, names, tensors, out):
    pads = [int(p[0]) for p in fn.pads] + [int(p[1]) for p in fn.pads]
    if isinstance(fn, padding._ConstantPad):
        value = _scalar(g, fn.value, tensors[0], "pad_value")
        return g.node("Pad", [names[0], g.ints(pads, "pads"), value], mode="constant")
    mode = {"reflect": "reflect", "replicate": "edge"}.get(fn.mode)
    if mode is None:
        raise OnnxError(f"export: pad mode {fn.mode!r} has no ONNX opset-17 equivalent (use reflect or replicate)")
    return g.node("Pad", [names[0], g.ints(pads, "pads")], mode=mode)


@converts(A.GetItem)
def _get_item(g, fn, names, tensors, out):
    """Basic indexing (slices, integers, None, ...) as Slice, Squeeze and Unsqueeze; 1-D int arrays as Gather."""
    index = fn.index if isinstance(fn.index, tuple) else (fn.index,)
    shape = tuple(tensors[0].shape)
    if sum(1 for i in index if i is Ellipsis) > 1:
        raise OnnxError(f"export: index {fn.index!r} has more than one Ellipsis")
    consumed = sum(1 for i in index if i is not None and i is not Ellipsis)
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (len(shape) - consumed) + index[at + 1:]
    starts, ends, axes, steps, squeeze, unsqueeze, gathers = [], [], [], [], [], [], []
    axis = out_axis = 0
    for item in index:
        if item is None:
            unsqueeze.append(out_axis)
            out_axis += 1
            continue
        if isinstance(item, slice):
            start, stop, step = item.indices(shape[axis])
            if (start, stop, step) != (0, shape[axis], 1):
                starts.append(start)
                ends.append(stop if stop >= 0 else -shape[axis] - 1)
                axes.append(axis)
                steps.append(step)
            out_axis += 1
        elif isinstance(item, (int, np.integer)):
            starts.append(int(item) % shape[axis])
            ends.append(int(item) % shape[axis] + 1)
            axes.append(axis)
            steps.append(1)
            squeeze.append(axis)
        elif isinstance(item, np.ndarray) and item.ndim == 1 and item.dtype.kind in "iu":
            gathers.append((axis, item))
            out_axis += 1
        else:
            raise OnnxError(f"export: tensor index {fn.index!r} (on shape {shape}) is not exportable; use slices, "
                            "integers or one 1-D integer array")
        axis += 1
    if len(gathers) > 1:
        raise OnnxError(f"export: index {fn.index!r} uses several index arrays (pointwise indexing); use one")
    name = names[0]
    if starts:
        name = g.node("Slice", [name, g.ints(starts, "starts"), g.ints(ends, "ends"), g.ints(axes, "axes"),
                                g.ints(steps, "steps")])
    for gather_axis, positions in gathers:
        name = g.node("Gather", [name, g.ints(positions, "indices")], axis=int(gather_axis))
    if squeeze:
        name = g.node("Squeeze", [name, g.ints(squeeze, "axes")])
    if unsqueeze:
        name = g.node("Unsqueeze", [name, g.ints(unsqueeze, "axes")])
    return name if name != names[0] else g.node("Identity", [name])
