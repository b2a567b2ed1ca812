"""``Linear``: the fully connected layer y = x W^T + b, initialised as PyTorch does."""
from __future__ import annotations

from .. import functional as F
from ..autograd import zeros
from ..functional.linear import check_linear
from . import init
from .module import Module
from .parameter import Parameter

__all__ = ["Linear"]


class Linear(Module):
    """y = x W^T + b with weight (out_features, in_features) and bias (out_features,).

    Initialisation (PyTorch's default): W ~ U(-1/sqrt(in), 1/sqrt(in)) via kaiming_uniform_(a=sqrt(5)),
    b ~ U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if int(value) != value or value < 0:
                raise ValueError(f"Linear: {name} must be a non-negative integer, got {value!r}")
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.weight = Parameter(zeros(self.out_features, self.in_features))
        if bias:
            self.bias = Parameter(zeros(self.out_features))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        if self.in_features > 0:
            init.default_layer_init_(self.weight, self.bias)

    def forward(self, input):
        shape = tuple(input.shape)
        if not shape or shape[-1] != self.in_features:
            got = shape[-1] if shape else "a scalar"
            hint = f"nn.Linear({got}, {self.out_features})" if shape else "a 1-D or larger input"
            flat = ("; a 4-D (N, C, H, W) feature map must be flattened first: add nn.Flatten() (in_features = C*H*W"
                    f" = {shape[1] * shape[2] * shape[3]})" if len(shape) == 4 else "")
            raise ValueError(f"{self._name()}: input of shape {shape} has last dimension {got} but the layer expects "
                             f"in_features={self.in_features}; use {hint} or fix the previous layer{flat}")
        check_linear(self._name(), input, self.weight, self.bias)
        return F.linear(input, self.weight, self.bias)

    def _name(self):
        return f"Linear({self.extra_repr()})"

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"
