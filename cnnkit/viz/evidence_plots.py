"""Drawing class evidence: heat maps as colours, laid over the picture the model saw, and saved as a figure."""
from __future__ import annotations

import numpy as np
from matplotlib import colormaps

from .evidence import explain, normalize_map
from .features import as_batch
from .figures import blank_axis, new_figure, save_figure

HEAT_COLORMAP = "jet"
METHOD_TITLES = {"cam": "CAM", "gradcam": "Grad-CAM", "saliency": "gradient saliency", "occlusion": "occlusion"}


def heatmap_rgba(heatmap, colormap=HEAT_COLORMAP, max_alpha=0.75):
    """An (H, W, 4) uint8 picture of a map: colour from ``colormap`` on its 0..1 scale, opacity ``max_alpha *
    value`` so that pixels without evidence stay see-through."""
    scaled = normalize_map(heatmap)
    rgba = colormaps[colormap](scaled)
    rgba[..., 3] = max_alpha * scaled
    return np.round(rgba * 255).astype(np.uint8)


def overlay_heatmap(pixels, heatmap, colormap=HEAT_COLORMAP, max_alpha=0.6):
    """Blend a map (H, W) over a uint8 picture (H, W) or (H, W, 3): ``(1 - a) * picture + a * colour``."""
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[:2] != np.shape(heatmap):
        raise ValueError(f"overlay_heatmap: the picture is {pixels.shape[:2]} but the map is {np.shape(heatmap)}; "
                         "upsample the map to the picture's size first")
    rgba = heatmap_rgba(heatmap, colormap, max_alpha).astype(np.float64) / 255
    alpha = rgba[..., 3:]
    blended = (1 - alpha) * pixels[..., :3].astype(np.float64) + alpha * rgba[..., :3] * 255
    return np.round(blended).astype(np.uint8)


def _display_pixels(x):
    """A (C, H, W) model input as uint8 grey or RGB for display, stretched to 0..255."""
    picture = np.asarray(x, dtype=np.float64)
    picture = normalize_map(picture) * 255
    return np.round(picture[0] if picture.shape[0] != 3 else picture.transpose(1, 2, 0)).astype(np.uint8)


def plot_evidence(model, image, path, method="gradcam", target=None, layer=None, class_names=None, pixels=None,
                  **options):
    """Draw the picture, the ``method``'s heat map and their overlay side by side; returns ``path``.

    ``pixels`` is the picture to draw under the map (default: the model input, stretched to 0..255).
    """
    x = as_batch(image, model)
    evidence = explain(model, x, method, target, layer, **options)
    shown = _display_pixels(x.data[0]) if pixels is None else np.asarray(pixels)
    label = class_names[evidence.target] if class_names else str(evidence.target)
    figure = new_figure(9.0, 3.4)
    axes = figure.subplots(1, 3)
    gray = "gray" if shown.ndim == 2 else None
    axes[0].imshow(shown, cmap=gray, interpolation="nearest")
    axes[0].set_title("input", fontsize=10)
    heat = axes[1].imshow(evidence.heatmap, cmap=HEAT_COLORMAP, interpolation="nearest")
    figure.colorbar(heat, ax=axes[1], fraction=0.046, pad=0.04)
    where = f" at {evidence.layer}" if evidence.layer else ""
    axes[1].set_title(f"{METHOD_TITLES.get(evidence.method, evidence.method)}{where}", fontsize=10)
    axes[2].imshow(overlay_heatmap(shown, evidence.heatmap), interpolation="nearest")
    axes[2].set_title(f"class {label} (score {evidence.score:.3g})", fontsize=10)
    for axis in axes:
        blank_axis(axis)
    return save_figure(figure, path)
