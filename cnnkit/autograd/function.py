"""``Function``: the base of every differentiable op (forward on arrays, backward on gradients)."""
from __future__ import annotations

import threading
from contextlib import contextmanager


class _ThreadState(threading.local):
    """Per-thread switches; class defaults make a lookup on a fresh thread cheap (no AttributeError)."""

    enabled = True
    tracer = None  # set by ``tracing``: called with (fn, inputs) after each op's forward


_state = _ThreadState()


def is_grad_enabled() -> bool:
    """True unless inside ``no_grad()`` on this thread."""
    return getattr(_state, "enabled", True)


def set_grad_enabled(mode: bool) -> None:
    """Turn graph recording on or off for this thread."""
    _state.enabled = bool(mode)


@contextmanager
def tracing(tracer):
    """Inside, every ``Function.apply`` on this thread calls ``tracer(fn, inputs)`` after its forward (ONNX export)."""
    previous = _state.tracer
    _state.tracer = tracer
    try:
        yield
    finally:
        _state.tracer = previous


class _GradMode:
    """Context manager and decorator that sets graph recording for its body."""

    mode = True

    def __enter__(self):
        self._previous = is_grad_enabled()
        set_grad_enabled(self.mode)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._previous)
        return False

    def __call__(self, func):
        import functools

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self.__class__():
                return func(*args, **kwargs)

        return wrapper


class no_grad(_GradMode):  # noqa: N801  (torch's name)
    """Record nothing inside: outputs have no history and ``requires_grad=False``."""

    mode = False


class enable_grad(_GradMode):  # noqa: N801
    """Record the graph again inside an enclosing ``no_grad``."""

    mode = True


class Function:
    """A differentiable op.

    Subclasses implement ``forward(*arrays) -> array`` and ``backward(grad) -> grads``
    (one per input, ``None`` where no gradient is needed; ``self.needs_input_grad`` says
    which are). Non-tensor arguments are passed to ``apply`` as keywords and become
    attributes. Keep only what backward needs on ``self``. An op with an ``after_backward`` callable
    attribute has it called once the whole ``backward`` pass has finished (DistributedDataParallel's
    gradient averaging).

    A forward may return a tuple of arrays: ``apply`` then returns a tuple of tensors, and backward
    receives one gradient per output (``backward(*grads)``, None for an output that got none).
    Integer outputs (such as max pooling's switches) are not differentiable.
    """

    inputs: tuple = ()
    needs_input_grad: tuple = ()
    # True when backward returns new arrays that it keeps no reference to and that share no memory with each
    # other or with its upstream gradient: a leaf then takes its gradient as .grad without a copy.
    fresh_grads: bool = False

    def __init__(self, **params):
        self.__dict__.update(params)

    def forward(self, *arrays):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs, **params):
        """Run forward on the inputs' arrays and, when recording, link the output to them."""
        from .tensor import Tensor

        fn = cls(**params)
        arrays = [t.data if isinstance(t, Tensor) else t for t in inputs]
        record = is_grad_enabled() and any(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        if record:
            fn.needs_input_grad = tuple(isinstance(t, Tensor) and t.requires_grad for t in inputs)
        out = fn.forward(*arrays)
        tracer = _state.tracer
        if tracer is not None:
            tracer(fn, inputs)
        if isinstance(out, tuple):
            return _wrap_outputs(fn, out, inputs, record)
        if not record:
            return Tensor._wrap(out)
        fn.inputs = tuple(t if isinstance(t, Tensor) else None for t in inputs)
        return Tensor._wrap(out, requires_grad=True, ctx=fn)

    def __repr__(self):
        return f"<{type(self).__name__}>"


def _wrap_outputs(fn, arrays, inputs, record):
    """The tensors of a several-output forward; the float ones share ``fn`` as their node when recording."""
    from .tensor import Tensor

    if not record:
        return tuple(Tensor._wrap(array) for array in arrays)
    fn.inputs = tuple(t if isinstance(t, Tensor) else None for t in inputs)
    outputs = tuple(Tensor._wrap(array, requires_grad=True, ctx=fn) if array.dtype.kind == "f"
                    else Tensor._wrap(array) for array in arrays)
    fn.output_ids = tuple(id(t) for t in outputs)  # backward gathers one gradient per output by position
    return outputs


class _Freed:
    """Marks a node whose graph was freed by a previous ``backward``."""

    def __repr__(self):
        return "<freed graph>"


FREED = _Freed()
