"""``freeze(model, example_input)``: a model's eval-mode forward compiled into a ``FrozenModel`` for inference."""
from __future__ import annotations

import threading

from ..autograd import Tensor
from ..autograd.recording import record
from ..backend import get_array_module
from .compiler import compile_trace

# Input shapes whose compiled programs a FrozenModel keeps; the oldest is dropped beyond this.
MAX_SHAPES = 8


class FrozenModel:
    """A callable with the outputs of ``model.eval()`` under ``no_grad``, computed by a compiled program.

    ``frozen(x)`` takes a NumPy array or a Tensor and returns the same kind (a new array each call, as an
    onnxruntime session does). Each input shape is compiled once: the model is traced in eval mode with an
    input of that shape, BatchNorms are folded into their convolutions, ReLU/ReLU6 fused into the op before
    them, and every intermediate value gets a buffer made once and reused by later values and later calls.
    Calls run one at a time (the buffers are shared); the model's train/eval mode is restored after a trace.
    """

    def __init__(self, model, example_input=None):
        self.model = model
        self._programs = {}
        self._lock = threading.Lock()
        if example_input is not None:
            self.program(_array(example_input))

    def program(self, x):
        """The compiled ``Program`` for inputs shaped like ``x`` (traced and compiled on first use)."""
        program = self._programs.get(x.shape)
        if program is None:
            program = self._compile(x)
            if len(self._programs) >= MAX_SHAPES:
                del self._programs[next(iter(self._programs))]
            self._programs[x.shape] = program
        return program

    def _compile(self, x):
        model = self.model
        was_training = model.training
        model.eval()
        try:
            traced_input, output, ops = record(model, x)
        finally:
            model.train(was_training)
        if not isinstance(output, Tensor):
            raise TypeError(f"freeze: {type(model).__name__}.forward returned a {type(output).__name__}; only models "
                            "with one tensor output can be frozen")
        return compile_trace(traced_input, output, ops)

    def __call__(self, input):
        x = _array(input)
        with self._lock:
            program = self._programs.get(x.shape) or self.program(x)
            if x.dtype != program.input.dtype:
                dtype = program.input.dtype
                raise TypeError(f"frozen {type(self.model).__name__}: expected a {dtype} input, got {x.dtype} "
                                f"(shape {tuple(x.shape)}); convert it with x.astype({str(dtype)!r})")
            out = program.run(x)
        return Tensor(out) if isinstance(input, Tensor) else out

    def __repr__(self):
        shapes = ", ".join(str(shape) for shape in self._programs)
        return f"FrozenModel({type(self.model).__name__}, compiled for {shapes})"


def _array(value):
    return value.data if isinstance(value, Tensor) else get_array_module().asarray(value)


def freeze(model, example_input=None):
    """A ``FrozenModel`` computing ``model``'s eval-mode outputs, compiled for ``example_input``'s shape now
    (or, when it is None, for the first call's input).

    Like ``torch.jit.freeze`` over a trace, it records the ops that one call applies: control flow that
    depends on the input's values is fixed as traced, and values computed outside the recorded ops (under
    ``no_grad`` inside forward, or from plain NumPy) become constants. Folded weights are copies taken now;
    the other weights are read from the model, and an input of a new shape traces the model again, so freeze
    again after changing the model. The model itself is not changed.
    """
    return FrozenModel(model, example_input)
