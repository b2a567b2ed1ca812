"""Batch normalisation and local response normalisation (channels on axis 1), with fused backward passes."""
from __future__ import annotations

import numbers

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..kernels.threads import parallel_for
from ..kernels.workspace import Workspace
from .activation import as_float_tensor, clamp_into, inside_into

__all__ = ["batch_norm", "batch_norm_relu", "local_response_norm"]


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def _channel_shape(x):
    """(1, C, 1, ...): broadcasts a per-channel vector against ``x``."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


# ------------------------------------------------------------------------------------------------ batch norm
# Samples per chunk are chosen so that a chunk (and its per-channel planes) stays in cache: every full-size
# array is then read from memory once per pass, and the few elementwise steps of a pass run in cache.
# 1 MiB measured 8% less CPU time than 256 KiB over MobileNet-v2's and ResNet-18's activation shapes
# (fewer NumPy calls on small maps, where 256 KiB was a single sample per chunk). With the chunks shared
# out over two threads, 2 MiB beat 1 MiB on 32x32 maps (BN + ReLU6 forward + backward, batch 64: 144
# channels 47.8 -> 40.0 ms, 64 channels 18.4 -> 15.6 ms) and tied on the smaller ones.
CHUNK_BYTES = 2 << 20
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
    """(C, L) copy of a per-channel vector: contiguous operands run about twice as fast as a broadcast column."""
    plane = get_array_module().empty((len(vector), length), dtype)
    plane[...] = vector[:, None]  # one call: broadcast_to + ascontiguousarray cost about 7 us more per plane
    return plane


def _row_sums(block, ones):
    """sum over N and L of block (N, C, L), per channel, accumulated in float64 across samples."""
    return (block @ ones).sum(axis=0, dtype="float64")


def _row_dots(a, scratch, ones):
    """sum over N and L of a * scratch (both (N, C, L)), per channel, accumulated in float64 across samples.

    Overwrites ``scratch``. Short rows (small maps) multiply first and sum every row in one matrix-vector
    product: vecdot's per-row overhead made it 2-4x slower there (measured at L = 16 and 64); long rows
    keep vecdot, which needs no extra pass.
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


class _BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics per channel over every other axis.

    Works on x as (N, C, L) in sample chunks, one memory pass per statistic: forward computes the
    statistics in one pass (sums around a per-channel shift, so the variance does not cancel) and
    y = x * scale + offset in another; backward keeps x, not xhat, and needs two passes as well.

    With ``relu`` set (``(max_value,)``, max_value None for relu, 6 for relu6) the clamp is applied to
    each chunk while it is in cache, and backward masks the gradient from the kept output (which the
    next layer holds anyway) inside its first pass: no separate activation pass, and no mask array.
    """

    relu = None

    def forward(self, x, weight, bias):
        xp = get_array_module()
        dtype = x.dtype
        x3 = x.reshape(x.shape[0], x.shape[1], -1)
        length = x3.shape[2]
        chunks = _sample_chunks(x3)
        if self.training:
            mean, var = self._batch_statistics(x3, chunks)
            self._update_running(mean, var, x3.shape[0] * length)
        else:
            mean = self.running_mean.astype("float64")
            var = self.running_var.astype("float64")
        invstd = 1 / xp.sqrt(var + self.eps)
        scale = invstd if weight is None else invstd * weight
        offset = -mean * scale if bias is None else bias - mean * scale
        scale_plane, offset_plane = _plane(scale, length, dtype), _plane(offset, length, dtype)
        out = xp.empty_like(x)
        out3 = out.reshape(x3.shape)

        def normalize(chunk, work):
            start, stop = chunk
            xp.multiply(x3[start:stop], scale_plane, out=out3[start:stop])
            out3[start:stop] += offset_plane
            if self.relu is not None:
                clamp_into(out3[start:stop], 0, self.relu[0], out3[start:stop])

        _on_threads(normalize, chunks, dtype)
        if self.needs_input_grad:
            self.x, self.mean, self.invstd, self.weight = x, mean, invstd, weight
            self.out = out if self.relu is not None else None
        return out

    @staticmethod
    def _batch_statistics(x3, chunks):
        """Per-channel mean and biased variance (float64) of x3 (N, C, L) in one pass."""
        xp = get_array_module()
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

    def _update_running(self, mean, var, count):
        # PyTorch's rule: the running variance is the unbiased (n - 1) estimate, the batch is normalised
        # with the biased one
        momentum = self.momentum
        if self.running_mean is not None:
            self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
        if self.running_var is not None:
            self.running_var[...] = (1 - momentum) * self.running_var + momentum * var * (count / (count - 1))

    def backward(self, grad):
        xp = get_array_module()
        x, mean, invstd = self.x, self.mean, self.invstd
        dtype = x.dtype
        x3, g3 = x.reshape(x.shape[0], x.shape[1], -1), grad.reshape(x.shape[0], x.shape[1], -1)
        length = x3.shape[2]
        count = x3.shape[0] * length
        chunks = _sample_chunks(x3)
        need_x, need_weight, need_bias = self.needs_input_grad
        mean_plane = _plane(mean, length, dtype)
        chunk_shape = (chunks[0][1],) + x3.shape[1:]
        grad_x = xp.empty_like(grad) if need_x or self.relu is not None else None
        if self.relu is not None:
            # the activation's backward, into grad_x, which then serves as the BN's upstream (pass 2 reads
            # each element before it overwrites it); done chunk by chunk inside the first pass below
            out3, masked = self.out.reshape(g3.shape), grad_x.reshape(g3.shape)
        need_sums = need_bias or need_weight or (need_x and self.training)
        ones = xp.ones(length, dtype)

        def first_pass(chunk, work):
            """The relu mask of the chunk (if fused), then its two per-channel sums (if needed, else None)."""
            start, stop = chunk
            scratch = work.get("scratch", chunk_shape)
            upstream = g3
            if self.relu is not None:
                relu_mask = work.views("relu_mask", lambda: _ReluMask(self.relu[0], out3, g3, masked, scratch))
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
        elif self.relu is not None:
            _on_threads(first_pass, chunks, dtype)
        if self.relu is not None:
            g3 = masked
        if need_x:
            scale = invstd if self.weight is None else invstd * self.weight
            dx3 = grad_x.reshape(g3.shape)
            scale_plane = _plane(scale, length, dtype)
            if self.training:
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


def _check_vector(op, name, value, channels, input_shape):
    if value is not None and tuple(value.shape) != (channels,):
        raise ValueError(f"{op}: {name} has shape {tuple(value.shape)} but the input of shape {input_shape} has "
                         f"{channels} channels (axis 1); {name} must have shape ({channels},) — "
                         "set num_features to the channel count of the previous layer")


def batch_norm_layer(input, running_mean, running_var, weight, bias, training, momentum, eps, layer, relu=None):
    """batch_norm with errors naming ``layer`` (used by nn.BatchNorm1d/2d); ``relu=(max_value,)`` fuses a relu."""
    x = as_float_tensor(layer, input)
    shape = tuple(x.shape)
    if x.ndim < 2:
        raise ValueError(f"{layer}: expected an input of shape (N, C, ...) with at least 2 dimensions, got {shape}")
    channels = shape[1]
    for name, value in (("running_mean", running_mean), ("running_var", running_var), ("weight", weight),
                        ("bias", bias)):
        _check_vector(layer, name, value, channels, shape)
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.dtype != x.dtype:
            raise TypeError(f"{layer}: input ({x.dtype}) and {name} ({value.dtype}) must have the same dtype; "
                            "convert with x.to(dtype) or module.to(dtype) first")
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{layer}: running_mean and running_var are required when training=False")
    if training:
        count = x.data.size // channels if channels else 0
        if count <= 1:
            raise ValueError(f"{layer}: expected more than 1 value per channel when training, got input of shape "
                             f"{shape}; use a batch of at least 2 (or call .eval())")
        if momentum is None:
            raise ValueError(f"{layer}: momentum=None (a cumulative average) needs the batch count; use "
                             "nn.BatchNorm2d(momentum=None), or pass momentum=1/num_batches")
    weight = weight if weight is None or isinstance(weight, Tensor) else Tensor(weight)
    bias = bias if bias is None or isinstance(bias, Tensor) else Tensor(bias)
    return _BatchNorm.apply(x, weight, bias, running_mean=_raw(running_mean), running_var=_raw(running_var),
                            training=bool(training), momentum=float(momentum or 0.0), eps=float(eps), relu=relu)


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias per channel (axis 1 of (N, C) or (N, C, H, W)).

    Training: batch statistics (biased variance), and the running statistics are updated in place,
    r = (1 - momentum) r + momentum s, with the unbiased variance. Otherwise the running statistics are used.
    """
    return batch_norm_layer(input, running_mean, running_var, weight, bias, training, momentum, eps, "batch_norm")


def batch_norm_relu(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
                    eps=1e-5, max_value=None):
    """min(max(batch_norm(x), 0), max_value) in one op: relu (max_value None) or relu6 (max_value=6) fused in.

    The same values and gradients as ``relu(batch_norm(...))``, with one memory pass less each way
    (a cnnkit extension: torch fuses these only in its compilers). ``max_value`` as in Keras' ReLU.
    """
    if max_value is not None and not (isinstance(max_value, numbers.Real) and max_value > 0):
        raise ValueError(f"batch_norm_relu: max_value must be a positive number or None, got {max_value!r}")
    relu = (None if max_value is None else float(max_value),)
    return batch_norm_layer(input, running_mean, running_var, weight, bias, training, momentum, eps,
                            "batch_norm_relu", relu=relu)


# -------------------------------------------------------------------------------------- local response norm
def _window_sum(values, before, after):
    """s[:, c] = sum of values[:, j] for c - before <= j <= c + after (zeros outside the channel range)."""
    xp = get_array_module()
    channels = values.shape[1]
    total = xp.zeros_like(values)
    for offset in range(-before, after + 1):  # the window is a handful of channels: one slice add each
        lo, hi = max(0, -offset), min(channels, channels - offset)
        if lo < hi:
            total[:, lo:hi] += values[:, lo + offset:hi + offset]
    return total


class _LocalResponseNorm(Function):
    """y_c = x_c / (k + alpha/size * sum_{j in window(c)} x_j^2)^beta."""

    def forward(self, x):
        xp = get_array_module()
        before, after = self.size // 2, (self.size - 1) // 2
        self.x = x
        self.base = self.k + (self.alpha / self.size) * _window_sum(x * x, before, after)
        self.scale = xp.power(self.base, -self.beta)
        return x * self.scale

    def backward(self, grad):
        # dx_i = g_i s_i - 2 alpha beta / size * x_i * sum_{c: i in window(c)} g_c x_c s_c / base_c
        before, after = self.size // 2, (self.size - 1) // 2
        x = self.x
        spread = grad * x * self.scale / self.base
        reverse = _window_sum(spread, after, before)  # channel i lies in window(c) for c in [i - after, i + before]
        return (grad * self.scale - (2 * self.alpha * self.beta / self.size) * x * reverse,)


def local_response_norm(input, size, alpha=1e-4, beta=0.75, k=1.0):
    """y_c = x_c / (k + alpha/n * sum_{j=c-n//2}^{c+(n-1)//2} x_j^2)^beta across channels (AlexNet's LRN)."""
    x = as_float_tensor("local_response_norm", input)
    if x.ndim < 3:
        raise ValueError(f"local_response_norm: expected an input with at least 3 dimensions (N, C, ...), got "
                         f"shape {tuple(x.shape)}; add a batch dimension with x.unsqueeze(0)")
    if not isinstance(size, numbers.Integral) or size <= 0:
        raise ValueError(f"local_response_norm: size must be a positive integer, got {size!r}")
    return _LocalResponseNorm.apply(x, size=int(size), alpha=float(alpha), beta=float(beta), k=float(k))
