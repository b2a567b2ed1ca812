"""1-D convolution on the 2-D kernels: an (N, C, L) signal is an (N, C, 1, L) image, a conv2d of height 1.

The kernels below serve the ops "conv1d", "conv1d_input_grad" and "conv1d_backward". Each views its
arrays with a height axis of 1 (a reshape, no copy), runs the 2-D kernel that "auto" picks for the
lifted geometry (kernel (1, k), stride (1, s), no padding in height) and drops the height axis again.
So Conv1d gets the chunked, threaded im2col GEMM and the 1x1, depthwise and dual shortcuts without a
second copy of them; 3-D convolutions run on the reference ops.
"""
from __future__ import annotations

from .. import backend
from . import Kernel, pick
from .conv_plan import ConvPlan


def lifted(geo):
    """The 2-D plan of height 1 that computes the 1-D geometry ``geo``, made once and kept as ``geo.plan``."""
    plan = geo.plan
    if plan is None:
        plan = geo.plan = ConvPlan(geo.batch, geo.in_channels, (1,) + geo.in_size, geo.out_channels,
                                   (1,) + geo.kernel, (1,) + geo.stride, ((0, 0),) + geo.pads, (1,) + geo.dilation,
                                   geo.groups, (1,) + geo.out_size, geo.chunk_samples, geo.chunk_threads,
                                   geo.wide_columns)
    return plan


def _two_d_kernel(op, geo):
    """The 2-D kernel "auto" picks for the lifted geometry (also when a test names one of the 1-D kernels)."""
    with backend.use_kernels("auto"):
        return pick(op, lifted(geo))


def _up(array):
    """(N, C, L) -> (N, C, 1, L), a view (None stays None)."""
    return None if array is None else array.reshape(array.shape[:2] + (1,) + array.shape[2:])


def _down(array):
    """(N, C, 1, L) -> (N, C, L), a view (None stays None)."""
    return None if array is None else array.reshape(array.shape[:2] + array.shape[3:])


def _is_1d(geo):
    return len(geo.kernel) == 1 and geo.batch > 0


class Conv1dAs2d(Kernel):
    """y and dW of a 1-D convolution from the 2-D "conv2d" kernel on the height-1 view."""

    name, op = "conv1d.as_2d", "conv1d"

    def applies(self, geo):
        return _is_1d(geo) and _two_d_kernel("conv2d", geo) is not None

    def correlate(self, x, weight, geo, bias=None, compute_output=True, upstream=None, out=None, sum_input=False):
        """The op "conv1d" contract, as "conv2d"'s (see conv_im2col.ChunkedIm2col.correlate)."""
        kernel = _two_d_kernel("conv2d", geo)
        y, grad_w, *sums = kernel.correlate(_up(x), _up(weight), lifted(geo), bias, compute_output, _up(upstream),
                                            _up(out), sum_input)
        return (_down(y), _down(grad_w), *sums)


class Conv1dInputGradAs2d(Kernel):
    """The input gradient of a 1-D convolution (conv_transpose1d's forward) from a 2-D "conv2d_input_grad" kernel."""

    name, op = "conv1d_input_grad.as_2d", "conv1d_input_grad"

    def applies(self, geo):
        return _is_1d(geo) and _two_d_kernel("conv2d_input_grad", geo) is not None

    def correlate_transpose(self, grad, weight, geo, bias=None):
        """The op "conv1d_input_grad" contract (see conv_im2col.ChunkedCol2im.correlate_transpose)."""
        kernel = _two_d_kernel("conv2d_input_grad", geo)
        return _down(kernel.correlate_transpose(_up(grad), _up(weight), lifted(geo), bias))


class Conv1dBackwardAs2d(Kernel):
    """dx, dW and db of a 1-D convolution in one pass, where a 2-D "conv2d_backward" kernel applies (the dual)."""

    name, op = "conv1d_backward.as_2d", "conv1d_backward"

    def applies(self, geo):
        return _is_1d(geo) and _two_d_kernel("conv2d_backward", geo) is not None

    def backward(self, grad, x, weight, geo, need_bias):
        """The op "conv1d_backward" contract, as "conv2d_backward"'s: (dx, dW, db or None)."""
        kernel = _two_d_kernel("conv2d_backward", geo)
        grad_x, grad_w, grad_b = kernel.backward(_up(grad), _up(x), _up(weight), lifted(geo), need_bias)
        return _down(grad_x), _down(grad_w), grad_b
