"""The conv kernels' plan and data movement: chunk sizes, thread sharing, "wide" columns, chunked im2col/col2im.

``ConvPlan`` is a convolution's geometry (the sizes of ``cnnkit.functional.im2col.ConvGeometry``) plus how the
fast kernels run it; ``plan_for(geo)`` makes it once per geometry and keeps it on the geometry.

Column layout: ``cols[c, i, j, n, *grid]`` with grid = (out_h, out_w). Reshaped to
``(groups, C/groups * kh * kw, count * pixels)`` a chunk of ``count`` samples is one GEMM per group,
``W (groups, K/groups, C/groups*kh*kw) @ cols``, whose inner dimension is the long one.

"Wide" columns (stride 1; depthwise or few rows, see ``ConvPlan``): grid = (out_h * padded_w,), the rows of
the flattened padded image. Each column row is then one contiguous run (a fast copy), at the price of
padded_w - out_w garbage outputs per row, which are cropped (forward) or met by zeros (backward).
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from .copy import assign
from .threads import blas_threads, parallel_for, splits_blas_work
from .workspace import Workspace

# Samples per chunk are chosen so one GEMM sees about this many output pixels: enough columns to keep
# BLAS efficient, few enough that the chunk's columns (C*kh*kw x columns) stay in cache instead of
# streaming a kh*kw-times inflated copy of the whole batch through main memory.
CHUNK_COLUMNS = 2048
# Depthwise chunks are sized by their whole column array (all channels: C * kh * kw x columns), since a
# columns-only target let wide-channel, small-map layers build many megabytes of columns per chunk.
DEPTHWISE_CHUNK_ELEMENTS = 1 << 20
# With few rows (small C * kh * kw, as in LeNet) 2048 columns make GEMMs too small to amortise a BLAS call
# and its thread hand-off: such chunks grow to about this many column elements.
CHUNK_ELEMENTS = 1 << 20
WIDE_MAX_ROWS = 32
WIDE_MAX_OUT_CHANNELS = 16
WIDE_MAX_EXTRA = 0.1
# The 1x1 shortcut runs one GEMM per sample; below this many pixels those GEMMs are too small to amortise
# a BLAS call each, and the im2col path's one GEMM per chunk wins.
POINTWISE_MIN_PIXELS = 256
# A dense convolution below this many multiply-adds (forward) runs its chunks on one thread: handing
# LeNet-sized layers to a second thread costs more than it saves.
MIN_SPLIT_MACS = 1 << 24


class ConvPlan:
    """Sizes of one correlation y = x (*) w (x (N, C, H, W), w (K, C/groups, kh, kw), y (N, K, out_h, out_w)) and
    how the kernels run it: ``wide`` columns, samples per ``chunk``, ``threads`` sharing the chunks.

    ``chunk_samples`` / ``chunk_threads`` / ``wide_columns`` fix the chunk size, the thread count and the
    column layout (wide needs stride 1) instead of the heuristics: tests use them to reach every layout
    and many chunks on small inputs.
    """

    __slots__ = ("batch", "in_channels", "in_size", "out_channels", "kernel", "stride", "pads", "dilation",
                 "groups", "out_size", "padded_size", "wide", "grid", "slack", "chunk", "threads", "chunk_samples",
                 "chunk_threads", "wide_columns", "col2im_plan")

    def __init__(self, batch, in_channels, in_size, out_channels, kernel, stride, pads, dilation, groups, out_size,
                 chunk_samples=None, chunk_threads=None, wide_columns=None, col2im=False):
        self.batch, self.in_channels, self.in_size = batch, in_channels, tuple(in_size)
        self.out_channels, self.kernel, self.stride = out_channels, tuple(kernel), tuple(stride)
        self.pads, self.dilation, self.groups, self.out_size = tuple(pads), tuple(dilation), groups, tuple(out_size)
        # passed on to the plans derived from this one (dual, polyphase)
        self.chunk_samples, self.chunk_threads, self.wide_columns = chunk_samples, chunk_threads, wide_columns
        (top, bottom), (left, right) = self.pads
        self.padded_size = (self.in_size[0] + top + bottom, self.in_size[1] + left + right)
        # Wide columns pay off where the copies dominate: depthwise GEMVs, wherever the (padded_w - out_w)
        # garbage columns add at most WIDE_MAX_EXTRA to the GEMM, and, for col2im and grouped layers, GEMMs
        # with few rows (C/groups * kh * kw <= WIDE_MAX_ROWS, e.g. a first layer on 1 or 3 channels) or few
        # output rows (K/groups <= WIDE_MAX_OUT_CHANNELS, LeNet's 6 -> 16 5x5). col2im's kh*kw strided adds
        # run several times faster over wide rows; a dense im2col GEMM (LeNet's 5x5 layers) costs in
        # proportion to its columns, more than the narrow copy of rows of out_w elements adds.
        rows = in_channels // groups * self.kernel[0] * self.kernel[1]
        few_rows = rows <= WIDE_MAX_ROWS or out_channels // groups <= WIDE_MAX_OUT_CHANNELS
        garbage = self.padded_size[1] - self.out_size[1]
        chosen = wide_columns is not None
        if not chosen:
            wide_columns = (self.depthwise or garbage <= WIDE_MAX_EXTRA * self.out_size[1]
                            or (few_rows and (col2im or groups > 1)))
        self.wide = self.stride == (1, 1) and wide_columns
        # the plan of this geometry's col2im: this one, unless col2im's rule would choose wide columns instead
        self.col2im_plan = self if (col2im or chosen or self.wide or not few_rows or self.stride != (1, 1)) else None
        out_h, out_w = self.out_size
        self.grid = (out_h * self.padded_size[1],) if self.wide else (out_h, out_w)
        # a wide run starting at kernel offset (i, j) ends (kw - 1) * dw elements past its image
        self.slack = (self.kernel[1] - 1) * self.dilation[1] if self.wide else 0
        pixels = max(1, self.grid[0] * (self.grid[1] if len(self.grid) == 2 else 1))
        if chunk_samples:
            target = chunk_samples * pixels
        elif self.depthwise:
            target = DEPTHWISE_CHUNK_ELEMENTS // (in_channels * self.kernel[0] * self.kernel[1])
        else:
            target = max(CHUNK_COLUMNS, CHUNK_ELEMENTS // rows)
        self.chunk = max(1, min(batch, -(-target // pixels)))
        if chunk_threads:
            threads = chunk_threads
        else:
            macs = batch * out_channels * rows * self.out_size[0] * self.out_size[1]
            shared_out = self.depthwise or (splits_blas_work() and macs >= MIN_SPLIT_MACS)
            threads = get_num_threads() if shared_out else 1
        self.threads = threads  # threads that share its chunks
        if threads > 1:
            # a multiple of the thread count of chunks, so no thread idles while another runs an extra one
            count = -(-batch // self.chunk)
            count = min(batch, -(-count // threads) * threads)
            self.chunk = -(-batch // count)

    @property
    def plan(self):
        """A plan is its own plan (kernels accept either a geometry or a plan)."""
        return self

    @property
    def has_padding(self):
        return any(self.pads[0]) or any(self.pads[1])

    @property
    def depthwise(self):
        """One input channel per group (groups == in_channels > 1)."""
        return self.groups > 1 and self.groups == self.in_channels

    @property
    def pointwise(self):
        """1x1 kernel, stride 1, no padding, every pixel read, enough pixels: the input is its own column matrix.

        (conv_transpose2d's output_padding gives geometries whose last rows no window reads.)
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


def plan_for(geo, col2im=False):
    """The geometry's ``ConvPlan``, made on first use and kept on it (forward and backward share it); with
    ``col2im``, the plan of its col2im, whose column layout may differ (kept on the first plan)."""
    plan = geo.plan
    if plan is None:
        plan = geo.plan = _plan(geo, False)
    if not col2im:
        return plan
    if plan.col2im_plan is None:
        plan.col2im_plan = _plan(geo, True)
    return plan.col2im_plan


def _plan(geo, col2im):
    return ConvPlan(geo.batch, geo.in_channels, geo.in_size, geo.out_channels, geo.kernel, geo.stride, geo.pads,
                    geo.dilation, geo.groups, geo.out_size, geo.chunk_samples, geo.chunk_threads, geo.wide_columns,
                    col2im)


# ----------------------------------------------------------------------------------------- chunked columns
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
        return interior, window_view(padded, geo), cols

    interior, window, cols = work.views(("columns", count), make)
    if interior is None:
        window = window_view(x[start:stop], geo)
    else:
        assign(interior, x[start:stop])
    assign(cols, window)
    return cols


def window_view(x_pad, geo, writeable=False):
    """Zero-copy view v[c, i, j, n, *grid] = x_pad[n, c, h*sh + i*dh, w*sw + j*dw] (the columns, uncopied)."""
    xp = get_array_module()
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    n_stride, c_stride, h_stride, w_stride = x_pad.strides
    batch, channels = x_pad.shape[:2]
    shape = (channels, kh, kw, batch) + geo.grid
    if geo.wide:  # v[c, i, j, n, l] = flat image n, c at i*dh*padded_w + j*dw + l
        strides = (c_stride, h_stride * dh, w_stride * dw, n_stride, w_stride)
    else:
        strides = (c_stride, h_stride * dh, w_stride * dw, n_stride, h_stride * sh, w_stride * sw)
    return xp.lib.stride_tricks.as_strided(x_pad, shape=shape, strides=strides, writeable=writeable)


def col2im_add(cols, x_pad, geo):
    """x_pad[n, c, h*sh + i*dh, w*sw + j*dw] += cols[c, i, j, n, h, w]: the adjoint of ``chunk_columns``.

    One strided add per kernel offset (kh*kw adds), each over a whole (count, C, *grid) block; windows
    overlap, so the offsets cannot be written in a single assignment. Wide garbage columns of ``cols``
    must be zero: they land on the next row's left border.
    """
    kh, kw = geo.kernel
    target = window_view(x_pad, geo, writeable=True)
    for i in range(kh):
        for j in range(kw):
            block = target[:, i, j]
            block += cols[:, i, j]
    return x_pad


def grouped_columns(array, start, stop, geo, channels, work):
    """array[start:stop] (m, channels, out_h, out_w) as (groups, channels/groups, m * pixels): the GEMM layout.

    On a wide grid the garbage columns are zero, so they add nothing to dW or to col2im.
    """
    count = stop - start
    out_h, out_w = geo.out_size
    block = array[start:stop].reshape(count, channels, out_h, out_w)
    if not geo.wide and count == 1:
        return block.reshape(geo.groups, channels // geo.groups, out_h * out_w)

    def make():
        if geo.wide:
            # Garbage columns are the flat positions with index % padded_w >= out_w, whatever the chunk's
            # sample count, so they stay as zeroed at allocation: only columns :out_w are ever written.
            target = work.get("grads", (channels, count, out_h, geo.padded_size[1]), zero=True)
            written = target[..., :out_w].transpose(1, 0, 2, 3)
        else:
            target = work.get("grads", (channels, count, out_h, out_w))
            written = target.transpose(1, 0, 2, 3)
        return written, target.reshape(geo.groups, channels // geo.groups, count * geo.pixels)

    written, matrix = work.views(("grads", count), make)
    assign(written, block)
    return matrix


def run_chunks(run, geo, dtype):
    """[run(chunk, workspace) for each sample chunk], on ``geo.threads`` of cnnkit's threads, each taking the
    next chunk when it is free (BLAS on one thread meanwhile, so each thread's GEMMs run at once). A single
    chunk (e.g. a batch of one) lends BLAS the threads instead. Depthwise GEMMs are too small for BLAS to
    thread, so their chunks always go to cnnkit's threads."""
    chunks = list(geo.chunks())
    if len(chunks) == 1 and geo.threads > 1 and not geo.depthwise:
        with blas_threads(geo.threads):  # one sample chunk: only BLAS can split it
            return [run(chunks[0], Workspace(dtype))]
    return parallel_for(run, chunks, lambda: Workspace(dtype), threads=geo.threads)


def chunk_sums(block):
    """sum over n and the spatial axes of block (n, C, ...) per channel, in float64: one matrix-vector product with
    ones."""
    xp = get_array_module()
    count, channels = block.shape[:2]
    rows = block.reshape(count * channels, -1)
    return (rows @ xp.ones(rows.shape[1], block.dtype)).reshape(count, channels).sum(axis=0, dtype="float64")
