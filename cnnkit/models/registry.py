"""The model registry: ``@register_model`` entry points, ``create(name, ...)`` and ``list_models(pattern)``."""
from __future__ import annotations

import fnmatch

_MODELS: dict = {}


def register_model(fn):
    """Register a model entry point; the function's name is the model's name."""
    name = fn.__name__
    if name in _MODELS:
        raise ValueError(f"register_model: a model named {name!r} is already registered")
    _MODELS[name] = fn
    return fn


def list_models(pattern="*"):
    """Sorted names of registered models matching a shell-style ``pattern`` (``'resnet*'``)."""
    return sorted(name for name in _MODELS if fnmatch.fnmatch(name, pattern))


def create(name, num_classes=1000, in_channels=3, **options):
    """Build the registered model ``name``; its name and config are kept for checkpoints.

    ``options`` are the family's keyword arguments, for example ``small_input=True``.
    """
    if name not in _MODELS:
        close = fnmatch.filter(_MODELS, f"*{name}*")[:5]
        hint = f"; did you mean {', '.join(close)}?" if close else "; see cnnkit.models.list_models()"
        raise ValueError(f"create: unknown model {name!r}{hint}")
    model = _MODELS[name](num_classes=num_classes, in_channels=in_channels, **options)
    config = {"num_classes": num_classes, "in_channels": in_channels, **options}
    object.__setattr__(model, "model_name", name)
    object.__setattr__(model, "model_config", config)
    return model
