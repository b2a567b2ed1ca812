"""``plot_filters``: the first convolution's kernels as a grid of small images."""
from __future__ import annotations

import numpy as np

from .figures import blank_axis, grid_shape, new_figure, save_figure, to_numpy


def first_conv(model_or_conv):
    """``(name, layer)`` of the first layer with a 4-D ``weight`` (a conv); the layer itself if it is one."""
    weight = getattr(model_or_conv, "weight", None)
    if weight is not None and to_numpy(weight).ndim == 4:
        return type(model_or_conv).__name__, model_or_conv
    for name, module in model_or_conv.named_modules():
        weight = getattr(module, "weight", None)
        if weight is not None and to_numpy(weight).ndim == 4:
            return name, module
    raise ValueError(f"plot_filters: {type(model_or_conv).__name__} has no convolution (no layer with a 4-D "
                     "weight); pass a model with a Conv2d or the Conv2d itself")


def _scale(tile):
    """Stretch a tile to [0, 1]; a constant tile becomes mid-gray."""
    low, high = float(tile.min()), float(tile.max())
    return np.full_like(tile, 0.5) if high - low < 1e-12 else (tile - low) / (high - low)


def filter_tiles(weight, max_filters=64, max_channels=8):
    """Tiles to draw and their grid: ``(tiles, columns, rgb)``.

    RGB first layers give one colour tile per filter; others one grayscale tile per (filter, input channel),
    a row per filter, at most ``max_channels`` channels wide.
    """
    weight = np.asarray(weight, dtype=np.float64)[:max_filters]
    out_channels, in_channels = weight.shape[:2]
    if in_channels == 3:
        return [_scale(kernel.transpose(1, 2, 0)) for kernel in weight], None, True
    channels = min(in_channels, max_channels)
    return [_scale(kernel[c]) for kernel in weight for c in range(channels)], channels, False


def plot_filters(model_or_conv, path, max_filters=64, max_channels=8, columns=8):
    """Draw the first conv layer's filters (each scaled to its own min..max) as an image grid; returns ``path``."""
    name, conv = first_conv(model_or_conv)
    weight = to_numpy(conv.weight)
    tiles, per_row, rgb = filter_tiles(weight, max_filters, max_channels)
    rows, cols = (len(tiles) // per_row, per_row) if per_row and per_row > 1 else grid_shape(len(tiles), columns)
    tile = 0.9  # inches per tile, spacing included
    width, height = max(3.0, cols * tile + 0.3), rows * tile + 0.6
    figure = new_figure(width, height)
    shown = min(weight.shape[0], max_filters)
    detail = "" if shown == weight.shape[0] else f", first {shown}"
    figure.suptitle(f"{name}: {weight.shape[0]} filters {weight.shape[2]}x{weight.shape[3]} "
                    f"over {weight.shape[1]} channel(s){detail}", fontsize=10, y=1 - 0.12 / height, va="top")
    margin = (width - cols * tile) / 2
    grid = figure.add_gridspec(rows, cols, wspace=0.08, hspace=0.08, left=margin / width, right=1 - margin / width,
                               bottom=0.1 / height, top=1 - 0.5 / height)
    for index, tile in enumerate(tiles):
        axis = figure.add_subplot(grid[index // cols, index % cols])
        axis.imshow(tile, cmap=None if rgb else "gray", vmin=0, vmax=1, interpolation="nearest")
        blank_axis(axis)
    return save_figure(figure, path)
