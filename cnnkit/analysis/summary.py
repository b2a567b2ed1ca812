"""``summary(model, input_size)``: a Keras/torchinfo-style table of layers, shapes, params, MACs and receptive fields.

One forward pass with forward hooks records every layer call. Receptive fields follow the data
flow: each tensor a layer outputs gets a field; a layer's input that no layer produced (a
residual ``+``, ``cat`` of Inception branches, a reshape) is traced back through the autograd
graph to the nearest known tensors and the largest field over the branches is taken.
"""
from __future__ import annotations

import numbers
from contextlib import nullcontext
from dataclasses import dataclass, field

import numpy as np

from ..autograd import FREED, Tensor, enable_grad
from ..backend import get_default_dtype
from .layer_rules import Field, kind, layer_effect, resized_field, spatial
from .receptive_field import number
from .shapes_only import shapes_only

__all__ = ["LayerRecord", "Summary", "summary"]


@dataclass
class LayerRecord:
    """One call of one layer (or container): its output and what it cost."""

    name: str
    type: str
    output_shape: list
    params: int
    trainable_params: int
    macs: int
    rf_h: float
    rf_w: float
    jump_h: float
    jump_w: float
    memory: int
    unused_pixels: bool = False
    unused_detail: str = ""
    rf_global: bool = False
    container: bool = False
    repeated: bool = False
    rf_axes: tuple = ()  # rf and jump per spatial axis: (L,), (H, W) or (D, H, W); rf_h/rf_w are the last two
    jump_axes: tuple = ()

    @property
    def flops(self):
        return 2 * self.macs

    @property
    def rf(self):
        return number(max((self.rf_h, self.rf_w) + tuple(self.rf_axes)))

    @property
    def jump(self):
        return number(max((self.jump_h, self.jump_w) + tuple(self.jump_axes)))

    def to_dict(self):
        return {"name": self.name, "type": self.type, "output_shape": self.output_shape, "params": self.params,
                "trainable_params": self.trainable_params, "macs": self.macs, "flops": self.flops, "rf": self.rf,
                "rf_h": number(self.rf_h), "rf_w": number(self.rf_w), "jump": self.jump,
                "jump_h": number(self.jump_h), "jump_w": number(self.jump_w), "memory": self.memory,
                "unused_pixels": self.unused_pixels, "unused_detail": self.unused_detail,
                "rf_global": self.rf_global, "container": self.container, "repeated": self.repeated,
                "rf_axes": [number(v) for v in self.rf_axes], "jump_axes": [number(v) for v in self.jump_axes]}


@dataclass
class Summary:
    """Layers in execution order plus totals; ``print(summary)`` shows the table, ``to_dict()`` the data."""

    model_name: str
    input_shape: tuple
    layers: list
    total_params: int
    trainable_params: int
    input_memory: int
    param_memory: int
    notes: list = field(default_factory=list)

    @property
    def non_trainable_params(self):
        return self.total_params - self.trainable_params

    @property
    def total_macs(self):
        return sum(layer.macs for layer in self.layers if not layer.container)

    @property
    def total_flops(self):
        return 2 * self.total_macs

    @property
    def activation_memory(self):
        """Bytes of every layer's output (what a forward pass keeps for backward, roughly)."""
        return sum(layer.memory for layer in self.layers if not layer.container)

    def to_dict(self):
        return {"model": self.model_name, "input_shape": list(self.input_shape),
                "layers": [layer.to_dict() for layer in self.layers], "total_params": self.total_params,
                "trainable_params": self.trainable_params, "non_trainable_params": self.non_trainable_params,
                "total_macs": self.total_macs, "total_flops": self.total_flops,
                "activation_memory": self.activation_memory, "input_memory": self.input_memory,
                "param_memory": self.param_memory, "notes": list(self.notes)}

    def __str__(self):
        return format_table(self)

    __repr__ = __str__


# ---------------------------------------------------------------------------------------------- printing
def _size(value):
    return f"{value / 2 ** 20:,.2f} MB"


def _count(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return str(value)


def _rf_text(layer):
    if layer.rf_global:
        return "all"
    return "x".join(str(number(v)) for v in (layer.rf_axes or (layer.rf_h, layer.rf_w)))


def _jump_text(layer):
    if layer.rf_global:
        return "-"
    return "x".join(str(number(v)) for v in (layer.jump_axes or (layer.jump_h, layer.jump_w)))


def format_table(result):
    """The summary as a fixed-width table with totals underneath."""
    header = ("Layer (type)", "Output Shape", "Param #", "MACs", "RF", "Jump")
    rows = []
    for layer in result.layers:
        indent = "  " * layer.name.count(".") if any(r.container for r in result.layers) else ""
        shape = "[" + ", ".join(str(s) for s in layer.output_shape[0]) + "]" if len(layer.output_shape) == 1 \
            else " ".join("[" + ", ".join(str(s) for s in shape) + "]" for shape in layer.output_shape)
        params = "(shared)" if layer.repeated else f"{layer.params:,}"
        if layer.container:
            params = f"({layer.params:,})"
        macs = f"{layer.macs:,}" if layer.macs else "--"
        rows.append((f"{indent}{layer.name} ({layer.type}){' *' if layer.unused_pixels else ''}", shape, params,
                     macs, _rf_text(layer), _jump_text(layer)))
    widths = [max([len(header[i])] + [len(row[i]) for row in rows]) for i in range(len(header))]
    right = (False, False, True, True, True, True)

    def line(cells):
        return "  ".join(cell.rjust(w) if r else cell.ljust(w) for cell, w, r in zip(cells, widths, right)).rstrip()

    rule = max(sum(widths) + 2 * (len(widths) - 1), 60)
    out = [f"Summary of {result.model_name}, input {list(result.input_shape)}", "=" * rule, line(header), "=" * rule]
    out += [line(row) for row in rows]
    out += ["=" * rule,
            f"Total params: {result.total_params:,}",
            f"Trainable params: {result.trainable_params:,}",
            f"Non-trainable params: {result.non_trainable_params:,}",
            f"Total MACs: {result.total_macs:,} ({_count(result.total_macs)})",
            f"Total FLOPs (2 x MACs): {result.total_flops:,} ({_count(result.total_flops)})",
            "-" * rule,
            f"Input size: {_size(result.input_memory)}",
            f"Activation memory (every layer's output): {_size(result.activation_memory)}",
            f"Params size: {_size(result.param_memory)}",
            f"Estimated total: {_size(result.input_memory + result.activation_memory + result.param_memory)}",
            "=" * rule,
            "RF: receptive field in input pixels (h x w; L for 1-D, d x h x w for 3-D inputs), 'all' = depends on "
            "the whole input; "
            "Jump: input pixels between neighbouring outputs.",
            "MACs: conv/linear multiply-accumulates for the batch (other layers 0); FLOPs = 2 x MACs."]
    if any(layer.container for layer in result.layers):
        out.append("(n) on a container: params of everything inside it, counted once in the totals.")
    flagged = [layer for layer in result.layers if layer.unused_pixels]
    if flagged:
        out.append("* the windows do not tile the padded input ((W - F + P_total)/S + 1 is not an integer), "
                   "so the last pixels are skipped:")
        out += [f"    {layer.name}: {layer.unused_detail}" for layer in flagged]
    out += [f"Note: {note}" for note in result.notes]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- recording
def _tensors(value):
    """Every Tensor in a (nested) tuple/list/dict output, in order."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors(item)]
    if isinstance(value, dict):
        return [t for item in value.values() for t in _tensors(item)]
    return []


class _FieldTracker:
    """Maps tensors (by id, holding a reference so ids are not reused) to their receptive field."""

    def __init__(self, image_size):
        self.image_size = image_size
        self.fields = {}
        self.notes = []

    def set(self, tensor, value):
        self.fields[id(tensor)] = (tensor, value)

    def get(self, tensor):
        """The field of ``tensor``; unknown tensors are traced back through the autograd graph (iteratively)."""
        if id(tensor) in self.fields:
            return self.fields[id(tensor)][1]
        stack = [tensor]
        while stack:
            node = stack[-1]
            if id(node) in self.fields:
                stack.pop()
                continue
            fn = node._ctx
            if fn is None or fn is FREED:
                self.set(node, None)  # a parameter or constant: contributes no receptive field
                stack.pop()
                continue
            parents = [p for p in fn.inputs if p is not None]
            pending = [p for p in parents if id(p) not in self.fields]
            if pending:
                stack.extend(pending)
                continue
            merged = None
            for parent in parents:
                value = self.fields[id(parent)][1]
                merged = value if merged is None else value.merge(merged) if value is not None else merged
            self.set(node, self._through_op(fn, parents, node, merged))
            stack.pop()
        return self.fields[id(tensor)][1]

    def _through_op(self, fn, parents, node, merged):
        """A non-module op keeps the field unless it reduces or resizes the spatial map."""
        if merged is None or not parents:
            return merged
        dims = len(self.image_size)
        in_size, out_size = spatial(parents[0], dims), spatial(node, dims)
        if in_size is None or set(in_size) == {1}:
            return merged
        rank = dims + 2
        axis = getattr(fn, "axis", "absent")
        axes = () if axis == "absent" else (tuple(range(rank)) if axis is None else
                                            tuple(a % rank for a in (axis if isinstance(axis, tuple) else (axis,))))
        reduces = type(fn).__name__ in ("Sum", "Mean", "Max") and any(a >= 2 for a in axes)
        if reduces or (out_size is not None and set(out_size) == {1}) or (
                out_size is None and node.data.size < parents[0].data.size):
            return merged.globalised()
        if out_size is not None and out_size != in_size and node.ndim == parents[0].ndim:
            result, note = resized_field(merged, in_size, out_size, f"the op {type(fn).__name__} (not a module)")
            if note not in self.notes:
                self.notes.append(note)
            return result
        return merged


def _is_layer(module):
    """A leaf module, or one holding parameters of its own (DeformConv2d holds weight beside offset_conv)."""
    return not module._modules or any(p is not None for p in module._parameters.values())


class _Recorder:
    """The forward hook: one row per layer call (and per container call when asked), in execution order."""

    def __init__(self, model, image_size, containers):
        self.model, self.image_size, self.containers = model, image_size, containers
        self.tracker = _FieldTracker(image_size)
        self.names = {id(module): name for name, module in model.named_modules()}
        self.records, self.counted, self.called = [], set(), set()

    def __call__(self, module, inputs, output):
        inputs_found, outputs = _tensors(inputs), _tensors(output)
        first_input = inputs_found[0] if inputs_found else None
        blank = Field.blank(len(self.image_size))
        in_field = (self.tracker.get(first_input) if first_input is not None else None) or blank
        if _is_layer(module):
            self._layer(module, first_input, in_field, outputs)
        elif self.containers and module is not self.model:
            self._container(module, in_field, outputs)
        else:
            for tensor in outputs:  # remember the block's output field (walking back through + / cat once)
                self.tracker.get(tensor)

    def _layer(self, module, first_input, in_field, outputs):
        effect = layer_effect(module, in_field, first_input, outputs[0] if outputs else None, self.image_size)
        if module._modules and kind(module) == "other":
            # A custom block with its own parameters: its output field comes from the data flow inside it.
            effect.field = next((f for f in (self.tracker.get(t) for t in outputs) if f is not None), in_field)
        else:
            if effect.note and effect.note not in self.tracker.notes:
                self.tracker.notes.append(effect.note)
            for tensor in outputs:
                self.tracker.set(tensor, effect.field)
        params = [p for p in module._parameters.values() if p is not None]
        # A later call of a module with parameters shows "(shared)": they were counted at its first call.
        repeated = id(module) in self.called and bool(params)
        fresh = [p for p in params if id(p) not in self.counted]
        self.counted.update(id(p) for p in fresh)
        self.called.add(id(module))
        self.records.append(self._record(module, outputs, fresh, effect.field, effect, repeated=repeated))

    def _container(self, module, in_field, outputs):
        fields = [self.tracker.get(t) for t in outputs]
        out_field = next((f for f in fields if f is not None), in_field)
        record = self._record(module, outputs, [p for _, p in module.named_parameters()], out_field, None)
        # A container finishes after its children: put it before the block of rows its children produced.
        position = len(self.records)
        while position > 0 and self.records[position - 1].name.startswith(record.name + "."):
            position -= 1
        self.records.insert(position, record)

    def _record(self, module, outputs, params, field, effect, repeated=False):
        rf_axes = field.reported(self.image_size)
        rf_h, rf_w = (1,) * (2 - len(rf_axes)) + rf_axes[-2:]  # a 1-D signal is one row of height 1
        return LayerRecord(
            name=self.names.get(id(module), type(module).__name__), type=type(module).__name__,
            output_shape=[list(t.shape) for t in outputs], params=sum(int(p.data.size) for p in params),
            trainable_params=sum(int(p.data.size) for p in params if p.requires_grad),
            macs=effect.macs if effect else 0, rf_h=rf_h, rf_w=rf_w, jump_h=field.h.jump, jump_w=field.w.jump,
            memory=sum(int(t.data.nbytes) for t in outputs), unused_pixels=bool(effect and effect.unused_pixels),
            unused_detail=effect.unused_detail if effect else "", rf_global=field.is_global,
            container=effect is None, repeated=repeated, rf_axes=rf_axes, jump_axes=tuple(a.jump for a in field.axes))


def _record(model, x, containers, skip_arithmetic):
    """One forward pass of ``model`` on ``x`` in eval mode with the recorder hooked on every module."""
    # images, 1-D signals (N, C, L) and volumes (N, C, D, H, W); anything else has no spatial field
    recorder = _Recorder(model, tuple(x.shape[2:]) if 3 <= x.ndim <= 5 else (1, 1), containers)
    recorder.tracker.set(x, Field.blank(len(recorder.image_size)))
    handles = [module.register_forward_hook(recorder) for module in model.modules()]
    modes = {id(module): module.training for module in model.modules()}
    model.eval()
    try:
        with enable_grad(), (shapes_only(model) if skip_arithmetic else nullcontext()):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        for module in model.modules():
            object.__setattr__(module, "training", modes[id(module)])
    return recorder


def _checked_sizes(input_size, batch_size):
    """``input_size`` as a tuple of positive ints (and a positive ``batch_size``), else a clear error."""
    sizes = (input_size,) if isinstance(input_size, numbers.Integral) else input_size
    if not isinstance(sizes, (tuple, list)) or not sizes or not all(
            isinstance(size, numbers.Integral) and not isinstance(size, bool) for size in sizes):
        raise TypeError(f"summary: input_size must be a tuple of ints without the batch, such as (3, 224, 224), "
                        f"got {input_size!r}")
    if min(sizes) < 1:
        raise ValueError(f"summary: every input_size entry must be positive, got {tuple(sizes)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"summary: batch_size must be a positive int, got {batch_size!r}")
    return tuple(int(size) for size in sizes)


def summary(model, input_size=(3, 224, 224), batch_size=1, dtype=None, containers=False, input_data=None,
            run_layers=False):
    """Run one forward pass on a random ``(batch_size, *input_size)`` input and tabulate every layer call.

    Per call: output shape, params (counted at a module's first call), MACs, receptive field and jump
    (following the data flow, the largest over parallel branches), output bytes and whether the window
    leaves pixels unused. The model runs in eval mode (restored afterwards); totals are over
    ``model.parameters()``. ``containers=True`` also lists Sequential/blocks (indented). ``input_data``
    replaces the random input. Conv1d/2d/3d and Linear layers only produce zeros of their output shape
    (see ``shapes_only``), which makes VGG-16 at 224x224 take a fraction of a second instead of
    seconds; ``run_layers=True`` (or a pass that fails that way) computes them for real.
    """
    if dtype is None:
        first = next(iter(model.parameters()), None)
        dtype = first.dtype if first is not None else get_default_dtype()
    if input_data is None:
        input_size = _checked_sizes(input_size, batch_size)
        values = np.random.default_rng(0).standard_normal((batch_size, *input_size)).astype(dtype)
    else:
        values = input_data.data if isinstance(input_data, Tensor) else np.asarray(input_data)
    # The input requires grad so that every op records its inputs: unknown tensors are traced back.
    x = Tensor(values, requires_grad=True)
    try:
        recorder = _record(model, x, containers, skip_arithmetic=not run_layers)
    except Exception:  # zeros can upset value-dependent code: the real pass decides (and raises)
        if run_layers:
            raise
        recorder = _record(model, x, containers, skip_arithmetic=False)
    records = recorder.records
    all_params = list(model.parameters())
    total = sum(int(p.data.size) for p in all_params)
    trainable = sum(int(p.data.size) for p in all_params if p.requires_grad)
    notes = list(recorder.tracker.notes)
    shown = sum(r.params for r in records if not r.container)
    if shown != total:
        notes.append(f"{total - shown:,} parameters belong to modules that did not run in this forward pass "
                     "(or to containers directly); they are in the totals but in no row")
    if any(r.type == "DeformConv2d" for r in records):
        notes.append("DeformConv2d: receptive field shown at zero offsets (learned offsets can reach further)")
    return Summary(getattr(model, "model_name", type(model).__name__), tuple(x.shape), records, total, trainable,
                   int(x.data.nbytes), sum(int(p.data.nbytes) for p in all_params), notes)
