"""ShuffleNet's channel shuffle: interleave the channels of ``groups`` groups so the next grouped conv mixes them."""
from __future__ import annotations

import numbers

from ..autograd import Function
from .activation import as_float_tensor

__all__ = ["channel_shuffle"]


def _shuffle(array, groups):
    """(N, g*k, ...) -> (N, g, k, ...) -> (N, k, g, ...) -> (N, g*k, ...): channel g_i*k + k_i moves to k_i*g + g_i."""
    batch, channels = array.shape[:2]
    rest = array.shape[2:]
    grouped = array.reshape((batch, groups, channels // groups) + rest)
    return grouped.swapaxes(1, 2).reshape(array.shape)


class _ChannelShuffle(Function):
    def forward(self, x):
        return _shuffle(x, self.groups)

    def backward(self, grad):
        # the inverse permutation is the shuffle with the other factor: C / groups groups
        return (_shuffle(grad, grad.shape[1] // self.groups),)


def channel_shuffle(input, groups):
    """out[:, k*g + i] = x[:, i*(C/g) + k] for group i < g and k < C/g (Zhang et al., 2018)."""
    x = as_float_tensor("channel_shuffle", input)
    if x.ndim < 3:
        raise ValueError(f"channel_shuffle: expected an input of shape (N, C, ...) with at least 3 dimensions, "
                         f"got {tuple(x.shape)}")
    if not isinstance(groups, numbers.Integral) or groups <= 0:
        raise ValueError(f"channel_shuffle: groups must be a positive integer, got {groups!r}")
    channels = x.shape[1]
    if channels % groups:
        raise ValueError(f"channel_shuffle: the input of shape {tuple(x.shape)} has {channels} channels, which is "
                         f"not divisible by groups={groups}; use a channel count that is a multiple of {groups}")
    return _ChannelShuffle.apply(x, groups=int(groups))
