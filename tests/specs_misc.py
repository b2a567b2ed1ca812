"""Op-table specs for activations, linear, normalisation, losses, padding and channel shuffle.

Shapes are drawn with batch 1 and odd sizes among them; ``gradcheck_cases`` use tiny inputs.
Dropout is random (it cannot match torch's generator) and is tested statistically in test_layers.py.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from optable import Case, ErrorCase, OpSpec, cnnkit_op, torch_op


def _torch_erf(x):
    import torch

    return torch.erf(x)


def _rng(draw):
    return np.random.default_rng(draw(st.integers(0, 2**31 - 1)))


def _shape(draw, min_dims=1, max_dims=4, max_size=5, small=False):
    """A shape whose first size is often 1 (batch 1) and whose other sizes are often odd."""
    dims = draw(st.integers(min_dims, max_dims))
    limit = 3 if small else max_size
    return tuple(draw(st.sampled_from([1, 1, 3])) if i == 0 else draw(st.integers(1, limit)) for i in range(dims))


# ------------------------------------------------------------------------------------------------ activations
@st.composite
def _elementwise(draw, scale=4.0, kwargs=None, small=False):
    shape = _shape(draw, max_dims=2 if small else 4, small=small)
    values = _rng(draw).standard_normal(shape) * scale
    return Case([values], {key: draw(strategy) for key, strategy in (kwargs or {}).items()})


def _activation(name, scale=4.0, kernel_ops=(), errors=(), **kwargs):
    return OpSpec(name, _elementwise(scale, kwargs), gradcheck_cases=_elementwise(scale, kwargs, small=True),
                  kernel_ops=kernel_ops, errors=list(errors))


@st.composite
def _softmax_case(draw, small=False):
    shape = _shape(draw, max_dims=2 if small else 4, small=small)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    # a large common offset checks the max subtraction (e^x alone would overflow)
    offset = draw(st.sampled_from([0.0, 0.0, 80.0]))
    return Case([_rng(draw).standard_normal(shape) * 3 + offset], {"dim": dim})


# ------------------------------------------------------------------------------------------------------ linear
@st.composite
def _linear_case(draw, small=False):
    in_features, out_features = draw(st.integers(1, 4 if small else 7)), draw(st.integers(1, 3 if small else 6))
    lead = _shape(draw, min_dims=0, max_dims=1 if small else 3, small=small)
    rng = _rng(draw)
    inputs = [rng.standard_normal(lead + (in_features,)), rng.standard_normal((out_features, in_features))]
    if draw(st.booleans()):
        inputs.append(rng.standard_normal(out_features))
    return Case(inputs)


# ------------------------------------------------------------------------------------------------- batch norm
def _copy(statistic):
    """A copy of a running statistic (None stays None)."""
    import cnnkit

    return None if statistic is None else cnnkit.tensor(statistic.data.copy())


def _batch_norm_ours(x, running_mean, running_var, weight, bias, **kwargs):
    import cnnkit.functional as F

    # copies: training updates the running statistics in place, and gradcheck calls this many times
    return F.batch_norm(x, _copy(running_mean), _copy(running_var), weight, bias, **kwargs)


def _batch_norm_theirs(x, running_mean, running_var, weight, bias, **kwargs):
    import torch.nn.functional as TF

    return TF.batch_norm(x, running_mean.clone(), running_var.clone(), weight, bias, **kwargs)


@st.composite
def _batch_norm_case(draw, small=False):
    training = draw(st.booleans())
    channels = draw(st.integers(1, 2 if small else 4))
    dims = draw(st.sampled_from([2, 3, 4, 5]))  # (N, C), (N, C, L), (N, C, H, W), (N, C, D, H, W)
    spatial = tuple(draw(st.integers(1, 2 if small else 4)) for _ in range(dims - 2))
    batch = draw(st.sampled_from([1, 2, 3]))
    if training and batch * int(np.prod(spatial)) < 2:
        batch = 2  # training needs more than one value per channel
    rng = _rng(draw)
    x = rng.standard_normal((batch, channels) + spatial) * 2 + rng.standard_normal((1, channels) + (1,) * len(spatial))
    running_mean, running_var = rng.standard_normal(channels), np.abs(rng.standard_normal(channels)) + 0.5
    affine = draw(st.booleans())
    weight = rng.standard_normal(channels) if affine else None
    bias = rng.standard_normal(channels) if affine and draw(st.booleans()) else None
    kwargs = {"training": training, "momentum": draw(st.sampled_from([0.1, 0.5])),
              "eps": draw(st.sampled_from([1e-5, 1e-3]))}
    grads = (0,) + tuple(i for i, value in ((3, weight), (4, bias)) if value is not None)
    return Case([x, running_mean, running_var, weight, bias], kwargs, grad=grads)


def _batch_norm_relu_ours(x, running_mean, running_var, weight, bias, **kwargs):
    import cnnkit.functional as F

    return F.batch_norm_relu(x, _copy(running_mean), _copy(running_var), weight, bias, **kwargs)


def _batch_norm_relu_theirs(x, running_mean, running_var, weight, bias, max_value=None, **kwargs):
    import torch.nn.functional as TF

    normalized = TF.batch_norm(x, running_mean.clone(), running_var.clone(), weight, bias, **kwargs)
    return TF.relu(normalized) if max_value is None else TF.hardtanh(normalized, 0.0, max_value)


@st.composite
def _batch_norm_relu_case(draw, small=False):
    """batch_norm's cases with relu, relu6, or a clamp at 0.5 that most outputs reach."""
    case = draw(_batch_norm_case(small))
    case.kwargs["max_value"] = draw(st.sampled_from([None, 6.0, 0.5]))
    return case


@st.composite
def _lrn_case(draw, small=False):
    shape = (draw(st.sampled_from([1, 2])), draw(st.integers(1, 4 if small else 7)))
    shape += tuple(draw(st.integers(1, 2 if small else 4)) for _ in range(draw(st.integers(1, 1 if small else 3))))
    kwargs = {"size": draw(st.integers(1, shape[1] + 2)),
              # alpha large enough that the cross-channel term shows in the gradient
              "alpha": draw(st.sampled_from([1e-4, 0.5, 2.0])), "beta": draw(st.sampled_from([0.75, 0.5, 1.3])),
              "k": draw(st.sampled_from([1.0, 2.0]))}
    return Case([_rng(draw).standard_normal(shape)], kwargs)


# ------------------------------------------------------------------------------------------------------ losses
def _class_layout(draw, small):
    """(input shape, target shape): (C,) / (N, C) / (N, C, d1, ...)."""
    classes = draw(st.integers(1, 4 if small else 7))
    kind = draw(st.sampled_from(["unbatched", "flat", "flat", "spatial"]))
    if kind == "unbatched":
        return (classes,), ()
    batch = draw(st.sampled_from([1, 2, 3]) if small else st.integers(1, 5))
    spatial = () if kind == "flat" else tuple(draw(st.integers(1, 2 if small else 3))
                                              for _ in range(draw(st.integers(1, 2))))
    return (batch, classes) + spatial, (batch,) + spatial


def _class_targets(draw, rng, input_shape, target_shape, ignore_index):
    classes = input_shape[0] if len(input_shape) == 1 else input_shape[1]
    target = np.array(rng.integers(0, classes, size=target_shape), dtype=np.int64)
    if ignore_index == -100 and target.size > 1 and draw(st.booleans()):
        target.reshape(-1)[0] = -100  # one ignored entry; the others keep the mean defined
    return target


@st.composite
def _cross_entropy_case(draw, small=False, log_probs=False):
    input_shape, target_shape = _class_layout(draw, small)
    classes = input_shape[0] if len(input_shape) == 1 else input_shape[1]
    rng = _rng(draw)
    ignore_index = draw(st.sampled_from([-100, -100, 0])) if classes > 1 else -100
    target = _class_targets(draw, rng, input_shape, target_shape, ignore_index)
    if ignore_index == 0 and (target != 0).sum() == 0:
        target = np.full_like(target, classes - 1)
    weight = np.abs(rng.standard_normal(classes)) + 0.2 if draw(st.booleans()) else None
    kwargs = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])), "ignore_index": ignore_index}
    if not log_probs:
        kwargs["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1, 0.35]))
    x = rng.standard_normal(input_shape) * 2
    return Case([x, target, weight], kwargs, grad=(0,))


@st.composite
def _cross_entropy_probabilities(draw, small=False):
    input_shape, _ = _class_layout(draw, small)
    rng = _rng(draw)
    class_axis = 0 if len(input_shape) == 1 else 1
    logits = rng.standard_normal(input_shape)
    target = np.exp(logits) / np.exp(logits).sum(axis=class_axis, keepdims=True)
    classes = input_shape[class_axis]
    weight = np.abs(rng.standard_normal(classes)) + 0.2 if draw(st.booleans()) else None
    kwargs = {"reduction": draw(st.sampled_from(["mean", "sum", "none"])),
              "label_smoothing": draw(st.sampled_from([0.0, 0.2]))}
    return Case([rng.standard_normal(input_shape) * 2, target, weight], kwargs, grad=(0, 1))


def _mse_ours(x, target, weight, **kwargs):
    import cnnkit.functional as F

    return F.mse_loss(x, target, weight=weight, **kwargs)


def _mse_theirs(x, target, weight, **kwargs):
    import torch.nn.functional as TF

    return TF.mse_loss(x, target, weight=weight, **kwargs)


@st.composite
def _mse_case(draw, small=False):
    shape = _shape(draw, max_dims=2 if small else 4, small=small)
    rng = _rng(draw)
    weight = np.abs(rng.standard_normal(shape)) + 0.1 if draw(st.booleans()) else None
    inputs = [rng.standard_normal(shape), rng.standard_normal(shape), weight]
    return Case(inputs, {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))})


def _bce_ours(x, target, weight, pos_weight, **kwargs):
    import cnnkit.functional as F

    return F.binary_cross_entropy_with_logits(x, target, weight, pos_weight=pos_weight, **kwargs)


def _bce_theirs(x, target, weight, pos_weight, **kwargs):
    import torch.nn.functional as TF

    return TF.binary_cross_entropy_with_logits(x, target, weight, pos_weight=pos_weight, **kwargs)


@st.composite
def _bce_case(draw, small=False):
    shape = _shape(draw, min_dims=2, max_dims=2 if small else 4, small=small)
    rng = _rng(draw)
    weight = np.abs(rng.standard_normal(shape[-1:])) + 0.1 if draw(st.booleans()) else None
    pos_weight = np.abs(rng.standard_normal(shape[-1:])) * 2 + 0.1 if draw(st.booleans()) else None
    inputs = [rng.standard_normal(shape) * 4, rng.uniform(0, 1, shape), weight, pos_weight]
    return Case(inputs, {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))}, grad=(0, 1))


# ------------------------------------------------------------------------------------------- pad and shuffle
@st.composite
def _pad_case(draw, small=False):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    padded_dims = draw(st.integers(1, 2))
    if mode == "constant":
        ndim = draw(st.integers(padded_dims, 4))
    else:  # torch's non-constant modes want one or two leading (batch, channel) dimensions
        ndim = padded_dims + draw(st.integers(1, 2))
    limit = 3 if small else 5
    shape = tuple(draw(st.integers(1, 2)) for _ in range(ndim - padded_dims))
    shape += tuple(draw(st.integers(2, limit)) for _ in range(padded_dims))
    pads = []
    for axis in reversed(range(ndim - padded_dims, ndim)):
        size = shape[axis]
        low, high = {"constant": (-1, 3), "reflect": (0, size - 1), "replicate": (0, size + 2),
                     "circular": (0, size)}[mode]
        pads += [draw(st.integers(low, high)), draw(st.integers(low, high))]
    kwargs = {"mode": mode}
    if mode == "constant" and draw(st.booleans()):
        kwargs["value"] = draw(st.sampled_from([0.5, -2.0]))
    return Case([_rng(draw).standard_normal(shape), tuple(pads)], kwargs)


@st.composite
def _shuffle_case(draw, small=False):
    groups = draw(st.integers(1, 3 if small else 4))
    per_group = draw(st.integers(1, 2 if small else 3))
    spatial = tuple(draw(st.integers(1, 2 if small else 4)) for _ in range(draw(st.integers(1, 2))))
    shape = (draw(st.sampled_from([1, 2])), groups * per_group) + spatial
    return Case([_rng(draw).standard_normal(shape)], {"groups": groups})


def _small(strategy, **kwargs):
    return strategy(small=True, **kwargs)


_BATCH_NORM_ERRORS = [
    ErrorCase([np.zeros((2, 4)), np.zeros(3), np.ones(4), None, None], {}, ValueError,
              r"batch_norm: running_mean has shape \(3,\)"),
    ErrorCase([np.zeros((2, 4)), None, None, None, None], {}, ValueError, "required when training=False"),
    ErrorCase([np.zeros((1, 4)), None, None, None, None], {"training": True}, ValueError,
              r"batch_norm: expected more than 1 value per channel .*\(1, 4\)"),
    ErrorCase([np.zeros(4), None, None, None, None], {"training": True}, ValueError,
              r"batch_norm: expected an input of shape \(N, C, ...\) with at least 2 dimensions, got \(4,\)"),
]
_BATCH_NORM_RELU_ERRORS = [
    *[ErrorCase([np.zeros((2, 4)), None, None, None, None], {"training": True, "max_value": bad}, ValueError,
                r"batch_norm_relu: max_value must be a positive number or None, got") for bad in (0, -6, "6")],
    ErrorCase([np.zeros((2, 4)), None, None, np.ones(3), None], {"training": True}, ValueError,
              r"batch_norm_relu: weight has shape \(3,\) but the input of shape \(2, 4\)"),
    ErrorCase([np.zeros((1, 4)), None, None, None, None], {"training": True, "max_value": 6}, ValueError,
              r"batch_norm_relu: expected more than 1 value per channel .*\(1, 4\)"),
]
_RELU_ERRORS = [ErrorCase([np.ones((2, 3), np.int64)], {}, TypeError, r"relu: expected a float32 or float64 input")]

SPECS = [
    _activation("relu", kernel_ops=("relu",), errors=_RELU_ERRORS),
    _activation("relu6", scale=5.0, kernel_ops=("relu",)),
    _activation("leaky_relu", negative_slope=st.sampled_from([0.01, 0.2, 1.5])),
    _activation("elu", alpha=st.sampled_from([1.0, 0.5, 2.0])),
    _activation("gelu", approximate=st.sampled_from(["none", "tanh"])),
    _activation("sigmoid", scale=8.0, kernel_ops=("sigmoid",)),
    _activation("tanh", kernel_ops=("tanh",)),
    _activation("hardswish", scale=5.0),
    _activation("hardsigmoid", scale=5.0),
    _activation("silu", scale=6.0),
    OpSpec("erf", _elementwise(3.0, {}), theirs=_torch_erf,
           gradcheck_cases=_elementwise(3.0, {}, small=True)),
    OpSpec("softmax", _softmax_case(), gradcheck_cases=_small(_softmax_case)),
    OpSpec("log_softmax", _softmax_case(), gradcheck_cases=_small(_softmax_case)),
    OpSpec("linear", _linear_case(), gradcheck_cases=_small(_linear_case)),
    OpSpec("batch_norm", _batch_norm_case(), ours=_batch_norm_ours, theirs=_batch_norm_theirs,
           gradcheck_cases=_small(_batch_norm_case), kernel_ops=("batch_norm",), errors=_BATCH_NORM_ERRORS),
    OpSpec("batch_norm_relu", _batch_norm_relu_case(), ours=_batch_norm_relu_ours, theirs=_batch_norm_relu_theirs,
           gradcheck_cases=_small(_batch_norm_relu_case), kernel_ops=("batch_norm",),
           errors=_BATCH_NORM_RELU_ERRORS),
    OpSpec("local_response_norm", _lrn_case(), gradcheck_cases=_small(_lrn_case)),
    OpSpec("cross_entropy", _cross_entropy_case(), gradcheck_cases=_small(_cross_entropy_case)),
    OpSpec("cross_entropy[probabilities]", _cross_entropy_probabilities(), ours=cnnkit_op("cross_entropy"),
           theirs=torch_op("cross_entropy"), gradcheck_cases=_small(_cross_entropy_probabilities)),
    OpSpec("nll_loss", _cross_entropy_case(log_probs=True),
           gradcheck_cases=_small(_cross_entropy_case, log_probs=True)),
    OpSpec("mse_loss", _mse_case(), ours=_mse_ours, theirs=_mse_theirs, gradcheck_cases=_small(_mse_case)),
    OpSpec("binary_cross_entropy_with_logits", _bce_case(), ours=_bce_ours, theirs=_bce_theirs,
           gradcheck_cases=_small(_bce_case)),
    OpSpec("pad", _pad_case(), gradcheck_cases=_small(_pad_case)),
    OpSpec("channel_shuffle", _shuffle_case(), gradcheck_cases=_small(_shuffle_case)),
]
