"""``SyncBatchNorm``: batch normalization whose statistics cover the batch slices of every process."""
from __future__ import annotations

from .. import comm
from ..autograd import Function
from ..backend import get_array_module
from .module import Module
from .normalization import _BatchNorm

__all__ = ["SyncBatchNorm"]


def _per_channel(x):
    """``x`` as (N, C, L), so that per-channel sums run over axes 0 and 2."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _global_sums(*vectors):
    """Sum per-channel float64 vectors over all processes in one collective; returns them split again."""
    xp = get_array_module()
    joined = xp.concatenate([xp.atleast_1d(vector).astype(xp.float64) for vector in vectors])
    comm.all_reduce(joined)
    sizes = xp.cumsum([xp.atleast_1d(vector).size for vector in vectors])[:-1]
    return xp.split(joined, sizes)


class _SyncBatchNormFunction(Function):
    """y = (x - mean) / sqrt(var + eps) * weight + bias with mean and (biased) var over every process's batch.

    The mean comes from allreduced per-channel sums and sample counts, the variance from allreduced sums of
    squared deviations (two passes, as exact as one process's). Backward, with n the global count and
    xhat = (x - mean) / std: dx = weight / std * (dy - sum(dy) / n - xhat * sum(dy * xhat) / n), both sums
    allreduced; dweight and dbias are this process's sums (DistributedDataParallel averages them).
    """

    def forward(self, x, weight, bias):
        xp = get_array_module()
        x3 = _per_channel(x)
        local_count = xp.array([x3.shape[0] * x3.shape[2]], dtype=xp.float64)
        count, sums = _global_sums(local_count, x3.sum(axis=(0, 2), dtype=xp.float64))
        count = float(count[0])
        if count < 2:
            raise ValueError(f"{self.layer}: training needs more than one value per channel over all processes, "
                             f"got input of shape {x.shape} on {comm.world_size()} process(es); use a larger batch")
        mean = sums / count
        centered = x3 - mean.astype(x.dtype)[None, :, None]
        (squares,) = _global_sums(xp.einsum("ncl,ncl->c", centered, centered, dtype=xp.float64))
        var = squares / count
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        xhat = centered * inv_std.astype(x.dtype)[None, :, None]
        self.stats.update(mean=mean, var=var, count=count)  # the layer updates its running statistics
        out = xhat
        if weight is not None:
            out = out * weight[None, :, None]
        if bias is not None:
            out = out + bias[None, :, None]
        self.xhat, self.inv_std, self.weight, self.count = xhat, inv_std, weight, count
        return out.reshape(x.shape).astype(x.dtype, copy=False)

    def backward(self, grad):
        xp = get_array_module()
        g3 = _per_channel(grad)
        xhat = self.xhat
        local_sum_dy = g3.sum(axis=(0, 2), dtype=xp.float64)
        local_sum_dy_xhat = xp.einsum("ncl,ncl->c", g3, xhat, dtype=xp.float64)
        sum_dy, sum_dy_xhat = _global_sums(local_sum_dy, local_sum_dy_xhat)
        grad_x = None
        if self.needs_input_grad[0]:
            scale = self.inv_std if self.weight is None else self.inv_std * self.weight.astype(xp.float64)
            dtype = grad.dtype
            mean_dy = (sum_dy / self.count).astype(dtype)[None, :, None]
            mean_dy_xhat = (sum_dy_xhat / self.count).astype(dtype)[None, :, None]
            grad_x = (g3 - mean_dy - xhat * mean_dy_xhat) * scale.astype(dtype)[None, :, None]
            grad_x = grad_x.reshape(grad.shape)
        grad_weight = local_sum_dy_xhat.astype(grad.dtype) if self._needs(1) else None
        grad_bias = local_sum_dy.astype(grad.dtype) if self._needs(2) else None
        return grad_x, grad_weight, grad_bias

    def _needs(self, index):
        return len(self.needs_input_grad) > index and self.needs_input_grad[index]


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over the whole global batch: per-channel sums and counts are allreduced over processes in training.

    Forward and backward equal ``BatchNorm2d`` on the concatenation of all processes' batches, and the running
    statistics (updated from the global mean and unbiased variance) are the same on every rank. In eval mode
    it normalizes with the running statistics and communicates nothing. Takes (N, C, ...) inputs, N and C
    as BatchNorm; state_dict keys as BatchNorm's.
    """

    _expected_dims = (2, 3, 4, 5)
    _shape_text = "a 2-D to 5-D (N, C, ...)"

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 process_group=None):
        super().__init__(num_features, eps, momentum, affine, track_running_stats)
        if process_group is not None:
            raise ValueError("SyncBatchNorm: process groups are not supported; every process takes part "
                             "(pass process_group=None)")

    def forward(self, input):
        if not self.training:
            return self._normalize(input)  # running statistics: nothing to synchronize
        self._check_input(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked.data[...] += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked.data)
        stats = {}
        out = _SyncBatchNormFunction.apply(input, self.weight, self.bias, eps=self.eps, layer=self._name(),
                                           stats=stats)
        if self.track_running_stats:
            count = stats["count"]
            self._update_running_stats(stats["mean"], stats["var"] * count / (count - 1), momentum)
        return out

    def _update_running_stats(self, mean, unbiased_var, momentum):
        running_mean, running_var = self.running_mean.data, self.running_var.data
        running_mean[...] = (1 - momentum) * running_mean + momentum * mean.astype(running_mean.dtype)
        running_var[...] = (1 - momentum) * running_var + momentum * unbiased_var.astype(running_var.dtype)

    @classmethod
    def convert_sync_batchnorm(cls, module, process_group=None):
        """Return ``module`` with every BatchNorm1d/2d/3d (recursively) replaced by a SyncBatchNorm with its state."""
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            converted = cls(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, process_group)
            if module.affine:
                converted.weight, converted.bias = module.weight, module.bias
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(converted, name, getattr(module, name))
            converted.train(module.training)
            return converted
        for name, child in list(module._modules.items()):
            if isinstance(child, Module):
                module._modules[name] = cls.convert_sync_batchnorm(child, process_group)
        return module
