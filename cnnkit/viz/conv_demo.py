"""The numbers of the step-by-step convolution demo (CS231n style), computed with ``F.conv2d``.

The default is the study notes' example: a 5x5x3 input, K=2 filters of 3x3x3, stride 2, zero padding 1, so the
output is 3x3x2 because (5 - 3 + 2*1) / 2 + 1 = 3. Inputs, weights and biases are small integers so that every
product and sum can be checked by hand.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from ..autograd import Tensor, no_grad

DEFAULTS = {"width": 5, "height": 5, "depth": 3, "filters": 2, "kernel": 3, "stride": 2, "padding": 1,
            "dilation": 1, "seed": 0}
# Bounds keep the page readable (every number is drawn) and the JSON small.
LIMITS = {"width": (1, 16), "height": (1, 16), "depth": (1, 4), "filters": (1, 4), "kernel": (1, 7),
          "stride": (1, 4), "padding": (0, 3), "dilation": (1, 3), "seed": (0, 2**31 - 1)}
SYMBOLS = {"width": "W", "height": "H", "depth": "D", "filters": "K", "kernel": "F", "stride": "S",
           "padding": "P", "dilation": "dilation", "seed": "seed"}


def demo_parameters(**values):
    """The demo's settings: ``DEFAULTS`` updated by ``values`` (ints), each checked against ``LIMITS``."""
    unknown = sorted(set(values) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"conv demo: unknown setting(s) {', '.join(unknown)}; the settings are "
                         f"{', '.join(DEFAULTS)}")
    settings = dict(DEFAULTS)
    for name, value in values.items():
        if value is None:
            continue
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"conv demo: {name} ({SYMBOLS[name]}) must be an integer, got {value!r}") from None
        if isinstance(value, float) and value != number:
            raise ValueError(f"conv demo: {name} ({SYMBOLS[name]}) must be an integer, got {value!r}")
        low, high = LIMITS[name]
        if not low <= number <= high:
            raise ValueError(f"conv demo: {name} ({SYMBOLS[name]}) must be between {low} and {high}, got {number}")
        settings[name] = number
    return settings


def output_size_formula(settings):
    """``{"height": {...}, "width": {...}}``: (W - F_eff + 2P) / S + 1 with the numbers, its exact value and
    whether it is an integer (F_eff = dilation * (F - 1) + 1)."""
    effective = settings["dilation"] * (settings["kernel"] - 1) + 1
    formula = {}
    for axis, symbol in (("height", "H"), ("width", "W")):
        size = settings[axis]
        exact = (size - effective + 2 * settings["padding"]) / settings["stride"] + 1
        kernel = f"{effective}" if settings["dilation"] == 1 else f"{effective} (F_eff = {settings['dilation']}" \
            f" * ({settings['kernel']} - 1) + 1)"
        formula[axis] = {
            "text": f"({symbol} - F + 2P) / S + 1 = ({size} - {kernel} + 2*{settings['padding']}) / "
                    f"{settings['stride']} + 1 = {exact:g}",
            "exact": exact, "integer": exact == int(exact) and exact >= 1,
        }
    return formula


def _demo_arrays(settings):
    """Integer-valued input (D, H, W), weights (K, D, F, F) and biases (K,) from ``settings['seed']``."""
    rng = np.random.default_rng(settings["seed"])
    shape = (settings["depth"], settings["height"], settings["width"])
    x = rng.integers(0, 3, size=shape).astype(np.float64)
    weight = rng.integers(-1, 2, size=(settings["filters"], settings["depth"], settings["kernel"],
                                       settings["kernel"])).astype(np.float64)
    bias = rng.integers(0, 2, size=settings["filters"]).astype(np.float64)
    return x, weight, bias


def conv_demo(**values):
    """Every number of the demo: input, padded input, filters, biases, the ``F.conv2d`` output and one step per
    output position with its window, products, sum and bias. Sizes that do not tile the input raise cnnkit's
    strict-mode ValueError (W=10, F=3, S=2, P=0 gives 4.5)."""
    settings = demo_parameters(**values)
    x, weight, bias = _demo_arrays(settings)
    stride, padding, dilation = settings["stride"], settings["padding"], settings["dilation"]
    with no_grad():
        output = F.conv2d(Tensor(x[None]), Tensor(weight), Tensor(bias), stride=stride, padding=padding,
                          dilation=dilation, strict=True)
    output = np.asarray(output.data)[0]
    padded = np.pad(x, ((0, 0), (padding, padding), (padding, padding)))
    span = dilation * (settings["kernel"] - 1) + 1
    steps = []
    for k in range(output.shape[0]):
        for row in range(output.shape[1]):
            for col in range(output.shape[2]):
                top, left = row * stride, col * stride
                window = padded[:, top:top + span:dilation, left:left + span:dilation]
                products = window * weight[k] + 0.0  # + 0.0 turns -0.0 into 0.0 for display
                steps.append({"k": k, "row": row, "col": col, "top": top, "left": left,
                              "products": products.tolist(), "sum": float(products.sum()),
                              "bias": float(bias[k]), "value": float(output[k, row, col])})
    return {"settings": settings, "formula": output_size_formula(settings), "input": x.tolist(),
            "padded": padded.tolist(), "weights": weight.tolist(), "bias": bias.tolist(),
            "output": output.tolist(), "output_shape": list(output.shape), "steps": steps}
