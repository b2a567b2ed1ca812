"""BatchNorm1d/2d/3d and LocalResponseNorm with torch.nn's arguments, reprs and state_dict keys."""
from __future__ import annotations

import numbers
import weakref

from .. import functional as F
from ..autograd import Tensor, ones, zeros
from ..backend import get_array_module
from ..functional.normalization import batch_norm_layer
from . import init
from .activation import ReLU, ReLU6
from .module import Module
from .parameter import Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "LocalResponseNorm"]


class _BatchNorm(Module):
    """Per-channel normalisation with learnable scale/shift and running statistics (Ioffe and Szegedy, 2015).

    state_dict keys as PyTorch: ``weight``, ``bias`` (with ``affine``), ``running_mean``,
    ``running_var`` and the int64 ``num_batches_tracked`` (with ``track_running_stats``).
    ``momentum=None`` makes the running statistics a cumulative average (factor 1 / num_batches_tracked).
    """

    _expected_dims = ()
    _shape_text = ""
    _fused_activation = None  # the ReLU/ReLU6 that nn.utils.fuse runs inside this layer

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *, bias=True):
        super().__init__()
        layer = type(self).__name__
        if not isinstance(num_features, numbers.Integral) or num_features <= 0:
            raise ValueError(f"{layer}: num_features must be a positive integer (the channel count), "
                             f"got {num_features!r}")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"{layer}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        if affine:
            self.weight = Parameter(ones(self.num_features))
            if bias:
                self.bias = Parameter(zeros(self.num_features))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", zeros(self.num_features))
            self.register_buffer("running_var", ones(self.num_features))
            self.register_buffer("num_batches_tracked", Tensor(get_array_module().array(0, dtype="int64")))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.data[...] = 0
            self.running_var.data[...] = 1
            self.num_batches_tracked.data[...] = 0

    def reset_parameters(self):
        self.reset_running_stats()
        if self.affine:
            init.ones_(self.weight)
            if self.bias is not None:
                init.zeros_(self.bias)

    def _check_input(self, input):
        shape = tuple(input.shape)
        if len(shape) not in self._expected_dims:
            raise ValueError(f"{self._name()}: expected {self._shape_text} input, got shape {shape} "
                             f"({len(shape)}-D)")
        if shape[1] != self.num_features:
            raise ValueError(f"{self._name()}: input of shape {shape} has {shape[1]} channels (dimension 1) but "
                             f"num_features={self.num_features}; set num_features={shape[1]} or fix the previous "
                             "layer's output channels")

    def forward(self, input):
        activation = self._fused_activation
        relu = None if activation is None else fusable_relu(self, activation)
        if relu is None:
            return self._normalize(input)
        out = self._normalize(input, relu)
        object.__setattr__(activation, "_fused_output", weakref.ref(out))  # the activation passes it through
        return out

    def _normalize(self, input, relu=None):
        """forward, with ``relu=(max_value,)`` fusing a following ReLU (None) or ReLU6 (6) into the op."""
        self._check_input(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / float(self.num_batches_tracked.data)
        # eval mode normalises with the running statistics unless the layer keeps none
        use_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        return batch_norm_layer(input, self.running_mean if track else None, self.running_var if track else None,
                                self.weight, self.bias, use_batch_stats, momentum, self.eps, self._name(), relu=relu)

    def _name(self):
        return f"{type(self).__name__}({self.num_features})"

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L): statistics per channel C over every other axis."""

    _expected_dims = (2, 3)
    _shape_text = "a 2-D (N, C) or 3-D (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W): statistics per channel C over N, H and W."""

    _expected_dims = (4,)
    _shape_text = "a 4-D (N, C, H, W)"


class BatchNorm3d(_BatchNorm):
    """Batch normalisation of (N, C, D, H, W): statistics per channel C over N, D, H and W."""

    _expected_dims = (5,)
    _shape_text = "a 5-D (N, C, D, H, W)"


_FUSED_MAX_VALUES = {ReLU: None, ReLU6: 6.0}


def fusable_relu(norm, activation):
    """``(max_value,)`` when ``activation`` (a plain ReLU or ReLU6) can run fused into BatchNorm ``norm``, else None.

    A fused pair computes the activation inside the norm's call, so neither may have forward hooks or a replaced
    forward (their hooks would see different values).
    """
    if not isinstance(norm, _BatchNorm) or type(norm).forward is not _BatchNorm.forward:
        return None
    if type(activation) not in _FUSED_MAX_VALUES or norm._forward_hooks or activation._forward_hooks:
        return None
    if "forward" in vars(norm) or "forward" in vars(activation):  # forward replaced on the instance
        return None
    return (_FUSED_MAX_VALUES[type(activation)],)


class LocalResponseNorm(Module):
    """x_c / (k + alpha/size * sum of x_j^2 over the ``size`` channels around c)^beta (AlexNet)."""

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0):
        super().__init__()
        if not isinstance(size, numbers.Integral) or size <= 0:
            raise ValueError(f"LocalResponseNorm: size must be a positive integer, got {size!r}")
        self.size, self.alpha, self.beta, self.k = int(size), alpha, beta, k

    def forward(self, input):
        return F.local_response_norm(input, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self):
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"
