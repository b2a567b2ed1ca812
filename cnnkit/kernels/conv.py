"""The convolution kernels, registered in priority order: under "auto" the first that applies runs.

Ops (each kernel implements its op's method; the reference versions are in cnnkit.functional.conv):

* ``conv2d``: ``correlate(x, W, geo, bias, compute_output, upstream, out, sum_input)`` -> (y, dW[, sum x]);
  y = W @ im2col(x) + b and dW = upstream @ im2col(x)^T from one set of columns.
* ``conv2d_input_grad``: ``correlate_transpose(dy, W, geo, bias)`` -> dx = col2im(W^T @ dy) (+ bias), which
  is also conv_transpose2d's forward.
* ``conv2d_backward``: ``backward(dy, x, W, geo, need_bias)`` -> (dx, dW, db), all three in one pass.
* ``channel_sum``: ``channel_sum(array)`` -> sum over N and the spatial axes per channel (the bias gradient).
* ``conv1d``, ``conv1d_input_grad``, ``conv1d_backward``: the same methods for 1-D geometries, which run on the
  2-D kernels as convolutions of height 1 (``conv1d_as_2d``). 3-D convolutions have no kernels yet.
"""
from __future__ import annotations

from . import register
from .conv1d_as_2d import Conv1dAs2d, Conv1dBackwardAs2d, Conv1dInputGradAs2d
from .conv_depthwise import BandedDepthwise, BandedDepthwiseInputGrad
from .conv_dual import DualBackward, DualInputGrad
from .conv_im2col import ChannelSumGemv, ChunkedCol2im, ChunkedIm2col
from .conv_infer import OneImageBands, OneImageDepthwise, OneImagePointwise, OneImageShifted
from .conv_pointwise import Pointwise
from .conv_polyphase import PolyphaseInputGrad

PRIORITY = (
    OneImagePointwise, OneImageDepthwise, OneImageShifted, OneImageBands,          # conv2d, batch of one
    BandedDepthwise, Pointwise, ChunkedIm2col,                                     # conv2d
    BandedDepthwiseInputGrad, DualInputGrad, PolyphaseInputGrad, ChunkedCol2im,   # conv2d_input_grad
    DualBackward,                                                                  # conv2d_backward
    ChannelSumGemv,                                                                # channel_sum
    Conv1dAs2d, Conv1dInputGradAs2d, Conv1dBackwardAs2d,                           # conv1d, its gradients
)
for _kernel in PRIORITY:
    register(_kernel)
