"""im2col and col2im, the textbook way, in any number of spatial dimensions: every window becomes one column.

For x ``(N, C, *size)`` and a kernel (k_1, ..., k_d) the columns are ``cols[g, (c, *taps), (n, *out)] =
x_pad[n, g*C/groups + c, out_1*s_1 + tap_1*d_1, ..., out_d*s_d + tap_d*d_d]``: one row per weight of a
group's filter, one column per output position. A convolution is then one matrix product per group,
``W_g @ cols[g]``. col2im is the adjoint: it adds every column entry back onto the input element it was
copied from. In 2-D (d = 2) the taps are (i, j) and the output positions (h, w); the fast, chunked 2-D
versions of both live in ``cnnkit.kernels.conv_im2col``.
"""
from __future__ import annotations

import itertools
import math

from ..backend import get_array_module

__all__ = []  # used by name from cnnkit.functional.conv


class ConvGeometry:
    """Sizes of one correlation y = x (*) w: x ``(N, C, *in_size)``, w ``(K, C/groups, *kernel)``,
    y ``(N, K, *out_size)``.

    Every spatial tuple (``in_size``, ``kernel``, ``stride``, ``dilation``, ``out_size``) has one entry per
    spatial axis; ``pads`` one (before, after) pair per axis, e.g. ((top, bottom), (left, right)) in 2-D.
    Kernels keep their own plan for it in ``plan``; ``chunk_samples`` / ``chunk_threads`` /
    ``wide_columns`` (None: the kernels decide) fix how they cut it into chunks and lay out its columns
    (see cnnkit.kernels.conv_plan).
    """

    __slots__ = ("batch", "in_channels", "in_size", "out_channels", "kernel", "stride", "pads", "dilation",
                 "groups", "out_size", "plan", "chunk_samples", "chunk_threads", "wide_columns")

    def __init__(self, batch, in_channels, in_size, out_channels, kernel, stride, pads, dilation, groups, out_size):
        self.batch, self.in_channels, self.in_size = batch, in_channels, tuple(in_size)
        self.out_channels, self.kernel, self.stride = out_channels, tuple(kernel), tuple(stride)
        self.pads, self.dilation, self.groups, self.out_size = tuple(pads), tuple(dilation), groups, tuple(out_size)
        self.plan = self.chunk_samples = self.chunk_threads = self.wide_columns = None

    @property
    def dims(self):
        """The number of spatial axes (1, 2 or 3)."""
        return len(self.kernel)

    @property
    def depthwise(self):
        """One input channel per group (groups == in_channels > 1)."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def padded_size(self):
        return tuple(size + before + after for size, (before, after) in zip(self.in_size, self.pads))

    @property
    def interior(self):
        """The slices of the padded input that hold the input itself (batch and channel axes included)."""
        return (slice(None), slice(None)) + tuple(slice(before, before + size)
                                                  for size, (before, _) in zip(self.in_size, self.pads))


def windows(x_pad, geo, writeable=False):
    """The zero-copy strided view ``v[n, c, *taps, *out] = x_pad[n, c, out_1*s_1 + tap_1*d_1, ...]``."""
    n_stride, c_stride, *axis_strides = x_pad.strides
    shape = x_pad.shape[:2] + geo.kernel + geo.out_size
    strides = ((n_stride, c_stride) + tuple(s * d for s, d in zip(axis_strides, geo.dilation))
               + tuple(s * step for s, step in zip(axis_strides, geo.stride)))
    return get_array_module().lib.stride_tricks.as_strided(x_pad, shape, strides, writeable=writeable)


def im2col(x, geo):
    """cols (groups, C/groups*prod(kernel), N*prod(out)): pad x, take its windows, copy them once in GEMM order."""
    xp = get_array_module()
    x_pad = xp.zeros((geo.batch, geo.in_channels) + geo.padded_size, x.dtype)
    x_pad[geo.interior] = x
    dims = geo.dims
    # (C, *taps, N, *out), still a view
    cols = windows(x_pad, geo).transpose((1,) + tuple(range(2, 2 + dims)) + (0,) + tuple(range(2 + dims, 2 + 2 * dims)))
    rows = geo.in_channels // geo.groups * math.prod(geo.kernel)
    return xp.ascontiguousarray(cols).reshape(geo.groups, rows, geo.batch * math.prod(geo.out_size))


def col2im(cols, geo):
    """x ``(N, C, *size)`` with ``x_pad[n, c, out*s + tap*d ...] += cols[c, *taps, n, *out]``: im2col's adjoint."""
    xp = get_array_module()
    dims = geo.dims
    cols = cols.reshape((geo.in_channels,) + geo.kernel + (geo.batch,) + geo.out_size)
    cols = cols.transpose((1 + dims, 0) + tuple(range(1, 1 + dims)) + tuple(range(2 + dims, 2 + 2 * dims)))
    x_pad = xp.zeros((geo.batch, geo.in_channels) + geo.padded_size, cols.dtype)
    target = windows(x_pad, geo, writeable=True)
    everything = (slice(None), slice(None))
    for taps in itertools.product(*(range(k) for k in geo.kernel)):
        # windows overlap: one strided add per tap, never one assignment for all
        target[everything + taps] += cols[everything + taps]
    return x_pad[geo.interior]
