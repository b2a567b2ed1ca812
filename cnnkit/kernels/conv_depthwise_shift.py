"""Depthwise convolution as shifted multiply-adds: y[c] = b[c] + sum_{i,j} W[c, i, j] x_pad[c, i*dh:, j*dw:].

Each tap is one multiply of a shifted view of the padded channels by their weights and one add into the
output, with no columns: on large maps of few channels (MobileNet-v2's 32 x 112 x 112 layer) the im2col
copy of ``conv_bands`` cost more than its GEMVs, and the channels-last einsum of ``conv_depthwise_direct``
has too short an inner loop. Each pass runs over whole rows of a block of channels, so it suits maps whose
rows are long (MIN_WIDTH); blocks of channels (BLOCK_ELEMENTS) are shared over the threads.
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from . import conv_depthwise_direct
from .conv_bands import padded_images, share
from .conv_epilogue import finish_into
from .workspace import Workspace

# Input rows at least this wide: on narrower maps the per-row overhead of each pass beats the einsum's
# channels-last loop (MobileNet-v2's 56 x 56 layers measured slower this way than through the einsum).
MIN_WIDTH = 96
# Output elements per block of channels at most: fewer calls per pass (blocks of 2^16 measured 1.83 against
# 1.49 ms on one thread on the 32 x 112 x 112 layer).
BLOCK_ELEMENTS = 1 << 18


def applies(geo):
    """Depthwise, one output per input channel, input rows of MIN_WIDTH+ pixels, not taken by the einsum; a
    stride only on 2+ threads (the bands' GEMVs won on one thread, 3.07 vs 3.31 ms on 96 x 112 x 112 / 2, and
    did not gain from a second: 3.08 against the shifted passes' 2.56)."""
    return (geo.depthwise and geo.out_channels == geo.in_channels and geo.in_size[1] >= MIN_WIDTH
            and (geo.stride == (1, 1) or get_num_threads() > 1) and not conv_depthwise_direct.applies(geo))


def depthwise_shift(x, weight, bias, geo, activation, out):
    """out = act(depthwise correlate(x, W) + b) for a geometry where ``applies`` holds."""
    xp = get_array_module()
    batch, channels = x.shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    out_h, out_w = geo.out_size
    padded = padded_images(x, geo.pads)[0]
    taps = weight.reshape(channels, kh * kw, 1, 1)
    bias_column = None if bias is None else bias.reshape(channels, 1, 1)
    split = batch * channels * out_h * out_w * kh * kw >= conv_depthwise_direct.SPLIT_MIN_MACS
    width = max(1, min(BLOCK_ELEMENTS // (out_h * out_w), -(-channels // (get_num_threads() if split else 1))))
    tasks = [(n, first) for n in range(batch) for first in range(0, channels, width)]

    def run(task, work):
        n, first = task
        stop = min(channels, first + width)
        target = out[n, first:stop]
        product = work.get("product", target.shape)
        for tap in range(kh * kw):
            i, j = divmod(tap, kw)
            view = padded[n, first:stop, i * dh:i * dh + (out_h - 1) * sh + 1:sh,
                          j * dw:j * dw + (out_w - 1) * sw + 1:sw]
            xp.multiply(view, taps[first:stop, tap], out=target if tap == 0 else product)
            if tap:
                target += product
        finish_into(target, target, None if bias_column is None else bias_column[first:stop], activation)

    share(run, tasks, lambda: Workspace(x.dtype), split)
