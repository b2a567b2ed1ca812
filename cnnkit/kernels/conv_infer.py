"""Inference convolutions: y = act(W (*) x + b) in one call, fast for a batch of one.

``conv_forward(x, weight, bias, geo, activation, out)`` is the forward 2-D correlation of a compiled
inference path (no gradient, no autograd): the bias and the activation ("relu", "relu6") are applied to
each block of output rows right after the GEMM that wrote it, while the block is still in cache. Which
code runs depends on the geometry (``path_for``); every geometry has one, the last being the chunked
im2col kernel followed by the same per-block epilogue.
"""
from __future__ import annotations

from ..backend import get_array_module
from .activation import clamp_into
from .conv_im2col import correlate_chunks
from .conv_plan import plan_for

__all__ = ["conv_forward", "path_for", "ACTIVATIONS"]

ACTIVATIONS = (None, "relu", "relu6")
_BOUNDS = {"relu": (0.0, None), "relu6": (0.0, 6.0)}

# Output elements per epilogue block: small enough to still be in cache after the GEMM that wrote it.
EPILOGUE_ELEMENTS = 1 << 15


def path_for(geo):
    """The name of the code that runs ``geo``: 'pointwise' or 'im2col'."""
    plan = plan_for(geo)
    if geo.kernel == (1, 1) and geo.stride == (1, 1) and not plan.has_padding and geo.in_size == geo.out_size:
        return "pointwise"
    return "im2col"


def conv_forward(x, weight, bias, geo, activation=None, out=None):
    """y = act(correlate(x, W) + b) for ``geo`` (groups, stride, dilation, per-side pads); written into ``out``."""
    xp = get_array_module()
    _check(x, weight, bias, geo, activation, out)
    if out is None:
        out = xp.empty((geo.batch, geo.out_channels) + geo.out_size, x.dtype)
    if geo.batch == 0:
        return out
    x = xp.ascontiguousarray(x)
    path = path_for(geo)
    if path == "pointwise":
        _pointwise(x, weight, bias, geo, activation, out)
    else:
        correlate_chunks(x, weight, plan_for(geo), bias, out=out)
        if activation is not None:
            finish_rows(out.reshape(-1, geo.out_size[0] * geo.out_size[1]), None, activation)
    return out


def _check(x, weight, bias, geo, activation, out):
    """Clear errors for an activation this path does not fuse and an ``out`` it cannot write into."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"conv_forward: activation must be one of {ACTIVATIONS}, got {activation!r}")
    shape = (geo.batch, geo.out_channels) + tuple(geo.out_size)
    if tuple(x.shape) != (geo.batch, geo.in_channels) + tuple(geo.in_size):
        raise ValueError(f"conv_forward: input of shape {tuple(x.shape)} does not match the geometry's "
                         f"{(geo.batch, geo.in_channels) + tuple(geo.in_size)}; make the geometry from this input")
    if out is not None:
        if tuple(out.shape) != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
            raise ValueError(f"conv_forward: out must be a C-contiguous {x.dtype} array of shape {shape}, got "
                             f"{out.dtype} {tuple(out.shape)} (C-contiguous: {out.flags.c_contiguous})")


def finish_rows(rows, bias_rows, activation):
    """rows (k, pixels) += bias_rows (k,) and clamped by ``activation``, in place, a cache-sized block at a time."""
    low, high = _BOUNDS.get(activation, (None, None))
    step = max(1, EPILOGUE_ELEMENTS // max(1, rows.shape[1]))
    for start in range(0, rows.shape[0], step):
        block = rows[start:start + step]
        if bias_rows is not None:
            block += bias_rows[start:start + step, None]
        if low is not None:
            clamp_into(block, low, high, block)


def _pointwise(x, weight, bias, geo, activation, out):
    """1x1, stride 1, no padding: y[n, g] = W_g @ x[n, g] per sample and group, then the epilogue on the block."""
    xp = get_array_module()
    groups, pixels = geo.groups, geo.out_size[0] * geo.out_size[1]
    k_group, c_group = geo.out_channels // groups, geo.in_channels // groups
    w_mat = weight.reshape(groups, k_group, c_group)
    bias_mat = None if bias is None else bias.reshape(groups, k_group)
    for n in range(geo.batch):
        xs = x[n].reshape(groups, c_group, pixels)
        ys = out[n].reshape(groups, k_group, pixels)
        for g in range(groups):
            xp.matmul(w_mat[g], xs[g], out=ys[g])
            finish_rows(ys[g], None if bias_mat is None else bias_mat[g], activation)
