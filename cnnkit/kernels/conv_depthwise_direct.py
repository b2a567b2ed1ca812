"""Direct depthwise convolution: y[c] = sum_{i,j} W[c, i, j] * x_pad[c] shifted by tap (i, j), no columns.

The image is copied once into a zero-padded channels-last array (rows, columns, C); the windows are then a
strided view of it, v[i, j, h, w, c] = x_pad[h*sh + i*dh, w*sw + j*dw, c], and one
``einsum('ijhwc,ijc->hwc')`` per band of output rows sums the kh*kw taps, all channels forming its contiguous
inner loop. The copy and the bands are shared over cnnkit's threads.

Measured against the alternatives on MobileNet-v2's 3x3 depthwise layers at batch 1 (one thread, CPU time):
channels-first shifted multiply-adds (one multiply and one add per tap over wide rows of a block of channels,
strides through a polyphase split) tied at best and lost up to 4x on small maps, where a channel's row is a
few dozen pixels; the banded-matrix kernel (``conv_depthwise``) lost 4x to 100x (its matrix is built for a
single image); against the im2col GEMVs of ``conv_bands`` the einsum won 1.1x to 2.3x on seven of the eight
layers of 64+ channels on maps of 56x56 and below (``applies``) and lost one (192 channels at 28x28,
0.67 vs 0.52 ms); on 112x112 maps and few channels the copy costs more than it saves, and ``conv_infer``
runs those through the shifted multiply-adds (``conv_depthwise_shift``, stride 1) or as bands.
"""
from __future__ import annotations

from ..backend import get_array_module
from .conv_bands import row_bands, share
from .conv_epilogue import finish_into
from .workspace import Workspace

# From this many channels (the einsum's inner loop is one pixel's channels) and up to this many input pixels
# (larger maps spend more on the channels-last copy than the einsum saves).
MIN_CHANNELS = 64
MAX_PIXELS = 56 * 56
# Output elements per band: whole rows of all channels, as many as stay in cache for the epilogue.
BAND_ELEMENTS = 1 << 18
# Layers of fewer multiply-adds run on the calling thread (the einsum does about a tenth of a millisecond of
# this many; see conv_bands.SPLIT_MIN_MACS).
SPLIT_MIN_MACS = 1 << 20


def applies(geo):
    """Depthwise, one output channel per input channel, at least MIN_CHANNELS, at most MAX_PIXELS per map."""
    return (geo.depthwise and geo.out_channels == geo.in_channels and geo.in_channels >= MIN_CHANNELS
            and geo.in_size[0] * geo.in_size[1] <= MAX_PIXELS)


def depthwise_direct(x, weight, bias, geo, activation, out):
    """out = act(depthwise correlate(x, W) + b) for a geometry where ``applies`` holds."""
    xp = get_array_module()
    channels = x.shape[1]
    kh, kw = geo.kernel
    taps = xp.ascontiguousarray(weight.reshape(channels, kh, kw).transpose(1, 2, 0))
    bias_column = None if bias is None else bias.reshape(channels, 1, 1)
    for n in range(x.shape[0]):
        _image(x[n], taps, bias_column, geo, activation, out[n])


def _image(x, taps, bias, geo, activation, out):
    """One image x (C, H, W) -> out (C, out_h, out_w)."""
    xp = get_array_module()
    channels, height, width = x.shape
    (top, _), (left, _) = geo.pads
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    (padded_h, padded_w), (out_h, out_w) = geo.padded_size, geo.out_size
    padded = xp.empty((padded_h, padded_w, channels), x.dtype)
    image = x.transpose(1, 2, 0)

    def fill(rows, work):
        first, stop = rows  # padded rows first..stop: zeros, or a row of x with zeros left and right
        inside = slice(max(first, top) - top, min(stop, top + height) - top)
        padded[first:min(stop, top)] = 0
        padded[max(first, top + height):stop] = 0
        if inside.start < inside.stop:
            band = padded[inside.start + top:inside.stop + top]
            band[:, :left] = 0
            band[:, left + width:] = 0
            band[:, left:left + width] = image[inside]

    split = channels * out_h * out_w * kh * kw >= SPLIT_MIN_MACS
    share(fill, row_bands(padded_h, padded_w * channels, target=BAND_ELEMENTS), dict, split)
    row, column, channel = padded.strides
    windows = xp.lib.stride_tricks.as_strided(padded, shape=(kh, kw, out_h, out_w, channels),
                                              strides=(row * dh, column * dw, row * sh, column * sw, channel),
                                              writeable=False)

    def run(rows, work):
        first, stop = rows
        y = work.get("y", (stop - first, out_w, channels))
        xp.einsum("ijhwc,ijc->hwc", windows[:, :, first:stop], taps, out=y)
        finish_into(out[:, first:stop], y.transpose(2, 0, 1), bias, activation)

    share(run, row_bands(out_h, out_w * channels, target=BAND_ELEMENTS), lambda: Workspace(x.dtype), split)
