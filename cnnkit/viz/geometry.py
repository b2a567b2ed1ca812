"""Receptive-field geometry of conv and pool layers: size ``rf``, step ``jump`` and ``offset`` per axis.

For a layer with kernel F, dilation d (effective kernel F_eff = d*(F-1)+1), stride S and padding P_before
applied to a map whose units see ``rf_in`` input pixels, ``jump_in`` apart, starting at ``offset_in``:

    rf = rf_in + (F_eff - 1) * jump_in,   jump = jump_in * S,   offset = offset_in - P_before * jump_in

Unit ``i`` of the layer sees input pixels ``offset + i*jump`` to ``offset + i*jump + rf - 1`` (clipped to the
image): the bounding box of the pixels its value depends on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..autograd import zeros
from ..functional.windows import pair, resolve_padding
from .taps import LayerTap, evaluating


@dataclass(frozen=True)
class AxisGeometry:
    """Receptive field along one axis: ``rf`` pixels, ``jump`` pixels between units, ``offset`` of unit 0."""

    rf: float = 1
    jump: float = 1
    offset: float = 0

    def then(self, kernel, stride, pad_before, dilation=1):
        """Geometry after a window of ``kernel`` (dilated), ``stride`` and ``pad_before`` on this axis."""
        effective = dilation * (kernel - 1) + 1
        return AxisGeometry(self.rf + (effective - 1) * self.jump, self.jump * stride,
                            self.offset - pad_before * self.jump)

    def span(self, index, size):
        """Input pixels ``(first, last)`` (inclusive, clipped to ``0..size-1``) seen by unit ``index``."""
        first = self.offset + index * self.jump
        last = first + self.rf - 1
        return max(0, math.floor(first)), min(size - 1, math.ceil(last))


@dataclass(frozen=True)
class LayerGeometry:
    """Receptive-field geometry of one layer's output units on the input image (rows, then columns)."""

    name: str
    type: str
    rows: AxisGeometry
    cols: AxisGeometry
    input_size: tuple          # (H, W) of the network's input
    output_shape: tuple        # (C, H, W) of the layer's output
    approximate: bool = False  # True where windows are uneven (adaptive pooling to a size that does not divide)

    def box(self, row, col):
        """``(top, left, bottom, right)`` input pixels (inclusive) that unit ``(row, col)`` depends on."""
        top, bottom = self.rows.span(row, self.input_size[0])
        left, right = self.cols.span(col, self.input_size[1])
        return top, left, bottom, right

    def to_dict(self):
        return {"rf": [self.rows.rf, self.cols.rf], "jump": [self.rows.jump, self.cols.jump],
                "offset": [self.rows.offset, self.cols.offset], "input_size": list(self.input_size),
                "approximate": self.approximate}


def _window(module, in_hw, out_hw):
    """``(kernel, stride, (pad_top, pad_left), dilation, approximate)`` of a conv or pool layer."""
    layer = type(module).__name__
    kernel_size = getattr(module, "kernel_size", None)
    if kernel_size is None:
        # Adaptive pooling: even windows when the output size divides the input, else the widest window.
        kernel, stride, approximate = [], [], False
        for size_in, size_out in zip(in_hw, out_hw):
            if size_in % size_out == 0:
                stride.append(size_in // size_out)
                kernel.append(size_in // size_out)
            else:
                stride.append(size_in / size_out)
                kernel.append(math.ceil(size_in / size_out) + 1)
                approximate = True
        return tuple(kernel), tuple(stride), (0, 0), (1, 1), approximate
    kernel = pair(kernel_size, "kernel_size", layer)
    stride_value = getattr(module, "stride", None)
    stride = kernel if stride_value is None or stride_value == () else pair(stride_value, "stride", layer)
    dilation = pair(getattr(module, "dilation", 1), "dilation", layer)
    padding = resolve_padding(getattr(module, "padding", 0), in_hw, kernel, stride, dilation, layer)
    return kernel, stride, (padding[0][0], padding[1][0]), dilation, False


def _producer(records, index, geometries, image_id, image_hw):
    """``((rows, cols), approximate)`` of the map a recorded layer read: the layer that made it, else the image.

    The producer is the recorded output object itself when the layer read it directly, else the latest
    earlier layer whose output has the same height and width (layers in between, such as ReLU or batch
    norm, keep the size), else the image.
    """
    record = records[index]
    identity = AxisGeometry(), AxisGeometry()
    if record.input_id == image_id:
        return identity, False
    for earlier in range(index - 1, -1, -1):
        if id(records[earlier].output) == record.input_id:
            return geometries[earlier]
    in_hw = tuple(record.input_shape[-2:])
    for earlier in range(index - 1, -1, -1):
        if tuple(records[earlier].output.shape[-2:]) == in_hw:
            return geometries[earlier]
    if in_hw == tuple(image_hw):
        return identity, False
    # The map comes from somewhere we cannot see (a resize inside forward); the nearest layer is our best guess.
    return (geometries[index - 1][0] if index else identity), True


def geometry_from_records(records, image_id, image_hw):
    """Per-layer :class:`LayerGeometry` for the records of one forward pass (see :class:`LayerTap`)."""
    chained, result = [], []  # chained[i] = ((rows, cols), approximate) of records[i]
    for index, record in enumerate(records):
        (rows, cols), inherited_approx = _producer(records, index, chained, image_id, image_hw)
        in_hw = tuple(record.input_shape[-2:])
        out_hw = tuple(record.output.shape[-2:])
        kernel, stride, pads, dilation, approximate = _window(record.module, in_hw, out_hw)
        rows = rows.then(kernel[0], stride[0], pads[0], dilation[0])
        cols = cols.then(kernel[1], stride[1], pads[1], dilation[1])
        approximate = approximate or inherited_approx
        chained.append(((rows, cols), approximate))
        result.append(LayerGeometry(record.name, type(record.module).__name__, rows, cols, tuple(image_hw),
                                    tuple(record.output.shape[1:]), approximate))
    return result


def _parameter_dtype(model):
    for param in model.parameters():
        return param.dtype
    return None


def layer_geometry(model, input_shape, tap=None):
    """Receptive-field geometry of every conv and pool layer of ``model`` for an (N, C, H, W) ``input_shape``.

    Returns ``{layer name: LayerGeometry}`` in forward order. The geometry follows the chain of conv and pool
    layers the forward pass runs; in networks with branches it follows the branch that ran last at each size.
    """
    own_tap = tap is None
    tap = LayerTap(model) if own_tap else tap
    try:
        x = zeros(*input_shape, dtype=_parameter_dtype(model))
        with evaluating(model):
            _, records = tap.run(x)
        geometries = geometry_from_records(records, id(x), tuple(input_shape[-2:]))
    finally:
        if own_tap:
            tap.remove()
    return {geometry.name: geometry for geometry in geometries}
