"""``plot_confusion_matrix``: counts of (true class, predicted class) as a heat map."""
from __future__ import annotations

import numpy as np

from .figures import new_figure, save_figure, to_numpy

MAX_ANNOTATED = 20  # write the counts in the cells up to this many classes


def plot_confusion_matrix(matrix, class_names, path, normalize=False, title="confusion matrix"):
    """Heat map of ``matrix[true, predicted]`` with class names on both axes; returns ``path``.

    With ``normalize`` each row is divided by its sum (recall per class); counts are written in the cells
    for up to 20 classes.
    """
    matrix = to_numpy(matrix).astype(np.float64)
    names = [str(name) for name in class_names]
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"plot_confusion_matrix: matrix must be square (classes x classes), got {matrix.shape}")
    if len(names) != matrix.shape[0]:
        raise ValueError(f"plot_confusion_matrix: {len(names)} class names for a {matrix.shape[0]}x"
                         f"{matrix.shape[1]} matrix; give one name per row")
    shown = matrix
    if normalize:
        totals = matrix.sum(axis=1, keepdims=True)
        shown = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    size = len(names)
    side = min(14.0, 2.5 + 0.5 * size)
    figure = new_figure(side + 1.2, side)
    axis = figure.add_subplot(1, 1, 1)
    image = axis.imshow(shown, cmap="Blues", interpolation="nearest")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    axis.set_xticks(range(size), names, rotation=45 if size > 5 else 0, ha="right" if size > 5 else "center")
    axis.set_yticks(range(size), names)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    total = matrix.sum()
    accuracy = np.trace(matrix) / total if total else float("nan")
    axis.set_title(f"{title} (accuracy {100 * accuracy:.1f}%)" if total else title, fontsize=10)
    if size <= MAX_ANNOTATED:
        threshold = shown.max() / 2 if shown.max() > 0 else 1
        for row in range(size):
            for col in range(size):
                text = f"{shown[row, col]:.2f}" if normalize else f"{int(round(matrix[row, col]))}"
                axis.text(col, row, text, ha="center", va="center", fontsize=8,
                          color="white" if shown[row, col] > threshold else "black")
    figure.tight_layout()
    return save_figure(figure, path)
