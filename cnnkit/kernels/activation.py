"""Kernels for relu and relu6: one chunked pass that clamps and records the gradient mask while the chunk is in cache.

The clamp and mask helpers are shared with the fused batch norm + relu kernel (``kernels.batchnorm``).
"""
from __future__ import annotations

from ..backend import get_array_module
from . import EveryCall, register

__all__ = ["clamp_into", "inside_into", "ChunkedClamp"]

# Elements per chunk of the fused pass: the chunk stays in cache between its ufuncs, so a large input is read
# from memory once instead of once per ufunc.
CHUNK_ELEMENTS = 1 << 18

# From this size max(x, low) runs as clip(x, low, inf): NumPy's maximum against a scalar is several times
# slower on large arrays, while clip's extra per-call cost outweighs that below about this many elements.
CLIP_MIN_ELEMENTS = 1 << 16


def clamp_into(values, low, high, out):
    """out = clip(values, low, high), or max(values, low) when high is None; NaN stays NaN, as in torch."""
    xp = get_array_module()
    if high is None and values.size < CLIP_MIN_ELEMENTS:
        xp.maximum(values, low, out=out)
    else:
        xp.clip(values, low, float("inf") if high is None else high, out=out)


def inside_into(values, low, high, out, below):
    """out = low < values < high (values > low when high is None); ``below`` is bool scratch of the same shape."""
    xp = get_array_module()
    xp.greater(values, low, out=out)
    if high is not None:
        xp.less(values, high, out=below)
        out &= below


@register
class ChunkedClamp(EveryCall):
    """relu / relu6 forward as one pass over cache-sized chunks, writing the output and the gradient mask."""

    name, op = "relu.chunked", "relu"

    def forward(self, x, high):
        """(clip(x, 0, high), 0 < x < high), or (max(x, 0), x > 0) when high is None."""
        xp = get_array_module()
        x = xp.ascontiguousarray(x)  # the chunks are slices of flat views
        out = xp.empty_like(x)
        mask = xp.empty(x.shape, bool)
        flat, out_flat, mask_flat = x.reshape(-1), out.reshape(-1), mask.reshape(-1)
        below = xp.empty(min(flat.size, CHUNK_ELEMENTS), bool) if high is not None else None
        for start in range(0, flat.size, CHUNK_ELEMENTS):
            chunk = slice(start, start + CHUNK_ELEMENTS)
            values = flat[chunk]
            inside_into(values, 0, high, mask_flat[chunk], None if below is None else below[:values.size])
            clamp_into(values, 0, high, out_flat[chunk])
        return out, mask
