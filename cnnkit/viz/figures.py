"""Figures without pyplot (no global backend, safe in servers and threads), saved as PNG or SVG by extension."""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

FORMATS = (".png", ".svg", ".pdf")


def new_figure(width, height):
    """A matplotlib ``Figure`` of ``width`` x ``height`` inches with a white background."""
    return Figure(figsize=(width, height), dpi=100, facecolor="white")


def save_figure(figure, path):
    """Save ``figure`` to ``path`` in the format its extension names (.png, .svg, .pdf); returns the path."""
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in FORMATS:
        raise ValueError(f"viz: cannot tell the image format of {path!r}; end the file name with "
                         f"{', '.join(FORMATS)}")
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    figure.savefig(path, format=extension[1:], facecolor=figure.get_facecolor())
    return path


def to_numpy(value):
    """A NumPy array from a Tensor, a Parameter or anything array-like."""
    data = getattr(value, "data", value)
    return np.asarray(data)


def grid_shape(count, max_columns):
    """``(rows, columns)`` of a grid holding ``count`` panels, at most ``max_columns`` wide."""
    columns = max(1, min(count, max_columns))
    return -(-count // columns), columns


def blank_axis(axis):
    """Hide an axis's ticks and frame, leaving only what is drawn in it."""
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_visible(False)
