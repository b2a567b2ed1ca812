"""Stride-1 input gradient as a correlation: dx is dy, padded, correlated with the flipped, channel-swapped kernel.

dx[n, c, h, w] = sum_{k,i,j} W[k, c, i, j] dy[n, k, h + p - i*d, w + p - j*d]: a correlation of dy,
zero-padded by d*(k-1) - p before, with the kernel flipped in space and its channels swapped. It copies
kh*kw x dy once (one im2col) where col2im writes kh*kw x dx with read-modify-write passes, and its own
weight gradient is conv2d's dW flipped back, so one pass over im2col(dy) gives both gradients.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import Kernel
from .conv_depthwise import use_matrix
from .conv_im2col import correlate
from .conv_plan import ConvPlan


def dual_pads(geo):
    """((top, bottom), (left, right)) padding of dy for the dual correlation, or None where it does not apply."""
    if geo.stride != (1, 1):
        return None
    (kh, kw), (dh, dw) = geo.kernel, geo.dilation
    reach = (dh * (kh - 1), dw * (kw - 1))
    # after: whatever makes the output in_size long (d*(k-1) - p_after, plus conv_transpose2d's
    # output_padding rows, which no window reads)
    pads = tuple((reach[axis] - geo.pads[axis][0], geo.in_size[axis] - geo.out_size[axis] + geo.pads[axis][0])
                 for axis in range(2))
    if min(pads[0] + pads[1]) < 0:  # padding wider than the kernel reaches: the dual would crop dy
        return None
    return pads


def dual_geometry(geo):
    """The plan of the full correlation of dy that computes a stride-1 input gradient (``dual_pads`` must apply)."""
    return ConvPlan(geo.batch, geo.out_channels, geo.out_size, geo.in_channels, geo.kernel, (1, 1), dual_pads(geo),
                    geo.dilation, geo.groups, geo.in_size, geo.chunk_samples, geo.chunk_threads,
                    geo.wide_columns)


def dual_is_faster(geo):
    """The dual copies kh*kw x dy and runs a GEMM with C/groups rows; col2im writes kh*kw x dx instead.

    So the dual wins when dx has about as many channels as dy and enough rows for BLAS; a depthwise
    dual is again depthwise only with channel multiplier 1. A pointwise dual copies nothing at all.
    """
    if use_matrix(geo):  # two banded products, no copy of dy at all
        return False
    if geo.kernel == (1, 1):  # the dual is 1x1 too: it copies dy once, as col2im's GEMM input does, and
        return True           # then skips col2im
    if geo.depthwise:
        return geo.out_channels == geo.in_channels
    return geo.in_channels // geo.groups >= 16 and 2 * geo.in_channels >= geo.out_channels


def flipped_weight(weight, groups):
    """W'[g*C/groups + c, k, i, j] = W[g*K/groups + k, c, kh-1-i, kw-1-j]: the kernel of the dual correlation."""
    out_channels, group_channels, kh, kw = weight.shape
    swapped = weight.reshape(groups, out_channels // groups, group_channels, kh, kw).transpose(0, 2, 1, 3, 4)
    xp = get_array_module()
    flipped = swapped[..., ::-1, ::-1].reshape(groups * group_channels, out_channels // groups, kh, kw)
    return xp.ascontiguousarray(flipped)  # negative strides would push matmul off its BLAS path


def _applies(geo):
    return len(geo.kernel) == 2 and geo.batch > 0 and dual_is_faster(geo) and dual_pads(geo) is not None


class DualInputGrad(Kernel):
    """Stride 1: dx = correlate(pad(dy), flipped W), one im2col copy of dy instead of col2im's kh*kw passes."""

    name, op = "conv2d_input_grad.dual", "conv2d_input_grad"

    def applies(self, geo):
        return _applies(geo)

    def correlate_transpose(self, grad, weight, geo, bias=None):
        """The op "conv2d_input_grad" contract (see conv_im2col.ChunkedCol2im.correlate_transpose)."""
        return correlate(grad, flipped_weight(weight, geo.groups), dual_geometry(geo), bias=bias)[0]


class DualBackward(Kernel):
    """conv2d's dx, dW and db from one im2col of dy: the dual's output is dx, its weight gradient is dW flipped."""

    name, op = "conv2d_backward.dual", "conv2d_backward"

    def applies(self, geo):
        return _applies(geo)

    def backward(self, grad, x, weight, geo, need_bias):
        """(dx, dW, db or None): the dual's weight gradient x @ cols(dy)^T is dW with channels swapped and taps
        flipped; the bias gradient, sum(dy), is taken chunk by chunk on the same threads."""
        grad_x, dual_grad_w, *sums = correlate(grad, flipped_weight(weight, geo.groups), dual_geometry(geo),
                                               upstream=x, sum_input=need_bias)
        return grad_x, flipped_weight(dual_grad_w, geo.groups), sums[0] if need_bias else None
