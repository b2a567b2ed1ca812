"""Chunked im2col GEMM: the reference conv2d and its col2im input gradient, run cache-sized chunk by chunk.

Each chunk of samples is copied into a reused per-thread column buffer (``Workspace``), multiplied in one
GEMM per group and written out; the chunks are shared over cnnkit's threads with BLAS on one thread each.
The columns stay in cache instead of streaming a kh*kw-times inflated copy of the whole batch through
memory, and on stride 1 "wide" columns turn every column row into one contiguous copy (see conv_plan).
"""
from __future__ import annotations

from ..backend import get_array_module
from . import Kernel, pick
from .conv_plan import chunk_columns, chunk_sums, col2im_add, grouped_columns, plan_for, run_chunks
from .copy import assign

# Up to this many output channels a dense layer's weight gradient GEMM runs transposed (see correlate_chunks);
# grouped and depthwise layers, whose per-group products are matrix-vector-like, keep the usual orientation.
DW_TRANSPOSED_MAX_OUT_CHANNELS = 16


class ChunkedIm2col(Kernel):
    """y = W @ im2col(x) + b and dW = dy @ im2col(x)^T, chunk by chunk in cache, on every non-empty batch."""

    name, op = "conv2d.im2col", "conv2d"

    def applies(self, geo):
        return len(geo.kernel) == 2 and geo.batch > 0

    def correlate(self, x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False):
        """The op "conv2d" contract: ``(y or None, dW or None[, sum_{n,h,w} x])``; ``out``: where to write y."""
        return correlate_chunks(x, weight, plan_for(geo), bias, compute_output, upstream, out, sum_input)


def correlate(x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False):
    """The fastest "conv2d" kernel that applies (the chunked im2col GEMM when the mode names another op's kernel).

    The dual and polyphase input gradients compute correlations of dy through this.
    """
    kernel = pick("conv2d", geo) or _IM2COL
    return kernel.correlate(x, weight, geo, bias, compute_output, upstream, out, sum_input)


def correlate_chunks(x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False,
                     pointwise_chunk=None):
    """Per chunk: cols = im2col(x); y = W @ cols + b; and dW += upstream @ cols^T when ``upstream`` is given.

    ``pointwise_chunk(x, start, stop, geo, w_mat, bias_col, out, upstream, w_shape, work)`` replaces the
    im2col and GEMMs of each chunk (the 1x1 shortcut); it returns the chunk's dW.
    """
    xp = get_array_module()
    dtype = x.dtype
    groups, channels, out_channels = geo.groups, geo.in_channels, geo.out_channels
    (kh, kw), (out_h, out_w) = geo.kernel, geo.out_size
    rows = channels // groups * kh * kw
    if compute_output and out is None:
        out = xp.empty((geo.batch, out_channels, out_h, out_w), dtype)
    w_mat = xp.ascontiguousarray(weight.reshape(groups, out_channels // groups, rows)) if compute_output else None
    bias_col = bias.reshape(groups, out_channels // groups, 1) if (compute_output and bias is not None) else None
    w_shape = (groups, out_channels // groups, rows)
    few_outputs = groups == 1 and out_channels <= DW_TRANSPOSED_MAX_OUT_CHANNELS

    def run(chunk, work):
        """One chunk's output into ``out``; returns (its dW or None, its input sums or None). ``work``: the
        running thread's scratch."""
        start, stop = chunk
        count = stop - start
        sums = chunk_sums(x[start:stop]) if sum_input else None
        if pointwise_chunk is not None:
            return pointwise_chunk(x, start, stop, geo, w_mat, bias_col, out, upstream, w_shape, work), sums
        cols = chunk_columns(x, start, stop, geo, work).reshape(groups, rows, count * geo.pixels)
        if compute_output:
            # one sample on a plain grid: its (K, out_h, out_w) block already is the GEMM's output layout
            direct = count == 1 and not geo.wide and out[start].flags.c_contiguous
            if direct:
                y = out[start].reshape(groups, out_channels // groups, geo.pixels)
            else:
                y, y_samples = work.views(("y", count), lambda: _output_views(geo, count, work))
            xp.matmul(w_mat, cols, out=y)
            if bias_col is not None:
                y += bias_col
            if not direct:
                assign(out[start:stop], y_samples)
        if upstream is None:
            return None, sums
        grads = grouped_columns(upstream, start, stop, geo, out_channels, work)
        if few_outputs:  # dW^T = cols @ dy^T: BLAS runs a product with few output rows faster this way round
            partial = xp.empty((groups, rows, out_channels // groups), dtype)
            xp.matmul(cols, grads.transpose(0, 2, 1), out=partial)
            return partial.transpose(0, 2, 1), sums
        partial = xp.empty(w_shape, dtype)  # kept: the chunks' dW are added in chunk order below
        xp.matmul(grads, cols.transpose(0, 2, 1), out=partial)
        return partial, sums

    partials, sums = zip(*run_chunks(run, geo, dtype))
    grad_w = None
    if upstream is not None:
        # in chunk order, whichever thread ran which chunk: the sum is the same on every run
        grad_w = partials[0]
        for partial in partials[1:]:
            grad_w += partial
        grad_w = grad_w.reshape(out_channels, channels // groups, kh, kw)
    if sum_input:
        return out, grad_w, sum(sums).astype(dtype)
    return out, grad_w


def _output_views(geo, count, work):
    """(the chunk's GEMM output buffer (groups, K/groups, count * pixels), the same as (count, K, out_h, out_w))."""
    out_h, out_w = geo.out_size
    y = work.get("y", (geo.groups, geo.out_channels // geo.groups, count * geo.pixels))
    samples = y.reshape(geo.out_channels, count, out_h, -1)
    return y, (samples[..., :out_w] if geo.wide else samples).transpose(1, 0, 2, 3)


class ChunkedCol2im(Kernel):
    """dx = col2im(W^T @ dy) (+ bias per channel of dx), chunk by chunk in cache, on every non-empty batch."""

    name, op = "conv2d_input_grad.col2im", "conv2d_input_grad"

    def applies(self, geo):
        return len(geo.kernel) == 2 and geo.batch > 0

    def correlate_transpose(self, grad, weight, geo, bias=None):
        """The op "conv2d_input_grad" contract: conv2d's input gradient, which is conv_transpose2d's output."""
        return col2im_chunks(grad, weight, plan_for(geo, col2im=True), bias)


def col2im_chunks(grad, weight, geo, bias=None):
    """Per chunk: cols = W^T @ dy (a broadcast multiply when each group has one dy channel), then col2im."""
    xp = get_array_module()
    dtype = grad.dtype
    groups, channels, out_channels = geo.groups, geo.in_channels, geo.out_channels
    kh, kw = geo.kernel
    (top, _), (left, _) = geo.pads
    height, width = geo.in_size
    rows = channels // groups * kh * kw
    w_t = weight.reshape(groups, out_channels // groups, rows).transpose(0, 2, 1)
    # one dy channel per group (depthwise): W^T @ dy is an outer product, which a broadcast multiply
    # computes several times faster than a k=1 matmul
    outer = out_channels == groups
    dx = xp.empty((geo.batch, channels, height, width), dtype)

    def run(chunk, work):
        start, stop = chunk
        count = stop - start
        grads = grouped_columns(grad, start, stop, geo, out_channels, work)
        cols = work.get("cols", (groups, rows, count * geo.pixels))
        if outer:
            xp.multiply(w_t, grads, out=cols)
        else:
            xp.matmul(w_t, grads, out=cols)
        if geo.has_padding or geo.wide:
            target = work.get("padded", (count, channels) + geo.padded_size, slack=geo.slack)
        else:
            target = dx[start:stop]
        target.fill(0)
        col2im_add(cols.reshape((channels, kh, kw, count) + geo.grid), target, geo)
        if geo.has_padding or geo.wide:
            assign(dx[start:stop], target[:, :, top:top + height, left:left + width])
        if bias is not None:
            dx[start:stop] += bias.reshape(1, channels, 1, 1)

    run_chunks(run, geo, dtype)
    return dx


class ChannelSumGemv(Kernel):
    """sum over the batch and every spatial axis per channel as one matrix-vector product with ones per
    (sample, channel) row (any number of spatial axes)."""

    name, op = "channel_sum.gemv", "channel_sum"

    def applies(self, array):
        return array.size > 0

    def channel_sum(self, array):
        """Several times faster than NumPy's row sums on conv-sized gradients, and as accurate (float64 total)."""
        return chunk_sums(get_array_module().ascontiguousarray(array)).astype(array.dtype)


_IM2COL = ChunkedIm2col()
