"""Numerical gradient checking: analytic gradients against central differences, in float64."""
from __future__ import annotations

from .. import backend
from .tensor import Tensor


def _numerical_gradient(fn, inputs, index, projection, eps):
    xp = backend.get_array_module()
    values = inputs[index].data
    grad = xp.zeros_like(values)
    flat_values, flat_grad = values.reshape(-1), grad.reshape(-1)
    for i in range(flat_values.size):
        original = flat_values[i]
        flat_values[i] = original + eps
        plus = float((fn(*inputs).data * projection).sum())
        flat_values[i] = original - eps
        minus = float((fn(*inputs).data * projection).sum())
        flat_values[i] = original
        flat_grad[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, raise_exception=True, seed=0):
    """Check ``d(sum(fn(*inputs) * v))/d(input)`` = central difference ``(f(x+eps) - f(x-eps)) / 2eps``.

    ``inputs`` are float64 tensors; those with ``requires_grad`` are checked. A fixed random
    projection ``v`` makes every output element count. Returns True, or raises (or returns
    False) naming the input and the worst element.
    """
    xp = backend.get_array_module()
    inputs = list(inputs)
    for position, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != xp.float64:
            raise TypeError(f"gradcheck: input {position} has dtype {t.dtype}; use float64 tensors "
                            "(float32 rounding swamps the finite differences)")
    output = fn(*inputs)
    projection = xp.random.default_rng(seed).standard_normal(output.shape)
    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    output = fn(*inputs)
    output.backward(projection.astype(output.dtype))
    for position, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = t.grad if t.grad is not None else xp.zeros_like(t.data)
        numeric = _numerical_gradient(fn, inputs, position, projection, eps)
        error = xp.abs(analytic - numeric) - (atol + rtol * xp.abs(numeric))
        if (error > 0).any():
            worst = int(xp.argmax(error))
            where = xp.unravel_index(worst, analytic.shape)
            at = tuple(int(i) for i in where)
            message = (f"gradcheck: input {position} (shape {tuple(t.shape)}) gradient mismatch at {at}: "
                       f"analytic {analytic.reshape(-1)[worst]:.6g} vs numerical {numeric.reshape(-1)[worst]:.6g}")
            if raise_exception:
                raise AssertionError(message)
            return False
    return True
