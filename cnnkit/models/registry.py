"""The model registry: ``@register_model`` entry points, ``create(name, ...)``, ``list_models(pattern)``,
``is_model(name)`` and ``model_entrypoint(name)`` (timm's names)."""
from __future__ import annotations

import fnmatch
import inspect
import math
import numbers

_MODELS: dict = {}

# What each model option holds, across the families; an option not listed is checked against its default.
POSITIVE_INT_OPTIONS = {"num_classes", "in_channels", "image_size", "width", "groups", "growth_rate", "bn_size",
                        "num_init_features", "round_nearest"}
BOOL_OPTIONS = {"small_input", "zero_init_residual", "aux_logits", "transform_input", "batch_norm"}
PROBABILITY_OPTIONS = {"dropout", "drop_rate"}


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _option_error(model, name, value, expected, wrong_type):
    kind = TypeError if wrong_type else ValueError
    return kind(f"create({model!r}): option {name} must be {expected}, got {value!r}")


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_option(model, name, value, default=inspect.Parameter.empty):
    """Raise a TypeError/ValueError naming ``name`` unless ``value`` is the kind of value that option holds."""
    if name in POSITIVE_INT_OPTIONS:
        if not _is_int(value) or value < 1:
            raise _option_error(model, name, value, "a positive int", not _is_int(value))
    elif name in BOOL_OPTIONS:
        if not isinstance(value, bool):
            raise _option_error(model, name, value, "True or False", True)
    elif name in PROBABILITY_OPTIONS:
        if not _is_real(value) or not 0 <= value <= 1:
            raise _option_error(model, name, value, "a probability in [0, 1]", not _is_real(value))
    elif name == "width_mult":
        if not _is_real(value) or not (math.isfinite(value) and value > 0):
            raise _option_error(model, name, value, "a positive number", not _is_real(value))
    elif default is not inspect.Parameter.empty and default is not None and value is not None:
        expected = bool if isinstance(default, bool) else numbers.Real if isinstance(default, float) else type(default)
        if not isinstance(value, expected) or (isinstance(value, bool) and expected is not bool):
            raise _option_error(model, name, value, f"of type {type(default).__name__}", True)


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
    defaults = {key: parameter.default for key, parameter in inspect.signature(entry).parameters.items()}
    for option, value in {**given, **options}.items():
        check_option(name, option, value, defaults.get(option, inspect.Parameter.empty))
    model = entry(**given, **options)
    # the config names the sizes the model was built with, defaults included, so a checkpoint rebuilds it
    sizes = {key: defaults[key] for key in ("num_classes", "in_channels") if key in defaults}
    config = {**sizes, **given, **options}
    object.__setattr__(model, "model_name", name)
    object.__setattr__(model, "model_config", config)
    return model
