"""Run a model once with recording on and list the ops it applied, inputs before outputs."""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor, enable_grad
from ..autograd.function import tracing


def _keep_raw_inputs(fn, inputs):
    """Each recorded op keeps all its inputs (``fn.raw_inputs``); the graph keeps only its Tensor inputs.

    Without them the numbers and arrays in ``x + 1`` or ``2 * x`` would be lost.
    """
    fn.raw_inputs = inputs


def trace(model, example):
    """``(input, output, ops)``: the model's output for ``example`` and its recorded ops in topological order.

    Each op is ``(function, output_tensor)``; ``function.inputs`` holds its tensor inputs, ``raw_inputs`` all.
    """
    x = Tensor(example, requires_grad=True)  # recording starts at the input, whether or not weights are frozen
    with enable_grad(), tracing(_keep_raw_inputs):
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
