"""``plot_curves``: loss, top-1 accuracy and learning rate per epoch from a run's ``metrics.jsonl``."""
from __future__ import annotations

import json
import math
import os

from matplotlib.ticker import MaxNLocator

from ..io import resolve_run
from .figures import new_figure, save_figure

METRICS_FILE = "metrics.jsonl"
PANELS = (
    ("loss", (("train_loss", "train"), ("val_loss", "validation"))),
    ("top-1 accuracy", (("train_top1", "train"), ("val_top1", "validation"), ("val_top5", "validation top-5"))),
    ("learning rate", (("lr", "lr"),)),
)


def metrics_path(run_dir_or_metrics_path):
    """The ``metrics.jsonl`` of a run directory, a ``runs/latest`` pointer or the file itself."""
    path = resolve_run(os.fspath(run_dir_or_metrics_path))
    if os.path.isdir(path):
        path = os.path.join(path, METRICS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"plot_curves: no metrics file at {path}; give a run directory written by "
                                f"'cnnkit train' (it holds {METRICS_FILE}) or the file itself")
    return path


def read_metrics(path):
    """The epoch records of a ``metrics.jsonl`` file (one JSON object per line; blank lines skipped)."""
    records = []
    with open(path, encoding="utf-8") as file:
        for line_number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{line_number}: not a JSON line ({error})") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{line_number}: expected a JSON object per line, got {type(record).__name__}")
            records.append(record)
    if not records:
        raise ValueError(f"{path} holds no epochs yet")
    return records


def _series(records, key):
    """``(epochs, values)`` of the records that have a number under ``key``."""
    epochs, values = [], []
    for index, record in enumerate(records, 1):
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            epochs.append(record.get("epoch", index))
            values.append(value)
    return epochs, values


def plot_curves(run_dir_or_metrics_path, path):
    """Three panels, loss / top-1 / learning rate against epoch, from ``metrics.jsonl``; returns ``path``."""
    source = metrics_path(run_dir_or_metrics_path)
    records = read_metrics(source)
    figure = new_figure(12, 3.6)
    figure.suptitle(os.path.basename(os.path.dirname(os.path.realpath(source))) or source, fontsize=10)
    axes = figure.subplots(1, len(PANELS))
    for axis, (title, keys) in zip(axes, PANELS):
        drawn = 0
        for key, label in keys:
            epochs, values = _series(records, key)
            if values:
                axis.plot(epochs, values, marker="o", markersize=3, label=label)
                drawn += 1
        if title == "learning rate":
            _, rates = _series(records, "lr")
            if rates and min(rates) > 0 and max(rates) / min(rates) > 100:
                axis.set_yscale("log")
        if drawn == 0:
            axis.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=axis.transAxes, color="gray")
        elif drawn > 1:
            axis.legend(fontsize=8)
        axis.set_title(title, fontsize=10)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.grid(alpha=0.3)
    figure.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.84, wspace=0.28)
    return save_figure(figure, path)
