"""Direct depthwise convolution: kh*kw shifted multiply-adds on a cache-sized block of padded channels.

For one output channel per input channel, y[c] = sum_{i,j} W[c, i, j] * x_pad[c] shifted by tap (i, j):
no columns and no GEMV per channel, just kh*kw multiply-adds over a block of channels at once. Each padded
channel is flattened ("wide" rows of padded_w pixels), so a tap is one contiguous run per channel at offset
i*dh*padded_w + j*dw, the same for every channel of the block: a tap is one 2-D multiply and one add over
(channels, out_h * padded_w), with padded_w - out_w garbage pixels per row cropped by the epilogue.
A stride s reads every s-th pixel: the padded block is first split into its s x s phases
(x_pad[a::s, b::s]), in which each tap is again a contiguous run, at offset (i*dh // s) * phase_w + j*dw // s
of phase (i*dh % s, j*dw % s).
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from .conv_bands import padded_images
from .conv_epilogue import finish_into
from .threads import parallel_for
from .workspace import Workspace

# Elements of one block's padded input, its phases and its wide output together: small enough to stay in a
# core's L2 cache through the block's kh*kw passes.
BLOCK_ELEMENTS = 1 << 16


def applies(geo):
    """Depthwise with one output channel per input channel (MobileNet's 3x3 layers, any stride or dilation)."""
    return geo.depthwise and geo.out_channels == geo.in_channels


def _phase_size(geo):
    """(phase_h, phase_w): the size of each of the stride's phases of the padded image (the largest, phase 0)."""
    (sh, sw), (padded_h, padded_w) = geo.stride, geo.padded_size
    return -(-padded_h // sh), -(-padded_w // sw)


def _taps(geo):
    """[(phase index, flat offset in that phase, tap index)] for every tap (i, j)."""
    (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
    phase_w = _phase_size(geo)[1]
    return [(((i * dh) % sh) * sw + (j * dw) % sw, (i * dh // sh) * phase_w + j * dw // sw, i * kw + j)
            for i in range(kh) for j in range(kw)]


def channel_blocks(channels, per_channel, images=1):
    """(first, stop) channel blocks of about BLOCK_ELEMENTS elements, at least one per thread."""
    threads = get_num_threads()
    count = max(-(-channels * per_channel // BLOCK_ELEMENTS), -(-threads // images))
    size = -(-channels // min(channels, count))
    return [(start, min(channels, start + size)) for start in range(0, channels, size)]


def depthwise_direct(x, weight, bias, geo, activation, out):
    """out = act(depthwise correlate(x, W) + b) for a geometry where ``applies`` holds."""
    xp = get_array_module()
    batch, channels = x.shape[:2]
    (sh, sw), (out_h, out_w) = geo.stride, geo.out_size
    phase_h, phase_w = _phase_size(geo)
    padded_h, padded_w = geo.padded_size
    strided = (sh, sw) != (1, 1)
    taps = _taps(geo)
    slack = max(offset for _, offset, _ in taps) + phase_w
    wide = out_h * phase_w
    phase_size = phase_h * phase_w
    per_channel = padded_h * padded_w + (sh * sw * phase_size if strided else 0) + wide
    weights = weight.reshape(channels, -1)
    bias_column = None if bias is None else bias.reshape(channels, 1, 1)
    tasks = [(n, block) for n in range(batch) for block in channel_blocks(channels, per_channel, batch)]

    def run(task, work):
        n, (first, stop) = task
        count = stop - first
        image, flat = padded_images(x[n:n + 1, first:stop], geo.pads, slack=0 if strided else slack)
        if strided:
            used = sh * sw * count * phase_size
            phases = work.get("phases", (used + slack,))
            phases[used:] = 0  # read only by garbage outputs, which must stay finite
            grid = phases[:used].reshape(sh * sw, count, phase_h, phase_w)
            for a in range(sh):
                for b in range(sw):
                    part = image[0, :, a::sh, b::sw]
                    target = grid[a * sw + b]
                    target[:, :part.shape[1], :part.shape[2]] = part
                    target[:, part.shape[1]:] = 0
                    target[:, :part.shape[1], part.shape[2]:] = 0
            base, phase_stride, channel_stride = phases, count * phase_size, phase_size
        else:
            base = flat
            phase_stride, channel_stride = 0, padded_h * padded_w
        item = base.itemsize
        y = work.get("y", (count, wide))
        scratch = work.get("product", (count, wide))
        for index, (phase, offset, tap) in enumerate(taps):
            start = phase * phase_stride + offset
            source = xp.lib.stride_tricks.as_strided(base[start:], shape=(count, wide),
                                                     strides=(channel_stride * item, item), writeable=False)
            column = weights[first:stop, tap:tap + 1]
            if index == 0:
                xp.multiply(source, column, out=y)
            else:
                xp.multiply(source, column, out=scratch)
                y += scratch
        target = out[n, first:stop]
        block_bias = None if bias_column is None else bias_column[first:stop]
        finish_into(target, y.reshape(count, out_h, phase_w)[:, :, :out_w], block_bias, activation)

    parallel_for(run, tasks, lambda: Workspace(x.dtype))
