"""ONNX pooling operators (MaxPool, AveragePool, LpPool, their global forms, MaxUnpool) on cnnkit's 2-D pools.

Where ONNX allows what the pools do not (dilated average and Lp windows, padding wider than half the
window with count_include_pad=0), the window sums are a grouped convolution with a kernel of ones.
"""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from ..autograd import Tensor
from .errors import OnnxError
from .ops import _auto_pads, _fits_window, _pre_pad, _require_2d, _spatial, _tensor, const, ints, is_tensor, op


def _pool_geometry(node, x):
    """``(x, kernel, stride, dilation, pads, restore)`` of a pooling node, as a 2-D pool.

    A 3-D pool whose window spans only the first spatial axis (torch's LocalResponseNorm export pools
    (N, 1, C, H, W) with a (size, 1, 1) window) runs as a 2-D pool over (N, 1, C, H * W).
    """
    kernel = tuple(node.attrs["kernel_shape"])
    stride, dilation = _spatial(node, x, "strides", 1), _spatial(node, x, "dilations", 1)
    pads = _auto_pads(node, x.shape[2:], kernel, stride, dilation)
    restore = None
    if x.ndim > 4 and all(k == s == d == 1 and p == (0, 0) for k, s, d, p in
                          zip(kernel[1:], stride[1:], dilation[1:], pads[1:])):
        restore = tuple(x.shape)
        x = x.reshape(restore[0], restore[1], restore[2], -1)
        kernel, stride, dilation, pads = (kernel[0], 1), (stride[0], 1), (dilation[0], 1), (pads[0], (0, 0))
    _require_2d(node, x)
    return _tensor(x), kernel, stride, dilation, pads, restore


def _restored(out, restore):
    return out if restore is None else out.reshape(*restore[:2], out.shape[2], *restore[3:])


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
    x, kernel, stride, dilation, pads, restore = _pool_geometry(node, x)
    if with_indices and restore is not None:
        raise OnnxError(f"{node.describe()}: the Indices output of a pool over (N, C, D, H, W) is not supported")
    shape, pre_pads = tuple(x.shape), ((0, 0), (0, 0))
    if not _fits_window(pads, kernel):  # ONNX allows any padding, cnnkit's (torch's) pools at most k // 2
        x, pre_pads, pads = _pre_pad(x, pads, -math.inf), pads, ((0, 0), (0, 0))
    result = F.max_pool2d(x, kernel, stride, pads, dilation, ceil_mode=_ceil(node), return_indices=with_indices)
    if not with_indices:
        return _restored(result, restore)
    out, plane_indices = result
    return out, _onnx_indices(const(plane_indices), shape, x.shape[3], pre_pads,
                              int(node.attrs.get("storage_order", 0)))


def _onnx_indices(plane_indices, shape, padded_width, pre_pads, storage_order):
    """cnnkit's indices into each (padded) H * W plane as ONNX's: flat over (N, C, H, W), row- or column-major."""
    batch, channels, height, width = shape
    rows = plane_indices // padded_width - pre_pads[0][0]
    cols = plane_indices % padded_width - pre_pads[1][0]
    within = rows * width + cols if storage_order == 0 else cols * height + rows
    planes = (np.arange(batch)[:, None, None, None] * channels + np.arange(channels)[None, :, None, None])
    return (planes * height * width + within).astype(np.int64)


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
    """The sum of ``x`` (zero-padded by ``pads``) over every dilated window: a grouped conv with ones."""
    x = _pre_pad(x, pads, 0.0) if any(sum(p) for p in pads) else x
    channels = x.shape[1]
    ones = Tensor(np.ones((channels, 1, *kernel), dtype=x.dtype))
    return F.conv2d(x, ones, None, stride, 0, dilation, channels)


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
    x, kernel, stride, dilation, pads, restore = _pool_geometry(node, x)
    include = bool(node.attrs.get("count_include_pad", 0))
    if any(d != 1 for d in dilation) or (not include and not _fits_window(pads, kernel)):
        grown = _window_pads(x.shape[2:], kernel, stride, dilation, pads, _ceil(node))
        sums = _window_sums(x, kernel, stride, dilation, grown)
        return _restored(sums / _counts(x.shape[2:], kernel, stride, dilation, pads, grown, include, x.dtype),
                         restore)
    if not _fits_window(pads, kernel):
        x, pads = _pre_pad(x, pads, 0.0), ((0, 0), (0, 0))
    out = F.avg_pool2d(x, kernel, stride, pads, _ceil(node), include)
    return _restored(out, restore)


@op("LpPool")
def lp_pool(node, x):
    x, kernel, stride, dilation, pads, restore = _pool_geometry(node, x)
    p = float(node.attrs.get("p", 2))
    if any(d != 1 for d in dilation):  # (sum over the window of |x|^p)^(1/p), zeros adding nothing
        grown = _window_pads(x.shape[2:], kernel, stride, dilation, pads, _ceil(node))
        return _restored(_window_sums(x.abs() ** p, kernel, stride, dilation, grown) ** (1.0 / p), restore)
    if any(begin != end for begin, end in pads) or not _fits_window(pads, kernel):
        x, pads = _pre_pad(x, pads, 0.0), ((0, 0), (0, 0))
    out = F.lp_pool2d(x, p, kernel, stride, _ceil(node), tuple(begin for begin, _ in pads))
    return _restored(out, restore)


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
    _require_2d(node, x)
    kernel = tuple(node.attrs["kernel_shape"])
    stride = _spatial(node, x, "strides", 1)
    flat = list(node.attrs.get("pads", [0] * 4))
    pads = ((flat[0], flat[2]), (flat[1], flat[3]))
    size = tuple((length - 1) * s + k - sum(p) for length, s, k, p in zip(x.shape[2:], stride, kernel, pads))
    # ONNX's indices run over the whole (N, C, H, W) tensor; cnnkit's (torch's) over each H * W plane
    plane_indices = const(indices).astype(np.int64) % (size[0] * size[1])
    out = F.max_unpool2d(_tensor(x), plane_indices, kernel, stride, 0, size)
    if output_shape is None:
        return out
    wanted = ints(output_shape)[2:]
    if any(want < have for want, have in zip(wanted, size)):
        raise OnnxError(f"{node.describe()}: output_shape {ints(output_shape)} is smaller than the unpooled size "
                        f"{size}")
    return _pre_pad(out, tuple((0, want - have) for want, have in zip(wanted, size)), 0.0)
