"""The model registry: ``@register_model`` entry points, ``create(name, ...)``, ``list_models(pattern)``,
``is_model(name)`` and ``model_entrypoint(name)`` (timm's names)."""
from __future__ import annotations

import fnmatch
import inspect

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


def is_model(name):
    """True when ``name`` is a registered model."""
    return name in _MODELS


def model_entrypoint(name):
    """The function registered as ``name``; a ValueError with close names when there is none."""
    if name not in _MODELS:
        close = fnmatch.filter(_MODELS, f"*{name}*")[:5]
        hint = f"; did you mean {', '.join(close)}?" if close else "; see cnnkit.models.list_models()"
        raise ValueError(f"unknown model {name!r}{hint}")
    return _MODELS[name]


def create(name, num_classes=None, in_channels=None, **options):
    """Build the registered model ``name``; its name and config are kept for checkpoints.

    ``num_classes``, ``in_channels`` and every other option left out take the model's own defaults
    (``create('lenet5')`` is the 1-channel, 10-class LeNet-5). ``options`` are the family's keyword
    arguments, for example ``small_input=True``.
    """
    try:
        entry = model_entrypoint(name)
    except ValueError as error:
        raise ValueError(f"create: {error}") from None
    given = {key: value for key, value in (("num_classes", num_classes), ("in_channels", in_channels))
             if value is not None}
    model = entry(**given, **options)
    # the config names the sizes the model was built with, defaults included, so a checkpoint rebuilds it
    defaults = {key: parameter.default for key, parameter in inspect.signature(entry).parameters.items()
                if key in ("num_classes", "in_channels")}
    config = {**defaults, **given, **options}
    object.__setattr__(model, "model_name", name)
    object.__setattr__(model, "model_config", config)
    return model
