"""The output pass of an inference convolution: y = act(block + b), on a block that a GEMM has just written.

Applied per block while the block is still in cache, the bias and the activation cost no pass over the
whole output; ``finish_into`` also moves a scratch block to its place in the output in the same pass.
"""
from __future__ import annotations

from ..backend import get_array_module
from .activation import clamp_into

ACTIVATIONS = (None, "relu", "relu6")
BOUNDS = {None: None, "relu": (0.0, None), "relu6": (0.0, 6.0)}


def finish_into(target, block, bias_column, activation):
    """target = act(block + bias_column), computed in ``block`` (scratch, or ``target`` itself) and then copied.

    ``bias_column``: (k, 1[, 1]) or None. The arithmetic runs on the block while it is in cache; the target (a
    strided window of the output) is written once, by the copy.
    """
    xp = get_array_module()
    bounds = BOUNDS[activation]
    if bias_column is not None:
        block += bias_column
    if bounds is not None:
        clamp_into(block, bounds[0], bounds[1], block)
    if block is not target:
        xp.copyto(target, block)
