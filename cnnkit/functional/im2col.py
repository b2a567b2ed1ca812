"""The convolution machinery's data movement: geometry, chunking, padding, im2col and col2im.

Column layout: ``cols[c, i, j, n, *grid]`` with grid = (out_h, out_w). Reshaped to
``(groups, C/groups * kh * kw, N * pixels)`` a convolution is one GEMM per group,
``W (groups, K/groups, C/groups*kh*kw) @ cols``, whose inner dimension is the long one.

"Wide" columns (stride 1; depthwise or few rows, see ConvGeometry): grid = (out_h * padded_w,),
the rows of the flattened padded image. Each column row is then one contiguous run (a fast copy),
at the price of padded_w - out_w garbage outputs per row, which are cropped (forward) or met by
zeros (backward).
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from ..kernels.copy import assign
from ..kernels.threads import splits_blas_work

__all__ = []  # internal helpers, imported by name from cnnkit.functional.conv

# Samples per chunk are chosen so one GEMM sees about this many output pixels: enough columns to keep
# BLAS efficient, few enough that the chunk's columns (C*kh*kw x columns) stay in cache instead of
# streaming a kh*kw-times inflated copy of the whole batch through main memory. Depthwise GEMMs are
# memory-bound matrix-vector products, which want their columns in the faster, smaller caches.
CHUNK_COLUMNS = 2048
# Depthwise chunks are sized by their whole column array (all channels: C * kh * kw x columns), since
# a columns-only target let 960-channel 4x4 layers build 18 MB of columns per chunk. 4 MB in float32
# measured 15-40% faster than 512 columns on MobileNet-v2's depthwise layers (1 thread, fwd+bwd).
DEPTHWISE_CHUNK_ELEMENTS = 1 << 20
# With few rows (small C * kh * kw, as in LeNet) 2048 columns make GEMMs too small to amortise a BLAS call
# and its thread hand-off: such chunks grow to about this many column elements (4 MB in float32; measured
# 1.5-3x faster for 25 and 150 rows).
CHUNK_ELEMENTS = 1 << 20
WIDE_MAX_ROWS = 32
WIDE_MAX_OUT_CHANNELS = 16
WIDE_MAX_EXTRA = 0.1
# The 1x1 shortcut runs one GEMM per sample; below this many pixels those GEMMs are too small (at 4x4
# and 8x8 with 2 BLAS threads they measured up to 20x slower than the im2col path's one GEMM per chunk).
POINTWISE_MIN_PIXELS = 256


# A dense convolution below this many multiply-adds (forward) runs its chunks on one thread: handing
# LeNet-sized layers (under a millisecond each) to a second thread costs more than it saves. LeNet-5
# training step, one process, alternating: batch 64 12.1 -> 10.4 ms, batch 128 18.9 -> 17.2 ms (2**26,
# which also keeps its 31M-MAC second conv on one thread, measured 19.5 at batch 128).
MIN_SPLIT_MACS = 1 << 24


class ConvGeometry:
    """Sizes of one correlation y = x (*) w: x (N, C, H, W), w (K, C/groups, kh, kw), y (N, K, out_h, out_w)."""

    __slots__ = ("batch", "in_channels", "in_size", "out_channels", "kernel", "stride", "pads", "dilation",
                 "groups", "out_size", "padded_size", "wide", "grid", "slack", "chunk", "threads")

    def __init__(self, batch, in_channels, in_size, out_channels, kernel, stride, pads, dilation, groups, out_size):
        self.batch, self.in_channels, self.in_size = batch, in_channels, tuple(in_size)
        self.out_channels, self.kernel, self.stride = out_channels, tuple(kernel), tuple(stride)
        self.pads, self.dilation, self.groups, self.out_size = tuple(pads), tuple(dilation), groups, tuple(out_size)
        (top, bottom), (left, right) = self.pads
        self.padded_size = (self.in_size[0] + top + bottom, self.in_size[1] + left + right)
        # Wide columns pay off where the copies dominate: depthwise GEMVs, GEMMs with few rows
        # (C/groups * kh * kw <= WIDE_MAX_ROWS, e.g. a first layer on 1 or 3 channels: measured 1.1-1.8x
        # faster) and GEMMs with few output rows (K/groups <= WIDE_MAX_OUT_CHANNELS: LeNet's 6 -> 16 5x5,
        # forward 2.9 -> 2.3 ms, backward 9.4 -> 6.3 ms), and wherever the (padded_w - out_w) garbage
        # columns add at most WIDE_MAX_EXTRA to the GEMM (3x3 on 28x28 and larger maps: 64 channels at
        # 32x32, batch 64, forward + backward 123-129 -> 115-119 ms). At 16x16 (12.5% more columns) the
        # two measured the same, and below that the extra columns cost more than the faster copy saves.
        rows = in_channels // groups * self.kernel[0] * self.kernel[1]
        few_rows = rows <= WIDE_MAX_ROWS or out_channels // groups <= WIDE_MAX_OUT_CHANNELS
        garbage = self.padded_size[1] - self.out_size[1]
        self.wide = self.stride == (1, 1) and (self.depthwise or few_rows
                                               or garbage <= WIDE_MAX_EXTRA * self.out_size[1])
        out_h, out_w = self.out_size
        self.grid = (out_h * self.padded_size[1],) if self.wide else (out_h, out_w)
        # a wide run starting at kernel offset (i, j) ends (kw - 1) * dw elements past its image
        self.slack = (self.kernel[1] - 1) * self.dilation[1] if self.wide else 0
        pixels = max(1, self.grid[0] * (self.grid[1] if len(self.grid) == 2 else 1))
        if self.depthwise:
            target = DEPTHWISE_CHUNK_ELEMENTS // (in_channels * self.kernel[0] * self.kernel[1])
        else:
            target = max(CHUNK_COLUMNS, CHUNK_ELEMENTS // rows)
        self.chunk = max(1, min(batch, -(-target // pixels)))
        macs = batch * out_channels * rows * self.out_size[0] * self.out_size[1]
        shared_out = self.depthwise or (splits_blas_work() and macs >= MIN_SPLIT_MACS)
        self.threads = threads = get_num_threads() if shared_out else 1  # threads that share its chunks
        if threads > 1:
            # a multiple of the thread count of chunks, so no thread idles while another runs an extra one
            count = -(-batch // self.chunk)
            count = min(batch, -(-count // threads) * threads)
            self.chunk = -(-batch // count)

    @property
    def has_padding(self):
        return any(self.pads[0]) or any(self.pads[1])

    @property
    def depthwise(self):
        """One input channel per group (groups == in_channels > 1)."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def pointwise(self):
        """1x1 kernel, stride 1, no padding, every pixel read: the input is its own column matrix.

        (conv_transpose2d's output_padding gives geometries whose last rows no window reads.) A few-row
        1x1 geometry is also "wide", which for it is the same layout; it once kept such convs (C <= 32,
        as MobileNet-v2's 16/24/32-channel expansions) on the im2col path at 2-3x the time.
        """
        return (self.kernel == (1, 1) and self.stride == (1, 1) and not self.has_padding
                and self.in_size == self.out_size and self.pixels >= POINTWISE_MIN_PIXELS)

    @property
    def pixels(self):
        """Columns per sample: out_h * out_w, or out_h * padded_w for wide columns."""
        size = 1
        for s in self.grid:
            size *= s
        return size

    def chunks(self):
        """(start, stop) sample ranges that one GEMM handles at a time."""
        for start in range(0, self.batch, self.chunk):
            yield start, min(self.batch, start + self.chunk)


def _padded_views(geo, count, work):
    """(zero-bordered padded buffer for ``count`` samples, its interior that x is copied into)."""
    (top, _), (left, _) = geo.pads
    height, width = geo.in_size
    full = work.get("padded", (geo.chunk, geo.in_channels) + geo.padded_size, zero=True, slack=geo.slack)
    padded = full[:count]
    return padded, padded[:, :, top:top + height, left:left + width]


def chunk_columns(x, start, stop, geo, work):
    """cols[c, i, j, n, *grid] = x_pad[n, c, h*sh + i*dh, w*sw + j*dw] for n in start..stop, in the thread's
    column buffer: (C, kh, kw, count, *grid).

    x_pad is x zero-padded in a reused buffer whose border stays zero (one in-cache copy per chunk).
    Without padding the windows read x itself, except for wide columns, whose runs need ``slack``
    elements after the last image.
    """
    count = stop - start

    def make():
        cols = work.get("cols", (geo.in_channels,) + geo.kernel + (count,) + geo.grid)
        if not geo.has_padding and not geo.wide:
            return None, None, cols
        padded, interior = _padded_views(geo, count, work)
        return interior, _window_view(padded, geo), cols

    interior, window, cols = work.views(("columns", count), make)
    if interior is None:
        window = _window_view(x[start:stop], geo)
    else:
        assign(interior, x[start:stop])
    assign(cols, window)
    return cols


def _window_view(x_pad, geo, writeable=False):
    """Zero-copy view v[c, i, j, n, *grid] = x_pad[n, c, h*sh + i*dh, w*sw + j*dw] (the columns, uncopied)."""
    xp = get_array_module()
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    n_stride, c_stride, h_stride, w_stride = x_pad.strides
    batch, channels = x_pad.shape[:2]
    if geo.wide:  # v[c, i, j, n, l] = flat image n, c at i*dh*padded_w + j*dw + l
        shape = (channels, kh, kw, batch) + geo.grid
        strides = (c_stride, h_stride * dh, w_stride * dw, n_stride, w_stride)
    else:
        shape = (channels, kh, kw, batch) + geo.grid
        strides = (c_stride, h_stride * dh, w_stride * dw, n_stride, h_stride * sh, w_stride * sw)
    return xp.lib.stride_tricks.as_strided(x_pad, shape=shape, strides=strides, writeable=writeable)


def col2im_add(cols, x_pad, geo):
    """x_pad[n, c, h*sh + i*dh, w*sw + j*dw] += cols[c, i, j, n, h, w]: the adjoint of ``im2col``.

    One strided add per kernel offset (kh*kw adds), each over a whole (N, C, *grid) block; windows
    overlap, so the offsets cannot be written in a single assignment. Wide garbage columns of
    ``cols`` must be zero: they land on the next row's left border.
    """
    kh, kw = geo.kernel
    target = _window_view(x_pad, geo, writeable=True)
    for i in range(kh):
        for j in range(kw):
            block = target[:, i, j]
            block += cols[:, i, j]
    return x_pad
