"""Pointwise 1x1 convolution without im2col: each sample's (C, H*W) block already is its column matrix."""
from __future__ import annotations

from ..backend import get_array_module
from . import Kernel
from .conv_im2col import correlate_chunks
from .conv_plan import plan_for


class Pointwise(Kernel):
    """y[n] = W @ x[n] and dW = sum_n dy[n] @ x[n]^T: no column copy, y written in place (1x1, stride 1, no pad)."""

    name, op = "conv2d.pointwise", "conv2d"

    def applies(self, geo):
        return len(geo.kernel) == 2 and geo.batch > 0 and plan_for(geo).pointwise

    def correlate(self, x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False):
        """The op "conv2d" contract (see conv_im2col.ChunkedIm2col.correlate)."""
        plan = plan_for(geo)
        if out is not None and not out.flags.c_contiguous:
            # whole samples are written as reshaped blocks: fill a fresh array, then copy it over
            y, grad_w, *sums = self.correlate(x, weight, geo, bias, compute_output, upstream, sum_input=sum_input)
            if y is not None:
                out[...] = y
            return (out if y is not None else None, grad_w, *sums)
        return correlate_chunks(x, weight, plan, bias, compute_output, upstream, out, sum_input,
                                pointwise_chunk=_pointwise_chunk)


def _pointwise_chunk(x, start, stop, geo, w_mat, bias_col, out, upstream, w_shape, work):
    """One chunk: y[n] = W @ x[n] (+ b) into ``out``, and the chunk's dW = sum_n dy[n] @ x[n]^T (or None)."""
    xp = get_array_module()
    count, groups, pixels = stop - start, geo.groups, geo.pixels
    cols = x[start:stop].reshape(count, groups, geo.in_channels // groups, pixels)
    if out is not None:
        y = out[start:stop].reshape(count, groups, geo.out_channels // groups, pixels)
        xp.matmul(w_mat, cols, out=y)
        if bias_col is not None:
            y += bias_col
    if upstream is None:
        return None
    grads = upstream[start:stop].reshape(count, groups, geo.out_channels // groups, pixels)
    partial = work.get("grad_w_samples", (count,) + w_shape)
    xp.matmul(grads, cols.transpose(0, 1, 3, 2), out=partial)
    return partial.sum(axis=0)
