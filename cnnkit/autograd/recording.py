"""Run a callable once with recording on and list the ops it applied, inputs before outputs (export, freeze)."""
from __future__ import annotations

from .function import enable_grad, tracing
from .tensor import Tensor


def _keep_raw_inputs(fn, inputs):
    """Each recorded op keeps all its inputs (``fn.raw_inputs``); the graph keeps only its Tensor inputs.

    Without them the numbers and arrays in ``x + 1`` or ``2 * x`` would be lost.
    """
    fn.raw_inputs = inputs


def record(run, example):
    """``(input, output, ops)``: ``run(input)`` for ``example`` and its recorded ops in topological order.

    Each op is ``(function, output_tensor)``; ``function.inputs`` holds its tensor inputs, ``raw_inputs`` all.
    ``output`` is whatever ``run`` returned (the callers check that it is one Tensor).
    """
    x = Tensor(example, requires_grad=True)  # recording starts at the input, whether or not weights are frozen
    with enable_grad(), tracing(_keep_raw_inputs):
        output = run(x)
    return x, output, (topological(output) if isinstance(output, Tensor) else [])


def topological(output):
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
