"""Parameter-free layers that only move data around: Identity, Flatten, Unflatten, ChannelShuffle."""
from __future__ import annotations

import numbers

from .. import functional as F
from .module import Module

__all__ = ["Identity", "Flatten", "Unflatten", "ChannelShuffle"]


class Identity(Module):
    """Returns its input; accepts and ignores any arguments (a placeholder, as torch.nn.Identity)."""

    def __init__(self, *args, **kwargs):
        super().__init__()

    def forward(self, input):
        return input


class Flatten(Module):
    """Merge dimensions start_dim..end_dim into one: (N, C, H, W) -> (N, C*H*W) by default."""

    def __init__(self, start_dim=1, end_dim=-1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):
        ndim = input.ndim
        if not (-ndim <= self.start_dim < ndim and -ndim <= self.end_dim < ndim) and ndim > 0:
            raise ValueError(f"Flatten(start_dim={self.start_dim}, end_dim={self.end_dim}): dimensions out of range "
                             f"for an input of shape {tuple(input.shape)}")
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dimension ``dim`` into ``unflattened_size``: (N, 12) -> (N, 3, 2, 2) with dim=1, size (3, 2, 2)."""

    def __init__(self, dim, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):
        shape = tuple(input.shape)
        dim = self.dim % len(shape) if shape else self.dim
        sizes = list(self.unflattened_size)
        known = 1
        for size in sizes:
            known *= size if size != -1 else 1
        if sizes.count(-1) == 1 and known and shape[dim] % known == 0:
            sizes[sizes.index(-1)] = shape[dim] // known
        product = 1
        for size in sizes:
            product *= size
        if product != shape[dim] or sizes.count(-1):
            raise ValueError(f"Unflatten(dim={self.dim}, unflattened_size={self.unflattened_size}): dimension {dim} "
                             f"of the input of shape {shape} has size {shape[dim]}, which is not the product of "
                             f"{self.unflattened_size}")
        return input.reshape(shape[:dim] + tuple(sizes) + shape[dim + 1:])

    def extra_repr(self):
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class ChannelShuffle(Module):
    """Interleave the channels of ``groups`` groups: (N, g*k, H, W) -> groups of k read column-wise.

    Zhang, Zhou, Lin and Sun, "ShuffleNet: An Extremely Efficient Convolutional Neural Network for
    Mobile Devices" (CVPR 2018), so that the next grouped convolution mixes information across groups.
    """

    def __init__(self, groups):
        super().__init__()
        if not isinstance(groups, numbers.Integral) or groups <= 0:
            raise ValueError(f"ChannelShuffle: groups must be a positive integer, got {groups!r}")
        self.groups = int(groups)

    def forward(self, input):
        return F.channel_shuffle(input, self.groups)

    def extra_repr(self):
        return f"groups={self.groups}"
