"""Range-checked number types for argparse: a bad value is a usage error (stderr, exit 2), not a traceback."""
from __future__ import annotations

import argparse
import math

MAX_IMAGE_SIDE = 4096       # the image reader's pixel limit is 4096 x 4096
MAX_CHANNELS = 4096
MAX_EPOCHS = 1_000_000
MAX_BATCH = 1_000_000


def int_range(low, high=None):
    """An argparse ``type`` accepting integers in [low, high] (no upper bound when ``high`` is None)."""
    def parse(text):
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            rule = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {rule}, got {value}")
        return value

    parse.__name__ = "integer"  # argparse names the type in its fallback message
    return parse


def float_range(low, high=None, low_open=False, high_open=False):
    """An argparse ``type`` accepting finite numbers between ``low`` and ``high`` (ends open or closed)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or too_low or too_high:
            left, right = "(" if low_open else "[", ")" if high_open or high is None else "]"
            raise argparse.ArgumentTypeError(f"must be a finite number in {left}{low:g}, "
                                             f"{'inf' if high is None else f'{high:g}'}{right}, got {text}")
        return value

    parse.__name__ = "number"
    return parse


positive_int = int_range(1)
non_negative_int = int_range(0)
image_side = int_range(1, MAX_IMAGE_SIDE)
epochs = int_range(1, MAX_EPOCHS)
batch_size = int_range(1, MAX_BATCH)
