"""``Parameter``: a tensor that a ``Module`` registers as learnable."""
from __future__ import annotations

from ..autograd import Tensor


class Parameter(Tensor):
    """A leaf tensor with ``requires_grad=True`` by default, registered when set on a Module."""

    __slots__ = ()

    def __init__(self, data, requires_grad=True):
        super().__init__(data.data if isinstance(data, Tensor) else data)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self):
        return "Parameter containing:\n" + super().__repr__()
