"""Inference convolutions: y = act(W (*) x + b) in one call, for a batch of one (and small batches).

``conv_forward(x, weight, bias, geo, activation, out)`` is the forward 2-D correlation of a compiled
inference path: no gradient, no autograd, the bias and the activation (None, "relu", "relu6") applied to each
block of output right after the GEMM or multiply-adds that wrote it, while it is in cache, and the result
written into ``out`` when given. ``path_for(geo)`` picks the code by a rule on the geometry alone:

* 'pointwise': 1x1, no padding. One GEMM per thread straight into ``out`` (each thread a range of
  pixels; one GEMM on maps under 2 x MIN_PART_PIXELS), then the epilogue on its rows; a stride first copies
  the pixels it keeps (a strided 1x1 layer through bands measured twice as slow: row bands or thread hand-offs
  for a layer of a few tenths of a millisecond).
* 'depthwise': one output channel per input channel, 64+ channels, maps of at most 56x56
  (``conv_depthwise_direct.applies``): one einsum over a padded channels-last copy per band of rows.
* 'shifted': depthwise, input rows of 96+ pixels, not 'depthwise', strided only on 2+ threads
  (``conv_depthwise_shift.applies``): one multiply and one add per tap over shifted views of the padded
  channels, blocks of channels per thread.
* 'bands': every other geometry up to MAX_BATCH images (``conv_bands``): im2col of a band of output rows, one
  GEMM (a batch of GEMVs for depthwise), the epilogue, bands shared over the threads.
* 'im2col': larger batches, the chunked im2col kernel (which shares samples over the threads), the
  activation after it.

The threads share a layer through cnnkit's pool, NumPy's BLAS on one thread each; a layer too small to split
(``conv_bands.SPLIT_MIN_MACS``) runs on the calling thread, BLAS on one thread too. No GEMM is lent to BLAS's
own threads: on this project's busy 2-core machine that made single 1x1 and 3x3 GEMMs tens of times slower
(its threads wait to be scheduled). The ``OneImage*`` kernels at the end register the first four
paths for the conv2d op at batch 1, so an eager forward under ``no_grad`` runs them too.
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from . import Kernel, conv_depthwise_direct, conv_depthwise_shift
from .conv_bands import SPLIT_MIN_MACS, dense_bands, share
from .conv_epilogue import ACTIVATIONS, finish_into
from .conv_im2col import ChunkedIm2col, correlate_chunks
from .conv_plan import plan_for

__all__ = ["conv_forward", "path_for", "ACTIVATIONS", "OneImagePointwise", "OneImageDepthwise", "OneImageShifted",
           "OneImageBands"]

# The 1x1 epilogue runs once over each thread's part, after its GEMM: cutting it into blocks of 2^16 elements
# measured up to 1.5x slower on MobileNet-v2's 1x1 layers (16 -> 96 channels at 112x112: 1.18 vs 0.77 ms), and
# tiling the GEMM itself, so that the epilogue finds each tile in cache, measured slower than one GEMM per
# thread.
# Threads share a 1x1 output by ranges of pixels of at least this many (a GEMM that narrow still runs near
# full speed); smaller maps run on the calling thread.
MIN_PART_PIXELS = 256
# Up to this many images the per-image paths run; a larger batch has enough samples for the chunked im2col
# kernel to share over threads, and its per-chunk GEMMs are wider.
MAX_BATCH = 4


def path_for(geo):
    """The code that runs ``geo``: 'pointwise', 'depthwise', 'shifted', 'bands' or 'im2col' (module docstring)."""
    if geo.batch > MAX_BATCH:
        return "im2col"
    if geo.kernel == (1, 1) and not any(geo.pads[0]) and not any(geo.pads[1]):
        return "pointwise"
    if conv_depthwise_direct.applies(geo):
        return "depthwise"
    if conv_depthwise_shift.applies(geo):
        return "shifted"
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
        if geo.stride != (1, 1):  # a 1x1 window reads one pixel: keep those the stride lands on
            x = xp.ascontiguousarray(x[:, :, ::geo.stride[0], ::geo.stride[1]])
        _pointwise(x, weight, bias, geo, activation, out)
    elif path == "depthwise":
        conv_depthwise_direct.depthwise_direct(x, weight, bias, geo, activation, out)
    elif path == "shifted":
        conv_depthwise_shift.depthwise_shift(x, weight, bias, geo, activation, out)
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
    if weight.dtype != x.dtype or (bias is not None and bias.dtype != x.dtype):
        raise TypeError(f"conv_forward: input ({x.dtype}), weight ({weight.dtype}) and bias "
                        f"({None if bias is None else bias.dtype}) must have the same dtype; convert them first")
    shape = (geo.batch, geo.out_channels) + tuple(geo.out_size)
    if tuple(x.shape) != (geo.batch, geo.in_channels) + tuple(geo.in_size):
        raise ValueError(f"conv_forward: input of shape {tuple(x.shape)} does not match the geometry's "
                         f"{(geo.batch, geo.in_channels) + tuple(geo.in_size)}; make the geometry from this input")
    if out is not None:
        if tuple(out.shape) != shape or out.dtype != x.dtype or not out.flags.c_contiguous:
            raise ValueError(f"conv_forward: out must be a C-contiguous {x.dtype} array of shape {shape}, got "
                             f"{out.dtype} {tuple(out.shape)} (C-contiguous: {out.flags.c_contiguous})")


def _pointwise(x, weight, bias, geo, activation, out):
    """1x1, x already strided, no padding: out[n, g] = act(W_g @ x[n, g] + b), GEMMs straight into ``out``, one part of
    the output per thread (each GEMM on a one-thread BLAS), the epilogue on each part's rows after its GEMM."""
    xp = get_array_module()
    batch, groups, pixels = geo.batch, geo.groups, geo.out_size[0] * geo.out_size[1]
    k_group, c_group = geo.out_channels // groups, geo.in_channels // groups
    w_mat = weight.reshape(groups, k_group, c_group)
    bias_column = None if bias is None else bias.reshape(groups, k_group, 1)
    images = x.reshape(batch, groups, c_group, pixels)
    outputs = out.reshape(batch, groups, k_group, pixels)
    # small maps are not split: a range of output channels per thread measured slower than one GEMM
    split = batch * geo.out_channels * c_group * pixels >= SPLIT_MIN_MACS and pixels >= 2 * MIN_PART_PIXELS
    tasks = [(n, g, part) for n in range(batch) for g in range(groups)
             for part in output_parts(k_group, pixels, batch * groups if split else None)]

    def run(task, work):
        n, g, ((first, stop), (start, end)) = task
        target = outputs[n, g, first:stop, start:end]
        xp.matmul(w_mat[g, first:stop], images[n, g, :, start:end], out=target)
        finish_into(target, target, None if bias_column is None else bias_column[g, first:stop], activation)

    share(run, tasks, dict, split)


def output_parts(rows, pixels, blocks=None):
    """[((first, stop) rows, (start, end) pixels)]: parts of an output (rows, pixels), one per thread (with
    ``blocks`` outputs side by side; None: one part, for one thread), as ranges of pixels."""
    parts = 1 if blocks is None else -(-get_num_threads() // blocks)
    width = -(-pixels // parts)
    return [((0, rows), (start, min(pixels, start + width))) for start in range(0, pixels, width)]


# ------------------------------------------------------------------------------------ kernels for the conv2d op
class _BatchOfOne(Kernel):
    """conv2d's forward on one image through ``conv_forward``; weight gradients (``upstream``) and the input
    sums of conv_transpose2d's backward go to the chunked im2col kernel, which computes them from one set of
    columns."""

    path = ""

    def applies(self, geo):
        return geo.batch == 1 and path_for(geo) == self.path

    def correlate(self, x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False):
        """The op "conv2d" contract (see conv_im2col.ChunkedIm2col.correlate)."""
        if upstream is not None or sum_input or not compute_output:
            return _IM2COL.correlate(x, weight, geo, bias, compute_output, upstream, out, sum_input)
        if out is not None and not out.flags.c_contiguous:
            out[...] = conv_forward(x, weight, bias, geo)
            return out, None
        return conv_forward(x, weight, bias, geo, out=out), None


class OneImagePointwise(_BatchOfOne):
    """1x1, no padding, one image: one GEMM into the output (after copying the strided pixels), then the bias."""

    name, op, path = "conv2d.one_image_pointwise", "conv2d", "pointwise"


class OneImageDepthwise(_BatchOfOne):
    """Depthwise (one output channel per input channel), one image: the direct kernel of conv_depthwise_direct."""

    name, op, path = "conv2d.one_image_depthwise", "conv2d", "depthwise"


class OneImageShifted(_BatchOfOne):
    """Depthwise, wide rows (strided only on 2+ threads), one image: shifted multiply-adds (conv_depthwise_shift)."""

    name, op, path = "conv2d.one_image_shifted", "conv2d", "shifted"


class OneImageBands(_BatchOfOne):
    """Any other geometry, one image: bands of output rows (conv_bands), shared over the threads."""

    name, op, path = "conv2d.one_image_bands", "conv2d", "bands"


_IM2COL = ChunkedIm2col()
