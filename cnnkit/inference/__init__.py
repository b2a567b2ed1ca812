"""Inference: ``freeze(model, example_input)`` compiles a model's eval-mode forward into a fast callable."""
from .frozen import FrozenModel, freeze

__all__ = ["freeze", "FrozenModel"]
