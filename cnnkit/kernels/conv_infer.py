"""Inference convolutions: y = act(W (*) x + b) in one call, fast for a batch of one.

``conv_forward(x, weight, bias, geo, activation, out)`` is the forward 2-D correlation of a compiled
inference path (no gradient, no autograd): the bias and the activation ("relu", "relu6") are applied to
each block of output rows right after the GEMM that wrote it, while the block is still in cache. Which
code runs depends on the geometry (``path_for``); every geometry has one, the last being the chunked
im2col kernel followed by the same per-block epilogue.
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from . import conv_depthwise_direct
from .conv_bands import dense_bands
from .conv_epilogue import ACTIVATIONS, finish_into
from .conv_im2col import correlate_chunks
from .conv_plan import plan_for
from .threads import parallel_for

__all__ = ["conv_forward", "path_for", "ACTIVATIONS"]

# Output elements per 1x1 tile: small enough to still be in cache when the epilogue reads what the GEMM
# wrote; tiles are at least MIN_TILE_PIXELS wide, below which a GEMM runs well under BLAS's full speed.
TILE_ELEMENTS = 1 << 16
MIN_TILE_PIXELS = 256
# Up to this many images the per-image paths run; a larger batch has enough samples for the chunked im2col
# kernel to share over threads, and its per-chunk GEMMs are wider.
MAX_BATCH = 4


def path_for(geo):
    """The code that runs ``geo``: 'pointwise' (1x1, stride 1, no padding), 'depthwise' (one output channel per
    input channel), 'bands' (any other geometry, up to MAX_BATCH images) or 'im2col' (larger batches)."""
    if geo.batch > MAX_BATCH:
        return "im2col"
    if (geo.kernel == (1, 1) and geo.stride == (1, 1) and not any(geo.pads[0]) and not any(geo.pads[1])
            and tuple(geo.in_size) == tuple(geo.out_size)):
        return "pointwise"
    if conv_depthwise_direct.applies(geo):
        return "depthwise"
    return "bands"


def conv_forward(x, weight, bias, geo, activation=None, out=None):
    """y = act(correlate(x, W) + b) for ``geo`` (groups, stride, dilation, per-side pads); written into ``out``."""
    xp = get_array_module()
    _check(x, weight, bias, geo, activation, out)
    if out is None:
        out = xp.empty((geo.batch, geo.out_channels) + tuple(geo.out_size), x.dtype)
    if geo.batch == 0:
        return out
    x = xp.ascontiguousarray(x)
    path = path_for(geo)
    if path == "pointwise":
        _pointwise(x, weight, bias, geo, activation, out)
    elif path == "depthwise":
        conv_depthwise_direct.depthwise_direct(x, weight, bias, geo, activation, out)
    elif path == "bands":
        dense_bands(x, weight, bias, geo, activation, out)
    else:
        correlate_chunks(x, weight, plan_for(geo), bias, out=out)
        if activation is not None:
            finish_into(out, out, None, activation)
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


def _pointwise(x, weight, bias, geo, activation, out):
    """1x1, stride 1, no padding: out[n, g] tile by tile = act(W_g @ x[n, g] + b), no copy of x."""
    xp = get_array_module()
    batch, groups, pixels = geo.batch, geo.groups, geo.out_size[0] * geo.out_size[1]
    k_group, c_group = geo.out_channels // groups, geo.in_channels // groups
    w_mat = weight.reshape(groups, k_group, c_group)
    bias_column = None if bias is None else bias.reshape(groups, k_group, 1)
    images = x.reshape(batch, groups, c_group, pixels)
    outputs = out.reshape(batch, groups, k_group, pixels)
    tasks = [(n, g, rows, columns) for n in range(batch) for g in range(groups)
             for rows, columns in pointwise_tiles(k_group, pixels, batch * groups)]

    def run(task):
        n, g, (first, stop), (start, end) = task
        target = outputs[n, g, first:stop, start:end]
        xp.matmul(w_mat[g, first:stop], images[n, g, :, start:end], out=target)
        finish_into(target, target, None if bias_column is None else bias_column[g, first:stop], activation)

    parallel_for(lambda task, work: run(task), tasks)


def pointwise_tiles(rows, pixels, blocks=1):
    """[((first, stop) rows, (start, end) pixels)] tiles of an output (rows, pixels) of about TILE_ELEMENTS each,
    at least one per thread with ``blocks`` such outputs side by side: pixel tiles while they are wide enough
    for a fast GEMM, row tiles after that."""
    threads = get_num_threads()
    wanted = max(-(-rows * pixels // TILE_ELEMENTS), -(-threads // blocks))
    columns = min(wanted, max(1, pixels // MIN_TILE_PIXELS))
    row_parts = min(rows, -(-wanted // columns))
    width, height = -(-pixels // columns), -(-rows // row_parts)
    return [((first, min(rows, first + height)), (start, min(pixels, start + width)))
            for first in range(0, rows, height) for start in range(0, pixels, width)]
