"""``DistributedDataParallel``: every process holds the model; gradients are averaged over processes after backward."""
from __future__ import annotations

import contextlib

from .. import comm
from ..autograd import Function, Tensor
from ..backend import get_array_module
from .module import Module

__all__ = ["DistributedDataParallel"]

# Buckets of a few megabytes allreduce a large model's gradients faster than one call or PyTorch's 25 MB
# buckets between processes sharing memory, as each message stays in cache (bench/distributed.py measures it).
DEFAULT_BUCKET_CAP_MB = 4


class _AverageAfterBackward(Function):
    """Identity on the model's output; once the whole backward pass has run, it averages the gradients."""

    def forward(self, output):
        return output

    def backward(self, grad):
        return (grad,)


class DistributedDataParallel(Module):
    """Wrap ``module`` for data-parallel training (``torch.nn.parallel.DistributedDataParallel``'s name and meaning).

    At construction rank 0's parameters and buffers are broadcast to every process. After each ``backward``
    through an output of this wrapper, gradients are summed over processes in buckets of about
    ``bucket_cap_mb`` megabytes (the same order on every rank) and divided by the world size; a parameter
    that got no gradient takes part as zeros. Inside ``no_sync()`` gradients only accumulate locally.
    With ``broadcast_buffers`` every training forward first copies rank 0's buffers (BatchNorm's running
    statistics) to all ranks, as PyTorch does, so that they do not drift apart.

    Each bucket is one array allocated once, which MPI reduces in place. The averaged gradients are copied
    back into each ``param.grad``; with ``gradient_as_bucket_view=True`` (PyTorch's option) ``param.grad``
    becomes a view of the bucket instead, which saves that copy but is overwritten by the next synchronized
    backward: copy a gradient to keep it past the next step.
    """

    def __init__(self, module, bucket_cap_mb=DEFAULT_BUCKET_CAP_MB, broadcast_buffers=True,
                 gradient_as_bucket_view=False):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DistributedDataParallel: expected a cnnkit Module, got {type(module).__name__}")
        if not bucket_cap_mb > 0:
            raise ValueError(f"DistributedDataParallel: bucket_cap_mb must be positive, got {bucket_cap_mb!r}")
        self.module = module
        self.bucket_cap_mb = bucket_cap_mb
        self.broadcast_buffers = broadcast_buffers
        self.gradient_as_bucket_view = bool(gradient_as_bucket_view)
        self.require_backward_grad_sync = True
        self.world_size = comm.world_size()
        self._broadcast_state()
        params = [param for param in module.parameters() if param.requires_grad]
        self._buckets = _plan_buckets(params, int(bucket_cap_mb * 1e6))
        self._bucket_arrays = [None] * len(self._buckets)  # allocated on the first synchronized backward

    def _broadcast_state(self):
        """Copy rank 0's parameters and buffers into every process (they may have been initialized differently)."""
        xp = get_array_module()
        if self.world_size == 1:
            return
        for value in list(self.module.parameters()) + list(self.module.buffers()):
            if not value.data.flags.c_contiguous or not value.data.flags.writeable:
                value.data = xp.array(value.data, order="C")
            comm.broadcast(value.data, root=0)

    def forward(self, *args, **kwargs):
        if self.world_size > 1 and self.broadcast_buffers and self.training:
            for buffer in self.module.buffers():
                comm.broadcast(buffer.data, root=0)
        output = self.module(*args, **kwargs)
        if self.world_size == 1 or not self.require_backward_grad_sync:
            return output
        return _attach(output, self._average_gradients)

    @contextlib.contextmanager
    def no_sync(self):
        """Inside: forwards whose backward only accumulates local gradients (sync on the first one after)."""
        previous, self.require_backward_grad_sync = self.require_backward_grad_sync, False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous

    def _average_gradients(self):
        """Average each bucket's gradients over processes (scaled by 1 / world size, then summed by MPI), in the
        same order everywhere."""
        xp = get_array_module()
        scale = 1.0 / self.world_size
        for index, bucket in enumerate(self._buckets):
            flat = self._bucket_array(index)
            offset = 0
            for param in bucket:
                size = param.data.size
                if param.grad is None:
                    flat[offset:offset + size] = 0  # reduced as zeros: every rank must send the same buckets
                else:
                    # divided before the sum (as PyTorch does) in the same pass as the copy into the bucket
                    xp.multiply(param.grad.reshape(-1), scale, out=flat[offset:offset + size])
                offset += size
            comm.all_reduce(flat)
            offset = 0
            for param in bucket:
                size = param.data.size
                averaged = flat[offset:offset + size].reshape(param.data.shape)
                offset += size
                if self.gradient_as_bucket_view:
                    param.grad = averaged
                elif param.grad is None or not param.grad.flags.writeable or param.grad.shape != averaged.shape:
                    param.grad = averaged.copy()
                else:
                    param.grad[...] = averaged

    def _bucket_array(self, index):
        flat = self._bucket_arrays[index]
        if flat is None:
            bucket = self._buckets[index]
            flat = get_array_module().empty(sum(param.data.size for param in bucket), dtype=bucket[0].dtype)
            self._bucket_arrays[index] = flat
        return flat

    def extra_repr(self):
        return (f"bucket_cap_mb={self.bucket_cap_mb}, world_size={self.world_size}, "
                f"gradient_as_bucket_view={self.gradient_as_bucket_view}")


def _attach(output, finish):
    """Route ``output`` (a Tensor, or a tuple/list/dict of them) through one op that calls ``finish`` after backward.

    ``finish`` runs at most once per forward, whichever output the loss used.
    """
    pending = [True]

    def once():
        if pending[0]:
            pending[0] = False
            finish()

    def wrap(value):
        if isinstance(value, Tensor) and value.requires_grad:
            return _AverageAfterBackward.apply(value, after_backward=once)
        return value

    if isinstance(output, (tuple, list)):
        return type(output)(wrap(value) for value in output)
    if isinstance(output, dict):
        return {key: wrap(value) for key, value in output.items()}
    return wrap(output)


def _plan_buckets(params, cap_bytes):
    """Split the parameters, in reverse registration order (last layers' gradients are ready first), into
    groups of one dtype of at most ``cap_bytes`` each (a larger parameter forms its own group)."""
    buckets, current, current_bytes = [], [], 0
    for param in reversed(params):
        nbytes = param.data.nbytes
        if current and (current_bytes + nbytes > cap_bytes or param.dtype != current[0].dtype):
            buckets.append(current)
            current, current_bytes = [], 0
        current.append(param)
        current_bytes += nbytes
    if current:
        buckets.append(current)
    return buckets
