"""Transformations of whole models, as torch.nn.utils holds them."""
from .fusion import fuse

__all__ = ["fuse"]
