"""Functions that make tensors: from data, filled, random, and joined (``cat``/``stack``/``where``)."""
from __future__ import annotations

from .. import backend
from . import ops
from .tensor import Tensor, _operand


def _dtype(dtype):
    return backend.get_default_dtype() if dtype is None else dtype


def tensor(data, dtype=None, requires_grad=False):
    """Build a tensor from Python data or an array (Python floats become float32)."""
    return Tensor(data, dtype=dtype, requires_grad=requires_grad)


def from_numpy(array):
    """Wrap a NumPy array without copying; its dtype is kept."""
    return Tensor._wrap(backend.get_array_module().asarray(array))


def _shape(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = size[0]
    return tuple(int(s) for s in size)


def zeros(*size, dtype=None, requires_grad=False):
    return Tensor(backend.get_array_module().zeros(_shape(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad=False):
    return Tensor(backend.get_array_module().ones(_shape(size), dtype=_dtype(dtype)), requires_grad=requires_grad)


def full(size, fill_value, dtype=None, requires_grad=False):
    data = backend.get_array_module().full(_shape((size,)), fill_value, dtype=_dtype(dtype))
    return Tensor(data, requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return Tensor(backend.get_array_module().zeros(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return Tensor(backend.get_array_module().ones(t.shape, dtype=dtype or t.dtype), requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None):
    xp = backend.get_array_module()
    values = xp.arange(start, end, step) if end is not None else xp.arange(start)
    return Tensor(values if dtype is None else values.astype(dtype))


def randn(*size, dtype=None, requires_grad=False):
    """Standard normal samples from the global generator (``manual_seed``)."""
    values = backend.get_rng().standard_normal(_shape(size)).astype(_dtype(dtype))
    return Tensor(values, requires_grad=requires_grad)


def rand(*size, dtype=None, requires_grad=False):
    """Uniform [0, 1) samples from the global generator."""
    values = backend.get_rng().random(_shape(size)).astype(_dtype(dtype))
    return Tensor(values, requires_grad=requires_grad)


def randint(low, high, size, dtype="int64"):
    return Tensor(backend.get_rng().integers(low, high, size=_shape((size,))).astype(dtype))


def _as_tensors(tensors, name):
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: expected a non-empty sequence of tensors")
    return [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]


def cat(tensors, dim=0):
    """Concatenate along an existing dimension; shapes must agree elsewhere."""
    tensors = _as_tensors(tensors, "cat")
    ndim = tensors[0].ndim
    axis = dim % ndim
    for t in tensors[1:]:
        if t.ndim != ndim or any(a != b for i, (a, b) in enumerate(zip(t.shape, tensors[0].shape)) if i != axis):
            raise ValueError(f"cat: shapes {[tuple(t.shape) for t in tensors]} differ outside dimension {dim}; "
                             f"all inputs must match except along dim={dim}")
    return ops.Concat.apply(*tensors, axis=axis)


def stack(tensors, dim=0):
    """Join equal-shaped tensors along a new dimension."""
    tensors = _as_tensors(tensors, "stack")
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors must have the same shape, got {[tuple(t.shape) for t in tensors]}")
    return ops.Stack.apply(*tensors, axis=dim % (tensors[0].ndim + 1))


def where(condition, input, other):  # noqa: A002  (torch's names)
    """Elementwise ``input`` where ``condition`` else ``other``; differentiable in both values."""
    condition = condition.data if isinstance(condition, Tensor) else backend.get_array_module().asarray(condition)
    like = input if isinstance(input, Tensor) else other
    return ops.Where.apply(_operand(input, like), _operand(other, like), condition=condition)
