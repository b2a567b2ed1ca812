"""cnnkit: a convolutional-neural-network framework on NumPy, with PyTorch's names and layout."""
import importlib

from .autograd import (Function, Tensor, arange, cat, enable_grad, from_numpy, full, is_grad_enabled, no_grad, ones,
                       ones_like, rand, randint, randn, set_grad_enabled, stack, tensor, where, zeros, zeros_like)
from .backend import get_default_dtype, manual_seed, set_default_dtype

float32 = "float32"
float64 = "float64"
int64 = "int64"

__version__ = "0.1.0"

# The subpackages that load on first use (PEP 562): after ``import cnnkit``, ``cnnkit.nn.Conv2d`` works as
# ``torch.nn.Conv2d`` does, while ``import cnnkit`` itself stays fast. A new subpackage is one line here.
_LAZY_SUBPACKAGES = frozenset({
    "analysis",    # shapes, parameters, MACs and receptive fields from the formulas
    "cli",         # the ``cnnkit`` command
    "data",        # data sets, transforms and the DataLoader
    "distributed", # data-parallel training over MPI (needs the mpi extra for several processes)
    "functional",  # the ops on tensors (torch.nn.functional)
    "inference",   # freeze(model, example): a compiled eval-mode forward (BN folded, buffers planned)
    "io",          # checkpoints, safetensors weights, the torch bridge
    "kernels",     # the fast paths beside the reference ops
    "models",      # the model zoo and its registry
    "nn",          # layers (modules) and containers
    "onnx",        # export to and load from ONNX (needs the onnx extra)
    "optim",       # optimizers and learning-rate schedules
    "train",       # the trainer and its metrics
    "viz",         # figures (needs the viz extra)
    "web",         # the drawing-pad server (needs the web extra)
})


def __getattr__(name):
    """Import a subpackage the first time it is used as an attribute (``cnnkit.nn``)."""
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"{__name__}.{name}")  # also binds it here, so this runs once per name
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _LAZY_SUBPACKAGES)
