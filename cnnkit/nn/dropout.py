"""Dropout layers: active in ``train()`` mode, the identity after ``eval()``."""
from __future__ import annotations

from .. import functional as F
from ..functional.dropout import check_probability
from .module import Module

__all__ = ["Dropout", "Dropout2d"]


class _DropoutNd(Module):
    def __init__(self, p=0.5, inplace=False):
        super().__init__()
        check_probability(type(self).__name__, p)
        self.p = p
        self.inplace = inplace

    def extra_repr(self):
        return f"p={self.p}, inplace={self.inplace}"


class Dropout(_DropoutNd):
    """Zero each element with probability p and scale the rest by 1 / (1 - p) (Srivastava et al., 2014)."""

    def forward(self, input):
        return F.dropout(input, self.p, self.training)


class Dropout2d(_DropoutNd):
    """Zero whole channels of (N, C, H, W) with probability p, scale the rest by 1 / (1 - p)."""

    def forward(self, input):
        return F.dropout2d(input, self.p, self.training)
