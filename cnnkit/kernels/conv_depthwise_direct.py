"""Direct depthwise convolution: y[c] = sum_{i,j} W[c, i, j] * x_pad[c] shifted by tap (i, j), per block of channels.

No columns and no GEMV per channel; two ways to run the kh*kw multiply-adds, by channel count:

* channels last (many channels): the image is copied once into a zero-padded (rows, columns, channels)
  array; the windows are a strided view v[i, j, h, w, c] = x_pad[h*sh + i*dh, w*sw + j*dw, c] of it, and
  one ``einsum('ijhwc,ijc->hwc')`` per band of output rows sums the taps with all the channels as its
  contiguous inner loop (blocks of fewer channels measured slower: the inner loop is what einsum makes fast);
* channels first (few channels, large maps): each padded channel is flattened ("wide" rows of padded_w
  pixels), so a tap is one contiguous run per channel at offset i*dh*padded_w + j*dw: one 2-D multiply and
  one add per tap, with padded_w - out_w garbage pixels per row that the epilogue crops. A stride s first
  splits the block into its s x s phases x_pad[a::s, b::s], in which each tap is again one contiguous run,
  at offset (i*dh // s) * phase_w + j*dw // s of phase (i*dh % s, j*dw % s).
"""
from __future__ import annotations

from ..backend import get_array_module, get_num_threads
from .conv_bands import row_bands
from .conv_epilogue import finish_into
from .threads import parallel_for
from .workspace import Workspace

# Elements of a channels-first block's padded input, phases and wide output together: small enough to stay
# in a core's L2 cache through the block's kh*kw passes.
BLOCK_ELEMENTS = 1 << 16
# From this many channels the channels-last einsum runs: its inner loop is one pixel's channels, too short
# below this for einsum to beat the channels-first passes.
CHANNELS_LAST_MIN = 64
# Output elements per band of the channels-last path: whole rows of all channels (the einsum's inner loop
# must stay long), as many as stay in cache for the epilogue.
LAST_BAND_ELEMENTS = 1 << 18


def applies(geo):
    """Depthwise with one output channel per input channel (MobileNet's 3x3 layers, any stride or dilation)."""
    return geo.depthwise and geo.out_channels == geo.in_channels


def depthwise_direct(x, weight, bias, geo, activation, out):
    """out = act(depthwise correlate(x, W) + b) for a geometry where ``applies`` holds."""
    xp = get_array_module()
    batch, channels = x.shape[:2]
    kh, kw = geo.kernel
    if channels >= CHANNELS_LAST_MIN:
        taps = xp.ascontiguousarray(weight.reshape(channels, kh, kw).transpose(1, 2, 0))
        bias_column = None if bias is None else bias.reshape(channels, 1, 1)
        for n in range(batch):
            _channels_last(x[n], taps, bias_column, geo, activation, out[n])
        return
    taps = xp.ascontiguousarray(weight.reshape(channels, kh * kw).T)  # each tap's weights contiguous

    def run(task, work):
        n, (first, stop) = task
        block_bias = None if bias is None else bias[first:stop].reshape(-1, 1, 1)
        _channels_first(x[n, first:stop], taps[:, first:stop], block_bias, geo, activation, out[n, first:stop], work)

    tasks = [(n, span) for n in range(batch) for span in channel_blocks(channels, _Phases(geo).per_channel, batch)]
    parallel_for(run, tasks, lambda: Workspace(x.dtype))


def channel_blocks(channels, per_channel, images=1):
    """(first, stop) channel blocks of at most BLOCK_ELEMENTS elements, at least one per thread."""
    threads = get_num_threads()
    count = max(-(-channels * per_channel // BLOCK_ELEMENTS), -(-threads // images))
    size = -(-channels // min(channels, count))
    return [(start, min(channels, start + size)) for start in range(0, channels, size)]


def _channels_last(x, taps, bias, geo, activation, out):
    """One image x (C, H, W) -> out (C, out_h, out_w): a padded (rows, columns, C) copy, then one einsum and
    the epilogue per band of output rows; the copy and the bands are shared over the threads."""
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

    parallel_for(fill, row_bands(padded_h, padded_w * channels, target=LAST_BAND_ELEMENTS))
    row, column, channel = padded.strides
    windows = xp.lib.stride_tricks.as_strided(padded, shape=(kh, kw, out_h, out_w, channels),
                                              strides=(row * dh, column * dw, row * sh, column * sw, channel),
                                              writeable=False)

    def run(rows, work):
        first, stop = rows
        y = work.get("y", (stop - first, out_w, channels))
        xp.einsum("ijhwc,ijc->hwc", windows[:, :, first:stop], taps, out=y)
        finish_into(out[:, first:stop], y.transpose(2, 0, 1), bias, activation)

    parallel_for(run, row_bands(out_h, out_w * channels, target=LAST_BAND_ELEMENTS), lambda: Workspace(x.dtype))


class _Phases:
    """A channels-first block's phases: their size, each tap's (phase, offset), the wide output length."""

    def __init__(self, geo):
        (kh, kw), (sh, sw), (dh, dw) = geo.kernel, geo.stride, geo.dilation
        self.padded_h, self.padded_w = geo.padded_size
        self.rows, self.columns = -(-self.padded_h // sh), -(-self.padded_w // sw)
        self.size = self.rows * self.columns
        self.count = sh * sw
        self.taps = [(((i * dh) % sh) * sw + (j * dw) % sw, (i * dh // sh) * self.columns + j * dw // sw)
                     for i in range(kh) for j in range(kw)]
        self.wide = geo.out_size[0] * self.columns
        # the furthest tap's run on the last channel reaches this many pixels past the last phase
        self.overhang = max(offset for _, offset in self.taps)
        padded = self.padded_h * self.padded_w if self.count > 1 else 0
        self.per_channel = padded + self.count * self.size + 2 * self.wide


def _channels_first(x, taps, bias, geo, activation, out, work):
    """One block x (C, H, W) -> out (C, out_h, out_w) by kh*kw multiply-adds over wide rows of its phases."""
    xp = get_array_module()
    count = x.shape[0]
    phases = _Phases(geo)
    flat = _split(x, geo, phases, work)
    wide, size = phases.wide, phases.size
    y = work.get("y", (count, wide))
    product = work.get("product", (count, wide))
    for index, (phase, offset) in enumerate(phases.taps):
        start = phase * count * size + offset
        source = flat[start:start + count * size].reshape(count, size)[:, :wide]
        column = taps[index][:, None]
        if index == 0:
            xp.multiply(source, column, out=y)
        else:
            xp.multiply(source, column, out=product)
            y += product
    out_h, out_w = geo.out_size
    finish_into(out, y.reshape(count, out_h, phases.columns)[:, :, :out_w], bias, activation)


def _split(x, geo, phases, work):
    """The zero-padded block's phases, flat (phase, channel, rows * columns), with zeros after the last phase."""
    count = x.shape[0]
    (top, _), (left, _) = geo.pads
    sh, sw = geo.stride
    used = phases.count * count * phases.size
    flat = work.get("phases", (used + phases.overhang,))
    flat[used:] = 0  # read only by garbage outputs, which must stay finite
    grid = flat[:used].reshape(phases.count, count, phases.rows, phases.columns).transpose(0, 2, 3, 1)
    image = x.transpose(1, 2, 0)
    if phases.count == 1:
        _pad_into(grid[0], image, top, left)
        return flat
    padded = work.get("padded", (count, phases.padded_h, phases.padded_w)).transpose(1, 2, 0)
    _pad_into(padded, image, top, left)
    for a in range(sh):
        for b in range(sw):
            _pad_into(grid[a * sw + b], padded[a::sh, b::sw], 0, 0)
    return flat


def _pad_into(target, image, top, left):
    """target (rows, columns, channels) = image at (top, left) inside a zero border."""
    height, width = image.shape[:2]
    target[:top] = 0
    target[top + height:] = 0
    target[top:top + height, :left] = 0
    target[top:top + height, left + width:] = 0
    target[top:top + height, left:left + width] = image
