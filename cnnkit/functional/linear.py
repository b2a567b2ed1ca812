"""The fully connected (affine) op: y = x W^T + b over the last dimension."""
from __future__ import annotations

from ..autograd import Function, Tensor
from ..kernels.threads import matmul
from .activation import as_float_tensor

__all__ = ["linear"]


class _Linear(Function):
    def forward(self, x, weight, bias):
        self.x, self.weight = x, weight
        out = matmul(x, weight.T)
        if bias is not None:
            out += bias
        return out

    def backward(self, grad):
        out_features, in_features = self.weight.shape
        rows = grad.reshape(-1, out_features)  # every leading dimension is a batch dimension
        grad_x = matmul(grad, self.weight) if self.needs_input_grad[0] else None
        grad_weight = matmul(rows.T, self.x.reshape(-1, in_features)) if self.needs_input_grad[1] else None
        grad_bias = rows.sum(axis=0) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


def _shape(value):
    return tuple(value.shape)


def check_linear(layer, input, weight, bias):
    """Clear errors for linear's shapes and dtypes, naming ``layer``."""
    if len(_shape(weight)) != 2:
        raise ValueError(f"{layer}: weight must be 2-D (out_features, in_features), got shape {_shape(weight)}")
    out_features, in_features = _shape(weight)
    if len(_shape(input)) == 0 or _shape(input)[-1] != in_features:
        raise ValueError(f"{layer}: input of shape {_shape(input)} does not match weight of shape {_shape(weight)}: "
                         f"the input's last dimension must be in_features={in_features}. Flatten the input "
                         f"(e.g. nn.Flatten()) or set in_features to {_shape(input)[-1] if _shape(input) else 1}")
    if bias is not None and _shape(bias) != (out_features,):
        raise ValueError(f"{layer}: bias must have shape ({out_features},) (out_features), got {_shape(bias)}")
    dtypes = {value.dtype for value in (input, weight, bias) if value is not None}
    if len(dtypes) > 1:
        raise TypeError(f"{layer}: input ({input.dtype}), weight ({weight.dtype})"
                        f"{'' if bias is None else f', bias ({bias.dtype})'} must have the same dtype; convert "
                        "with x.to(dtype) or module.to(dtype) first")


def linear(input, weight, bias=None):
    """y = x W^T + b; x is (*, in_features), W is (out_features, in_features), b is (out_features,)."""
    x = as_float_tensor("linear", input)
    weight = weight if isinstance(weight, Tensor) else Tensor(weight)
    bias = bias if bias is None or isinstance(bias, Tensor) else Tensor(bias)
    check_linear("linear", x, weight, bias)
    return _Linear.apply(x, weight, bias)
