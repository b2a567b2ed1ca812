"""Read the outputs of a model's conv and pool layers during a forward pass, safely from many threads at once."""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass

import numpy as np

from ..autograd import Tensor, no_grad

# Layer classes whose outputs are feature maps on the input's pixel grid: Conv2d, DeformConv2d, MaxPool2d,
# AvgPool2d, AdaptiveAvgPool2d, LPPool2d, ... (ConvTranspose2d upsamples, so it has no receptive-field box).
SPATIAL_LAYER = re.compile(r"(Conv|Pool)\w*2d$")


def is_spatial_layer(module):
    """True for the conv and pool layers whose outputs are shown as feature maps."""
    name = type(module).__name__
    return bool(SPATIAL_LAYER.search(name)) and "Transpose" not in name


def spatial_layers(model):
    """``[(dotted name, module), ...]`` of the conv and pool layers of ``model``, in registration order."""
    return [(name, module) for name, module in model.named_modules() if name and is_spatial_layer(module)]


@dataclass
class TapRecord:
    """One layer's call in a forward pass: its name, module, input (N, C, H, W) shape and output tensor."""

    name: str
    module: object
    input_shape: tuple
    output: Tensor
    input_id: int = 0  # id() of the input object, to find which recorded layer produced it

    @property
    def array(self):
        return np.asarray(self.output.data)


class _StopForwardSignal(Exception):  # noqa: N818  (a signal, not an error)
    """Raised by a hook to end a forward pass once the wanted layer has run."""


class LayerTap:
    """Forward hooks on every conv and pool layer of ``model`` that record outputs per thread.

    The hooks are registered once; each call of :meth:`run` collects into storage local to the calling
    thread, so concurrent requests never see each other's feature maps and nothing is shared but the
    (read-only) model. Call :meth:`remove` to take the hooks off again.
    """

    def __init__(self, model, layers=None):
        self.model = model
        self.layers = spatial_layers(model) if layers is None else list(layers)
        if not self.layers:
            raise ValueError(f"LayerTap: {type(model).__name__} has no conv or pool layer to show")
        self._local = threading.local()
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in self.layers]

    def _hook(self, name):
        def record(module, inputs, output):
            state = getattr(self._local, "state", None)
            if state is None:  # a forward outside run(): nothing to record
                return None
            if isinstance(output, Tensor) and output.ndim == 4:
                first = inputs[0] if inputs else None
                input_shape = tuple(first.shape) if hasattr(first, "shape") else ()
                state["records"].append(TapRecord(name, module, input_shape, output, id(first)))
                if name == state["stop_after"]:
                    raise _StopForwardSignal
            return None

        return record

    def run(self, x, stop_after=None, grad=False):
        """Forward ``x``; returns ``(output or None, [TapRecord, ...])`` in call order.

        With ``stop_after`` the pass ends right after that layer (the output is then ``None``). Gradients are
        off unless ``grad`` is True.
        """
        if stop_after is not None and stop_after not in {name for name, _ in self.layers}:
            names = ", ".join(name for name, _ in self.layers)
            raise ValueError(f"LayerTap: no conv or pool layer named {stop_after!r}; the layers are: {names}")
        self._local.state = {"records": [], "stop_after": stop_after}
        try:
            output = None
            try:
                if grad:
                    output = self.model(x)
                else:
                    with no_grad():
                        output = self.model(x)
            except _StopForwardSignal:
                pass
            return output, self._local.state["records"]
        finally:
            self._local.state = None

    def remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class evaluating:  # noqa: N801  (a context manager named like torch's no_grad)
    """Put ``model`` in eval mode for a ``with`` block and restore its train/eval mode after."""

    def __init__(self, model):
        self.model = model
        self.was_training = bool(getattr(model, "training", False))

    def __enter__(self):
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        self.model.train(self.was_training)
