"""The primitive differentiable ops behind ``Tensor``'s arithmetic, reductions and shapes."""
from __future__ import annotations

from ..backend import get_array_module
from ..kernels.threads import matmul
from .function import Function


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and grad.shape[i] != 1)
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad


class Add(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a + b

    def backward(self, grad):
        return (
            unbroadcast(grad, self.a_shape) if self.needs_input_grad[0] else None,
            unbroadcast(grad, self.b_shape) if self.needs_input_grad[1] else None,
        )


class Sub(Function):
    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return a - b

    def backward(self, grad):
        return (
            unbroadcast(grad, self.a_shape) if self.needs_input_grad[0] else None,
            unbroadcast(-grad, self.b_shape) if self.needs_input_grad[1] else None,
        )


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        return (
            unbroadcast(grad * self.b, self.a.shape) if self.needs_input_grad[0] else None,
            unbroadcast(grad * self.a, self.b.shape) if self.needs_input_grad[1] else None,
        )


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, grad):
        grad_a = grad / self.b
        return (
            unbroadcast(grad_a, self.a.shape) if self.needs_input_grad[0] else None,
            unbroadcast(-grad_a * self.a / self.b, self.b.shape) if self.needs_input_grad[1] else None,
        )


class Neg(Function):
    def forward(self, a):
        return -a

    def backward(self, grad):
        return (-grad,)


class PowScalar(Function):
    """a ** exponent for a constant exponent; d/da = exponent * a ** (exponent - 1)."""

    def forward(self, a):
        self.a = a
        return a ** self.exponent

    def backward(self, grad):
        return (grad * self.exponent * self.a ** (self.exponent - 1),)


class Pow(Function):
    """a ** b elementwise; d/da = b a^(b-1), d/db = a^b log a."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a ** b
        return self.out

    def backward(self, grad):
        xp = get_array_module()
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            grad_a = unbroadcast(grad * self.b * self.a ** (self.b - 1), self.a.shape)
        if self.needs_input_grad[1]:
            with xp.errstate(divide="ignore", invalid="ignore"):
                log_a = xp.where(self.a > 0, xp.log(xp.where(self.a > 0, self.a, 1)), 0)
            grad_b = unbroadcast(grad * self.out * log_a, self.b.shape)
        return grad_a, grad_b


class Exp(Function):
    def forward(self, a):
        self.out = get_array_module().exp(a)
        return self.out

    def backward(self, grad):
        return (grad * self.out,)


class Log(Function):
    def forward(self, a):
        self.a = a
        return get_array_module().log(a)

    def backward(self, grad):
        return (grad / self.a,)


class Sqrt(Function):
    def forward(self, a):
        self.out = get_array_module().sqrt(a)
        return self.out

    def backward(self, grad):
        return (grad / (2 * self.out),)


class Abs(Function):
    def forward(self, a):
        self.a = a
        return get_array_module().abs(a)

    def backward(self, grad):
        return (grad * get_array_module().sign(self.a),)


class Clamp(Function):
    """min(max(a, low), high); the gradient passes where a lies inside [low, high]."""

    def forward(self, a):
        xp = get_array_module()
        self.mask = xp.ones(a.shape, dtype=bool)
        if self.low is not None:
            self.mask &= a >= self.low
        if self.high is not None:
            self.mask &= a <= self.high
        return xp.clip(a, self.low, self.high)

    def backward(self, grad):
        return (grad * self.mask,)


def _normalize_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim if ndim else 0 for a in axis)


class Sum(Function):
    def forward(self, a):
        self.shape = a.shape
        self.axes = _normalize_axes(self.axis, a.ndim)
        return a.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        xp = get_array_module()
        if not self.keepdims:
            grad = xp.expand_dims(grad, self.axes)
        return (xp.broadcast_to(grad, self.shape),)


class Mean(Function):
    def forward(self, a):
        self.shape = a.shape
        self.axes = _normalize_axes(self.axis, a.ndim)
        self.count = 1
        for axis in self.axes:
            self.count *= a.shape[axis]
        return a.mean(axis=self.axes, keepdims=self.keepdims)

    def backward(self, grad):
        xp = get_array_module()
        if not self.keepdims:
            grad = xp.expand_dims(grad, self.axes)
        return (xp.broadcast_to(grad / self.count, self.shape),)


class Max(Function):
    """Max over axes; the gradient is shared equally among tied maxima."""

    def forward(self, a):
        self.axes = _normalize_axes(self.axis, a.ndim)
        out = a.max(axis=self.axes, keepdims=True) if self.largest else a.min(axis=self.axes, keepdims=True)
        self.mask = a == out
        return out if self.keepdims else out.squeeze(self.axes)

    def backward(self, grad):
        xp = get_array_module()
        if not self.keepdims:
            grad = xp.expand_dims(grad, self.axes)
        count = self.mask.sum(axis=self.axes, keepdims=True)
        return (self.mask * (grad / count),)


class Reshape(Function):
    def forward(self, a):
        self.in_shape = a.shape
        return a.reshape(self.shape)

    def backward(self, grad):
        return (grad.reshape(self.in_shape),)


class Permute(Function):
    def forward(self, a):
        return a.transpose(self.axes)

    def backward(self, grad):
        xp = get_array_module()
        return (grad.transpose(xp.argsort(self.axes)),)


class BroadcastTo(Function):
    def forward(self, a):
        self.in_shape = a.shape
        return get_array_module().broadcast_to(a, self.shape)

    def backward(self, grad):
        return (unbroadcast(grad, self.in_shape),)


class GetItem(Function):
    """a[index]; the backward scatters with ``add.at`` so repeated indices accumulate."""

    def forward(self, a):
        self.in_shape, self.dtype = a.shape, a.dtype
        return a[self.index]

    def backward(self, grad):
        xp = get_array_module()
        out = xp.zeros(self.in_shape, dtype=grad.dtype)
        xp.add.at(out, self.index, grad)
        return (out,)


class MatMul(Function):
    """a @ b with NumPy's broadcasting of leading (batch) dimensions."""

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0 or a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: shapes {tuple(a.shape)} and {tuple(b.shape)} do not line up: the first's "
                             "last dimension must equal the second's "
                             f"{'second-to-last' if b.ndim > 1 else 'only'} dimension (use .T or reshape)")
        self.a, self.b = a, b
        return matmul(a, b)

    def backward(self, grad):
        xp = get_array_module()
        a, b = self.a, self.b
        grad_a = grad_b = None
        if self.needs_input_grad[0]:
            if b.ndim == 1:
                grad_a = xp.multiply.outer(grad, b) if a.ndim > 1 else grad * b
            else:
                g = grad[..., None, :] if a.ndim == 1 else grad
                grad_a = matmul(g, xp.swapaxes(b, -1, -2))
                if a.ndim == 1:
                    grad_a = grad_a[..., 0, :]
            grad_a = unbroadcast(grad_a, a.shape)
        if self.needs_input_grad[1]:
            if a.ndim == 1:
                grad_b = xp.multiply.outer(a, grad) if b.ndim > 1 else grad * a
            else:
                g = grad[..., :, None] if b.ndim == 1 else grad
                grad_b = matmul(xp.swapaxes(a, -1, -2), g)
                if b.ndim == 1:
                    grad_b = grad_b[..., 0]
            grad_b = unbroadcast(grad_b, b.shape)
        return grad_a, grad_b


class Concat(Function):
    def forward(self, *arrays):
        self.sizes = [a.shape[self.axis] for a in arrays]
        return get_array_module().concatenate(arrays, axis=self.axis)

    def backward(self, grad):
        xp = get_array_module()
        bounds = xp.cumsum(self.sizes)[:-1]
        pieces = xp.split(grad, bounds, axis=self.axis)
        return tuple(p if need else None for p, need in zip(pieces, self.needs_input_grad))


class Stack(Function):
    def forward(self, *arrays):
        return get_array_module().stack(arrays, axis=self.axis)

    def backward(self, grad):
        xp = get_array_module()
        count = grad.shape[self.axis]
        return tuple(
            xp.take(grad, i, axis=self.axis) if need else None
            for i, need in zip(range(count), self.needs_input_grad)
        )


class Where(Function):
    """where(condition, a, b); the condition is a constant mask."""

    def forward(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape
        return get_array_module().where(self.condition, a, b)

    def backward(self, grad):
        xp = get_array_module()
        zero = xp.zeros((), dtype=grad.dtype)
        return (
            unbroadcast(xp.where(self.condition, grad, zero), self.a_shape) if self.needs_input_grad[0] else None,
            unbroadcast(xp.where(self.condition, zero, grad), self.b_shape) if self.needs_input_grad[1] else None,
        )
