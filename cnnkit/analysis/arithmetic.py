"""The arithmetic people study by hand: output sizes, receptive fields, parameter and MAC counts.

Everything here is computed from the formulas (never looked up), so the numbers in the course notes
(one 7x7 conv vs three 3x3: 49C^2 vs 27C^2 weights) come out of the same code the summary uses.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass, field

from ..functional.windows import (
    AXIS_NAMES,
    leaves_pixels_unused,
    ntuple,
    pair,
    positive_ntuple,
    resolve_padding,
    window_output_size,
)
from .receptive_field import AxisField, number

__all__ = ["OutputSize", "output_size", "pool_output_size", "FieldRow", "ReceptiveField", "receptive_field",
           "conv_params", "conv_macs", "Design", "Comparison", "compare_stacked", "compare_asymmetric",
           "compare_separable", "compare_grouped"]


# ---------------------------------------------------------------------------------------------- checks
def _checked_int(value, name, layer, minimum=1):
    """``value`` as an int of at least ``minimum``, with the messages the conv and pooling layers give."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{layer}: {name} must be an int, got {value!r}")
    if value < minimum:
        kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f"at least {minimum}"
        raise ValueError(f"{layer}: {name} must be {kind}, got {value!r}")
    return int(value)


def _checked_padding(padding, layer):
    """Per-side padding (before, after) from an int or a pair, both non-negative."""
    pads = (padding, padding) if isinstance(padding, numbers.Integral) and not isinstance(padding, bool) else padding
    if not isinstance(pads, (tuple, list)) or len(pads) != 2 or any(
            isinstance(p, bool) or not isinstance(p, numbers.Integral) for p in pads):
        raise TypeError(f"{layer}: padding must be an int or a pair (before, after) of ints, got {padding!r}")
    if min(pads) < 0:
        raise ValueError(f"{layer}: padding must be non-negative, got {padding!r}")
    return int(pads[0]), int(pads[1])


# ---------------------------------------------------------------------------------------------- output size
@dataclass(frozen=True)
class OutputSize:
    """Output length of a window layer: ``size`` (what frameworks compute) and the ``exact`` formula value."""

    size: int
    exact: float
    unused_pixels: bool
    formula: str

    def __int__(self):
        return self.size

    def __str__(self):
        note = f"; not an integer: floored to {self.size}, the last pixel(s) are unused" if self.unused_pixels else ""
        return f"{self.formula} = {self.exact:g}{note}"


def output_size(size, kernel, stride=1, padding=0, dilation=1, ceil_mode=False):
    """Output length = floor((W - F_eff + P_total) / S) + 1 with F_eff = d*(F - 1) + 1 (ceil with ``ceil_mode``).

    ``padding`` is per side (int) or (before, after). The result also says whether (W - F_eff + P_total)/S + 1
    is an integer; when it is not, the window never reaches the last pixels (W=10, F=3, S=2: 4.5 -> 4).
    """
    size = _checked_int(size, "size", "output_size", minimum=0)
    kernel = _checked_int(kernel, "kernel", "output_size")
    stride = _checked_int(stride, "stride", "output_size")
    dilation = _checked_int(dilation, "dilation", "output_size")
    pads = _checked_padding(padding, "output_size")
    pad_total = pads[0] + pads[1]
    out = window_output_size("output_size", "size", size, kernel, stride, pads, dilation, ceil_mode=ceil_mode)
    effective = dilation * (kernel - 1) + 1
    exact = (size - effective + pad_total) / stride + 1
    unused = leaves_pixels_unused(size, kernel, stride, pad_total, dilation) and not ceil_mode
    formula = f"({size} - {effective} + {pad_total}) / {stride} + 1"
    return OutputSize(out, exact, unused, formula)


def pool_output_size(size, kernel, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Pooling output length: as ``output_size`` with stride defaulting to the kernel size."""
    return output_size(size, kernel, kernel if stride is None else stride, padding, dilation, ceil_mode)


# ---------------------------------------------------------------------------------------------- receptive field
@dataclass(frozen=True)
class FieldRow:
    """One layer of a receptive-field table: its hyper-parameters and the field of its output units."""

    name: str
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    rf: tuple
    jump: tuple
    start: tuple
    size: tuple | None = None


@dataclass
class ReceptiveField:
    """Receptive field (rf), jump and first-unit centre (start) after each layer, as (h, w) pairs (one value per
    axis for 1-D and 3-D layers)."""

    rows: list

    @property
    def rf(self):
        return self.rows[-1].rf if self.rows else (1, 1)

    @property
    def jump(self):
        return self.rows[-1].jump if self.rows else (1, 1)

    @property
    def start(self):
        return self.rows[-1].start if self.rows else (0.5, 0.5)

    def to_dict(self):
        return {"layers": [asdict(row) for row in self.rows], "rf": self.rf, "jump": self.jump, "start": self.start}

    def __str__(self):
        header = ("layer", "kernel", "stride", "padding", "dilation", "size", "rf", "jump", "start")
        lines = [header]
        for row in self.rows:
            lines.append((row.name, _hw(row.kernel), _hw(row.stride), _hw(row.padding), _hw(row.dilation),
                          "-" if row.size is None else _hw(row.size), _hw(row.rf), _hw(row.jump), _hw(row.start)))
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        text = ["  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "-" * len(text[0]))
        text.append("rf_out = rf_in + (d*(k-1)+1 - 1)*jump_in; jump_out = jump_in*stride; "
                    "start = centre of the first unit's field (input pixel coordinates, pixel i spans [i, i+1))")
        return "\n".join(text)


def _hw(value):
    if isinstance(value, tuple) and 1 <= len(value) <= 3 and all(isinstance(v, (int, float)) for v in value):
        return "x".join(str(number(v)) for v in value)
    return str(value)


def _layer_spec(layer, index):
    """Normalise a layer description to (name, kernel, stride, padding, dilation)."""
    if isinstance(layer, dict):
        spec = dict(layer)
        kernel = spec.pop("kernel_size", spec.pop("kernel", None))
        return (spec.get("name", f"layer{index}"), kernel, spec.get("stride", 1), spec.get("padding", 0),
                spec.get("dilation", 1))
    if isinstance(layer, (tuple, list)):
        if len(layer) > 4 or not layer:
            raise ValueError(f"receptive_field: layer {index} must be (kernel, stride, padding, dilation), "
                             f"got {layer!r}")
        values = list(layer) + [1, 0, 1][len(layer) - 1:]
        return (f"layer{index}", *values[:4])
    if hasattr(layer, "kernel_size"):  # a Conv2d / pooling module
        stride = getattr(layer, "stride", None)
        return (type(layer).__name__ + str(index), layer.kernel_size, layer.kernel_size if stride is None else stride,
                getattr(layer, "padding", 0), getattr(layer, "dilation", 1))
    if isinstance(layer, int):
        return (f"layer{index}", layer, 1, 0, 1)
    raise TypeError(f"receptive_field: layer {index} must be a (kernel, stride, padding, dilation) tuple, a dict "
                    f"or a module with kernel_size, got {type(layer).__name__}")


def _axes_given(value):
    """len(value) when it is a tuple or list of 1 to 3 sizes, else None (an int stands for every axis)."""
    return len(value) if isinstance(value, (tuple, list)) and 1 <= len(value) <= 3 else None


def _spatial_dims(specs, input_size):
    """How many spatial axes a layer list describes: input_size's length, else the first tuple kernel's, else 2."""
    return next(filter(None, map(_axes_given, [input_size, *(spec[1] for spec in specs)])), 2)


def receptive_field(layers, input_size=None):
    """Receptive field of a chain: RF_out = RF_in + (k_eff - 1)*jump_in, k_eff = d*(k - 1) + 1, jump_out = jump_in*s.

    ``layers`` are (kernel, stride, padding, dilation) tuples (trailing items optional), dicts with
    those keys, or Conv1d/2d/3d/pooling modules; kernels may be (kh, kw) (or (k,) and (kd, kh, kw) for 1-D
    and 3-D chains). With ``input_size`` (H, W) (or (L,), (D, H, W)) the output size of every layer is
    listed too (and 'same' padding is allowed).
    """
    specs = [_layer_spec(layer, index) for index, layer in enumerate(layers)]
    dims = _spatial_dims(specs, input_size)
    fields = (AxisField(),) * dims
    size = None if input_size is None else ntuple(input_size, dims, "input_size", "receptive_field")
    if size is not None and min(size) < 1:
        raise ValueError(f"receptive_field: input_size must be positive, got {input_size!r}")
    rows = []
    for name, kernel, stride, padding, dilation in specs:
        kernel = positive_ntuple(kernel, dims, "kernel", f"receptive_field layer {name}")
        stride = positive_ntuple(stride, dims, "stride", f"receptive_field layer {name}")
        dilation = positive_ntuple(dilation, dims, "dilation", f"receptive_field layer {name}")
        if isinstance(padding, str) and size is None:
            raise ValueError(f"receptive_field: layer {name} uses padding={padding!r}, which needs input_size")
        pads = resolve_padding(padding, size or (0,) * dims, kernel, stride, dilation,
                               layer=f"receptive_field layer {name}")
        fields = tuple(fields[a].window(kernel[a], stride[a], pads[a][0], dilation[a]) for a in range(dims))
        if size is not None:
            size = tuple(window_output_size(name, AXIS_NAMES[dims][a], size[a], kernel[a], stride[a], pads[a],
                                            dilation[a]) for a in range(dims))
        rows.append(FieldRow(name, kernel, stride, tuple(pads[a][0] if pads[a][0] == pads[a][1] else pads[a]
                                                         for a in range(dims)),
                             dilation, tuple(number(f.rf) for f in fields), tuple(number(f.jump) for f in fields),
                             tuple(number(f.start) for f in fields), size))
    return ReceptiveField(rows)


# ---------------------------------------------------------------------------------------------- counting
def conv_params(in_channels, out_channels, kernel_size, groups=1, bias=True):
    """Parameters of a conv: C_out * (C_in/groups) * kh * kw (+ C_out biases); kernel_size may also be (k,) or
    (kd, kh, kw)."""
    dims = _axes_given(kernel_size) or 2
    kernel = positive_ntuple(kernel_size, dims, "kernel_size", "conv_params")
    in_channels = _checked_int(in_channels, "in_channels", "conv_params")
    out_channels = _checked_int(out_channels, "out_channels", "conv_params")
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"conv_params: groups must be a positive integer, got {groups!r}")
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"conv_params: in_channels={in_channels} and out_channels={out_channels} must both be "
                         f"divisible by groups={groups}")
    return out_channels * (in_channels // groups) * math.prod(kernel) + (out_channels if bias else 0)


def conv_macs(in_channels, out_channels, kernel_size, output_size=(1, 1), groups=1):
    """Multiply-accumulates of a conv: C_out * H_out * W_out * (C_in/groups) * kh * kw (per image, bias excluded);
    output_size may also be (L,) or (D, H, W)."""
    dims = _axes_given(output_size) or 2
    out_size = ntuple(output_size, dims, "output_size", "conv_macs")
    if min(out_size) < 0:
        raise ValueError(f"conv_macs: output_size must be non-negative, got {output_size!r}")
    return conv_params(in_channels, out_channels, kernel_size, groups, bias=False) * math.prod(out_size)


@dataclass
class Design:
    """One way to build a block: its layers (C_in, C_out, (kh, kw), groups), params, MACs and receptive field."""

    name: str
    layers: list
    params: int
    macs: int
    rf: tuple


def _design(name, layers, bias, spatial):
    """Params, MACs (at ``spatial`` output positions, 'same' padding, stride 1) and rf of stacked convs."""
    params = sum(conv_params(cin, cout, kernel, groups, bias) for cin, cout, kernel, groups in layers)
    macs = sum(conv_macs(cin, cout, kernel, spatial, groups) for cin, cout, kernel, groups in layers)
    rf = receptive_field([{"kernel": kernel} for _, _, kernel, _ in layers]).rf
    return Design(name, [(cin, cout, kernel, groups) for cin, cout, kernel, groups in layers], params, macs, rf)


@dataclass
class Comparison:
    """Designs side by side; ``ratio`` = params of each design / params of the first."""

    title: str
    designs: list = field(default_factory=list)
    spatial: tuple = (1, 1)

    @property
    def ratio(self):
        base = self.designs[0].params
        return [design.params / base for design in self.designs]

    def __getitem__(self, index):
        return self.designs[index]

    def to_dict(self):
        return {"title": self.title, "spatial": self.spatial, "designs": [asdict(d) for d in self.designs]}

    def __str__(self):
        where = "per output position" if tuple(self.spatial) == (1, 1) else f"at {self.spatial[0]}x{self.spatial[1]}"
        header = ("design", "layers", "params", f"MACs ({where})", "rf", "params ratio")
        lines = [header]
        for design, ratio in zip(self.designs, self.ratio):
            layers = " + ".join(f"{kernel[0]}x{kernel[1]}{'/g' + str(groups) if groups > 1 else ''} ({cin}->{cout})"
                                for cin, cout, kernel, groups in design.layers)
            lines.append((design.name, layers, f"{design.params:,}", f"{design.macs:,}", _hw(design.rf),
                          f"{ratio:.3f}"))
        widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
        text = [self.title]
        text += ["  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        text.insert(2, "-" * len(text[1]))
        return "\n".join(text)


def compare_stacked(channels, large=7, small=3, bias=False, spatial=(1, 1)):
    """One large k x k conv vs (k - 1)/(s - 1) stacked s x s convs with the same receptive field, all C -> C.

    Weights: C^2 * k^2 vs n * C^2 * s^2 (C=10: 7x7 gives 4,900, three 3x3 give 2,700).
    """
    channels = _checked_int(channels, "channels", "compare_stacked")
    small = _checked_int(small, "small", "compare_stacked", minimum=2)
    large = _checked_int(large, "large", "compare_stacked", minimum=small)
    if (large - 1) % (small - 1):
        raise ValueError(f"compare_stacked: (large - 1) = {large - 1} must be a multiple of (small - 1) = {small - 1} "
                         "for the stack to reach the same receptive field")
    count = (large - 1) // (small - 1)
    return Comparison(f"one {large}x{large} conv vs {count} stacked {small}x{small} convs, {channels} -> {channels} "
                      f"channels{'' if bias else ', no bias'}", [
                          _design(f"1 x {large}x{large}", [(channels, channels, (large, large), 1)], bias, spatial),
                          _design(f"{count} x {small}x{small}", [(channels, channels, (small, small), 1)] * count,
                                  bias, spatial)], pair(spatial))


def compare_asymmetric(channels, kernel=3, bias=False, spatial=(1, 1)):
    """k x k conv vs 1 x k followed by k x 1 (same receptive field): C^2 k^2 vs 2 C^2 k weights."""
    return Comparison(f"{kernel}x{kernel} vs 1x{kernel} + {kernel}x1, {channels} -> {channels} channels", [
        _design(f"{kernel}x{kernel}", [(channels, channels, (kernel, kernel), 1)], bias, spatial),
        _design(f"1x{kernel} + {kernel}x1",
                [(channels, channels, (1, kernel), 1), (channels, channels, (kernel, 1), 1)], bias, spatial)],
        pair(spatial))


def compare_separable(in_channels, out_channels, kernel=3, bias=False, spatial=(1, 1)):
    """Standard conv vs depthwise k x k (groups = C_in) + pointwise 1x1: C_out C_in k^2 vs C_in k^2 + C_in C_out."""
    return Comparison(f"standard vs depthwise-separable {kernel}x{kernel}, {in_channels} -> {out_channels} channels", [
        _design("standard", [(in_channels, out_channels, (kernel, kernel), 1)], bias, spatial),
        _design("depthwise + pointwise", [(in_channels, in_channels, (kernel, kernel), in_channels),
                                          (in_channels, out_channels, (1, 1), 1)], bias, spatial)], pair(spatial))


def compare_grouped(in_channels, out_channels, kernel=3, groups=2, bias=False, spatial=(1, 1)):
    """Standard conv vs the same conv split into ``groups`` groups: weights divided by the group count."""
    return Comparison(f"standard vs grouped (groups={groups}) {kernel}x{kernel}, {in_channels} -> {out_channels}", [
        _design("standard", [(in_channels, out_channels, (kernel, kernel), 1)], bias, spatial),
        _design(f"groups={groups}", [(in_channels, out_channels, (kernel, kernel), groups)], bias, spatial)],
        pair(spatial))
