"""``plot_receptive_field``: the input pixels one unit of a layer sees, drawn over the input image.

Two views: the theoretical box from the layers' kernels, strides and paddings (see ``geometry``) and the
gradient of the unit with respect to the input, whose non-zero pixels (its support) are the pixels that
actually change the unit for this image; the support always lies inside the box.
"""
from __future__ import annotations

import numpy as np
from matplotlib.patches import Rectangle

from ..autograd import Tensor
from .features import as_batch, model_dtype, model_input_spec
from .figures import new_figure, save_figure, to_numpy
from .geometry import geometry_from_records
from .taps import LayerTap, evaluating


def input_batch(model, image_or_size):
    """An input (1, C, H, W) Tensor: the prepared picture, or seeded random pixels of a given size.

    A size is an int (square side), ``(H, W)`` or ``(C, H, W)``; channels default to the model's.
    """
    if isinstance(image_or_size, int) or (isinstance(image_or_size, (tuple, list)) and len(image_or_size) in (2, 3)
                                          and all(isinstance(v, int) for v in image_or_size)):
        channels, _ = model_input_spec(model)
        size = (image_or_size,) * 2 if isinstance(image_or_size, int) else tuple(image_or_size)
        if len(size) == 3:
            channels, size = size[0], size[1:]
        # Random pixels keep ReLUs and max-pools active across the image, so the gradient reaches every pixel.
        pixels = np.random.default_rng(0).random((1, channels, *size))
        return Tensor(pixels.astype(model_dtype(model)))
    return as_batch(image_or_size, model)


def _support(gradient):
    """``(top, left, bottom, right)`` of the non-zero pixels of a (H, W) gradient, or None when all are zero."""
    rows, cols = np.nonzero(gradient)
    if rows.size == 0:
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())


def unit_receptive_field(model, layer_name, image_or_size, unit=None, channel=None):
    """The receptive field of one unit of conv/pool layer ``layer_name`` for an input.

    ``unit`` is ``(row, col)`` in the layer's output (default: the centre unit), ``channel`` the output
    channel (default: the most active one there). Returns a dict with ``layer``, ``unit`` (channel, row, col),
    ``box`` and ``support`` as (top, left, bottom, right), ``gradient`` (H, W), ``geometry`` and ``image``.
    """
    x = input_batch(model, image_or_size)
    x.requires_grad_(True)
    parameters = list(model.parameters())
    flags = [param.requires_grad for param in parameters]
    tap = LayerTap(model)
    try:
        for param in parameters:  # leave the model's own .grad untouched
            param.requires_grad_(False)
        with evaluating(model):
            _, records = tap.run(x, stop_after=layer_name, grad=True)
        geometry = geometry_from_records(records, id(x), tuple(x.shape[-2:]))[-1]
        output = records[-1].output
        _, out_channels, out_height, out_width = output.shape
        row, col = (out_height // 2, out_width // 2) if unit is None else (int(unit[0]), int(unit[1]))
        if not (0 <= row < out_height and 0 <= col < out_width):
            raise ValueError(f"plot_receptive_field: unit ({row}, {col}) is outside {layer_name}'s "
                             f"{out_height}x{out_width} output; rows 0..{out_height - 1}, cols 0..{out_width - 1}")
        if channel is None:
            channel = int(np.argmax(to_numpy(output)[0, :, row, col]))
        if not 0 <= channel < out_channels:
            raise ValueError(f"plot_receptive_field: channel {channel} is outside {layer_name}'s {out_channels} "
                             "channels")
        output[0, channel, row, col].backward()
    finally:
        tap.remove()
        for param, flag in zip(parameters, flags):
            param.requires_grad_(flag)
    gradient = np.abs(to_numpy(x.grad)[0]).sum(axis=0)
    return {"layer": layer_name, "unit": (channel, row, col), "box": geometry.box(row, col),
            "support": _support(gradient), "gradient": gradient, "geometry": geometry,
            "image": to_numpy(x.detach())[0]}


def _outline(axis, box, color, label=None, style="-"):
    top, left, bottom, right = box
    axis.add_patch(Rectangle((left - 0.5, top - 0.5), right - left + 1, bottom - top + 1, fill=False,
                             edgecolor=color, linewidth=2, linestyle=style, label=label))


def plot_receptive_field(model, layer_name, image_or_size, path, unit=None, channel=None):
    """Draw a unit's receptive field box over the input and its gradient (effective field); returns ``path``."""
    field = unit_receptive_field(model, layer_name, image_or_size, unit, channel)
    geometry, box, support = field["geometry"], field["box"], field["support"]
    image = field["image"]
    picture = image[0] if image.shape[0] != 3 else np.clip(image.transpose(1, 2, 0), 0, 1)
    channel, row, col = field["unit"]
    figure = new_figure(9, 4.8)
    figure.suptitle(f"{layer_name} ({geometry.type}) channel {channel}, unit ({row}, {col}): receptive field "
                    f"{geometry.rows.rf:g}x{geometry.cols.rf:g}, jump {geometry.rows.jump:g}"
                    + (" (approximate)" if geometry.approximate else ""), fontsize=10)
    left_axis, right_axis = figure.subplots(1, 2)
    left_axis.imshow(picture, cmap="gray", interpolation="nearest")
    _outline(left_axis, box, "red", "theoretical field")
    top, left, bottom, right = box
    left_axis.set_title(f"input {image.shape[1]}x{image.shape[2]}: rows {top}-{bottom}, cols {left}-{right}",
                        fontsize=9)
    right_axis.imshow(field["gradient"], cmap="magma", interpolation="nearest")
    _outline(right_axis, box, "cyan", "theoretical field")
    if support is not None:
        _outline(right_axis, support, "lime", "gradient support", style="--")
        right_axis.set_title(f"|d unit / d input|: support rows {support[0]}-{support[2]}, "
                             f"cols {support[1]}-{support[3]}", fontsize=9)
    else:
        right_axis.set_title("|d unit / d input| is zero (the unit is inactive for this input)", fontsize=9)
    right_axis.legend(loc="lower right", fontsize=7, framealpha=0.8)
    figure.tight_layout()
    return save_figure(figure, path)
