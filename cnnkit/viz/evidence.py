"""Where in the image the evidence for a class lies: CAM, Grad-CAM, gradient saliency and occlusion.

Each function takes a model and one image (a path, a PIL image, a uint8 array, or a ready float (C, H, W) array
or (1, C, H, W) batch as in :func:`cnnkit.viz.features.as_batch`) and returns an :class:`Evidence`: a float64
(H, W) map at the input's size, the class it explains and that class's score. Maps are not normalised; use
:func:`normalize_map` to bring one to 0..1.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..autograd import Tensor, enable_grad, no_grad
from ..nn import Linear
from .features import as_batch
from .taps import evaluating

METHODS = ("cam", "gradcam", "saliency", "occlusion")
_LISTED_NAMES = 8  # layer names quoted in an error message, so that it stays readable on huge networks


@dataclass
class Evidence:
    """One explanation: ``heatmap`` (H, W) at the input size, ``target`` class, its ``score``, the ``method``,
    the ``layer`` it was read from (``None`` for saliency and occlusion) and the (h, w) ``raw`` map before
    upsampling."""

    heatmap: np.ndarray
    target: int
    score: float
    method: str
    layer: str | None = None
    raw: np.ndarray | None = None


def normalize_map(heatmap):
    """``(m - min) / (max - min)``: a map scaled to 0..1 (all zeros when it is flat)."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    low, high = float(heatmap.min()), float(heatmap.max())
    return (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)


def _source_positions(out_size, in_size):
    """Bilinear sampling along one axis (``align_corners=False``): lower index, upper index and weight."""
    position = np.maximum((np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lower = np.minimum(np.floor(position).astype(np.int64), in_size - 1)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, position - lower


def upsample_bilinear(heatmap, size):
    """Resize an (h, w) map to ``size`` = (H, W) by bilinear interpolation, as torch's ``interpolate(...,
    mode='bilinear', align_corners=False)``."""
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if heatmap.ndim != 2:
        raise ValueError(f"upsample_bilinear: expected an (h, w) map, got shape {heatmap.shape}")
    rows_low, rows_high, row_weight = _source_positions(int(size[0]), heatmap.shape[0])
    cols_low, cols_high, col_weight = _source_positions(int(size[1]), heatmap.shape[1])
    top = heatmap[rows_low] * (1 - row_weight)[:, None] + heatmap[rows_high] * row_weight[:, None]
    return top[:, cols_low] * (1 - col_weight) + top[:, cols_high] * col_weight


@contextmanager
def _frozen_parameters(model):
    """Stop the parameters from collecting gradients for a ``with`` block (an explanation must not leave
    ``.grad`` arrays behind on the model), then restore each one's flag."""
    flags = [(param, param.requires_grad) for param in model.parameters()]
    for param, _ in flags:
        param.requires_grad = False
    try:
        yield
    finally:
        for param, flag in flags:
            param.requires_grad = flag


def _class_index(function, logits, target):
    """The class to explain: ``target``, or the top class of ``logits`` (1, classes) when it is None."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise ValueError(f"{function}: the model must return class scores (1, classes) for one image, "
                         f"got shape {logits.shape}")
    classes = logits.shape[1]
    if target is None:
        return int(np.argmax(logits[0]))
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise TypeError(f"{function}: target must be a class index (int) or None, got {type(target).__name__}")
    if not 0 <= int(target) < classes:
        raise ValueError(f"{function}: target {int(target)} is out of range for a model with {classes} classes; "
                         f"use 0..{classes - 1}, or None for the top class")
    return int(target)


def _conv_layer_names(named_modules):
    """The names of the modules with a 4-D weight (conv layers) among ``(name, module)`` pairs, in order."""
    return [name for name, module in named_modules
            if name and getattr(module, "weight", None) is not None and module.weight.ndim == 4]


def find_layer(model, name, function="grad_cam"):
    """The sub-module called ``name`` (a ``named_modules()`` name), with a clear error listing valid names."""
    modules = dict(model.named_modules())
    if isinstance(name, str) and name and name in modules:
        return modules[name]
    convs = _conv_layer_names(modules.items())
    shown = convs[-_LISTED_NAMES:] if convs else [key for key in modules if key][:_LISTED_NAMES]
    more = f" (the last {len(shown)} of {len(convs)} conv layers)" if len(convs) > len(shown) else ""
    raise ValueError(f"{function}: {type(model).__name__} has no layer named {name!r}; valid names include "
                     f"{', '.join(shown)}{more}. Layer names are model.named_modules() names")


def last_conv_layer(model):
    """The ``named_modules()`` name of the last module with a 4-D weight (the usual Grad-CAM layer)."""
    convs = _conv_layer_names(model.named_modules())
    if not convs:
        raise ValueError(f"grad_cam: {type(model).__name__} has no convolutional layer")
    return convs[-1]


def _input_tensor(model, image):
    x = as_batch(image, model)
    if x.shape[0] != 1:
        raise ValueError(f"explaining one image at a time: got a batch of {x.shape[0]} (shape {tuple(x.shape)})")
    return x


def grad_cam(model, image, layer=None, target=None):
    """Grad-CAM: ``relu(sum_k alpha_k A_k)`` with ``alpha_k`` the spatial mean of d(score)/dA_k, for the
    output A of conv (or any 4-D) layer ``layer`` (default: the last conv layer)."""
    layer = last_conv_layer(model) if layer is None else layer
    module = find_layer(model, layer, "grad_cam")
    seen = []
    caller = threading.get_ident()

    def keep(_, inputs, output):
        # Another thread may run the same model meanwhile (the web server); only this call's pass counts.
        if isinstance(output, Tensor) and output.ndim == 4 and threading.get_ident() == caller:
            output.retain_grad()
            seen.append((output, output.data.copy()))  # a copy: a later in-place op may overwrite the data

    x = _input_tensor(model, image)
    handle = module.register_forward_hook(keep)
    try:
        with evaluating(model), _frozen_parameters(model), enable_grad():
            # The input is the one leaf that asks for gradients, so the graph reaches the layer's output.
            x = Tensor(x.data, requires_grad=True)
            logits = model(x)
            target = _class_index("grad_cam", logits.data, target)
            if not seen:
                raise ValueError(f"grad_cam: layer {layer!r} ({type(module).__name__}) gave no 4-D (N, C, H, W) "
                                 "output; choose a convolutional layer")
            logits[0, target].backward()
    finally:
        handle.remove()
    output, activations = seen[-1]
    gradients = output.grad if output.grad is not None else np.zeros_like(activations)
    weights = np.asarray(gradients[0], dtype=np.float64).mean(axis=(1, 2))
    raw = np.maximum(np.tensordot(weights, np.asarray(activations[0], dtype=np.float64), axes=1), 0.0)
    return Evidence(upsample_bilinear(raw, x.shape[2:]), target, float(logits.data[0, target]), "gradcam", layer,
                    raw)


def saliency(model, image, target=None):
    """Gradient saliency: ``max_c |d(score) / d(x_c)|`` per pixel (Simonyan et al.)."""
    x = _input_tensor(model, image)
    with evaluating(model), _frozen_parameters(model), enable_grad():
        x = Tensor(x.data, requires_grad=True)
        logits = model(x)
        target = _class_index("saliency", logits.data, target)
        logits[0, target].backward()
    raw = np.abs(np.asarray(x.grad[0], dtype=np.float64)).max(axis=0)
    return Evidence(raw, target, float(logits.data[0, target]), "saliency", None, raw)


def _record_calls(model):
    """Forward hooks on every module that record ``(name, module, inputs, output)`` in call order, for the
    calling thread's forward passes only."""
    calls = []
    handles = []
    caller = threading.get_ident()
    for name, module in model.named_modules():
        def record(module, inputs, output, name=name):
            if threading.get_ident() == caller:
                calls.append((name, module, inputs, output))
        handles.append(module.register_forward_hook(record))
    return calls, handles


def _spatial_mean_source(vector, calls, before):
    """The last 4-D output (or its relu) among ``calls[:before]`` whose spatial mean equals ``vector``."""
    for name, _, _, output in reversed(calls[:before]):
        if not isinstance(output, Tensor) or output.ndim != 4 or output.shape[2] * output.shape[3] == 1:
            continue
        maps = np.asarray(output.data, dtype=np.float64)
        # Some networks apply a functional relu between their last module and the pooling (DenseNet).
        for candidate in (maps, np.maximum(maps, 0.0)):
            if candidate.shape[1] == vector.shape[1] and np.allclose(candidate.mean(axis=(2, 3)), vector,
                                                                     rtol=1e-4, atol=1e-5):
                return name, candidate
    return None, None


def class_activation_map(model, image, target=None):
    """CAM (Zhou et al.): ``relu(sum_k w_ck A_k)`` for a network whose scores are ``W . GAP(A) + b`` (a linear
    layer after global average pooling) or ``GAP(A)`` itself (NiN)."""
    x = _input_tensor(model, image)
    calls, handles = _record_calls(model)
    try:
        with evaluating(model), no_grad():
            logits = model(x)
    finally:
        for handle in handles:
            handle.remove()
    target = _class_index("class_activation_map", logits.data, target)
    linear = [index for index, (_, module, _, output) in enumerate(calls)
              if isinstance(module, Linear) and output is logits]
    if linear:
        index = linear[-1]
        features = np.asarray(calls[index][2][0].data, dtype=np.float64)
        name, maps = _spatial_mean_source(features, calls, index)
        weights = np.asarray(calls[index][1].weight.data, dtype=np.float64)[target]
    else:  # NiN: the last maps are one per class and are only averaged
        name, maps = _spatial_mean_source(np.asarray(logits.data, dtype=np.float64), calls, len(calls))
        weights = np.eye(logits.shape[1])[target]
    if maps is None:
        raise ValueError(f"class_activation_map: {type(model).__name__} does not end in global average pooling "
                         "followed by at most one linear layer, so its scores are not a weighted sum of feature "
                         "maps; use grad_cam(model, image, layer) instead (it works on any conv layer)")
    raw = np.maximum(np.tensordot(weights, maps[0], axes=1), 0.0)
    return Evidence(upsample_bilinear(raw, x.shape[2:]), target, float(logits.data[0, target]), "cam", name, raw)


def occlusion(model, image, target=None, window=None, stride=None, fill=0.0, batch_size=64):
    """Occlusion sensitivity (Zeiler and Fergus): the drop in the class score when a ``window`` x ``window``
    patch of value ``fill`` covers each pixel, averaged over the patches that cover it."""
    x = _input_tensor(model, image)
    height, width = x.shape[2:]
    window = max(1, min(height, width) // 4) if window is None else int(window)
    stride = max(1, window // 2) if stride is None else int(stride)
    if not 1 <= window <= min(height, width) or stride < 1:
        raise ValueError(f"occlusion: window must be 1..{min(height, width)} pixels (the image is {height}x{width}) "
                         f"and stride at least 1, got window={window}, stride={stride}")
    tops = list(range(0, height - window + 1, stride))
    lefts = list(range(0, width - window + 1, stride))
    # The last patch is moved to touch the far edge, so every pixel is covered at least once.
    tops += [height - window] if tops[-1] != height - window else []
    lefts += [width - window] if lefts[-1] != width - window else []
    patches = [(top, left) for top in tops for left in lefts]
    with evaluating(model), no_grad():
        logits = np.asarray(model(x).data)
        target = _class_index("occlusion", logits, target)
        base = float(logits[0, target])
        drops = np.zeros((height, width))
        counts = np.zeros((height, width))
        for start in range(0, len(patches), batch_size):
            chunk = patches[start:start + batch_size]
            batch = np.repeat(x.data, len(chunk), axis=0)
            for row, (top, left) in enumerate(chunk):
                batch[row, :, top:top + window, left:left + window] = fill
            scores = np.asarray(model(Tensor(batch)).data)[:, target]
            for (top, left), score in zip(chunk, scores):
                drops[top:top + window, left:left + window] += base - float(score)
                counts[top:top + window, left:left + window] += 1
    heatmap = drops / counts
    return Evidence(heatmap, target, base, "occlusion", None, heatmap)


def explain(model, image, method="gradcam", target=None, layer=None, **options):
    """Run one of :data:`METHODS` by name; ``layer`` applies to Grad-CAM, ``options`` (window, stride) to
    occlusion."""
    if method == "cam":
        return class_activation_map(model, image, target)
    if method == "gradcam":
        return grad_cam(model, image, layer, target)
    if method == "saliency":
        return saliency(model, image, target)
    if method == "occlusion":
        return occlusion(model, image, target, **options)
    raise ValueError(f"explain: unknown method {method!r}; choose one of {', '.join(METHODS)}")
