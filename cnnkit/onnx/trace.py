"""Run a model once with recording on and list the ops it applied, inputs before outputs."""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from ..autograd.recording import record


def trace(model, example):
    """``(input, output, ops)``: the model's output for ``example`` and its recorded ops in topological order.

    Each op is ``(function, output_tensor)``; ``function.inputs`` holds its tensor inputs, ``raw_inputs`` all.
    """
    x, output, ops = record(model, example)
    if not isinstance(output, Tensor):
        raise TypeError(f"export: {type(model).__name__}.forward returned a {type(output).__name__}; only models "
                        "with one tensor output can be exported")
    return x, output, ops


def example_input(model, input_size, batch):
    """A random float input of shape (batch, *input_size) in the model's parameter dtype."""
    dtype = next((p.dtype for p in model.parameters()), np.dtype(np.float32))
    return np.random.default_rng(0).standard_normal((batch, *input_size)).astype(dtype)
