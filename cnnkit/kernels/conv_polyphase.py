"""Strided input gradient as stride x stride stride-1 correlations of dy, one per phase of dx (no col2im).

Rows r = s*u + a of the padded input are read only by taps i = s*m + a, so
dx_pad[s*u + a, s*v + b] = sum_{m, l} W[s*m + a, s*l + b] dy[u - m, v - l]: a full correlation of dy with
that phase's sub-kernel, flipped. Each phase is an im2col copy of dy and one GEMM, written once into its
strided slice of dx, where col2im adds kh*kw strided blocks into a padded buffer. On dense (GEMM-bound)
layers the two measured the same, so it applies to depthwise layers only.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import Kernel
from .conv_dual import flipped_weight
from .conv_im2col import correlate
from .conv_plan import ConvPlan


def phase_geometries(geo):
    """For stride s > 1 (dilation 1): per phase (a, b) of dx, the stride-1 correlation of dy that computes it.

    Yields (rows, cols, sub-kernel slices, dy crop, plan or None where the phase has no tap), ``rows`` /
    ``cols`` the slices of dx the phase fills.
    """
    stride, kernel = geo.stride, geo.kernel
    for a in range(stride[0]):
        for b in range(stride[1]):
            axes = []
            for axis, phase in ((0, a), (1, b)):
                size, before, step = geo.in_size[axis], geo.pads[axis][0], stride[axis]
                first = (phase - before) % step  # first dx row (column) in this phase
                count = len(range(first, size, step))
                taps = len(range(phase, kernel[axis], step))
                skip = (first + before) // step  # its index u0 among the phase's padded rows
                # rows u0 .. u0 + count - 1 read dy[u - m] for m < taps: dy padded by taps - 1 - u0 before
                # (a negative pad_before crops dy instead); after: zeros up to the last row the phase needs
                pad_before = taps - 1 - skip
                crop, pad_before = max(0, -pad_before), max(0, pad_before)
                pad_after = max(0, count + taps - 1 - (geo.out_size[axis] - crop) - pad_before)
                axes.append((slice(first, None, step), count, slice(phase, None, step), taps,
                             (pad_before, pad_after), crop))
            (rows, count_h, taps_h, kh, pads_h, crop_h), (cols, count_w, taps_w, kw, pads_w, crop_w) = axes
            if count_h == 0 or count_w == 0:
                continue
            dual = None
            if kh and kw:
                in_size = (geo.out_size[0] - crop_h, geo.out_size[1] - crop_w)
                dual = ConvPlan(geo.batch, geo.out_channels, in_size, geo.in_channels, (kh, kw), (1, 1),
                                (pads_h, pads_w), (1, 1), geo.groups, (count_h, count_w), geo.chunk_samples,
                                geo.chunk_threads, geo.wide_columns)
            yield rows, cols, (taps_h, taps_w), (crop_h, crop_w), dual


class PolyphaseInputGrad(Kernel):
    """Strided depthwise layers (dilation 1): each phase of dx is one stride-1 correlation of dy."""

    name, op = "conv2d_input_grad.polyphase", "conv2d_input_grad"

    def applies(self, geo):
        return (len(geo.kernel) == 2 and geo.batch > 0 and geo.depthwise and geo.stride != (1, 1)
                and geo.dilation == (1, 1))

    def correlate_transpose(self, grad, weight, geo, bias=None):
        """The op "conv2d_input_grad" contract (see conv_im2col.ChunkedCol2im.correlate_transpose)."""
        xp = get_array_module()
        dx = xp.empty((geo.batch, geo.in_channels) + geo.in_size, grad.dtype)
        for rows, cols, (taps_h, taps_w), (crop_h, crop_w), dual in phase_geometries(geo):
            target = dx[:, :, rows, cols]
            if dual is None:  # no tap reads this phase (kernel smaller than the stride)
                target[...] = 0 if bias is None else bias.reshape(1, -1, 1, 1)
                continue
            sub_kernel = flipped_weight(weight[:, :, taps_h, taps_w], geo.groups)
            correlate(grad[:, :, crop_h:, crop_w:], sub_kernel, dual, bias=bias, out=target)
        return dx
