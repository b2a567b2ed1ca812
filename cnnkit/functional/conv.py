"""2-D convolution and transposed convolution (NCHW): the textbook algorithm, readable beside its formulas.

conv2d is im2col plus one GEMM: pad x, copy every window into a column (``im2col.im2col``), multiply by
the filters as a matrix, reshape. Its backward needs three products with the same pieces:

* dW = dY @ cols^T (each weight meets the input pixels it multiplied),
* dX = col2im(W^T @ dY): the transposed convolution of dY, which is the correlation of dY with the
  filter flipped in space and its in/out channels swapped,
* db = sum of dY over N, H, W.

conv_transpose2d is the adjoint of conv2d in its input: its forward is conv2d's dX and its input gradient
is conv2d's forward. Faster code for the same math lives in ``cnnkit.kernels`` (chunked and threaded
im2col, 1x1 and depthwise shortcuts, the dual and polyphase input gradients); each function below asks
``kernels.pick`` first and runs the textbook version when no kernel applies, or under
``backend.use_kernels("reference")`` / ``CNNKIT_KERNELS=reference``.
"""
from __future__ import annotations

from .. import kernels
from ..autograd import Function, Tensor
from ..backend import get_array_module
from .conv_checks import check_bias, check_dtypes, conv_geometry, conv_transpose_geometry
from .im2col import col2im, im2col

__all__ = ["conv2d", "conv_transpose2d"]


def correlate(x, weight, geo, bias=None, compute_output=True, upstream=None, sum_input=False):
    """y = W @ im2col(x) + b and, given ``upstream`` dy, dW = dy @ im2col(x)^T: returns (y, dW[, sum_nhw x])."""
    kernel = kernels.pick("conv2d", geo)
    if kernel is not None:
        return kernel.correlate(x, weight, geo, bias, compute_output, upstream, sum_input=sum_input)
    cols = im2col(x, geo)  # (groups, C/groups*kh*kw, N*out_h*out_w)
    y = grad_w = None
    if compute_output:
        y = _from_matrix(weight.reshape(geo.groups, -1, cols.shape[1]) @ cols, geo)
        if bias is not None:
            y += bias.reshape(1, -1, 1, 1)
    if upstream is not None:
        grad_w = (_to_matrix(upstream, geo) @ cols.transpose(0, 2, 1)).reshape(geo.out_channels, -1, *geo.kernel)
    return (y, grad_w, channel_sum(x)) if sum_input else (y, grad_w)


def transposed_conv(grad, weight, geo, bias=None):
    """dX = col2im(W^T @ dY) (+ b): conv2d's input gradient, the correlation of dY with the flipped filter."""
    kernel = kernels.pick("conv2d_input_grad", geo)
    if kernel is not None:
        return kernel.correlate_transpose(grad, weight, geo, bias)
    w_t = weight.reshape(geo.groups, geo.out_channels // geo.groups, -1).transpose(0, 2, 1)
    dx = col2im(w_t @ _to_matrix(grad, geo), geo)
    return dx if bias is None else dx + bias.reshape(1, -1, 1, 1)


def channel_sum(array):
    """db[k] = sum_{n,h,w} dY[n, k, h, w]."""
    kernel = kernels.pick("channel_sum", array)
    return kernel.channel_sum(array) if kernel is not None else array.sum(axis=(0, 2, 3))


def _to_matrix(array, geo):
    """(N, K, out_h, out_w) -> (groups, K/groups, N*out_h*out_w), the GEMM layout of an output or its gradient."""
    batch, channels, height, width = array.shape
    return array.transpose(1, 0, 2, 3).reshape(geo.groups, channels // geo.groups, batch * height * width)


def _from_matrix(matrix, geo):
    """(groups, K/groups, N*out_h*out_w) -> (N, K, out_h, out_w): the inverse of ``_to_matrix``."""
    y = matrix.reshape((geo.out_channels, geo.batch) + geo.out_size).transpose(1, 0, 2, 3)
    return get_array_module().ascontiguousarray(y)


class Conv2dFunction(Function):
    """y = W @ im2col(x) + b;  dW = dY @ cols^T;  dX = col2im(W^T @ dY);  db = sum(dY)."""

    fresh_grads = True  # every gradient backward returns is a new array it does not keep

    def forward(self, x, weight, bias):
        need_x, need_w = self.needs_input_grad[:2] if self.needs_input_grad else (False, False)
        # dW needs x (its columns are rebuilt in backward, cheaper than keeping a kh*kw-times larger
        # copy alive), dX needs W; keep nothing else
        self.x, self.weight = (x if need_w else None), (weight if need_x else None)
        return correlate(x, weight, self.geo, bias)[0]

    def backward(self, grad):
        need_x, need_w, need_b = self.needs_input_grad
        if need_x and need_w:  # a kernel may compute all three gradients in one pass
            kernel = kernels.pick("conv2d_backward", self.geo)
            if kernel is not None:
                return kernel.backward(grad, self.x, self.weight, self.geo, need_b)
        grad_x = transposed_conv(grad, self.weight, self.geo) if need_x else None
        grad_w = correlate(self.x, None, self.geo, compute_output=False, upstream=grad)[1] if need_w else None
        return grad_x, grad_w, channel_sum(grad) if need_b else None


class ConvTranspose2dFunction(Function):
    """y = col2im(W^T @ x) + b (conv2d's input gradient);  dX = W @ im2col(dY) (conv2d);  dW = x @ im2col(dY)^T."""

    fresh_grads = True  # every gradient backward returns is a new array it does not keep

    def forward(self, x, weight, bias):
        need_x, need_w = self.needs_input_grad[:2] if self.needs_input_grad else (False, False)
        self.x, self.weight = (x if need_w else None), (weight if need_x else None)
        return transposed_conv(x, weight, self.geo, bias)

    def backward(self, grad):
        need_x, need_w, need_b = self.needs_input_grad
        # dY plays conv2d's input and x its output gradient: one im2col of dY gives dX, dW and db
        grad_x, grad_w, *sums = correlate(grad, self.weight, self.geo, compute_output=need_x,
                                          upstream=self.x if need_w else None, sum_input=need_b)
        return grad_x, grad_w, sums[0] if need_b else None


def _shape(value):
    return tuple(value.shape)


def _array(value):
    return value.data if isinstance(value, Tensor) else value


# ------------------------------------------------------------------------------------------------ public ops
def on_batch(input, run):
    """``run`` on a batch: a (C, H, W) input runs as a batch of one and comes back unbatched, as in torch."""
    if len(_shape(input)) != 3:
        return run(input)
    x = input if isinstance(input, Tensor) else Tensor(input)
    return run(x.unsqueeze(0)).squeeze(0)


def conv2d_layer(input, weight, bias, stride, padding, dilation, groups, strict, layer):
    """conv2d with errors that name ``layer`` (used by nn.Conv2d)."""
    if bias is not None:
        check_bias(layer, bias, weight.shape[0] if len(weight.shape) else -1)
    geo = conv_geometry(_shape(input), _shape(weight), stride, padding, dilation, groups, strict, layer)
    check_dtypes(layer, _array(input), _array(weight), None if bias is None else _array(bias))
    return Conv2dFunction.apply(input, weight, bias, geo=geo)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, strict=False):
    """y[n, k] = b[k] + sum_{c, i, j} W[k, c, i, j] x_pad[n, g(k)*C/groups + c, h*s + i*d, w*s + j*d] (NCHW).

    ``padding``: int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (output =
    ceil(input / stride), extra pixel bottom/right, as TensorFlow; also for stride > 1).
    ``strict=True`` rejects hyper-parameters whose windows do not tile the input. An unbatched
    (C, H, W) input gives a (K, H_out, W_out) output, as in torch.
    """
    return on_batch(input, lambda x: conv2d_layer(x, weight, bias, stride, padding, dilation, groups, strict,
                                                  "conv2d"))


def conv_transpose2d_layer(input, weight, bias, stride, padding, output_padding, groups, dilation, layer):
    """conv_transpose2d with errors that name ``layer`` (used by nn.ConvTranspose2d)."""
    geo = conv_transpose_geometry(_shape(input), _shape(weight), stride, padding, output_padding, dilation, groups,
                                  layer)
    if bias is not None:
        check_bias(layer, bias, geo.in_channels)
    check_dtypes(layer, _array(input), _array(weight), None if bias is None else _array(bias))
    return ConvTranspose2dFunction.apply(input, weight, bias, geo=geo)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv2d in its input: out = (H - 1)*s - 2p + d*(k - 1) + output_padding + 1 per axis.

    ``weight`` is (in_channels, out_channels/groups, kh, kw) as in PyTorch; (C, H, W) inputs run unbatched.
    """
    return on_batch(input, lambda x: conv_transpose2d_layer(x, weight, bias, stride, padding, output_padding, groups,
                                                            dilation, "conv_transpose2d"))
