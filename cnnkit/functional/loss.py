"""Losses with torch.nn.functional's names, arguments and reductions, each with a fused hand-written backward.

Class axis: 1 of (N, C) or (N, C, d1, d2, ...), or 0 of an unbatched (C,) input. Class weights and
``pos_weight`` are constants, as in PyTorch (which cannot differentiate with respect to them either).
"""
from __future__ import annotations

import numbers
import warnings

from ..autograd import Function, Tensor, is_grad_enabled
from ..backend import get_array_module
from .activation import _stable_sigmoid, as_float_tensor

__all__ = ["cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy_with_logits"]

_REDUCTIONS = ("none", "mean", "sum")


# ------------------------------------------------------------------------------------------------- arguments
def _reduction(op, size_average, reduce, reduction):
    """The reduction string, translating PyTorch's deprecated size_average/reduce flags."""
    if size_average is not None or reduce is not None:
        warnings.warn(f"{op}: size_average and reduce are deprecated; use reduction= instead", stacklevel=3)
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _constant(op, name, value, dtype):
    """A weight array that gets no gradient (an error if the caller asked for one), cast to ``dtype``."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        if value.requires_grad and is_grad_enabled():
            raise ValueError(f"{op}: cannot differentiate with respect to {name} (as in PyTorch); "
                             f"pass {name}.detach()")
        value = value.data
    return get_array_module().asarray(value).astype(dtype, copy=False)


def _raw_target(target):
    return target.data if isinstance(target, Tensor) else get_array_module().asarray(target)


def _reduce(per_element, reduction, denominator=None):
    """'none': as is; 'sum': the total; 'mean': total / denominator (the element count by default)."""
    if reduction == "none":
        return per_element
    xp = get_array_module()
    total = xp.asarray(per_element.sum())
    if reduction == "sum":
        return total
    count = per_element.size if denominator is None else denominator
    with xp.errstate(invalid="ignore", divide="ignore"):  # all targets ignored: nan, as PyTorch
        return xp.asarray(total / count).astype(per_element.dtype)


def _upstream_scale(grad, reduction, denominator, dtype):
    """dLoss/dper_element: the upstream gradient itself ('none'/'sum') or divided by the mean's denominator."""
    if reduction != "mean":
        return grad
    xp = get_array_module()
    with xp.errstate(invalid="ignore", divide="ignore"):
        return (grad / denominator).astype(dtype)


def _batched(x):
    """Add the batch axis of an unbatched (C,) input; returns (input, unbatched)."""
    return (x.reshape(1, -1), True) if x.ndim == 1 else (x, False)


def _class_targets(op, input_shape, target, ignore_index, unbatched):
    """Check class-index targets against the input; returns (safe indices with ignored -> 0, valid mask)."""
    xp = get_array_module()
    expected = () if unbatched else (input_shape[0],) + tuple(input_shape[2:])
    if tuple(target.shape) != expected:
        raise ValueError(f"{op}: target of shape {tuple(target.shape)} does not fit input of shape "
                         f"{tuple(input_shape)}: class-index targets must have shape {expected} (the input without "
                         "its class axis 1); probability targets must have the input's shape and a float dtype")
    classes = input_shape[0] if unbatched else input_shape[1]
    valid = target != ignore_index
    out_of_range = valid & ((target < 0) | (target >= classes))
    if out_of_range.any():
        bad = int(target[out_of_range].reshape(-1)[0])
        raise ValueError(f"{op}: target contains class {bad} but the input of shape {tuple(input_shape)} has "
                         f"{classes} classes; class indices must lie in [0, {classes - 1}] (or equal "
                         f"ignore_index={ignore_index}). Check num_classes of the model against the labels")
    safe = xp.where(valid, target, 0).astype(xp.intp)
    if unbatched:
        safe, valid = safe.reshape(1), valid.reshape(1)
    return safe, valid


def _check_class_weight(op, weight, classes):
    if weight is not None and tuple(weight.shape) != (classes,):
        raise ValueError(f"{op}: weight must have one value per class, shape ({classes},), got {tuple(weight.shape)}")


def _channel_shape(x):
    return (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _log_softmax(x):
    xp = get_array_module()
    shifted = x - x.max(axis=1, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))


def _gather(values, index):
    """values[n, index[n, ...], ...] along the class axis 1."""
    return get_array_module().take_along_axis(values, index[:, None], axis=1)[:, 0]


def _add_at_targets(array, index, amount):
    """array[n, index[n, ...], ...] += amount[n, ...] (each position has one target: no collisions)."""
    xp = get_array_module()
    picked = xp.take_along_axis(array, index[:, None], axis=1)
    xp.put_along_axis(array, index[:, None], picked + amount[:, None], axis=1)


# --------------------------------------------------------------------------------------------- cross entropy
class _CrossEntropyIndices(Function):
    """l_n = (1 - eps) w_{y_n} (-log p_{n, y_n}) + eps/C sum_c w_c (-log p_{n, c}); ignored targets give 0."""

    def forward(self, x):
        xp = get_array_module()
        classes = x.shape[1]
        log_probs = _log_softmax(x)
        weight = self.weight
        self.target_weight = (weight[self.index] if weight is not None else xp.ones(self.index.shape, x.dtype))
        self.target_weight = self.target_weight * self.valid
        per_element = -_gather(log_probs, self.index) * self.target_weight
        eps = self.label_smoothing
        if eps > 0:
            weighted = log_probs if weight is None else log_probs * weight.reshape(_channel_shape(x))
            smooth = -weighted.sum(axis=1) * self.valid
            per_element = (1 - eps) * per_element + (eps / classes) * smooth
        self.denominator = self.target_weight.sum()
        self.probs = xp.exp(log_probs)
        return _reduce(per_element, self.reduction, self.denominator).astype(x.dtype, copy=False)

    def backward(self, grad):
        probs, eps = self.probs, self.label_smoothing
        classes = probs.shape[1]
        scale = _upstream_scale(grad, self.reduction, self.denominator, probs.dtype)
        # dl/dx = (1 - eps) w_y (p - onehot(y)) + eps/C (sum(w) p - w), zero where the target is ignored
        target_coef = (1 - eps) * scale * self.target_weight
        grad_x = target_coef[:, None] * probs
        _add_at_targets(grad_x, self.index, -target_coef)
        if eps > 0:
            smooth_coef = ((eps / classes) * scale * self.valid)[:, None]
            if self.weight is None:
                grad_x += smooth_coef * (classes * probs - 1)
            else:
                weight = self.weight.reshape(_channel_shape(probs))
                grad_x += smooth_coef * (self.weight.sum() * probs - weight)
        return (grad_x,)


class _CrossEntropyProbabilities(Function):
    """l_n = -sum_c w_c t'_{n, c} log p_{n, c} with t' = (1 - eps) t + eps / C; the mean divides by N*d1*..."""

    def forward(self, x, target):
        classes = x.shape[1]
        self.log_probs = _log_softmax(x)
        eps = self.label_smoothing
        smoothed = target if eps == 0 else (1 - eps) * target + eps / classes
        self.weighted_target = smoothed if self.weight is None else smoothed * self.weight.reshape(_channel_shape(x))
        per_element = -(self.log_probs * self.weighted_target).sum(axis=1)
        self.count = per_element.size
        return _reduce(per_element, self.reduction).astype(x.dtype, copy=False)

    def backward(self, grad):
        xp = get_array_module()
        scale = _upstream_scale(grad, self.reduction, self.count, self.log_probs.dtype)
        scale = scale[:, None] if getattr(scale, "ndim", 0) else scale
        grad_x = grad_target = None
        if self.needs_input_grad[0]:
            # dl/dx_j = p_j sum_c w_c t'_c - w_j t'_j
            probs = xp.exp(self.log_probs)
            grad_x = scale * (probs * self.weighted_target.sum(axis=1, keepdims=True) - self.weighted_target)
        if self.needs_input_grad[1]:
            factor = -(1 - self.label_smoothing) * self.log_probs
            if self.weight is not None:
                factor = factor * self.weight.reshape(_channel_shape(factor))
            grad_target = scale * factor
        return grad_x, grad_target


def _squeeze_unbatched(out, unbatched, reduction):
    return out.reshape(()) if unbatched and reduction == "none" else out


def _class_scores(op, input, weight):
    """``(x, batched, unbatched, weight)``: a classification loss's (N, C, ...) scores and checked class weights."""
    x = as_float_tensor(op, input)
    if x.ndim == 0:
        raise ValueError(f"{op}: expected an input of shape (C,), (N, C) or (N, C, d1, ...), got a scalar")
    batched, unbatched = _batched(x)
    weight = _constant(op, "weight", weight, x.dtype)
    _check_class_weight(op, weight, batched.shape[1])
    return x, batched, unbatched, weight


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean",
                  label_smoothing=0.0):
    """Softmax cross entropy, l_n = -w_{y_n} log softmax(x_n)_{y_n}; 'mean' divides by sum of w_{y_n}.

    ``target``: class indices (input's shape without the class axis, integer dtype; entries equal to
    ``ignore_index`` are skipped) or class probabilities (the input's shape, float dtype).
    ``label_smoothing`` eps mixes the target with the uniform distribution: (1 - eps) y + eps / C.
    """
    op = "cross_entropy"
    reduction = _reduction(op, size_average, reduce, reduction)
    if not isinstance(label_smoothing, numbers.Real) or not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be between 0.0 and 1.0, got {label_smoothing!r}")
    x, batched, unbatched, weight = _class_scores(op, input, weight)
    target_array = _raw_target(target)
    if target_array.dtype.kind == "f":
        if tuple(target_array.shape) != tuple(x.shape):
            raise ValueError(f"{op}: probability target of shape {tuple(target_array.shape)} must have the "
                             f"input's shape {tuple(x.shape)}; for class indices pass an integer target of shape "
                             f"{(x.shape[0],) + tuple(x.shape[2:]) if x.ndim > 1 else ()}")
        if ignore_index != -100:
            raise ValueError(f"{op}: ignore_index is not supported for probability (floating point) targets")
        target_tensor = target if isinstance(target, Tensor) else Tensor(target_array)
        if target_tensor.dtype != x.dtype:
            target_tensor = target_tensor.to(x.dtype)
        if unbatched:
            target_tensor = target_tensor.reshape(1, -1)
        out = _CrossEntropyProbabilities.apply(batched, target_tensor, weight=weight, reduction=reduction,
                                               label_smoothing=float(label_smoothing))
        return _squeeze_unbatched(out, unbatched, reduction)
    if target_array.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices or float probabilities, got dtype "
                        f"{target_array.dtype}")
    index, valid = _class_targets(op, tuple(x.shape), target_array, ignore_index, unbatched)
    out = _CrossEntropyIndices.apply(batched, weight=weight, index=index, valid=valid, reduction=reduction,
                                     label_smoothing=float(label_smoothing))
    return _squeeze_unbatched(out, unbatched, reduction)


# -------------------------------------------------------------------------------------------------- nll loss
class _NllLoss(Function):
    """l_n = -w_{y_n} x_{n, y_n} for log-probabilities x; ignored targets give 0."""

    def forward(self, x):
        xp = get_array_module()
        target_weight = self.weight[self.index] if self.weight is not None else xp.ones(self.index.shape, x.dtype)
        self.target_weight = target_weight * self.valid
        self.denominator = self.target_weight.sum()
        self.shape, self.dtype = x.shape, x.dtype
        per_element = -_gather(x, self.index) * self.target_weight
        return _reduce(per_element, self.reduction, self.denominator).astype(x.dtype, copy=False)

    def backward(self, grad):
        xp = get_array_module()
        scale = _upstream_scale(grad, self.reduction, self.denominator, self.dtype)
        grad_x = xp.zeros(self.shape, self.dtype)
        _add_at_targets(grad_x, self.index, -(scale * self.target_weight))
        return (grad_x,)


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log likelihood of log-probabilities: l_n = -w_{y_n} x_{n, y_n}; 'mean' divides by sum w_{y_n}."""
    op = "nll_loss"
    reduction = _reduction(op, size_average, reduce, reduction)
    x, batched, unbatched, weight = _class_scores(op, input, weight)
    target_array = _raw_target(target)
    if target_array.dtype.kind not in "iu":
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {target_array.dtype}")
    index, valid = _class_targets(op, tuple(x.shape), target_array, ignore_index, unbatched)
    out = _NllLoss.apply(batched, weight=weight, index=index, valid=valid, reduction=reduction)
    return _squeeze_unbatched(out, unbatched, reduction)


# -------------------------------------------------------------------------------------------------- mse loss
class _MseLoss(Function):
    """l = w (x - t)^2; 'mean' divides by the element count, or by sum(w) when weighted."""

    def forward(self, x, target, weight):
        self.diff = x - target
        squared = self.diff * self.diff
        self.squared, self.weight = squared, weight
        per_element = squared if weight is None else squared * weight
        self.denominator = per_element.size if weight is None else weight.sum()
        out = _reduce(per_element, self.reduction, self.denominator)
        self.loss = out
        return out

    def backward(self, grad):
        scale = _upstream_scale(grad, self.reduction, self.denominator, self.diff.dtype)
        weighted = scale * 2 * self.diff
        if self.weight is not None:
            weighted = weighted * self.weight
        grad_weight = None
        if self.needs_input_grad[2]:
            # mean: d(sum(w e) / sum(w))/dw = (e - loss) / sum(w)
            grad_weight = scale * (self.squared - self.loss) if self.reduction == "mean" else scale * self.squared
        return (weighted if self.needs_input_grad[0] else None,
                -weighted if self.needs_input_grad[1] else None, grad_weight)


def _same_shape(op, x, target, what="target"):
    if tuple(target.shape) != tuple(x.shape):
        raise ValueError(f"{op}: {what} of shape {tuple(target.shape)} must have the input's shape "
                         f"{tuple(x.shape)} (cnnkit does not broadcast losses: reshape one of them)")


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error: l = (x - t)^2, optionally weighted per element (then 'mean' = sum(w l) / sum(w))."""
    op = "mse_loss"
    x = as_float_tensor(op, input)
    t = as_float_tensor(op, target, "target")
    _same_shape(op, x, t)
    if weight is not None:
        weight = as_float_tensor(op, weight, "weight")
        _same_shape(op, x, weight, "weight")
    reduction = _reduction(op, size_average, reduce, reduction)
    return _MseLoss.apply(x, t.to(x.dtype), None if weight is None else weight.to(x.dtype), reduction=reduction)


# ------------------------------------------------------------------------------------ binary cross entropy
def _softplus(x):
    """log(1 + e^x) without overflow."""
    xp = get_array_module()
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def _broadcasts_to(shape, target_shape):
    """Whether an array of ``shape`` broadcasts to exactly ``target_shape``."""
    if len(shape) > len(target_shape):
        return False
    return all(size in (1, target) for size, target in zip(reversed(shape), reversed(target_shape)))


class _BceWithLogits(Function):
    """l = w [(1 - t) x + (1 + (pw - 1) t) softplus(-x)] = -w [pw t log s(x) + (1 - t) log(1 - s(x))]."""

    def forward(self, x, target):
        self.x, self.target = x, target
        positive = 1 if self.pos_weight is None else 1 + (self.pos_weight - 1) * target
        self.positive = positive
        self.softplus_neg = _softplus(-x)
        per_element = (1 - target) * x + positive * self.softplus_neg
        if self.weight is not None:
            per_element = per_element * self.weight
        self.count = per_element.size
        return _reduce(per_element, self.reduction).astype(x.dtype, copy=False)

    def backward(self, grad):
        x, target = self.x, self.target
        scale = _upstream_scale(grad, self.reduction, self.count, x.dtype)
        if self.weight is not None:
            scale = scale * self.weight
        grad_x = grad_target = None
        if self.needs_input_grad[0]:
            # d/dx: (1 - t) - (1 + (pw - 1) t) sigmoid(-x)
            grad_x = scale * ((1 - target) - self.positive * _stable_sigmoid(-x))
        if self.needs_input_grad[1]:
            factor = -x if self.pos_weight is None else -x + (self.pos_weight - 1) * self.softplus_neg
            grad_target = scale * factor
        return grad_x, grad_target


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None, reduction="mean",
                                     pos_weight=None):
    """l = -w [pw t log sigmoid(x) + (1 - t) log(1 - sigmoid(x))], computed stably from the logits x."""
    op = "binary_cross_entropy_with_logits"
    x = as_float_tensor(op, input)
    t = as_float_tensor(op, target, "target")
    _same_shape(op, x, t)
    reduction = _reduction(op, size_average, reduce, reduction)
    weight = _constant(op, "weight", weight, x.dtype)
    pos_weight = _constant(op, "pos_weight", pos_weight, x.dtype)
    for name, value in (("weight", weight), ("pos_weight", pos_weight)):
        if value is not None and not _broadcasts_to(value.shape, x.shape):
            raise ValueError(f"{op}: {name} of shape {tuple(value.shape)} does not broadcast to the input's shape "
                             f"{tuple(x.shape)}")
    return _BceWithLogits.apply(x, t.to(x.dtype), weight=weight, pos_weight=pos_weight, reduction=reduction)
