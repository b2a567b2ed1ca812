"""Kernel for batch norm (and batch norm fused with relu/relu6): cache-sized sample chunks shared out over threads.

Every full-size array is read from memory once per pass, and the few elementwise steps of a pass run on a chunk
that stays in its core's cache; per-thread scratch comes from a ``Workspace``.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import Kernel, register
from .activation import clamp_into, inside_into
from .threads import parallel_for
from .workspace import Workspace

__all__ = ["ChunkedBatchNorm"]

# Bytes of input per chunk: small enough that a chunk and its per-channel planes stay in cache, large enough
# that small maps do not pay NumPy's per-call cost once per sample.
CHUNK_BYTES = 2 << 20
# Rows up to this length sum their products in one matrix-vector product instead of vecdot, whose per-row
# overhead dominates on small maps.
SHORT_ROWS = 128


def _sample_chunks(x3):
    """(start, stop) sample ranges of about CHUNK_BYTES each over x3 (N, C, L)."""
    per_sample = max(1, x3[0].nbytes)
    step = max(1, CHUNK_BYTES // per_sample)
    return [(start, min(len(x3), start + step)) for start in range(0, len(x3), step)]


def _on_threads(run, chunks, dtype):
    """[run((start, stop), work) for each chunk], each thread taking the next chunk when it is free (its passes
    run in its own core's cache); ``work`` is the thread's Workspace of scratch buffers."""
    return parallel_for(run, chunks, lambda: Workspace(dtype))


def _sums_on_threads(run, chunks, dtype):
    """The chunks' partial sums added up in chunk order (the same on every run): ``run`` returns a tuple of
    per-channel sums."""
    return [sum(column) for column in zip(*_on_threads(run, chunks, dtype))]


def _plane(vector, length, dtype):
    """(C, L) copy of a per-channel vector: contiguous operands run faster than a broadcast column."""
    plane = get_array_module().empty((len(vector), length), dtype)
    plane[...] = vector[:, None]  # one call, cheaper than broadcast_to + ascontiguousarray
    return plane


def _row_sums(block, ones):
    """sum over N and L of block (N, C, L), per channel, accumulated in float64 across samples."""
    return (block @ ones).sum(axis=0, dtype="float64")


def _row_dots(a, scratch, ones):
    """sum over N and L of a * scratch (both (N, C, L)), per channel, accumulated in float64 across samples.

    Overwrites ``scratch``. Short rows multiply first and sum every row in one matrix-vector product, since
    vecdot's per-row overhead dominates there; long rows keep vecdot, which needs no extra pass.
    """
    xp = get_array_module()
    if a.shape[2] > SHORT_ROWS:
        return xp.vecdot(a, scratch).sum(axis=0, dtype="float64")
    xp.multiply(a, scratch, out=scratch)
    return (scratch.reshape(-1, a.shape[2]) @ ones).reshape(a.shape[:2]).sum(axis=0, dtype="float64")


class _ReluMask:
    """masked[chunk] = grad where 0 < out (< max_value), else 0: relu's (relu6's) backward, from its output."""

    def __init__(self, max_value, out, grad, masked, scratch):
        xp = get_array_module()
        self.max_value, self.out, self.grad, self.masked = max_value, out, grad, masked
        self.flags = xp.empty(scratch.shape, bool)
        self.inside = xp.empty(scratch.shape, bool) if max_value is not None else None

    def __call__(self, start, stop):
        flags = self.flags[:stop - start]
        inside_into(self.out[start:stop], 0, self.max_value, flags,
                    None if self.inside is None else self.inside[:stop - start])
        get_array_module().multiply(self.grad[start:stop], flags, out=self.masked[start:stop])


@register
class ChunkedBatchNorm(Kernel):
    """Batch norm on x as (N, C, L) in sample chunks: one memory pass per statistic, per output, per gradient.

    Statistics are sums around a per-channel shift (so the variance does not cancel); y = x * scale + offset;
    a fused relu clamps each chunk while it is in cache and its backward masks the gradient from the kept output.
    """

    name, op = "batch_norm.chunked", "batch_norm"

    def applies(self, shape):
        """Any non-empty input."""
        return all(shape)

    def statistics(self, x):
        """Per-channel mean and biased variance (float64) of x in one pass."""
        xp = get_array_module()
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        chunks = _sample_chunks(x3)
        dtype = x3.dtype
        length = x3.shape[2]
        # sums of x - shift with shift = the first sample's channel means: close to the batch mean, so
        # E[d^2] - E[d]^2 loses no precision (plain E[x^2] - E[x]^2 would for large means)
        shift = x3[0].mean(axis=1, dtype="float64")
        shift_plane = _plane(shift, length, dtype)
        ones = xp.ones(length, dtype)

        def sums(chunk, work):
            start, stop = chunk
            centered = work.get("scratch", (chunks[0][1],) + x3.shape[1:])[:stop - start]
            xp.subtract(x3[start:stop], shift_plane, out=centered)
            return _row_sums(centered, ones), _row_dots(centered, centered, ones)

        total, squares = _sums_on_threads(sums, chunks, dtype)
        count = x3.shape[0] * length
        mean_shifted = total / count
        return shift + mean_shifted, xp.maximum(squares / count - mean_shifted * mean_shifted, 0)

    def normalize(self, x, mean, invstd, weight, bias, relu):
        """y = x * scale + offset per channel (scale = weight * invstd), clamped by ``relu`` = (max_value,)."""
        xp = get_array_module()
        dtype = x.dtype
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        length = x3.shape[2]
        scale = invstd if weight is None else invstd * weight
        offset = -mean * scale if bias is None else bias - mean * scale
        scale_plane, offset_plane = _plane(scale, length, dtype), _plane(offset, length, dtype)
        out = xp.empty_like(x)
        out3 = out.reshape(x3.shape)

        def normalize(chunk, work):
            start, stop = chunk
            xp.multiply(x3[start:stop], scale_plane, out=out3[start:stop])
            out3[start:stop] += offset_plane
            if relu is not None:
                clamp_into(out3[start:stop], 0, relu[0], out3[start:stop])

        _on_threads(normalize, _sample_chunks(x3), dtype)
        return out

    def backward(self, grad, x, mean, invstd, weight, training, needs_input_grad, relu, out):
        """(dx, dweight, dbias) in two passes: the relu mask and two per-channel sums, then dx."""
        xp = get_array_module()
        dtype = x.dtype
        x3, g3 = x.reshape(x.shape[0], x.shape[1], -1), grad.reshape(x.shape[0], x.shape[1], -1)
        length = x3.shape[2]
        count = x3.shape[0] * length
        chunks = _sample_chunks(x3)
        need_x, need_weight, need_bias = needs_input_grad
        mean_plane = _plane(mean, length, dtype)
        chunk_shape = (chunks[0][1],) + x3.shape[1:]
        grad_x = xp.empty_like(grad) if need_x or relu is not None else None
        if relu is not None:
            # the activation's backward, into grad_x, which then serves as the BN's upstream (pass 2 reads
            # each element before it overwrites it); done chunk by chunk inside the first pass below
            out3, masked = out.reshape(g3.shape), grad_x.reshape(g3.shape)
        need_sums = need_bias or need_weight or (need_x and training)
        ones = xp.ones(length, dtype)

        def first_pass(chunk, work):
            """The relu mask of the chunk (if fused), then its two per-channel sums (if needed, else None)."""
            start, stop = chunk
            scratch = work.get("scratch", chunk_shape)
            upstream = g3
            if relu is not None:
                relu_mask = work.views("relu_mask", lambda: _ReluMask(relu[0], out3, g3, masked, scratch))
                relu_mask(start, stop)
                upstream = masked
            if not need_sums:
                return None
            centered = scratch[:stop - start]
            xp.subtract(x3[start:stop], mean_plane, out=centered)
            return _row_sums(upstream[start:stop], ones), _row_dots(upstream[start:stop], centered, ones)

        sum_grad = sum_grad_xhat = None
        if need_sums:
            sum_grad, sum_grad_centered = _sums_on_threads(first_pass, chunks, dtype)
            sum_grad_xhat = sum_grad_centered * invstd
        elif relu is not None:
            _on_threads(first_pass, chunks, dtype)
        if relu is not None:
            g3 = masked
        if need_x:
            scale = invstd if weight is None else invstd * weight
            dx3 = grad_x.reshape(g3.shape)
            scale_plane = _plane(scale, length, dtype)
            if training:
                # dx = w / sigma * (g - mean(g) - xhat * mean(g * xhat)), with xhat = (x - mean) / sigma
                centered_scale = _plane(-scale * invstd * sum_grad_xhat / count, length, dtype)
                offset_plane = _plane(-scale * sum_grad / count, length, dtype)

                def second_pass(chunk, work):
                    start, stop = chunk
                    centered = work.get("scratch", chunk_shape)[:stop - start]
                    xp.subtract(x3[start:stop], mean_plane, out=centered)
                    centered *= centered_scale
                    xp.multiply(g3[start:stop], scale_plane, out=dx3[start:stop])
                    dx3[start:stop] += centered
                    dx3[start:stop] += offset_plane
            else:
                def second_pass(chunk, work):
                    start, stop = chunk
                    xp.multiply(g3[start:stop], scale_plane, out=dx3[start:stop])
            _on_threads(second_pass, chunks, dtype)
        else:
            grad_x = None
        grad_weight = sum_grad_xhat.astype(dtype) if need_weight else None
        grad_bias = sum_grad.astype(dtype) if need_bias else None
        return grad_x, grad_weight, grad_bias
