"""Batch normalisation and local response normalisation (channels on axis 1), with fused backward passes."""
from __future__ import annotations

import numbers

from ..autograd import Function, Tensor
from ..backend import get_array_module
from .activation import as_float_tensor

__all__ = ["batch_norm", "local_response_norm"]


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def _channel_shape(x):
    """(1, C, 1, ...): broadcasts a per-channel vector against ``x``."""
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


# ------------------------------------------------------------------------------------------------ batch norm
class _BatchNorm(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias, statistics per channel over every other axis."""

    def forward(self, x, weight, bias):
        xp = get_array_module()
        axes = (0,) + tuple(range(2, x.ndim))
        shape = _channel_shape(x)
        if self.training:
            mean = x.mean(axis=axes)
            centered = x - mean.reshape(shape)
            var = (centered * centered).mean(axis=axes)
            self._update_running(mean, var, x.size // x.shape[1])
        else:
            mean = self.running_mean.astype(x.dtype, copy=False)
            var = self.running_var.astype(x.dtype, copy=False)
            centered = x - mean.reshape(shape)
        self.invstd = (1 / xp.sqrt(var + self.eps)).astype(x.dtype, copy=False)
        self.xhat = centered * self.invstd.reshape(shape)
        self.weight, self.axes = weight, axes
        out = self.xhat if weight is None else self.xhat * weight.reshape(shape)
        if bias is not None:
            out = out + bias.reshape(shape)
        return out

    def _update_running(self, mean, var, count):
        # PyTorch's rule: the running variance is the unbiased (n - 1) estimate, the batch is normalised
        # with the biased one
        momentum = self.momentum
        if self.running_mean is not None:
            self.running_mean[...] = (1 - momentum) * self.running_mean + momentum * mean
        if self.running_var is not None:
            self.running_var[...] = (1 - momentum) * self.running_var + momentum * var * (count / (count - 1))

    def backward(self, grad):
        xhat, axes, shape = self.xhat, self.axes, _channel_shape(self.xhat)
        need_x, need_weight, need_bias = self.needs_input_grad
        sum_grad = grad.sum(axis=axes) if (need_bias or (need_x and self.training)) else None
        sum_grad_xhat = (grad * xhat).sum(axis=axes) if (need_weight or (need_x and self.training)) else None
        grad_x = None
        if need_x:
            scale = self.invstd if self.weight is None else self.weight * self.invstd
            if self.training:
                # the classic fused formula: dx = w / sigma * (g - mean(g) - xhat * mean(g * xhat))
                count = xhat.size // xhat.shape[1]
                grad_x = scale.reshape(shape) * (grad - (sum_grad / count).reshape(shape)
                                                 - xhat * (sum_grad_xhat / count).reshape(shape))
            else:
                grad_x = grad * scale.reshape(shape)
        return grad_x, sum_grad_xhat if need_weight else None, sum_grad if need_bias else None


def _check_vector(op, name, value, channels, input_shape):
    if value is not None and tuple(value.shape) != (channels,):
        raise ValueError(f"{op}: {name} has shape {tuple(value.shape)} but the input of shape {input_shape} has "
                         f"{channels} channels (axis 1); {name} must have shape ({channels},) — "
                         "set num_features to the channel count of the previous layer")


def batch_norm_layer(input, running_mean, running_var, weight, bias, training, momentum, eps, layer):
    """batch_norm with errors naming ``layer`` (used by nn.BatchNorm1d/2d)."""
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
                            training=bool(training), momentum=float(momentum or 0.0), eps=float(eps))


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """y = (x - E[x]) / sqrt(Var[x] + eps) * weight + bias per channel (axis 1 of (N, C) or (N, C, H, W)).

    Training: batch statistics (biased variance), and the running statistics are updated in place,
    r = (1 - momentum) r + momentum s, with the unbiased variance. Otherwise the running statistics are used.
    """
    return batch_norm_layer(input, running_mean, running_var, weight, bias, training, momentum, eps, "batch_norm")


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
