"""Classification metrics on arrays: top-k hits (argpartition, no full sort) and the confusion matrix."""
from __future__ import annotations

import numpy as np


def _check(logits, labels):
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"expected logits of shape (N, num_classes) and labels of shape (N,), "
                         f"got {logits.shape} and {labels.shape}")
    return logits, labels.astype(np.int64, copy=False)


def topk_correct(logits, labels, k):
    """Per sample: is ``labels[i]`` among the ``k`` largest ``logits[i]``? (``np.argpartition``, O(N*C))."""
    logits, labels = _check(logits, labels)
    num_classes = logits.shape[1]
    if k >= num_classes:
        return np.ones(len(labels), dtype=bool)
    top = np.argpartition(logits, num_classes - k, axis=1)[:, num_classes - k:]
    return (top == labels[:, None]).any(axis=1)


def topk_accuracy(logits, labels, k=1):
    """Fraction of samples whose label is among their ``k`` highest logits."""
    hits = topk_correct(logits, labels, k)
    return float(hits.mean()) if hits.size else 0.0


def confusion_matrix(labels, predictions, num_classes):
    """``counts[t, p]``: the number of samples of true class ``t`` predicted as class ``p``."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    predictions = np.asarray(predictions, dtype=np.int64).ravel()
    if labels.shape != predictions.shape:
        raise ValueError(f"confusion_matrix: {labels.size} labels but {predictions.size} predictions")
    for name, values in (("labels", labels), ("predictions", predictions)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"confusion_matrix: {name} must lie in [0, {num_classes}), "
                             f"got values from {values.min()} to {values.max()}")
    flat = np.bincount(labels * num_classes + predictions, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def format_confusion_matrix(matrix, class_names=None, max_name=10):
    """The confusion matrix as a text table: rows are true classes, columns predicted ones, plus recall."""
    matrix = np.asarray(matrix)
    num_classes = matrix.shape[0]
    names = [str(name)[:max_name] for name in (class_names or range(num_classes))]
    cell = max(max(len(name) for name in names), len(str(int(matrix.max(initial=0)))), 4)
    corner = "true \\ predicted"
    label_width = max(len(name) for name in names + [corner])
    lines = [corner.ljust(label_width) + " " + " ".join(name.rjust(cell) for name in names) + "  recall"]
    for index, (name, row) in enumerate(zip(names, matrix)):
        total = row.sum()
        recall = f"{100 * row[index] / total:6.1f}%" if total else "      -"
        lines.append(name.ljust(label_width) + " " + " ".join(str(int(v)).rjust(cell) for v in row) + " " + recall)
    return "\n".join(lines)
