"""cnnkit: a convolutional-neural-network framework on NumPy, with PyTorch's names and layout."""
from .autograd import (Function, Tensor, arange, cat, enable_grad, from_numpy, full, is_grad_enabled, no_grad, ones,
                       ones_like, rand, randint, randn, set_grad_enabled, stack, tensor, where, zeros, zeros_like)
from .backend import get_default_dtype, manual_seed, set_default_dtype

float32 = "float32"
float64 = "float64"
int64 = "int64"

__version__ = "0.1.0"
