"""Run a model once with recording on and list the ops it applied, inputs before outputs."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..autograd import Function, Tensor, enable_grad


@contextmanager
def _keeping_raw_inputs():
    """While tracing, each recorded op also keeps its raw inputs (``fn.raw_inputs``).

    The graph keeps only an op's Tensor inputs; the numbers and arrays in ``x + 1`` or ``2 * x`` would be lost.
    """
    original = Function.__dict__["apply"]

    def apply(cls, *inputs, **params):
        out = original.__func__(cls, *inputs, **params)
        if isinstance(out, Tensor) and out._ctx is not None:
            out._ctx.raw_inputs = inputs
        return out

    Function.apply = classmethod(apply)
    try:
        yield
    finally:
        Function.apply = original


def trace(model, example):
    """``(input, output, ops)``: the model's output for ``example`` and its recorded ops in topological order.

    Each op is ``(function, output_tensor)``; ``function.inputs`` holds its tensor inputs, ``raw_inputs`` all.
    """
    x = Tensor(example, requires_grad=True)  # recording starts at the input, whether or not weights are frozen
    with enable_grad(), _keeping_raw_inputs():
        output = model(x)
    if not isinstance(output, Tensor):
        raise TypeError(f"export: {type(model).__name__}.forward returned a {type(output).__name__}; only models "
                        "with one tensor output can be exported")
    return x, output, _topological(output)


def _topological(output):
    """Ops feeding ``output`` in an order where each op follows the ops producing its inputs (iterative DFS)."""
    order, done, stack = [], set(), [(output, False)]
    while stack:
        tensor, expanded = stack.pop()
        ctx = tensor._ctx
        if ctx is None or id(tensor) in done:
            continue
        if expanded:
            done.add(id(tensor))
            order.append((ctx, tensor))
            continue
        stack.append((tensor, True))
        stack.extend((t, False) for t in ctx.inputs if isinstance(t, Tensor) and id(t) not in done)
    return order


def example_input(model, input_size, batch):
    """A random float input of shape (batch, *input_size) in the model's parameter dtype."""
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    return np.random.default_rng(0).standard_normal((batch, *input_size)).astype(dtype)
