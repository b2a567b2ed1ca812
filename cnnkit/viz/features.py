"""``plot_feature_maps``: what every conv and pool layer outputs for one image, grouped by layer."""
from __future__ import annotations

import numpy as np

from ..autograd import Tensor
from .figures import blank_axis, grid_shape, new_figure, save_figure, to_numpy
from .images import prepare_image
from .taps import LayerTap, evaluating


def model_input_spec(model):
    """``(channels, (H, W))`` a model expects: from its config (``in_channels``, ``image_size``), else the first
    conv's input channels and 28 for LeNet-5, 224 otherwise."""
    config = getattr(model, "model_config", None) or {}
    channels = config.get("in_channels")
    if channels is None:
        for module in model.modules():
            weight = getattr(module, "weight", None)
            if weight is not None and weight.ndim == 4:
                channels = weight.shape[1] * int(getattr(module, "groups", 1))
                break
    side = config.get("image_size", 28 if getattr(model, "model_name", "") == "lenet5" else 224)
    size = tuple(int(v) for v in side) if isinstance(side, (list, tuple)) else (int(side), int(side))
    return int(channels or 3), size


def model_dtype(model):
    """The floating dtype of the model's parameters (float32 when it has none)."""
    for param in model.parameters():
        return param.dtype
    return np.dtype(np.float32)


def as_batch(image, model, mean=None, std=None):
    """A (1, C, H, W) Tensor of the model's dtype from a picture or a ready float input.

    Ready inputs are a Tensor, a float array (N, C, H, W), or a float array (C, H, W) whose C is the model's
    channel count; anything else (a path, a PIL image, a uint8 array) is prepared with :func:`prepare_image`.
    """
    channels, size = model_input_spec(model)
    array = to_numpy(image) if isinstance(image, (Tensor, np.ndarray)) else None
    ready = isinstance(image, Tensor) or (array is not None and array.dtype.kind == "f" and (
        array.ndim == 4 or (array.ndim == 3 and array.shape[0] == channels)))
    if ready:
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            raise ValueError(f"expected an image (C, H, W) or a batch (N, C, H, W), got shape {array.shape}")
        return Tensor(array.astype(model_dtype(model)))
    prepared = prepare_image(image, size, channels, mean=mean, std=std)
    return Tensor(prepared.array[None].astype(model_dtype(model)))


def feature_maps(model, x, tap=None):
    """``[(name, type, (C, H, W) array), ...]`` of every conv/pool layer for the first image of batch ``x``."""
    own_tap = tap is None
    tap = LayerTap(model) if own_tap else tap
    try:
        with evaluating(model):
            _, records = tap.run(x)
    finally:
        if own_tap:
            tap.remove()
    return [(record.name, type(record.module).__name__, record.array[0]) for record in records]


def plot_feature_maps(model, image, path, max_maps=32, columns=16, mean=None, std=None):
    """Draw each conv/pool layer's output channels for ``image`` (one row block per layer); returns ``path``.

    ``image`` is a picture (path, PIL image, array) prepared as in :func:`prepare_image`, or a ready (C, H, W)
    array / (1, C, H, W) batch. Each layer shares one colour scale (its min..max), so weak channels look weak.
    """
    layers = feature_maps(model, as_batch(image, model, mean, std))
    blocks = [(name, kind, maps, grid_shape(min(len(maps), max_maps), columns)) for name, kind, maps in layers]
    # Every tile has the same size on one grid as wide as the widest layer, so layers line up on the left.
    tile, title_height, margin = 0.75, 0.35, 0.15  # inches
    grid_columns = max(cols for *_, (_, cols) in blocks)
    heights = [rows * tile + title_height for *_, (rows, _) in blocks]
    width = max(grid_columns * tile + 2 * margin, 5.0)  # at least wide enough for the titles
    figure = new_figure(width, sum(heights) + 0.1)
    subfigures = figure.subfigures(len(blocks), 1, height_ratios=heights, squeeze=False)[:, 0]
    for subfigure, height, (name, kind, maps, (rows, cols)) in zip(subfigures, heights, blocks):
        shown = min(len(maps), max_maps)
        more = "" if shown == len(maps) else f" (first {shown} of {len(maps)} channels)"
        subfigure.suptitle(f"{name} {kind}  {'x'.join(str(v) for v in maps.shape)}{more}", fontsize=9,
                           x=margin / width, y=1 - 0.05 / height, ha="left", va="top")
        low, high = float(np.min(maps)), float(np.max(maps))
        grid = subfigure.add_gridspec(rows, grid_columns, wspace=0.06, hspace=0.06, left=margin / width,
                                      right=(margin + grid_columns * tile) / width, top=1 - title_height / height,
                                      bottom=0.02 / height)
        for channel in range(shown):
            axis = subfigure.add_subplot(grid[channel // cols, channel % cols])
            axis.imshow(maps[channel], cmap="viridis", vmin=low, vmax=high if high > low else low + 1,
                        interpolation="nearest")
            blank_axis(axis)
    return save_figure(figure, path)
