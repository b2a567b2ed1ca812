"""Reverse-mode automatic differentiation: ``Tensor``, ``Function``, ``no_grad``, ``gradcheck``."""
from .creation import (arange, cat, from_numpy, full, ones, ones_like, rand, randint, randn, stack, tensor, where,
                       zeros, zeros_like)
from .function import FREED, Function, enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .gradcheck import gradcheck
from .ops import unbroadcast
from .tensor import Tensor

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "set_grad_enabled", "gradcheck",
           "tensor", "from_numpy", "zeros", "ones", "full", "zeros_like", "ones_like", "arange", "randn", "rand",
           "randint", "cat", "stack", "where", "unbroadcast", "FREED"]
