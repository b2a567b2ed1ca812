"""Activation functions with torch.nn.functional's names and arguments, each a hand-written autograd Function.

``inplace=True`` is accepted for PyTorch compatibility but cnnkit always returns a new tensor:
overwriting an array that an earlier op saved for its backward would silently corrupt gradients.
"""
from __future__ import annotations

import math
import warnings

from ..autograd import Function, Tensor
from ..backend import get_array_module
from ..kernels import pick

__all__ = ["relu", "relu6", "leaky_relu", "elu", "gelu", "erf", "sigmoid", "tanh", "hardswish", "hardsigmoid",
           "silu", "softmax", "log_softmax"]


def as_float_tensor(op, input, name="input"):
    """``input`` as a Tensor, with a clear TypeError unless it is float32 or float64 (shared by cnnkit's ops)."""
    x = input if isinstance(input, Tensor) else Tensor(input)
    if x.dtype.kind != "f":
        raise TypeError(f"{op}: expected a float32 or float64 {name}, got {x.dtype} (shape {tuple(x.shape)}); "
                        "convert it with x.float()")
    return x


# ------------------------------------------------------------------------------------------ piecewise linear
class _Relu(Function):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        kernel = pick("relu", x.size)
        if kernel is not None:
            out, self.positive = kernel.forward(x, None)
            return out
        self.positive = x > 0
        return get_array_module().maximum(x, 0)

    def backward(self, grad):
        return (grad * self.positive,)


class _Relu6(Function):
    """y = min(max(x, 0), 6); dy/dx = 1 where 0 < x < 6 (torch's hardtanh rule), else 0."""

    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        kernel = pick("relu", x.size)
        if kernel is not None:
            out, self.inside = kernel.forward(x, 6)
            return out
        self.inside = (x > 0) & (x < 6)
        return get_array_module().clip(x, 0, 6)

    def backward(self, grad):
        return (grad * self.inside,)


class _LeakyRelu(Function):
    def forward(self, x):
        xp = get_array_module()
        self.positive = x > 0
        return xp.where(self.positive, x, x * self.negative_slope)

    def backward(self, grad):
        return (get_array_module().where(self.positive, grad, grad * self.negative_slope),)


class _Hardsigmoid(Function):
    def forward(self, x):
        self.inside = (x > -3) & (x < 3)
        return get_array_module().clip(x + 3, 0, 6) / 6

    def backward(self, grad):
        return (grad * self.inside / 6,)


class _Hardswish(Function):
    def forward(self, x):
        self.x = x
        return x * get_array_module().clip(x + 3, 0, 6) / 6

    def backward(self, grad):
        # torch: 0 below -3, x/3 + 1/2 on [-3, 3], 1 above 3
        xp = get_array_module()
        x = self.x
        slope = xp.where(x < -3, 0, xp.where(x <= 3, x / 3 + 0.5, 1)).astype(x.dtype, copy=False)
        return (grad * slope,)


# ------------------------------------------------------------------------------------------------- smooth
def _stable_sigmoid(x):
    """1 / (1 + e^-x) computed from e^-|x| so that no exponential overflows."""
    xp = get_array_module()
    decay = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + decay), decay / (1 + decay))


class _Elu(Function):
    def forward(self, x):
        xp = get_array_module()
        self.positive = x > 0
        # expm1 on min(x, 0): accurate near 0 and never overflows on large positive inputs
        self.negative_part = self.alpha * xp.expm1(xp.minimum(x, 0))
        return xp.where(self.positive, x, self.negative_part)

    def backward(self, grad):
        # d/dx alpha (e^x - 1) = alpha e^x = negative_part + alpha
        return (get_array_module().where(self.positive, grad, grad * (self.negative_part + self.alpha)),)


class _Sigmoid(Function):
    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        self.kernel = pick("sigmoid", x.dtype)
        self.out = _stable_sigmoid(x) if self.kernel is None else self.kernel.forward(x)
        return self.out

    def backward(self, grad):
        if self.kernel is not None:
            return (self.kernel.backward(grad, self.out),)
        return (grad * self.out * (1 - self.out),)


class _Tanh(Function):
    fresh_grads = True  # backward returns new arrays that it keeps no reference to

    def forward(self, x):
        self.kernel = pick("tanh", x.dtype)
        self.out = get_array_module().tanh(x) if self.kernel is None else self.kernel.forward(x)
        return self.out

    def backward(self, grad):
        if self.kernel is not None:
            return (self.kernel.backward(grad, self.out),)
        return (grad * (1 - self.out * self.out),)


class _Silu(Function):
    def forward(self, x):
        self.x, self.gate = x, _stable_sigmoid(x)
        return x * self.gate

    def backward(self, grad):
        return (grad * self.gate * (1 + self.x * (1 - self.gate)),)


# Cephes (S. L. Moshier) rational approximations of erf and erfc, accurate to double precision. Cephes'
# third (|x| >= 8) erfc branch is not needed for erf: there erfc(x) < 1e-28, so erf(x) rounds to +-1.
_ERF_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
          7.00332514112805075473e3, 5.55923013010394962768e4)
_ERF_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
          2.26290000613890934246e4, 4.92673942608635921086e4)
_ERFC_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
           4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
           9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_ERFC_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
           9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
           1.65666309194161350182e3, 5.57535340817727675546e2)


def _polynomial(x, coefficients, monic=False):
    """Horner's rule, highest power first; ``monic`` adds a leading coefficient 1 (Cephes' p1evl)."""
    result = x + coefficients[0] if monic else x * coefficients[0]
    if not monic:
        result += coefficients[1]
    for c in coefficients[1 if monic else 2:]:
        result *= x
        result += c
    return result


def erf_array(x):
    """erf(x) on an array, in its dtype: x T(x^2)/U(x^2) for |x| < 1, else sign(x) (1 - e^(-x^2) P(|x|)/Q(|x|))."""
    xp = get_array_module()
    magnitude = xp.abs(x)
    result = xp.empty_like(x)
    near = magnitude < 1
    # each formula only on its own elements: evaluating both everywhere would double the cost
    inside = x[near]
    square = inside * inside
    result[near] = inside * _polynomial(square, _ERF_T) / _polynomial(square, _ERF_U, monic=True)
    far = ~near
    tail = xp.minimum(magnitude[far], 10)  # erfc(10) ~ 2e-45: 1 - erfc rounds to 1 beyond; keeps inf finite
    complement = xp.exp(-tail * tail) * _polynomial(tail, _ERFC_P) / _polynomial(tail, _ERFC_Q, monic=True)
    result[far] = xp.copysign(1 - complement, x[far])
    return result


_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


class _Gelu(Function):
    def forward(self, x):
        xp = get_array_module()
        self.x = x
        if self.approximate == "tanh":
            self.t = xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x * x * x))
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + erf_array(x * _SQRT_HALF))
        return x * self.cdf

    def backward(self, grad):
        xp = get_array_module()
        x = self.x
        if self.approximate == "tanh":
            inner = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (grad * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * inner),)
        density = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return (grad * (self.cdf + x * density),)


class _Erf(Function):
    def forward(self, x):
        self.x = x
        return erf_array(x)

    def backward(self, grad):
        xp = get_array_module()
        return (grad * (2 * _INV_SQRT_2PI * _SQRT_2) * xp.exp(-self.x * self.x),)


_SQRT_2 = math.sqrt(2)


# ------------------------------------------------------------------------------------------------ softmax
def _softmax_dim(name, x, dim, stacklevel):
    """Resolve ``dim`` (torch's deprecated implicit choice when None) and check its range."""
    if dim is None:
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=stacklevel)
        return 0 if x.ndim in (0, 1, 3) else 1
    rank = max(x.ndim, 1)
    if not -rank <= dim < rank:
        raise ValueError(f"{name}: dim {dim} is out of range for an input of shape {tuple(x.shape)} "
                         f"(expected -{rank} <= dim < {rank})")
    return dim % rank


def _row_max(x, dim):
    """max along ``dim`` (kept); 0 for an empty input, where NumPy has no max of an empty axis and none is needed."""
    return x.max(axis=dim, keepdims=True) if x.size else x.dtype.type(0)


class _Softmax(Function):
    def forward(self, x):
        xp = get_array_module()
        exps = xp.exp(x - _row_max(x, self.dim))
        self.out = exps / exps.sum(axis=self.dim, keepdims=True)
        return self.out

    def backward(self, grad):
        # dx = y * (g - sum(g * y))
        y = self.out
        return (y * (grad - (grad * y).sum(axis=self.dim, keepdims=True)),)


class _LogSoftmax(Function):
    def forward(self, x):
        xp = get_array_module()
        shifted = x - _row_max(x, self.dim)
        if not x.size:  # the log of an empty axis' zero sum would warn about a value no element uses
            self.out = shifted
            return shifted
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=self.dim, keepdims=True))
        return self.out

    def backward(self, grad):
        # dx = g - softmax * sum(g)
        xp = get_array_module()
        return (grad - xp.exp(self.out) * grad.sum(axis=self.dim, keepdims=True),)


def _apply_softmax(function, name, input, dim, dtype, stacklevel):
    x = as_float_tensor(name, input)
    if dtype is not None:
        x = x.to(dtype)
    dim = _softmax_dim(name, x, dim, stacklevel + 1)
    if x.ndim == 0:  # a scalar is a one-element distribution
        return function.apply(x.reshape(1), dim=0).reshape(())
    return function.apply(x, dim=dim)


# ------------------------------------------------------------------------------------------------ public ops
def relu(input, inplace=False):
    """relu(x) = max(x, 0)."""
    return _Relu.apply(as_float_tensor("relu", input))


def relu6(input, inplace=False):
    """relu6(x) = min(max(x, 0), 6)."""
    return _Relu6.apply(as_float_tensor("relu6", input))


def leaky_relu(input, negative_slope=0.01, inplace=False):
    """leaky_relu(x) = x if x > 0 else negative_slope * x."""
    return _LeakyRelu.apply(as_float_tensor("leaky_relu", input), negative_slope=float(negative_slope))


def elu(input, alpha=1.0, inplace=False):
    """elu(x) = x if x > 0 else alpha * (e^x - 1)."""
    return _Elu.apply(as_float_tensor("elu", input), alpha=float(alpha))


def gelu(input, approximate="none"):
    """gelu(x) = x * Phi(x) = x/2 (1 + erf(x / sqrt 2)); 'tanh': x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _Gelu.apply(as_float_tensor("gelu", input), approximate=approximate)


def erf(input):
    """erf(x) = 2/sqrt(pi) * integral of e^(-t^2) from 0 to x (torch.erf; ONNX Erf); d/dx = 2/sqrt(pi) e^(-x^2)."""
    return _Erf.apply(as_float_tensor("erf", input))


def sigmoid(input):
    """sigmoid(x) = 1 / (1 + e^-x), computed without overflow."""
    return _Sigmoid.apply(as_float_tensor("sigmoid", input))


def tanh(input):
    """tanh(x) = (e^x - e^-x) / (e^x + e^-x)."""
    return _Tanh.apply(as_float_tensor("tanh", input))


def hardswish(input, inplace=False):
    """hardswish(x) = x * relu6(x + 3) / 6 (MobileNetV3)."""
    return _Hardswish.apply(as_float_tensor("hardswish", input))


def hardsigmoid(input, inplace=False):
    """hardsigmoid(x) = relu6(x + 3) / 6."""
    return _Hardsigmoid.apply(as_float_tensor("hardsigmoid", input))


def silu(input, inplace=False):
    """silu(x) = x * sigmoid(x) (also called swish)."""
    return _Silu.apply(as_float_tensor("silu", input))


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(x)_i = e^(x_i - max x) / sum_j e^(x_j - max x) along ``dim``."""
    return _apply_softmax(_Softmax, "softmax", input, dim, dtype, _stacklevel)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log_softmax(x)_i = x_i - max x - log sum_j e^(x_j - max x) along ``dim``."""
    return _apply_softmax(_LogSoftmax, "log_softmax", input, dim, dtype, _stacklevel)
