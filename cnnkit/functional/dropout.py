"""Inverted dropout: zero elements (or whole channels) with probability p, scale the rest by 1 / (1 - p).

Randomness comes from ``cnnkit.backend.get_rng()``, so ``cnnkit.manual_seed`` makes it reproducible.
``inplace=True`` is accepted for PyTorch compatibility; the result is always a new tensor.
"""
from __future__ import annotations

import numbers

from ..autograd import Function
from ..backend import get_array_module, get_rng
from .activation import as_float_tensor

__all__ = ["dropout", "dropout2d"]


class _ScaleByMask(Function):
    """y = x * mask, where mask holds 0 or 1 / (1 - p) and broadcasts against x."""

    def forward(self, x):
        return x * self.mask

    def backward(self, grad):
        return (grad * self.mask,)


def check_probability(op, p):
    """Raise unless 0 <= p <= 1 (torch's message)."""
    if not isinstance(p, numbers.Real) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
        raise ValueError(f"{op}: dropout probability has to be between 0 and 1, but got {p!r}")
    return float(p)


def _masked(op, input, p, training, mask_shape):
    x = as_float_tensor(op, input)
    p = check_probability(op, p)
    if not training or p == 0.0:
        return x
    xp = get_array_module()
    if p == 1.0:  # everything dropped; 1 / (1 - p) would be infinite
        mask = xp.zeros(mask_shape(x.shape), dtype=x.dtype)
    else:
        keep = get_rng().random(mask_shape(x.shape), dtype=x.dtype) >= p
        mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - p))
    return _ScaleByMask.apply(x, mask=mask)


def dropout(input, p=0.5, training=True, inplace=False):
    """y = x * m / (1 - p), m ~ Bernoulli(1 - p) per element; identity when not training."""
    return _masked("dropout", input, p, training, lambda shape: shape)


def _channel_mask_shape(shape):
    if len(shape) not in (3, 4):
        raise ValueError(f"dropout2d: expected a 4-D input (N, C, H, W) or 3-D (N, C, L), got shape {shape}")
    return tuple(shape[:2]) + (1,) * (len(shape) - 2)


def dropout2d(input, p=0.5, training=True, inplace=False):
    """y[n, c] = x[n, c] * m[n, c] / (1 - p), one Bernoulli(1 - p) draw per channel (Tompson et al., 2015)."""
    shape = tuple(input.shape)
    _channel_mask_shape(shape)  # the shape error comes before any other check
    return _masked("dropout2d", input, p, training, _channel_mask_shape)
