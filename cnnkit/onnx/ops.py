"""ONNX operators on cnnkit values: ``OPS[op_type](node, *inputs) -> output or tuple of outputs``.

A value is a ``Tensor`` (data that gradients flow through) or a NumPy array (a constant, such as the
shape arithmetic that exporters write around Reshape and Pad): ops on constants fold to constants.
``node`` gives the attributes (``node.attrs``), the opset, ``node.training`` and ``node.run`` for If's branches.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor, cat, where
from ..backend import get_rng
from .errors import OnnxError

OPS = {}


def runnable(dtype):
    """True for the types cnnkit runs: NumPy's own bool, integer and float types (no float8, bfloat16, int4 ...)."""
    dtype = np.dtype(dtype)
    return dtype.isbuiltin == 1 and dtype.kind in "biuf"


def op(*names):
    def register(function):
        for name in names:
            OPS[name] = function
        return function
    return register


def const(value):
    """The NumPy array of a constant input (a Tensor's data when a constant came out of a parameter)."""
    return np.asarray(value.data if isinstance(value, Tensor) else value)


def is_tensor(*values):
    return any(isinstance(v, Tensor) for v in values)


def ints(value):
    return [int(v) for v in const(value).reshape(-1)]


def _axes(node, inputs, index=1):
    """``axes`` from the attribute (older opsets) or from input ``index`` (newer ones); None when absent."""
    if "axes" in node.attrs:
        return list(node.attrs["axes"])
    if len(inputs) > index and inputs[index] is not None:
        return ints(inputs[index])
    return None


def text_attr(node, name, default):
    """A string attribute as ``str`` (the protobuf holds bytes), ``default`` when the node has none."""
    value = node.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _spatial(node, x, name, default):
    values = node.attrs.get(name)
    return tuple(values) if values else (default,) * (x.ndim - 2)


def _require_2d(node, x):
    if x.ndim != 4:
        raise OnnxError(f"{node.describe()}: only 2-D (N, C, H, W) inputs are supported, got shape {tuple(x.shape)}")


def _spatial_dims(node, x):
    """The number of spatial axes of a conv or pooling input: 1, 2 or 3, as cnnkit's 1d/2d/3d ops take."""
    dims = x.ndim - 2
    if dims not in (1, 2, 3):
        raise OnnxError(f"{node.describe()}: only 1-D, 2-D and 3-D (N, C, L), (N, C, H, W) and (N, C, D, H, W) "
                        f"inputs are supported, got shape {tuple(x.shape)}")
    return dims


# ----------------------------------------------------------------------------------------- padding helpers
def _auto_pads(node, in_size, kernel, stride, dilation):
    """Explicit ((begin, end), ...) per spatial axis from ``pads`` or ``auto_pad``."""
    mode = text_attr(node, "auto_pad", "NOTSET")
    rank = len(in_size)
    if mode in ("SAME_UPPER", "SAME_LOWER"):
        pads = []
        for size, k, s, d in zip(in_size, kernel, stride, dilation):
            total = max(0, (math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size)
            small, large = total // 2, total - total // 2
            pads.append((small, large) if mode == "SAME_UPPER" else (large, small))
        return tuple(pads)
    if mode == "VALID":
        return ((0, 0),) * rank
    flat = list(node.attrs.get("pads", [0] * 2 * rank))
    return tuple((flat[i], flat[i + rank]) for i in range(rank))


def _pre_pad(x, pads, value):
    """Pad the spatial axes explicitly (for pads a pooling op cannot take itself); F.pad wants last axis first."""
    flat = []
    for begin, end in reversed(pads):
        flat += [begin, end]
    return F.pad(x, tuple(flat), value=value)


def _fits_window(pads, kernel):
    return all(max(p) <= k // 2 for p, k in zip(pads, kernel))


# ----------------------------------------------------------------------------------------- convolution
@op("Conv")
def conv(node, x, weight, bias=None):
    dims = _spatial_dims(node, x)
    kernel = tuple(weight.shape[2:])
    stride, dilation = _spatial(node, x, "strides", 1), _spatial(node, x, "dilations", 1)
    pads = _auto_pads(node, x.shape[2:], kernel, stride, dilation)
    convolve = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    return convolve(x, _tensor(weight), _tensor(bias), stride, pads, dilation, node.attrs.get("group", 1))


@op("ConvTranspose")
def conv_transpose(node, x, weight, bias=None):
    dims = _spatial_dims(node, x)
    kernel = tuple(weight.shape[2:])
    stride, dilation = _spatial(node, x, "strides", 1), _spatial(node, x, "dilations", 1)
    extra = tuple(node.attrs.get("output_padding", [0] * dims))
    mode = text_attr(node, "auto_pad", "NOTSET")
    if "output_shape" in node.attrs or mode in ("SAME_UPPER", "SAME_LOWER"):
        # SAME: the output is input * stride; the padding that gives the wanted size is split as for Conv
        wanted = (list(node.attrs["output_shape"])[-dims:] if "output_shape" in node.attrs
                  else [size * s for size, s in zip(x.shape[2:], stride)])
        pads = []
        for size, k, s, d, e, want in zip(x.shape[2:], kernel, stride, dilation, extra, wanted):
            total = s * (size - 1) + e + (k - 1) * d + 1 - want
            small, large = total // 2, total - total // 2
            pads.append((small, large) if mode == "SAME_UPPER" else (large, small))
    else:
        pads = _auto_pads(node, x.shape[2:], kernel, stride, dilation)
    crop = tuple((max(begin, 0), max(end, 0)) for begin, end in pads)
    grow = tuple((max(-begin, 0), max(-end, 0)) for begin, end in pads)
    group = node.attrs.get("group", 1)
    transpose = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
    if not any(sum(pair) for pair in grow):
        return transpose(x, _tensor(weight), _tensor(bias), stride, crop, extra, group, dilation)
    # A negative pad asks for more output than the kernels reach: those rows and columns hold only the bias.
    out = _pre_pad(transpose(x, _tensor(weight), None, stride, crop, extra, group, dilation), grow, 0.0)
    return out if bias is None else out + _tensor(bias).reshape((1, -1) + (1,) * dims)


def _tensor(value):
    if value is None or isinstance(value, Tensor):
        return value
    return Tensor(np.asarray(value))


# ----------------------------------------------------------------------------------------- normalization
@op("BatchNormalization")
def batch_norm(node, x, scale, bias, mean, var):
    eps = float(node.attrs.get("epsilon", 1e-5))
    if node.attrs.get("training_mode", 0) and len(node.outputs) > 1 and any(node.outputs[1:]):
        return _batch_norm_training(node, x, scale, bias, mean, var, eps)
    momentum = 1.0 - float(node.attrs.get("momentum", 0.9))  # ONNX weights the old value, torch the new one
    return F.batch_norm(x, mean, var, _tensor(scale), _tensor(bias), training=node.training, momentum=momentum,
                        eps=eps)


def _batch_norm_training(node, x, scale, bias, mean, var, eps):
    """Training mode with its extra outputs: r' = momentum r + (1 - momentum) s, s the biased batch statistic."""
    momentum = float(node.attrs.get("momentum", 0.9))
    axes = (0, *range(2, x.ndim))
    data = const(x)
    batch_mean, batch_var = data.mean(axis=axes), data.var(axis=axes)
    out = F.batch_norm(x, None, None, _tensor(scale), _tensor(bias), training=True, eps=eps)
    running_mean = (const(mean) * momentum + batch_mean * (1 - momentum)).astype(data.dtype)
    running_var = (const(var) * momentum + batch_var * (1 - momentum)).astype(data.dtype)
    return out, running_mean, running_var


@op("LRN")
def lrn(node, x):
    return F.local_response_norm(x, int(node.attrs["size"]), float(node.attrs.get("alpha", 1e-4)),
                                 float(node.attrs.get("beta", 0.75)), float(node.attrs.get("bias", 1.0)))


@op("Dropout")
def dropout(node, x, ratio=None, training_mode=None):
    p = float(const(ratio)) if ratio is not None else float(node.attrs.get("ratio", 0.5))
    # the training_mode input (opset 12) decides; without it, the module's train()/eval() does
    training = bool(const(training_mode).reshape(-1)[0]) if training_mode is not None else node.training
    if not training or p == 0.0:
        keep = np.ones(tuple(x.shape), dtype=bool)
        out = x
    else:
        keep = get_rng().random(tuple(x.shape)) >= p
        out = x * (keep * (1.0 / (1.0 - p) if p < 1.0 else 0.0)).astype(x.dtype)
    return (out, keep) if len(node.outputs) > 1 and node.outputs[1] else out


# ----------------------------------------------------------------------------------------- activations
OPS.update({
    "Relu": lambda node, x: F.relu(x),
    "Sigmoid": lambda node, x: F.sigmoid(x),
    "Tanh": lambda node, x: F.tanh(x),
    "Erf": lambda node, x: F.erf(x) if is_tensor(x) else F.activation.erf_array(const(x)),
    "HardSwish": lambda node, x: F.hardswish(x),
    "LeakyRelu": lambda node, x: F.leaky_relu(x, float(node.attrs.get("alpha", 0.01))),
    "Elu": lambda node, x: F.elu(x, float(node.attrs.get("alpha", 1.0))),
    "Identity": lambda node, x: x,
})


@op("HardSigmoid")
def hard_sigmoid(node, x):
    alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
    if math.isclose(alpha, 1 / 6, rel_tol=1e-6) and beta == 0.5:
        return F.hardsigmoid(x)
    return (x * alpha + beta).clamp(0.0, 1.0)


@op("Clip")
def clip(node, x, low=None, high=None):
    low = node.attrs.get("min") if low is None else const(low).item()
    high = node.attrs.get("max") if high is None else const(high).item()
    if not is_tensor(x):  # integer inputs keep their type (int8 stays int8)
        x = const(x)
        return x.copy() if low is None and high is None else np.clip(x, low, high).astype(x.dtype)
    if low == 0 and high is None:
        return F.relu(x)
    if low == 0 and high == 6:
        return F.relu6(x)
    return x.clamp(low, high)


def _softmax_axis(node, x, function):
    axis = node.attrs.get("axis", -1 if node.opset >= 13 else 1)
    if node.opset >= 13:
        return function(x, dim=axis)
    shape = tuple(x.shape)  # before opset 13: softmax over the flattened dimensions from ``axis`` on
    rows = int(np.prod(shape[:axis % x.ndim]))
    return function(x.reshape(rows, -1), dim=1).reshape(shape)


OPS["Softmax"] = lambda node, x: _softmax_axis(node, x, F.softmax)
OPS["LogSoftmax"] = lambda node, x: _softmax_axis(node, x, F.log_softmax)


# ----------------------------------------------------------------------------------------- linear algebra
@op("Gemm")
def gemm(node, a, b, c=None):
    alpha, beta = float(node.attrs.get("alpha", 1.0)), float(node.attrs.get("beta", 1.0))
    trans_a, trans_b = node.attrs.get("transA", 0), node.attrs.get("transB", 0)
    if is_tensor(a) and trans_b and not trans_a and alpha == beta == 1.0 and (c is None or c.ndim == 1):
        return F.linear(a, _tensor(b), _tensor(c))
    a = a.T if trans_a else a
    b = b.T if trans_b else b
    out = a @ b
    if alpha != 1.0:
        out = out * alpha
    if c is not None:
        out = out + (c * beta if beta != 1.0 else c)
    return out


def _arithmetic(function, integer_function=None):
    def run(node, a, b):
        if not is_tensor(a, b) and integer_function is not None and const(a).dtype.kind in "iu":
            return integer_function(const(a), const(b))
        if not is_tensor(a, b):
            return np.asarray(function(const(a), const(b)))
        return function(a, b)
    return run


def _integer_divide(a, b):
    """ONNX integer Div: truncates toward zero and keeps the integer type (NumPy's // floors)."""
    quotient = np.floor_divide(a, b)
    floored_negative = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return (quotient + floored_negative).astype(np.result_type(a, b))


def _pow(node, a, b):
    """ONNX Pow: the result has the base's type, whatever the exponent's."""
    if not isinstance(a, Tensor):
        base = const(a)
        if base.dtype.kind != "f" or not is_tensor(b):  # integer bases are constants: NumPy in their own type
            return np.power(base, const(b)).astype(base.dtype)
        return Tensor(base) ** b.to(base.dtype)
    if not isinstance(b, Tensor):
        b = const(b)
        return a ** float(b) if b.size == 1 else a ** b.astype(a.dtype)
    return a ** b.to(a.dtype)


OPS.update({
    "Add": _arithmetic(lambda a, b: a + b), "Sub": _arithmetic(lambda a, b: a - b),
    "Mul": _arithmetic(lambda a, b: a * b), "Div": _arithmetic(lambda a, b: a / b, _integer_divide),
    "Pow": _pow, "MatMul": _arithmetic(lambda a, b: a @ b),
})


def _unary(tensor_method, numpy_function):
    def run(node, x):
        return getattr(x, tensor_method)() if is_tensor(x) else numpy_function(x)
    return run


OPS.update({
    "Neg": lambda node, x: -x, "Sqrt": _unary("sqrt", np.sqrt), "Exp": _unary("exp", np.exp),
    "Log": _unary("log", np.log), "Abs": _unary("abs", np.abs),
    "Reciprocal": lambda node, x: 1.0 / x,
})


def _empty_extreme(x, axes, keepdims, method):
    """Max (min) over an empty set: ONNX gives the type's lowest (highest) value, -inf (inf) for floats."""
    if x.dtype == bool:
        start = method == "amin"
    elif x.dtype.kind == "f":
        start = -np.inf if method == "amax" else np.inf
    else:
        start = np.iinfo(x.dtype).min if method == "amax" else np.iinfo(x.dtype).max
    function = np.max if method == "amax" else np.min
    return function(x, axis=axes, keepdims=keepdims, initial=start)


def _reduce(tensor_method, numpy_function):
    def run(node, x, axes_input=None):
        axes = _axes(node, [x, axes_input])
        keepdims = bool(node.attrs.get("keepdims", 1))
        if axes is None or not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.ndim))
        axes = tuple(a % x.ndim for a in axes)
        if tensor_method in ("amax", "amin") and any(x.shape[a] == 0 for a in axes):
            return _empty_extreme(const(x), axes, keepdims, tensor_method)
        if is_tensor(x):
            return getattr(x, tensor_method)(axes, keepdim=keepdims)
        return numpy_function(x, axis=axes, keepdims=keepdims)
    return run


OPS.update({
    "ReduceMean": _reduce("mean", np.mean), "ReduceSum": _reduce("sum", np.sum),
    "ReduceMax": _reduce("amax", np.max), "ReduceMin": _reduce("amin", np.min),
})


# ----------------------------------------------------------------------------------------- comparisons (constants)
def _logic(function):
    def run(node, *values):
        return np.asarray(function(*(const(v) for v in values)))
    return run


OPS.update({
    "Equal": _logic(np.equal), "Less": _logic(np.less), "Greater": _logic(np.greater),
    "LessOrEqual": _logic(np.less_equal), "GreaterOrEqual": _logic(np.greater_equal),
    "Not": _logic(np.logical_not), "And": _logic(np.logical_and), "Or": _logic(np.logical_or),
    "Floor": _logic(np.floor), "Ceil": _logic(np.ceil),
})


@op("Where")
def where_op(node, condition, x, y):
    if not is_tensor(x, y):
        return np.where(const(condition), x, y)
    return where(const(condition).astype(bool), x, y)


# ----------------------------------------------------------------------------------------- shapes
def _to_dtype(node):
    from onnx import helper

    return np.dtype(helper.tensor_dtype_to_np_dtype(node.attrs["to"]))


@op("Cast")
def cast(node, x):
    dtype = _to_dtype(node)
    if not runnable(dtype):
        raise OnnxError(f"{node.describe()}: Cast to {dtype} is not supported; cnnkit runs NumPy's bool, integer "
                        "and float types")
    if is_tensor(x):
        return x.to(dtype) if dtype.kind == "f" else const(x).astype(dtype)
    return const(x).astype(dtype)


@op("Shape")
def shape(node, x):
    sizes = np.asarray(x.shape, dtype=np.int64)
    return sizes[node.attrs.get("start", 0):node.attrs.get("end", len(sizes))]


OPS["Size"] = lambda node, x: np.asarray(int(np.prod(x.shape)), dtype=np.int64)


@op("Constant")
def constant(node):
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in node.attrs:
            value = node.attrs[key]
            if key == "value":
                return value
            return np.asarray(value, dtype=np.float32 if "float" in key else np.int64)
    raise OnnxError(f"{node.describe()}: Constant without a (numeric) value attribute")


@op("ConstantOfShape")
def constant_of_shape(node, sizes):
    value = node.attrs.get("value", np.zeros(1, dtype=np.float32))
    return np.full(ints(sizes), value.reshape(-1)[0], dtype=value.dtype)


@op("Range")
def range_op(node, start, limit, delta):
    start = const(start)
    return np.arange(start, const(limit), const(delta), dtype=start.dtype)


def _reshape_target(x_shape, target, allowzero):
    target = list(target)
    if not allowzero:
        target = [x_shape[i] if size == 0 else size for i, size in enumerate(target)]
    return tuple(target)


@op("Reshape")
def reshape(node, x, target):
    return x.reshape(_reshape_target(tuple(x.shape), ints(target), node.attrs.get("allowzero", 0)))


@op("Flatten")
def flatten(node, x):
    axis = node.attrs.get("axis", 1) % max(1, x.ndim) if x.ndim else 0
    return x.reshape(int(np.prod(x.shape[:axis])), -1)


@op("Transpose")
def transpose(node, x):
    perm = node.attrs.get("perm") or list(range(x.ndim))[::-1]
    return x.permute(*perm) if is_tensor(x) else np.transpose(x, perm)


@op("Squeeze")
def squeeze(node, x, axes=None):
    axes = _axes(node, [x, axes])
    if axes is None:
        axes = [i for i, size in enumerate(x.shape) if size == 1]
    axes = {a % x.ndim for a in axes}
    return x.reshape(tuple(size for i, size in enumerate(x.shape) if i not in axes))


@op("Unsqueeze")
def unsqueeze(node, x, axes=None):
    axes = _axes(node, [x, axes])
    rank = x.ndim + len(axes)
    axes = sorted(a % rank for a in axes)
    shape = list(x.shape)
    for axis in axes:
        shape.insert(axis, 1)
    return x.reshape(tuple(shape))


@op("Concat")
def concat(node, *values):
    axis = node.attrs["axis"]
    if not is_tensor(*values):
        return np.concatenate([np.atleast_1d(const(v)) for v in values], axis=axis)
    return cat([v if isinstance(v, Tensor) else Tensor(const(v)) for v in values], dim=axis % values[0].ndim)


@op("Split")
def split(node, x, sizes=None):
    axis = node.attrs.get("axis", 0) % x.ndim
    sizes = list(node.attrs["split"]) if "split" in node.attrs else (ints(sizes) if sizes is not None else None)
    if sizes is None:
        count = node.attrs.get("num_outputs", len(node.outputs))
        step = -(-x.shape[axis] // count)
        sizes = [min(step, x.shape[axis] - i * step) for i in range(count)]
    pieces, start = [], 0
    for size in sizes:
        index = (slice(None),) * axis + (slice(start, start + size),)
        pieces.append(x[index])
        start += size
    return tuple(pieces)


@op("Slice")
def slice_op(node, x, starts=None, ends=None, axes=None, steps=None):
    if "starts" in node.attrs:  # opset < 10: attributes
        starts, ends = node.attrs["starts"], node.attrs["ends"]
        axes = node.attrs.get("axes")
    else:
        starts, ends = ints(starts), ints(ends)
        axes = ints(axes) if axes is not None else None
    axes = list(range(len(starts))) if axes is None else [a % x.ndim for a in axes]
    steps = ints(steps) if steps is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for axis, start, end, step in zip(axes, starts, ends, steps):
        size = x.shape[axis]
        # ONNX clamps out-of-range bounds (INT64_MAX means "to the end"); Python slices do the same
        end = None if (step < 0 and end < -size) else end
        index[axis] = slice(start, end, step)
    return x[tuple(index)]


@op("Gather")
def gather(node, x, indices):
    axis = node.attrs.get("axis", 0) % x.ndim
    positions = const(indices).astype(np.int64)
    positions = np.where(positions < 0, positions + x.shape[axis], positions)
    if not is_tensor(x):
        return np.take(x, positions, axis=axis)
    index = (slice(None),) * axis + (int(positions) if positions.ndim == 0 else positions,)
    return x[index]


@op("Expand")
def expand(node, x, sizes):
    target = np.broadcast_shapes(tuple(x.shape), tuple(ints(sizes)))
    if not is_tensor(x):
        return np.broadcast_to(x, target).copy()
    return x if tuple(x.shape) == target else x.expand(*target)


@op("Pad")
def pad(node, x, pads=None, value=None, axes=None):
    mode = text_attr(node, "mode", "constant")
    flat = list(node.attrs["pads"]) if "pads" in node.attrs else ints(pads)
    fill = float(const(value)) if value is not None and const(value).size else float(node.attrs.get("value", 0.0))
    axes = ints(axes) if axes is not None else list(range(x.ndim))
    axes = [a % x.ndim for a in axes]
    pairs = [(0, 0)] * x.ndim
    for i, axis in enumerate(axes):
        pairs[axis] = (flat[i], flat[i + len(axes)])
    if not is_tensor(x):
        numpy_mode = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode]
        extra = {"constant_values": fill} if mode == "constant" else {}
        return np.pad(x, pairs, mode=numpy_mode, **extra)
    torch_mode = {"constant": "constant", "reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise OnnxError(f"{node.describe()}: Pad mode {mode!r} is not supported")
    first = next((i for i, p in enumerate(pairs) if p != (0, 0)), x.ndim)
    torch_pads = []
    for begin, end in reversed(pairs[first:]):
        torch_pads += [begin, end]
    if not torch_pads:
        return x
    return F.pad(x, tuple(torch_pads), torch_mode, fill if torch_mode == "constant" else None)


@op("If")
def if_op(node, condition):
    branch = "then_branch" if bool(const(condition).reshape(-1)[0]) else "else_branch"
    outputs = node.run(node.attrs[branch])
    return outputs[0] if len(outputs) == 1 else tuple(outputs)


from . import pointwise_ops, pool_ops  # noqa: E402,F401  (they add their operators to OPS)

SUPPORTED_OPS = frozenset(OPS)  # the operators ``load`` runs: the node-test suite and the README take this set
