"""ONNX pooling operators (MaxPool, AveragePool, LpPool, their global forms, MaxUnpool) on cnnkit's N-d pools.

Where ONNX allows what the pools do not (dilated average and Lp windows, padding wider than half the
window with count_include_pad=0), the windows are summed by ``functional.pooling.window_sum`` and divided here.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from ..functional.pooling import window_sum
from .errors import OnnxError
from .ops import _auto_pads, _fits_window, _pre_pad, _spatial, _spatial_dims, _tensor, const, ints, is_tensor, op


def _pooled(name, x):
    """cnnkit.functional's ``{name}{d}d`` for x's number of spatial axes."""
    return getattr(F, f"{name}{x.ndim - 2}d")


def _pool_geometry(node, x):
    """``(x, kernel, stride, dilation, pads)`` of a pooling node, each per spatial axis."""
    _spatial_dims(node, x)
    kernel = tuple(node.attrs["kernel_shape"])
    stride, dilation = _spatial(node, x, "strides", 1), _spatial(node, x, "dilations", 1)
    pads = _auto_pads(node, x.shape[2:], kernel, stride, dilation)
    return _tensor(x), kernel, stride, dilation, pads


def _ceil(node):
    return bool(node.attrs.get("ceil_mode", 0))


# ----------------------------------------------------------------------------------------- max
@op("MaxPool")
def max_pool(node, x):
    """Integer inputs pool in float64 and return to their type: exact, since max only picks a value."""
    if is_tensor(x) or const(x).dtype.kind == "f":
        return _max_pool(node, x)
    dtype = const(x).dtype
    result = _max_pool(node, Tensor(const(x).astype(np.float64)))
    if isinstance(result, tuple):
        return result[0].data.astype(dtype), result[1]
    return result.data.astype(dtype)


def _max_pool(node, x):
    with_indices = len(node.outputs) > 1 and bool(node.outputs[1])
    x, kernel, stride, dilation, pads = _pool_geometry(node, x)
    shape, pre_pads = tuple(x.shape), ((0, 0),) * len(kernel)
    if not _fits_window(pads, kernel):  # ONNX allows any padding, cnnkit's (torch's) pools at most k // 2
        x, pre_pads, pads = _pre_pad(x, pads, -math.inf), pads, ((0, 0),) * len(kernel)
    result = _pooled("max_pool", x)(x, kernel, stride, pads, dilation, ceil_mode=_ceil(node),
                                    return_indices=with_indices)
    if not with_indices:
        return result
    out, plane_indices = result
    return out, _onnx_indices(const(plane_indices), shape, tuple(x.shape[2:]), pre_pads,
                              int(node.attrs.get("storage_order", 0)))


def _onnx_indices(plane_indices, shape, padded_size, pre_pads, storage_order):
    """cnnkit's indices into each (padded) plane or volume as ONNX's: flat over the whole (N, C, *spatial) tensor,
    row-major, or column-major over the spatial axes with ``storage_order`` 1."""
    positions = np.unravel_index(plane_indices, padded_size)
    spatial = shape[2:]
    within = np.ravel_multi_index(tuple(p - before for p, (before, _) in zip(positions, pre_pads)), spatial,
                                  order="F" if storage_order else "C")
    batch, channels = shape[:2]
    planes = np.arange(batch * channels).reshape((batch, channels) + (1,) * len(spatial))
    return (planes * math.prod(spatial) + within).astype(np.int64)


# ----------------------------------------------------------------------------------------- sums of windows
def _window_pads(in_size, kernel, stride, dilation, pads, ceil_mode):
    """``pads`` with each end grown so that ceil_mode's last window fits; no window starts in the end padding."""
    grown = []
    for size, k, s, d, (begin, end) in zip(in_size, kernel, stride, dilation, pads):
        span, padded = (k - 1) * d + 1, size + begin + end
        count = (-(-(padded - span) // s) if ceil_mode else (padded - span) // s) + 1
        if ceil_mode and (count - 1) * s >= size + begin:
            count -= 1
        grown.append((begin, end + max(0, (count - 1) * s + span - padded)))
    return tuple(grown)


def _window_sums(x, kernel, stride, dilation, pads):
    """The sum of ``x`` (zero-padded by ``pads``) over every dilated window."""
    x = _pre_pad(x, pads, 0.0) if any(sum(p) for p in pads) else x
    return window_sum(x, kernel, stride, dilation)


def _counts(in_size, kernel, stride, dilation, pads, grown, include_pad, dtype):
    """How many positions each window averages: input positions, plus the explicit pads with count_include_pad."""
    counted = np.ones((1, 1, *in_size), dtype=dtype)
    if include_pad:
        counted = np.pad(counted, ((0, 0), (0, 0), *pads), constant_values=1)
        grown = tuple((0, g[1] - p[1]) for g, p in zip(grown, pads))
    return const(_window_sums(Tensor(counted), kernel, stride, dilation, grown))


# ----------------------------------------------------------------------------------------- average and Lp
@op("AveragePool")
def average_pool(node, x):
    x, kernel, stride, dilation, pads = _pool_geometry(node, x)
    include = bool(node.attrs.get("count_include_pad", 0))
    if any(d != 1 for d in dilation) or (not include and not _fits_window(pads, kernel)):
        grown = _window_pads(x.shape[2:], kernel, stride, dilation, pads, _ceil(node))
        sums = _window_sums(x, kernel, stride, dilation, grown)
        return sums / _counts(x.shape[2:], kernel, stride, dilation, pads, grown, include, x.dtype)
    if not _fits_window(pads, kernel):
        x, pads = _pre_pad(x, pads, 0.0), ((0, 0),) * len(kernel)
    return _pooled("avg_pool", x)(x, kernel, stride, pads, _ceil(node), include)


@op("LpPool")
def lp_pool(node, x):
    x, kernel, stride, dilation, pads = _pool_geometry(node, x)
    p = float(node.attrs.get("p", 2))
    if any(d != 1 for d in dilation):  # (sum over the window of |x|^p)^(1/p), zeros adding nothing
        grown = _window_pads(x.shape[2:], kernel, stride, dilation, pads, _ceil(node))
        return _window_sums(x.abs() ** p, kernel, stride, dilation, grown) ** (1.0 / p)
    if any(begin != end for begin, end in pads) or not _fits_window(pads, kernel):
        x, pads = _pre_pad(x, pads, 0.0), ((0, 0),) * len(kernel)
    return _pooled("lp_pool", x)(x, p, kernel, stride, _ceil(node), tuple(begin for begin, _ in pads))


@op("GlobalAveragePool")
def global_average_pool(node, x):
    return x.mean(tuple(range(2, x.ndim)), keepdim=True)


@op("GlobalMaxPool")
def global_max_pool(node, x):
    return x.amax(tuple(range(2, x.ndim)), keepdim=True)


@op("GlobalLpPool")
def global_lp_pool(node, x):
    """(sum over all spatial positions of |x|^p)^(1/p) per sample and channel."""
    p = float(node.attrs.get("p", 2))
    return (_tensor(x).abs() ** p).sum(tuple(range(2, x.ndim)), keepdim=True) ** (1.0 / p)


# ----------------------------------------------------------------------------------------- unpooling
@op("MaxUnpool")
def max_unpool(node, x, indices, output_shape=None):
    """Unpool to the size the pooling had ((in - 1) * stride + kernel - pads); output_shape pads zeros at the end.

    The end padding is what the ONNX reference does with a larger ``output_shape`` (onnxruntime differs).
    """
    _spatial_dims(node, x)
    kernel = tuple(node.attrs["kernel_shape"])
    stride = _spatial(node, x, "strides", 1)
    dims = len(kernel)
    flat = list(node.attrs.get("pads", [0] * 2 * dims))
    pads = tuple((flat[a], flat[a + dims]) for a in range(dims))
    size = tuple((length - 1) * s + k - sum(p) for length, s, k, p in zip(x.shape[2:], stride, kernel, pads))
    # ONNX's indices run over the whole (N, C, *spatial) tensor; cnnkit's (torch's) over each plane or volume
    plane_indices = const(indices).astype(np.int64) % math.prod(size)
    out = _pooled("max_unpool", x)(_tensor(x), plane_indices, kernel, stride, 0, size)
    if output_shape is None:
        return out
    wanted = ints(output_shape)[2:]
    if any(want < have for want, have in zip(wanted, size)):
        raise OnnxError(f"{node.describe()}: output_shape {ints(output_shape)} is smaller than the unpooled size "
                        f"{size}")
    return _pre_pad(out, tuple((0, want - have) for want, have in zip(wanted, size)), 0.0)
