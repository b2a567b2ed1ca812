"""Dense convolution of a few images in bands of output rows: each band's im2col, GEMM and epilogue in cache.

The chunked im2col kernel cuts a batch into samples, so a single image is one big column matrix and one
GEMM threaded by BLAS, followed by passes over the whole output for the bias and the activation. Here an
image is cut into bands of output rows instead: a band's columns (C/groups * kh * kw x rows * out_w) are
copied from the padded image, multiplied in one GEMM per group, and written to their rows of the output
with the bias and the activation applied on the way (``conv_epilogue.finish_into``). The bands are shared
over cnnkit's threads, each calling a one-thread BLAS, so the copies run in parallel with the products.
Small maps of an ungrouped layer share their input channels over the threads instead
(INPUT_PARTS_MAX_PIXELS), and small layers run on the calling thread (SPLIT_MIN_MACS).
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from .conv_epilogue import finish_into
from .copy import assign
from .threads import narrow_blas, parallel_for
from .workspace import Workspace

# Output pixels per band: wider bands measured faster up to about this many on ResNet-18's layers (fewer BLAS
# calls and epilogue passes), no faster beyond. Bands with few column rows (C/groups * kh * kw, a first layer
# on 3 channels) grow to about BAND_ELEMENTS column elements: their GEMMs are cheap and the per-band costs
# are not.
BAND_PIXELS = 2048
BAND_ELEMENTS = 1 << 17
# Layers of fewer multiply-adds run on the calling thread: about a tenth of a millisecond of GEMM, against
# the tens of microseconds that handing work to another thread and waiting for it cost.
SPLIT_MIN_MACS = 1 << 22
# Below this many output pixels per image the threads share a layer's input channels instead of its rows:
# on ResNet-18's 14x14 and 7x7 outputs row bands left each GEMM a few dozen columns, and output-channel parts
# made one thread copy all the columns and both read them; input parts copy in parallel and read disjoint
# halves, and their one extra pass (adding the partial outputs) is cheap on maps this small.
INPUT_PARTS_MAX_PIXELS = 512


def padded_images(x, pads, slack=0):
    """x (N, C, H, W) inside a zero border ((top, bottom), (left, right)); only the border is zeroed.

    Returns (padded, flat): the padded array and the flat buffer it starts, with ``slack`` zeros after it;
    (x, None) when there is no padding and no slack.
    """
    xp = get_array_module()
    (top, bottom), (left, right) = pads
    if not (top or bottom or left or right or slack):
        return x, None
    batch, channels, height, width = x.shape
    shape = (batch, channels, height + top + bottom, width + left + right)
    flat = xp.empty(shape[0] * shape[1] * shape[2] * shape[3] + slack, x.dtype)
    flat[flat.size - slack:] = 0
    padded = flat[:flat.size - slack].reshape(shape)
    padded[:, :, :top] = 0
    padded[:, :, top + height:] = 0
    padded[:, :, top:top + height, :left] = 0
    padded[:, :, top:top + height, left + width:] = 0
    assign(padded[:, :, top:top + height, left:left + width], x)
    return padded, flat


def share(run, tasks, scratch, split):
    """[run(task, scratch object)] on cnnkit's threads when ``split``, else on this thread with BLAS on one thread:
    a GEMM this small gains little from BLAS's threads when cores are free, and on a busy machine it measured
    up to a hundred times slower, its threads waiting to be scheduled."""
    if split:
        return parallel_for(run, tasks, scratch)
    with narrow_blas():
        work = scratch()
        return [run(task, work) for task in tasks]


def row_bands(rows, row_pixels, images=1, target=None):
    """(first, stop) bands of ``rows`` output rows, about ``target`` pixels each; with ``images`` images side by
    side, enough bands for every thread, and a band count per image that shares evenly over the threads."""
    threads = get_num_threads()
    count = max(-(-rows * row_pixels // (target or BAND_PIXELS)), -(-threads // images))
    if threads > 1:
        count = -(-(-(-images * count // threads) * threads) // images)
    size = -(-rows // min(rows, count))
    return [(start, min(rows, start + size)) for start in range(0, rows, size)]


def dense_bands(x, weight, bias, geo, activation, out):
    """out = act(correlate(x, W) + b), band by band of output rows, for any stride, dilation, padding and groups."""
    xp = get_array_module()
    batch, channels = x.shape[:2]
    groups, out_channels = geo.groups, geo.out_channels
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    out_h, out_w = geo.out_size
    inner = channels // groups * kh * kw
    padded = padded_images(x, geo.pads)[0]
    n_stride, c_stride, h_stride, w_stride = padded.strides
    # every image's windows as one view (sliced per band: cheaper than a strided view made per band)
    windows = xp.lib.stride_tricks.as_strided(
        padded, shape=(batch, channels, kh, kw, out_h, out_w),
        strides=(n_stride, c_stride, h_stride * dh, w_stride * dw, h_stride * sh, w_stride * sw), writeable=False)
    w_mat = xp.ascontiguousarray(weight.reshape(groups, out_channels // groups, inner))
    bias_column = None if bias is None else bias.reshape(groups, out_channels // groups, 1, 1)
    macs = batch * out_channels * inner * out_h * out_w
    split = macs >= SPLIT_MIN_MACS
    if split and groups == 1 and out_h * out_w < INPUT_PARTS_MAX_PIXELS:
        return _input_parts(windows, w_mat[0], bias, activation, out)
    bands = row_bands(out_h, out_w, batch, target=max(BAND_PIXELS, BAND_ELEMENTS // inner))
    tasks = [(n, band) for n in range(batch) for band in bands]

    def run(task, work):
        n, (first, stop) = task
        count = stop - first
        window = windows[n, :, :, :, first:stop]
        cols = work.get("cols", window.shape)
        assign(cols, window)
        y = work.get("y", (groups, out_channels // groups, count * out_w))
        xp.matmul(w_mat, cols.reshape(groups, inner, count * out_w), out=y)
        target = out[n, :, first:stop].reshape(groups, out_channels // groups, count, out_w)
        finish_into(target, y.reshape(target.shape), bias_column, activation)

    share(run, tasks, lambda: Workspace(x.dtype), split)


def _input_parts(windows, w_mat, bias, activation, out):
    """Small maps: out[n] = act(sum_t W[:, cols of part t] @ columns of part t + b), one range of input channels
    per thread, each thread copying only its own columns; the first part's GEMM writes ``out``, the others add."""
    xp = get_array_module()
    batch, channels = windows.shape[:2]
    out_channels, pixels = out.shape[1], out.shape[2] * out.shape[3]
    taps = w_mat.shape[1] // channels
    width = -(-channels // get_num_threads())
    rows = out.reshape(batch, out_channels, pixels)
    tasks = [(n, first) for n in range(batch) for first in range(0, channels, width)]

    def run(task, work):
        n, first = task
        window = windows[n, first:first + width]
        cols = work.get("cols", window.shape)
        assign(cols, window)
        w_part = w_mat[:, first * taps:(first + window.shape[0]) * taps]
        return xp.matmul(w_part, cols.reshape(-1, pixels), out=rows[n] if first == 0 else None)

    partials = parallel_for(run, tasks, lambda: Workspace(out.dtype))
    for (n, first), partial in zip(tasks, partials):
        if first:
            rows[n] += partial
    for n in range(batch):
        finish_into(rows[n], rows[n], None if bias is None else bias[:, None], activation)
