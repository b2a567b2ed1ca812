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
``MAX_ENTRIES`` and from ``MIN_BATCH`` images up. Measured against the im2col path on 2 threads
(forward + backward, batch 64): 960 channels 4x4: 18.9 -> 7.6 ms; 576 channels 8x8 stride 2: 51.5 ->
10.8 ms; 8 images of the latter: 8.7 -> 3.6 ms. At 8x8 stride 1 (4096 entries) the matrix path was 15%
slower, at one 4x4 image twice as slow.
"""
from __future__ import annotations

from ..backend import get_array_module

__all__ = []  # internal helpers, imported by name from cnnkit.functional.conv

MAX_ENTRIES = 1024
MIN_BATCH = 4


def _sizes(geo):
    """(in_pixels, out_pixels, channel multiplier) of a depthwise geometry."""
    return (geo.in_size[0] * geo.in_size[1], geo.out_size[0] * geo.out_size[1], geo.out_channels // geo.groups)


def use_matrix(geo):
    """True for a depthwise geometry whose per-channel matrix is small, and shared by enough images, to beat im2col."""
    if not geo.depthwise or geo.batch < MIN_BATCH:
        return False
    in_pixels, out_pixels, multiplier = _sizes(geo)
    return in_pixels * out_pixels * multiplier <= MAX_ENTRIES


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
    output pixel q reads input pixel p through tap (i, j)."""
    xp = get_array_module()
    positions, taps, tap_count = _window_pairs(geo)
    channels = geo.in_channels
    in_pixels, out_pixels, multiplier = _sizes(geo)
    matrix = xp.zeros((channels, in_pixels * multiplier * out_pixels), weight.dtype)
    values = weight.reshape(channels, multiplier, tap_count)[:, :, taps]  # (C, multiplier, pairs)
    matrix[:, (positions[None, :] + _multiplier_offsets(geo)).ravel()] = values.reshape(channels, -1)
    return matrix.reshape(channels, in_pixels, multiplier * out_pixels)


def correlate(x, weight, geo, bias=None, compute_output=True, upstream=None):
    """y_c = x_c @ M_c (+ b); with ``upstream`` (dy) also dW, from dM_c = x_c^T @ dy_c (conv.correlate's contract)."""
    xp = get_array_module()
    channels = geo.in_channels
    out = None
    if compute_output:
        out = xp.empty((geo.batch, geo.out_channels) + geo.out_size, x.dtype)
        xp.matmul(_channel_views(x, channels), kernel_matrix(weight, geo), out=_channel_views(out, channels))
        if bias is not None:
            out += bias.reshape(1, -1, 1, 1)
    grad_w = None
    if upstream is not None:
        positions, taps, tap_count = _window_pairs(geo)
        grad_matrix = xp.matmul(_channel_views(x, channels).transpose(0, 2, 1), _channel_views(upstream, channels))
        picked = grad_matrix.reshape(channels, -1)[:, positions[None, :] + _multiplier_offsets(geo)]
        # sum each tap's window positions: (C, multiplier, pairs) @ one-hot (pairs, taps)
        one_hot = (taps[:, None] == xp.arange(tap_count)[None, :]).astype(x.dtype)
        grad_w = (picked @ one_hot).reshape(geo.out_channels, 1, *geo.kernel)
    return out, grad_w


def correlate_transpose(grad, weight, geo, bias=None):
    """dx_c = dy_c @ M_c^T (+ bias per channel of dx): conv.correlate_transpose's contract."""
    xp = get_array_module()
    channels = geo.in_channels
    dx = xp.empty((geo.batch, channels) + geo.in_size, grad.dtype)
    xp.matmul(_channel_views(grad, channels), kernel_matrix(weight, geo).transpose(0, 2, 1),
              out=_channel_views(dx, channels))
    if bias is not None:
        dx += bias.reshape(1, channels, 1, 1)
    return dx
