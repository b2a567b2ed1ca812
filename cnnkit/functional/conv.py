"""Convolution and transposed convolution in 1, 2 and 3 spatial dimensions: the textbook algorithm, written once.

conv1d/conv2d/conv3d are im2col plus one GEMM: pad x, copy every window into a column (``im2col.im2col``),
multiply by the filters as a matrix, reshape. The backward needs three products with the same pieces:

* dW = dY @ cols^T (each weight meets the input elements it multiplied),
* dX = col2im(W^T @ dY): the transposed convolution of dY, which is the correlation of dY with the
  filter flipped in space and its in/out channels swapped,
* db = sum of dY over the batch and every spatial axis.

conv_transpose{1,2,3}d is the adjoint of the convolution in its input: its forward is the convolution's dX
and its input gradient is the convolution's forward. Faster code for the same math lives in
``cnnkit.kernels`` (chunked and threaded im2col, 1x1 and depthwise shortcuts, the dual and polyphase input
gradients for 2-D; 1-D runs on them as a 2-D convolution of height 1); each function below asks
``kernels.pick`` for the op of its dimension ("conv2d", "conv1d_input_grad", ...) first and runs the
textbook version when no kernel applies, or under ``backend.use_kernels("reference")`` /
``CNNKIT_KERNELS=reference``.
"""
from __future__ import annotations

from .. import kernels
from ..autograd import Function, Tensor
from ..backend import get_array_module
from .conv_checks import check_bias, check_dtypes, conv_geometry, conv_transpose_geometry
from .im2col import col2im, im2col

__all__ = ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]


def correlate(x, weight, geo, bias=None, compute_output=True, upstream=None, sum_input=False):
    """y = W @ im2col(x) + b and, given ``upstream`` dy, dW = dy @ im2col(x)^T: returns (y, dW[, sum x])."""
    kernel = kernels.pick(f"conv{geo.dims}d", geo)
    if kernel is not None:
        return kernel.correlate(x, weight, geo, bias, compute_output, upstream, sum_input=sum_input)
    cols = im2col(x, geo)  # (groups, C/groups*prod(kernel), N*prod(out_size))
    y = grad_w = None
    if compute_output:
        y = _from_matrix(weight.reshape(geo.groups, -1, cols.shape[1]) @ cols, geo)
        if bias is not None:
            y += _per_channel(bias, geo)
    if upstream is not None:
        grad_w = (_to_matrix(upstream, geo) @ cols.transpose(0, 2, 1)).reshape(geo.out_channels, -1, *geo.kernel)
    return (y, grad_w, channel_sum(x)) if sum_input else (y, grad_w)


def transposed_conv(grad, weight, geo, bias=None):
    """dX = col2im(W^T @ dY) (+ b): the convolution's input gradient, the correlation of dY with the flipped filter."""
    kernel = kernels.pick(f"conv{geo.dims}d_input_grad", geo)
    if kernel is not None:
        return kernel.correlate_transpose(grad, weight, geo, bias)
    w_t = weight.reshape(geo.groups, geo.out_channels // geo.groups, -1).transpose(0, 2, 1)
    dx = col2im(w_t @ _to_matrix(grad, geo), geo)
    return dx if bias is None else dx + _per_channel(bias, geo)


def channel_sum(array):
    """db[k] = sum of dY[n, k, ...] over the batch and every spatial axis."""
    kernel = kernels.pick("channel_sum", array)
    return kernel.channel_sum(array) if kernel is not None else array.sum(axis=(0,) + tuple(range(2, array.ndim)))


def _per_channel(bias, geo):
    """b (K,) shaped (1, K, 1, ...) to broadcast over a batch and the spatial axes."""
    return bias.reshape((1, -1) + (1,) * geo.dims)


def _to_matrix(array, geo):
    """``(N, K, *out_size) -> (groups, K/groups, N*prod(out_size))``, the GEMM layout of an output or its gradient."""
    channels = array.shape[1]
    return get_array_module().moveaxis(array, 1, 0).reshape(geo.groups, channels // geo.groups, -1)


def _from_matrix(matrix, geo):
    """``(groups, K/groups, N*prod(out_size)) -> (N, K, *out_size)``: the inverse of ``_to_matrix``."""
    xp = get_array_module()
    return xp.ascontiguousarray(xp.moveaxis(matrix.reshape((geo.out_channels, geo.batch) + geo.out_size), 0, 1))


class ConvNdFunction(Function):
    """y = W @ im2col(x) + b;  dW = dY @ cols^T;  dX = col2im(W^T @ dY);  db = sum(dY)."""

    fresh_grads = True  # every gradient backward returns is a new array it does not keep

    def forward(self, x, weight, bias):
        need_x, need_w = self.needs_input_grad[:2] if self.needs_input_grad else (False, False)
        # dW needs x (its columns are rebuilt in backward, cheaper than keeping a prod(kernel)-times larger
        # copy alive), dX needs W; keep nothing else
        self.x, self.weight = (x if need_w else None), (weight if need_x else None)
        return correlate(x, weight, self.geo, bias)[0]

    def backward(self, grad):
        need_x, need_w, need_b = self.needs_input_grad
        if need_x and need_w:  # a kernel may compute all three gradients in one pass
            kernel = kernels.pick(f"conv{self.geo.dims}d_backward", self.geo)
            if kernel is not None:
                return kernel.backward(grad, self.x, self.weight, self.geo, need_b)
        grad_x = transposed_conv(grad, self.weight, self.geo) if need_x else None
        grad_w = correlate(self.x, None, self.geo, compute_output=False, upstream=grad)[1] if need_w else None
        return grad_x, grad_w, channel_sum(grad) if need_b else None


class ConvTransposeNdFunction(Function):
    """y = col2im(W^T @ x) + b (the convolution's input gradient);  dX = W @ im2col(dY);  dW = x @ im2col(dY)^T."""

    fresh_grads = True  # every gradient backward returns is a new array it does not keep

    def forward(self, x, weight, bias):
        need_x, need_w = self.needs_input_grad[:2] if self.needs_input_grad else (False, False)
        self.x, self.weight = (x if need_w else None), (weight if need_x else None)
        return transposed_conv(x, weight, self.geo, bias)

    def backward(self, grad):
        need_x, need_w, need_b = self.needs_input_grad
        # dY plays the convolution's input and x its output gradient: one im2col of dY gives dX, dW and db
        grad_x, grad_w, *sums = correlate(grad, self.weight, self.geo, compute_output=need_x,
                                          upstream=self.x if need_w else None, sum_input=need_b)
        return grad_x, grad_w, sums[0] if need_b else None


# the names the 2-D tutorial and older code use; the classes serve every dimension
Conv2dFunction, ConvTranspose2dFunction = ConvNdFunction, ConvTransposeNdFunction


def _shape(value):
    return tuple(value.shape)


def _array(value):
    return value.data if isinstance(value, Tensor) else value


# ------------------------------------------------------------------------------------------------ public ops
def on_batch(input, run, dims=2):
    """``run`` on a batch: an unbatched ``(C, *spatial)`` input runs as a batch of one and comes back unbatched, as
    in torch."""
    if len(_shape(input)) != dims + 1:
        return run(input)
    x = input if isinstance(input, Tensor) else Tensor(input)
    return run(x.unsqueeze(0)).squeeze(0)


def conv_layer(input, weight, bias, stride, padding, dilation, groups, strict, layer, dims=2):
    """conv{dims}d on a batch with errors that name ``layer`` (used by nn.Conv1d/2d/3d)."""
    if bias is not None:
        check_bias(layer, bias, weight.shape[0] if len(weight.shape) else -1)
    geo = conv_geometry(_shape(input), _shape(weight), stride, padding, dilation, groups, strict, layer, dims)
    check_dtypes(layer, _array(input), _array(weight), None if bias is None else _array(bias))
    return ConvNdFunction.apply(input, weight, bias, geo=geo)


def conv_transpose_layer(input, weight, bias, stride, padding, output_padding, groups, dilation, layer, dims=2):
    """conv_transpose{dims}d on a batch with errors that name ``layer`` (used by nn.ConvTranspose1d/2d/3d)."""
    geo = conv_transpose_geometry(_shape(input), _shape(weight), stride, padding, output_padding, dilation, groups,
                                  layer, dims)
    if bias is not None:
        check_bias(layer, bias, geo.in_channels)
    check_dtypes(layer, _array(input), _array(weight), None if bias is None else _array(bias))
    return ConvTransposeNdFunction.apply(input, weight, bias, geo=geo)


def _conv(input, weight, bias, stride, padding, dilation, groups, strict, dims):
    layer = f"conv{dims}d"
    return on_batch(input, lambda x: conv_layer(x, weight, bias, stride, padding, dilation, groups, strict, layer,
                                                dims), dims)


def _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, dims):
    layer = f"conv_transpose{dims}d"
    return on_batch(input, lambda x: conv_transpose_layer(x, weight, bias, stride, padding, output_padding, groups,
                                                          dilation, layer, dims), dims)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, strict=False):
    """y[n, k, l] = b[k] + sum_{c, i} W[k, c, i] x_pad[n, g(k)*C/groups + c, l*s + i*d] (input (N, C, L)).

    ``padding``: int, (p,), (before, after), ((before, after),), 'valid' or 'same' (as conv2d); an
    unbatched (C, L) input gives a (K, L_out) output, as in torch.
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, strict, 1)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, strict=False):
    """y[n, k] = b[k] + sum_{c, i, j} W[k, c, i, j] x_pad[n, g(k)*C/groups + c, h*s + i*d, w*s + j*d] (NCHW).

    ``padding``: int, (ph, pw), ((top, bottom), (left, right)), 'valid' or 'same' (output =
    ceil(input / stride), extra pixel bottom/right, as TensorFlow; also for stride > 1).
    ``strict=True`` rejects hyper-parameters whose windows do not tile the input. An unbatched
    (C, H, W) input gives a (K, H_out, W_out) output, as in torch.
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, strict, 2)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, strict=False):
    """y[n, k, t, h, w] = b[k] + sum_{c, a, i, j} W[k, c, a, i, j] x_pad[n, c', t*s + a*d, h*s + i*d, w*s + j*d].

    Input (N, C, D, H, W); ``padding`` as conv2d with three axes (int, triple, three (before, after)
    pairs, 'valid', 'same'); an unbatched (C, D, H, W) input runs as a batch of one, as in torch.
    """
    return _conv(input, weight, bias, stride, padding, dilation, groups, strict, 3)


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv1d in its input: L_out = (L - 1)*s - 2p + d*(k - 1) + output_padding + 1.

    ``weight`` is (in_channels, out_channels/groups, k) as in PyTorch; (C, L) inputs run unbatched.
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 1)


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv2d in its input: out = (H - 1)*s - 2p + d*(k - 1) + output_padding + 1 per axis.

    ``weight`` is (in_channels, out_channels/groups, kh, kw) as in PyTorch; (C, H, W) inputs run unbatched.
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 2)


def conv_transpose3d(input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """The adjoint of conv3d in its input: out = (D - 1)*s - 2p + d*(k - 1) + output_padding + 1 per axis.

    ``weight`` is (in_channels, out_channels/groups, kd, kh, kw) as in PyTorch; (C, D, H, W) inputs run
    unbatched.
    """
    return _conv_transpose(input, weight, bias, stride, padding, output_padding, groups, dilation, 3)
