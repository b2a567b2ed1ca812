"""FC-to-conv ("convolutionalization", OverFeat/FCN): turn a flatten + Linear classifier into a fully conv net.

The first Linear after the flatten becomes a conv whose kernel is the feature map's spatial size
(the weight reshaped from (out, C*h*w) to (out, C, h, w), which is exactly torch's flatten order);
later Linears become 1x1 convs. On the training size the logits are identical, now shaped
(N, K, 1, 1); on a larger image the net slides the classifier over every window in one pass and
returns a score map whose neighbouring cells are ``score_stride`` input pixels apart.
"""
from __future__ import annotations

import copy
from collections import OrderedDict

from .. import nn
from ..autograd import Tensor, enable_grad, no_grad, zeros
from .layer_rules import kind
from .summary import summary

__all__ = ["fc_to_conv", "convolutionalize"]


def _trace_children(model, x):
    """Run ``model`` with hooks on its children; return [(name, module, input, output)] in call order."""
    calls, handles = [], []
    for name, child in model.named_children():
        def hook(module, inputs, output, name=name):
            calls.append((name, module, inputs[0] if inputs else None, output))
        handles.append(child.register_forward_hook(hook))
    try:
        with enable_grad():
            output = model(x)
    finally:
        for handle in handles:
            handle.remove()
    return calls, output


def _comes_from(tensor, source):
    """True when ``tensor`` is ``source`` or a reshape (flatten, view) of it."""
    while tensor is not source:
        if not (isinstance(tensor, Tensor) and tensor.grad_fn is not None
                and type(tensor.grad_fn).__name__ == "Reshape"):
            return False
        tensor = tensor.grad_fn.inputs[0]
    return True


def _check_chain(calls, x, output):
    """The children must run once each, in a chain: each one's input is the previous output (maybe flattened)."""
    previous = x
    seen = set()
    for name, module, inputs, out in calls:
        if id(module) in seen:
            raise ValueError(f"fc_to_conv: module {name!r} runs more than once; only chains of modules "
                             "(features -> pooling -> flatten -> Linear layers) can be convolutionalized")
        seen.add(id(module))
        if not _comes_from(inputs, previous):
            raise ValueError(f"fc_to_conv: the input of {name!r} is not the output of the module before it; the "
                             "model's forward must be a plain chain of its sub-modules (with at most a flatten)")
        previous = out
    if not _comes_from(output, previous):
        raise ValueError("fc_to_conv: the model's output is not the output of its last module")


def _contains_head(module):
    return any(type(m).__name__ == "Flatten" or kind(m) == "linear" for m in module.modules())


def _expand(items):
    """Open up Sequentials that contain the flatten / first Linear, so the split can happen inside them."""
    result = []
    for name, module, in_ndim in items:
        if isinstance(module, nn.Sequential) and _contains_head(module):
            result += _expand([(f"{name}_{child}", sub, None) for child, sub in module.named_children()])
        else:
            result.append((name, module, in_ndim))
    return result


def _split_index(items):
    for index, (_, module, in_ndim) in enumerate(items):
        if type(module).__name__ == "Flatten" or kind(module) == "linear" or in_ndim == 2:
            return index
    raise ValueError("fc_to_conv: found no Flatten or Linear layer: the model has no fully connected head to convert")


def _head_leaves(items):
    leaves = []
    for name, module in items:
        if isinstance(module, nn.Sequential):
            leaves += _head_leaves([(f"{name}_{child}", sub) for child, sub in module.named_children()])
        elif module._modules:
            raise ValueError(f"fc_to_conv: the head module {name!r} ({type(module).__name__}) is a container that "
                             "is not a Sequential; only Linear layers and parameter-free layers can be converted")
        else:
            leaves.append((name, module))
    return leaves


def _peel_adaptive_pool(features, feature_input):
    """Drop a trailing adaptive pool that is the identity at the training size, or make it a stride-1 pool.

    Pooling h x w to o x o cells of k = h/o is a k x k pool with stride k; on a larger image the same
    windows at the network's stride are a k x k pool with stride 1 followed by a conv dilated by k.
    Returns (features, dilation for the first converted conv).
    """
    # Look past trailing parameter-free pointwise layers (AlexNet's classifier starts with Dropout).
    position = len(features) - 1
    while position >= 0 and _is_pointwise(features[position][1]):
        position -= 1
    if position < 0 or kind(features[position][1]) != "adaptive":
        return features, (1, 1)
    name, pool = features[position]
    before, after = features[:position], features[position + 1:]
    with no_grad():
        pooled_input = nn.Sequential(OrderedDict(before))(feature_input) if before else feature_input
    in_size = tuple(pooled_input.shape[2:])
    with no_grad():
        out_size = tuple(pool(pooled_input).shape[2:])
    if in_size == out_size:
        return before + after, (1, 1)
    if any(i % o for i, o in zip(in_size, out_size)):
        raise ValueError(f"fc_to_conv: {name} ({type(pool).__name__}) pools {in_size} to {out_size}, which is not an "
                         "integer factor; pick a training size whose feature map is a multiple of the pool output")
    factor = tuple(i // o for i, o in zip(in_size, out_size))
    window = nn.MaxPool2d(factor, stride=1) if "Max" in type(pool).__name__ else nn.AvgPool2d(factor, stride=1)
    return before + [(name, window)] + after, factor


def _is_pointwise(module):
    """A parameter-free leaf that keeps the spatial layout (activation, Dropout, Identity)."""
    return (not module._modules and not any(True for _ in module.parameters()) and kind(module) == "other"
            and type(module).__name__ != "Flatten")


def _linear_to_conv(linear, in_channels, kernel, dilation):
    weight = linear.weight.data
    out_features = weight.shape[0]
    if weight.shape[1] != in_channels * kernel[0] * kernel[1]:
        raise ValueError(f"fc_to_conv: Linear with in_features={weight.shape[1]} does not match the feature map "
                         f"{in_channels}x{kernel[0]}x{kernel[1]} = {in_channels * kernel[0] * kernel[1]} "
                         "at this input size")
    conv = nn.Conv2d(in_channels, out_features, kernel, dilation=dilation, bias=linear.bias is not None)
    conv.weight.data = weight.reshape(out_features, in_channels, *kernel).copy()
    if linear.bias is not None:
        conv.bias.data = linear.bias.data.copy()
    return conv


def _convert_head(leaves, feature_shape, dilation):
    channels, height, width = feature_shape
    converted, first = [], True
    for name, module in leaves:
        layer_type = type(module).__name__
        if layer_type == "Flatten":
            continue
        if kind(module) == "linear":
            kernel = (height, width) if first else (1, 1)
            converted.append((name, _linear_to_conv(module, channels, kernel, dilation if first else (1, 1))))
            channels, first = module.weight.shape[0], False
        elif layer_type == "BatchNorm1d":
            norm = nn.BatchNorm2d(module.num_features, eps=module.eps, momentum=module.momentum, affine=module.affine,
                                  track_running_stats=module.track_running_stats)
            norm.load_state_dict(module.state_dict())
            converted.append((name, norm))
        elif layer_type in ("Softmax", "LogSoftmax"):
            converted.append((name, type(module)(dim=1)))  # the class axis is dim 1 of the score map
        elif any(True for _ in module.parameters()):
            raise ValueError(f"fc_to_conv: cannot convert head layer {name!r} ({layer_type}); supported: Linear, "
                             "BatchNorm1d, and parameter-free layers (activations, Dropout, Flatten)")
        else:
            converted.append((name, module))
    if first:
        raise ValueError("fc_to_conv: the head has no Linear layer to convert")
    return converted


def fc_to_conv(model, input_size):
    """A fully convolutional copy of ``model``: Linear(C*h*w -> K) becomes Conv2d(C, K, (h, w)), the rest 1x1 convs.

    ``input_size`` is the training size (C, H, W). Everything before the first Flatten/Linear is the
    feature extractor (kept, copied); a trailing adaptive pool that is the identity at that size is
    dropped. The result returns (N, K, 1, 1) at ``input_size`` and an (N, K, h', w') score map on
    larger images, one cell per window position, ``result.score_stride`` pixels apart; it also has
    ``window_size`` = (H, W). Each score equals the original model on the crop at that position exactly
    when the features use no padding; with padding, border cells see real pixels where the crop saw zeros.
    """
    model = copy.deepcopy(model)
    training = model.training
    model.eval()
    channels, height, width = input_size
    first = next(iter(model.parameters()), None)
    dtype = first.dtype if first is not None else None
    x = zeros(1, channels, height, width, dtype=dtype)
    x.requires_grad_(True)
    calls, output = _trace_children(model, x)
    if not calls:
        raise ValueError(f"fc_to_conv: {type(model).__name__} has no sub-modules to convert")
    _check_chain(calls, x, output)
    items = _expand([(name, module, inputs.ndim) for name, module, inputs, _ in calls])
    split = _split_index(items)
    features = [(name, module) for name, module, _ in items[:split]]
    plain_input = zeros(1, channels, height, width, dtype=dtype)
    features, dilation = _peel_adaptive_pool(features, plain_input)
    feature_net = nn.Sequential(OrderedDict(features))
    with no_grad():
        feature_map = feature_net(plain_input)
    if feature_map.ndim != 4:
        raise ValueError(f"fc_to_conv: the feature extractor returns shape {tuple(feature_map.shape)}, not a 4-D map")
    head = _convert_head(_head_leaves([(name, module) for name, module, _ in items[split:]]),
                         tuple(feature_map.shape[1:]), dilation)
    result = nn.Sequential(OrderedDict([("features", feature_net), ("head", nn.Sequential(OrderedDict(head)))]))
    if dtype is not None:
        result.to(dtype)  # new layers (BatchNorm2d from BatchNorm1d) start in the default dtype
    report = summary(feature_net, input_size, dtype=dtype) if features else None
    last = report.layers[-1] if report and report.layers else None
    result.score_stride = (1, 1) if last is None else (last.to_dict()["jump_h"], last.to_dict()["jump_w"])
    result.window_size = (height, width)
    result.train(training)
    return result


convolutionalize = fc_to_conv
