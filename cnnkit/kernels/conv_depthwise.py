"""Depthwise convolution on small feature maps as one banded matrix product per channel.

On a small map (MobileNet's 8x8 and 4x4 stages) im2col copies nine short runs per channel and image,
and the per-channel products are tiny, so copies and call overhead dominate. There the whole
correlation of one channel is a matrix instead: ``y_c = x_c @ M_c`` with x_c the (N, H*W) images of
channel c and M_c (H*W, out_h*out_w) holding w_c[i, j] at (input pixel, output pixel) of every window
position (zero-padding simply leaves its entries out). The batched product reads x and writes y in
place through strided views, with no copy at all; backward is two more products,
dx_c = dy_c @ M_c^T and dM_c = x_c^T @ dy_c, whose entries summed per tap give dW.

The matrix has in_pixels * out_pixels entries per channel against kh * kw * out_pixels useful ones,
and building it costs about as much as the products for a handful of images, so this pays only below
``MAX_ENTRIES`` and from ``MIN_BATCH`` images up, where it beat the im2col path severalfold on MobileNet's 4x4 and
8x8 depthwise layers; for a single small image it loses. The channels are split over threads (the
per-channel products are too small for BLAS to thread), which also makes 8x8 stride 1 and 16x16
stride 2 pay off from a large batch (``LARGE_MAX_ENTRIES``).
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from . import Kernel
from .conv_plan import chunk_sums
from .threads import parallel_map, split_ranges

MAX_ENTRIES = 1024
MIN_BATCH = 4
# Larger matrices (8x8 stride 1: 4096 entries; 16x16 stride 2: 16384) cost more to build, which only a
# big batch pays back; 16x16 stride 1 (65536 entries) stays slower than im2col at any batch.
LARGE_MAX_ENTRIES = 16384
LARGE_MIN_BATCH = 48


def _sizes(geo):
    """(in_pixels, out_pixels, channel multiplier) of a depthwise geometry."""
    return (geo.in_size[0] * geo.in_size[1], geo.out_size[0] * geo.out_size[1], geo.out_channels // geo.groups)


def use_matrix(geo):
    """True for a depthwise geometry whose per-channel matrix is small, and shared by enough images, to beat im2col."""
    if len(geo.kernel) != 2 or not geo.depthwise or geo.batch < MIN_BATCH:
        return False
    in_pixels, out_pixels, multiplier = _sizes(geo)
    entries = in_pixels * out_pixels * multiplier
    return entries <= MAX_ENTRIES or (entries <= LARGE_MAX_ENTRIES and geo.batch >= LARGE_MIN_BATCH)


_PAIRS = {}


def _window_pairs(geo):
    """(flat positions in M_c viewed as (in_pixels, multiplier, out_pixels) for multiplier 0, tap of each, tap count).

    One entry per window position that lands inside the unpadded input; positions never repeat, since
    one output pixel reads each input pixel through at most one tap.
    """
    _, out_pixels, multiplier = _sizes(geo)
    key = (geo.in_size, geo.out_size, geo.kernel, geo.stride, geo.pads, geo.dilation, multiplier)
    cached = _PAIRS.get(key)
    if cached is not None:
        return cached
    xp = get_array_module()
    (height, width), (out_h, out_w) = geo.in_size, geo.out_size
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    (top, _), (left, _) = geo.pads
    rows, cols = xp.arange(out_h)[:, None], xp.arange(out_w)[None, :]
    out_index = xp.broadcast_to(rows * out_w + cols, (out_h, out_w))
    positions, taps = [], []
    for i in range(kh):
        for j in range(kw):
            h, w = rows * sh + i * dh - top, cols * sw + j * dw - left
            inside = (h >= 0) & (h < height) & (w >= 0) & (w < width)
            positions.append(((h * width + w) * (multiplier * out_pixels) + out_index)[inside])
            taps.append(xp.full(int(inside.sum()), i * kw + j))
    cached = (xp.concatenate(positions), xp.concatenate(taps), kh * kw)
    if len(_PAIRS) > 256:  # geometries are few in a real network; keep the cache bounded anyway
        _PAIRS.clear()
    _PAIRS[key] = cached
    return cached


def _channel_views(array, channels):
    """(N, channels * k, h, w) -> the (channels, N, k * h * w) view whose rows are one channel group's images."""
    batch = array.shape[0]
    return array.reshape(batch, channels, -1).transpose(1, 0, 2)


def _multiplier_offsets(geo):
    """Offsets of multiplier slot k inside M_c's (in_pixels, multiplier, out_pixels) layout, shape (multiplier, 1)."""
    _, out_pixels, multiplier = _sizes(geo)
    return (get_array_module().arange(multiplier) * out_pixels)[:, None]


def kernel_matrix(weight, geo):
    """M (C, in_pixels, multiplier * out_pixels): M[c, p, k*P + q] = weight[c*multiplier + k, 0, i, j] where
    output pixel q reads input pixel p through tap (i, j); C = len(weight) / multiplier (a slice of channels)."""
    xp = get_array_module()
    positions, taps, tap_count = _window_pairs(geo)
    in_pixels, out_pixels, multiplier = _sizes(geo)
    channels = weight.shape[0] // multiplier
    matrix = xp.zeros((channels, in_pixels * multiplier * out_pixels), weight.dtype)
    values = weight.reshape(channels, multiplier, tap_count)[:, :, taps]  # (C, multiplier, pairs)
    matrix[:, (positions[None, :] + _multiplier_offsets(geo)).ravel()] = values.reshape(channels, -1)
    return matrix.reshape(channels, in_pixels, multiplier * out_pixels)


def _channel_spans(geo):
    """(first, stop) channel ranges, one per thread: each channel's products are independent, and too small
    for BLAS to thread."""
    return [(span[0], span[-1] + 1) for span in split_ranges(range(geo.in_channels), get_num_threads())]


class BandedDepthwise(Kernel):
    """Depthwise conv2d on small maps: y_c = x_c @ M_c, dW from dM_c = x_c^T @ dy_c summed per tap."""

    name, op = "conv2d.banded_depthwise", "conv2d"

    def applies(self, geo):
        return use_matrix(geo)

    def correlate(self, x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False):
        """The op "conv2d" contract (see conv_im2col.ChunkedIm2col.correlate)."""
        y, grad_w = correlate(x, weight, geo, bias, compute_output, upstream)
        if out is not None and y is not None:  # whole channels are written through views: copy into ``out``
            out[...] = y
            y = out
        if sum_input:
            return y, grad_w, _sum_per_channel(x)
        return y, grad_w


class BandedDepthwiseInputGrad(Kernel):
    """Depthwise conv2d's input gradient on small maps: dx_c = dy_c @ M_c^T."""

    name, op = "conv2d_input_grad.banded_depthwise", "conv2d_input_grad"

    def applies(self, geo):
        return use_matrix(geo)

    def correlate_transpose(self, grad, weight, geo, bias=None):
        """The op "conv2d_input_grad" contract (see conv_im2col.ChunkedCol2im.correlate_transpose)."""
        return correlate_transpose(grad, weight, geo, bias)


def _sum_per_channel(array):
    return chunk_sums(get_array_module().ascontiguousarray(array)).astype(array.dtype)


def correlate(x, weight, geo, bias=None, compute_output=True, upstream=None):
    """y_c = x_c @ M_c (+ b); with ``upstream`` (dy) also dW, from dM_c = x_c^T @ dy_c."""
    xp = get_array_module()
    channels = geo.in_channels
    multiplier = _sizes(geo)[2]
    images = _channel_views(x, channels)
    out = xp.empty((geo.batch, geo.out_channels) + geo.out_size, x.dtype) if compute_output else None
    outputs = _channel_views(out, channels) if compute_output else None
    upstreams = _channel_views(upstream, channels) if upstream is not None else None
    positions, taps, tap_count = _window_pairs(geo)
    one_hot = (taps[:, None] == xp.arange(tap_count)[None, :]).astype(x.dtype) if upstream is not None else None

    def run(span):
        first, stop = span
        if compute_output:
            xp.matmul(images[first:stop], kernel_matrix(weight[first * multiplier:stop * multiplier], geo),
                      out=outputs[first:stop])
            if bias is not None:
                out[:, first * multiplier:stop * multiplier] += bias[first * multiplier:stop * multiplier, None, None]
        if upstream is None:
            return None
        grad_matrix = xp.matmul(images[first:stop].transpose(0, 2, 1), upstreams[first:stop])
        picked = grad_matrix.reshape(stop - first, -1)[:, positions[None, :] + _multiplier_offsets(geo)]
        return picked @ one_hot  # each tap's window positions summed: (channels, multiplier, taps)

    parts = parallel_map(run, _channel_spans(geo))
    grad_w = None
    if upstream is not None:
        grad_w = xp.concatenate(parts).reshape(geo.out_channels, 1, *geo.kernel)
    return out, grad_w


def correlate_transpose(grad, weight, geo, bias=None):
    """dx_c = dy_c @ M_c^T (+ bias per channel of dx)."""
    xp = get_array_module()
    channels = geo.in_channels
    multiplier = _sizes(geo)[2]
    dx = xp.empty((geo.batch, channels) + geo.in_size, grad.dtype)
    grads, targets = _channel_views(grad, channels), _channel_views(dx, channels)

    def run(span):
        first, stop = span
        matrix = kernel_matrix(weight[first * multiplier:stop * multiplier], geo)
        xp.matmul(grads[first:stop], matrix.transpose(0, 2, 1), out=targets[first:stop])
        if bias is not None:
            dx[:, first:stop] += bias[first:stop, None, None]

    parallel_map(run, _channel_spans(geo))
    return dx
