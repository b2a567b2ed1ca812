"""Checks of optimizer hyper-parameters, run when an optimizer or a parameter group is built."""
from __future__ import annotations

import math
import numbers

NON_NEGATIVE = {"lr": "learning rate", "eps": "epsilon", "weight_decay": "weight_decay", "momentum": "momentum",
                "dampening": "dampening", "alpha": "alpha"}
FLAGS = ("amsgrad", "maximize", "nesterov", "centered", "decoupled_weight_decay")


def _is_real(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(owner, label, value, low=0.0, high=None):
    """Raise unless ``value`` is a finite real in [low, high) (``high`` None: no upper bound)."""
    if not _is_real(value):
        raise TypeError(f"{owner}: invalid {label} {value!r}; it must be a number")
    if not math.isfinite(value) or value < low or (high is not None and value >= high):
        rule = f"in [{low:g}, {high:g})" if high is not None else f"finite and >= {low:g}"
        raise ValueError(f"{owner}: invalid {label} {value!r}; it must be {rule}")


def check_hyperparameters(owner, options):
    """Raise a TypeError/ValueError naming ``owner`` and the option for any value outside its range."""
    for name, label in NON_NEGATIVE.items():
        if name in options:
            check_number(owner, label, options[name])
    if "betas" in options:
        betas = options["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{owner}: invalid betas {betas!r}; it must be two numbers (beta1, beta2) in [0, 1)")
        for index, beta in enumerate(betas):
            check_number(owner, f"beta parameter at index {index}", beta, 0.0, 1.0)
    for name in FLAGS:
        if name in options and not isinstance(options[name], bool):
            raise TypeError(f"{owner}: {name} must be True or False, got {options[name]!r}")


def check_count(owner, label, value, low=0):
    """Raise unless ``value`` is an int >= ``low`` (epochs, steps, patience)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {label} must be an int, got {value!r}")
    if value < low:
        raise ValueError(f"{owner}: {label} must be an int >= {low}, got {value!r}")
    return int(value)
