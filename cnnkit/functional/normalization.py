"""Batch normalisation (the textbook forward and its three-term backward) and local response normalisation."""
from __future__ import annotations

import numbers

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..kernels import pick
from .activation import as_float_tensor

__all__ = ["batch_norm", "batch_norm_relu", "local_response_norm"]


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


# ------------------------------------------------------------------------------------------------ batch norm
def _per_channel(vector, ndim):
    """A per-channel vector (C,) shaped (1, C, 1, ...) to broadcast against an ``ndim``-dimensional input."""
    return vector.reshape((1, -1) + (1,) * (ndim - 2))


def _batch_statistics(x):
    """mean = E[x] and biased var = E[(x - mean)^2] per channel (float64), over every axis but 1."""
    axes = (0,) + tuple(range(2, x.ndim))
    if x.size == 0:  # an empty batch: no statistics (its output is empty too)
        zeros = get_array_module().zeros(x.shape[1], "float64")
        return zeros, zeros
    mean = x.mean(axis=axes, dtype="float64")
    centered = x - _per_channel(mean, x.ndim)
    return mean, (centered * centered).mean(axis=axes, dtype="float64")


def _relu_mask(out, relu):
    """Where the fused activation passes the gradient: 0 < out (< max_value)."""
    max_value = relu[0]
    return (out > 0) if max_value is None else (out > 0) & (out < max_value)


class _BatchNorm(Function):
    """y = weight * xhat + bias with xhat = (x - mean) / sqrt(var + eps), statistics per channel over all other axes.

    Training normalises with the batch's mean and biased variance and updates the running statistics; eval uses
    the running ones. With ``relu`` set (``(max_value,)``: None for relu, 6 for relu6) y is also clamped to
    [0, max_value], the fused op that ``nn.utils.fuse`` gives a BatchNorm followed by a ReLU.
    """

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    relu = None

    def forward(self, x, weight, bias):
        xp = get_array_module()
        kernel = pick("batch_norm", x.shape)
        if self.training:
            mean, var = kernel.statistics(x) if kernel is not None else _batch_statistics(x)
            self._update_running(mean, var, x.size // x.shape[1])
        else:
            mean = self.running_mean.astype("float64")
            var = self.running_var.astype("float64")
        invstd = 1 / xp.sqrt(var + self.eps)
        if kernel is not None:
            out = kernel.normalize(x, mean, invstd, weight, bias, self.relu)
        else:
            out = self._normalize(x, mean, invstd, weight, bias)
        if self.needs_input_grad:
            self.kernel, self.x, self.mean, self.invstd, self.weight = kernel, x, mean, invstd, weight
            self.out = out if self.relu is not None else None
        return out

    def _normalize(self, x, mean, invstd, weight, bias):
        """y = weight * (x - mean) * invstd + bias, then clamp(y, 0, max_value) when a relu is fused."""
        xp = get_array_module()
        xhat = ((x - _per_channel(mean, x.ndim)) * _per_channel(invstd, x.ndim)).astype(x.dtype)
        out = xhat if weight is None else xhat * _per_channel(weight, x.ndim)
        out = out if bias is None else out + _per_channel(bias, x.ndim)
        if self.relu is not None:
            out = xp.clip(out, 0, xp.inf if self.relu[0] is None else self.relu[0])
        return out

    def _update_running(self, mean, var, count):
        """r = (1 - momentum) r + momentum s, with the unbiased variance var * n / (n - 1) (PyTorch's rule)."""
        if count == 0:  # an empty batch has no statistics: PyTorch leaves the running ones as they are
            return
        momentum = self.momentum
        if self.running_mean is not None:
            self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
        if self.running_var is not None:
            self.running_var[...] = (1 - momentum) * self.running_var + momentum * var * (count / (count - 1))

    def backward(self, grad):
        if self.kernel is not None:
            return self.kernel.backward(grad, self.x, self.mean, self.invstd, self.weight, self.training,
                                        self.needs_input_grad, self.relu, self.out)
        x, dtype = self.x, self.x.dtype
        if self.relu is not None:
            grad = grad * _relu_mask(self.out, self.relu)
        axes = (0,) + tuple(range(2, x.ndim))
        count = x.size // x.shape[1]
        invstd = _per_channel(self.invstd, x.ndim)
        xhat = (x - _per_channel(self.mean, x.ndim)) * invstd
        sum_grad = grad.sum(axis=axes, dtype="float64")  # dL/dbias = sum of g
        sum_grad_xhat = (grad * xhat).sum(axis=axes, dtype="float64")  # dL/dweight = sum of g * xhat
        scale = invstd if self.weight is None else invstd * _per_channel(self.weight, x.ndim)
        if not self.training:  # the statistics are constants: dx = weight / sigma * g
            grad_x = scale * grad
        elif count == 0:
            grad_x = get_array_module().zeros_like(x)
        else:  # dx = weight / sigma * (g - mean(g) - xhat * mean(g * xhat)): the three-term backward
            grad_x = scale * (grad - _per_channel(sum_grad / count, x.ndim)
                              - xhat * _per_channel(sum_grad_xhat / count, x.ndim))
        need_x, need_weight, need_bias = self.needs_input_grad
        return (grad_x.astype(dtype) if need_x else None, sum_grad_xhat.astype(dtype) if need_weight else None,
                sum_grad.astype(dtype) if need_bias else None)


def _check_vector(op, name, value, channels, input_shape):
    if value is not None and tuple(value.shape) != (channels,):
        raise ValueError(f"{op}: {name} has shape {tuple(value.shape)} but the input of shape {input_shape} has "
                         f"{channels} channels (axis 1); {name} must have shape ({channels},) — "
                         "set num_features to the channel count of the previous layer")


def batch_norm_layer(input, running_mean, running_var, weight, bias, training, momentum, eps, layer, relu=None):
    """batch_norm with errors naming ``layer`` (used by nn.BatchNorm1d/2d/3d); ``relu=(max_value,)`` fuses a relu."""
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
        if count == 1:  # an empty batch is allowed, as in PyTorch (its running statistics stay as they are)
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
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias per channel (axis 1 of ``(N, C, *spatial)``).

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
