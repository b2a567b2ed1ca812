"""``fuse(model)``: each BatchNorm followed by a ReLU or ReLU6 runs as one op, with one memory pass less each way.

The model keeps its module tree, parameters, buffers and ``state_dict()`` keys: the BatchNorm only learns
which activation follows it, computes ``activation(norm(x))`` itself (``F.batch_norm_relu``), and the
activation then passes that output through unchanged. A pair is fused only where the BatchNorm's output
goes nowhere but into the activation: adjacent in a ``Sequential``, or named by the parent module's
``fusable_pairs`` (child names, e.g. ``(("bn1", "relu"),)``). Each call checks again that neither module
has forward hooks or a replaced forward; such a pair runs unfused, so hooks keep seeing what they always saw.
"""
from __future__ import annotations

from ..activation import ReLU, ReLU6
from ..containers import Sequential
from ..normalization import _BatchNorm

__all__ = ["fuse"]


def _pairs(module):
    """(norm, activation) child pairs of ``module`` where the norm's output feeds only the activation."""
    children = list(module._modules.values())
    if isinstance(module, Sequential):
        yield from zip(children, children[1:])
    for norm_name, activation_name in getattr(module, "fusable_pairs", ()):
        yield module._modules.get(norm_name), module._modules.get(activation_name)


def fuse(model):
    """Fuse every BatchNorm -> ReLU/ReLU6 pair of ``model`` in place (see the module docstring); returns ``model``."""
    for module in model.modules():
        for norm, activation in _pairs(module):
            if isinstance(norm, _BatchNorm) and type(activation) in (ReLU, ReLU6):
                object.__setattr__(norm, "_fused_activation", activation)  # a plain attribute, not a child
    return model
