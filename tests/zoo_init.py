"""Cheap weights for whole-zoo tests: skip the initialisers, then tile one small random draw into every weight."""
import numpy as np

from cnnkit.models import _init as models_init
from cnnkit.nn import init as nn_init


def skip_init(monkeypatch):
    """Replace the random initialisers by zero fills: for checks of counts, keys and shapes only.

    Drawing VGG's 120M random weights costs seconds per model; CI has 2 cores for the whole suite.
    """
    def fill(tensor, *args, **kwargs):
        tensor.data[...] = 0  # Conv2d allocates its weight uninitialised
        return tensor

    for module, name in ((nn_init, "uniform_"), (nn_init, "normal_"), (nn_init, "trunc_normal_"),
                         (models_init, "normal_")):
        monkeypatch.setattr(module, name, fill)


def cheap_random_init(model, seed=0):
    """Weights ~ N(0, 1/fan_in) tiled from one 2**20-value draw (VGG's 120M values would take seconds),
    biases small, BatchNorm running statistics away from (0, 1) so an export mixing them up is caught."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(1 << 20, dtype=np.float32)
    for name, param in model.named_parameters():
        data = param.data
        if data.ndim > 1:
            tile_into(data.reshape(-1), base / np.float32(np.sqrt(data[0].size)))
        elif not name.endswith("weight"):
            data[...] = 0.01 * rng.standard_normal(data.shape)
    randomise_statistics(model, seed + 1)


def tile_into(flat, values):
    """Fill ``flat`` with repeats of ``values`` by doubling copies (one pass over the memory)."""
    filled = min(flat.size, values.size)
    flat[:filled] = values[:filled]
    while filled < flat.size:
        step = min(filled, flat.size - filled)
        flat[filled:filled + step] = flat[:step]
        filled += step


def randomise_statistics(model, seed=1):
    """Non-trivial BatchNorm running statistics, so that an export mixing up mean and var is caught."""
    rng = np.random.default_rng(seed)
    for name, buffer in model.named_buffers():
        if name.endswith("running_mean"):
            buffer.data[...] = 0.1 * rng.standard_normal(buffer.shape)
        elif name.endswith("running_var"):
            buffer.data[...] = 0.75 + 0.5 * rng.random(buffer.shape)
