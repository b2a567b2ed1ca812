"""im2col and col2im, the textbook way: every kxk window of the padded input becomes one column.

For x (N, C, H, W) and a kernel (kh, kw) the columns are ``cols[g, (c, i, j), (n, h, w)] =
x_pad[n, g*C/groups + c, h*sh + i*dh, w*sw + j*dw]``: one row per weight of a group's filter, one
column per output pixel. A convolution is then one matrix product per group, ``W_g @ cols[g]``.
col2im is the adjoint: it adds every column entry back onto the input pixel it was copied from.
The fast, chunked versions of both live in ``cnnkit.kernels.conv_im2col``.
"""
from __future__ import annotations

from ..backend import get_array_module

__all__ = []  # used by name from cnnkit.functional.conv


class ConvGeometry:
    """Sizes of one correlation y = x (*) w: x (N, C, H, W), w (K, C/groups, kh, kw), y (N, K, out_h, out_w).

    ``pads`` is ((top, bottom), (left, right)). Kernels keep their own plan for it in ``plan``;
    ``chunk_samples`` / ``chunk_threads`` / ``wide_columns`` (None: the kernels decide) fix how they cut
    it into chunks and lay out its columns (see cnnkit.kernels.conv_plan).
    """

    __slots__ = ("batch", "in_channels", "in_size", "out_channels", "kernel", "stride", "pads", "dilation",
                 "groups", "out_size", "plan", "chunk_samples", "chunk_threads", "wide_columns")

    def __init__(self, batch, in_channels, in_size, out_channels, kernel, stride, pads, dilation, groups, out_size):
        self.batch, self.in_channels, self.in_size = batch, in_channels, tuple(in_size)
        self.out_channels, self.kernel, self.stride = out_channels, tuple(kernel), tuple(stride)
        self.pads, self.dilation, self.groups, self.out_size = tuple(pads), tuple(dilation), groups, tuple(out_size)
        self.plan = self.chunk_samples = self.chunk_threads = self.wide_columns = None

    @property
    def depthwise(self):
        """One input channel per group (groups == in_channels > 1)."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def padded_size(self):
        (top, bottom), (left, right) = self.pads
        return self.in_size[0] + top + bottom, self.in_size[1] + left + right


def windows(x_pad, geo, writeable=False):
    """The zero-copy strided view v[n, c, i, j, h, w] = x_pad[n, c, h*sh + i*dh, w*sw + j*dw]."""
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    n_stride, c_stride, h_stride, w_stride = x_pad.strides
    shape = x_pad.shape[:2] + (kh, kw) + geo.out_size
    strides = (n_stride, c_stride, h_stride * dh, w_stride * dw, h_stride * sh, w_stride * sw)
    return get_array_module().lib.stride_tricks.as_strided(x_pad, shape, strides, writeable=writeable)


def im2col(x, geo):
    """cols (groups, C/groups*kh*kw, N*out_h*out_w): pad x, take its windows, copy them once into GEMM order."""
    xp = get_array_module()
    (top, _), (left, _) = geo.pads
    height, width = geo.in_size
    x_pad = xp.zeros((geo.batch, geo.in_channels) + geo.padded_size, x.dtype)
    x_pad[:, :, top:top + height, left:left + width] = x
    cols = windows(x_pad, geo).transpose(1, 2, 3, 0, 4, 5)  # (C, kh, kw, N, out_h, out_w), still a view
    rows = geo.in_channels // geo.groups * geo.kernel[0] * geo.kernel[1]
    return xp.ascontiguousarray(cols).reshape(geo.groups, rows, geo.batch * geo.out_size[0] * geo.out_size[1])


def col2im(cols, geo):
    """x (N, C, H, W) with x_pad[n, c, h*sh + i*dh, w*sw + j*dw] += cols[c, i, j, n, h, w]: im2col's adjoint."""
    xp = get_array_module()
    (kh, kw), (top, _), (left, _) = geo.kernel, *geo.pads
    height, width = geo.in_size
    cols = cols.reshape((geo.in_channels, kh, kw, geo.batch) + geo.out_size).transpose(3, 0, 1, 2, 4, 5)
    x_pad = xp.zeros((geo.batch, geo.in_channels) + geo.padded_size, cols.dtype)
    target = windows(x_pad, geo, writeable=True)
    for i in range(kh):  # windows overlap: one strided add per tap, never one assignment for all
        for j in range(kw):
            target[:, :, i, j] += cols[:, :, i, j]
    return x_pad[:, :, top:top + height, left:left + width]
