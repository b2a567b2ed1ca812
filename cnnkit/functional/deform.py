"""Deformable convolution (v1 and the modulated v2) with torchvision.ops.deform_conv2d's argument layout.

Each kernel tap (i, j) of output pixel (y, x) samples the input at
``(y*S_h - P_top + i*D_h + dy, x*S_w - P_left + j*D_w + dx)`` by bilinear interpolation
(zero outside the image), optionally scales it by a mask value, and the samples are
multiplied with the weights in one GEMM (im2col of the sampled values).
"""
from __future__ import annotations

from ..autograd import Function
from ..backend import get_array_module
from ..kernels.threads import matmul
from .windows import conv_output_size, pair, positive_pair, resolve_padding

__all__ = ["deform_conv2d"]


def _bilinear_corners(y, x, height, width):
    """The four neighbours of each sampling point: (flat index, corner weight, d weight/dy, d weight/dx).

    torchvision's rule: a point with y <= -1, y >= H, x <= -1 or x >= W samples zero; otherwise
    each corner inside the image contributes (1 - |y - y_c|) * (1 - |x - x_c|) times its value.
    Corners outside the image get index 0 and weight 0.
    """
    xp = get_array_module()
    inside = (y > -1) & (y < height) & (x > -1) & (x < width)
    y_floor, x_floor = xp.floor(y), xp.floor(x)
    y_frac, x_frac = y - y_floor, x - x_floor
    y_low, x_low = y_floor.astype(xp.intp), x_floor.astype(xp.intp)
    corners = []
    for y_step, y_weight, y_sign in ((0, 1 - y_frac, -1), (1, y_frac, 1)):
        for x_step, x_weight, x_sign in ((0, 1 - x_frac, -1), (1, x_frac, 1)):
            corner_y, corner_x = y_low + y_step, x_low + x_step
            valid = inside & (corner_y >= 0) & (corner_y < height) & (corner_x >= 0) & (corner_x < width)
            index = xp.where(valid, corner_y * width + corner_x, 0)
            corners.append((index, y_weight * x_weight * valid, (y_sign * x_weight) * valid,
                            (x_sign * y_weight) * valid))
    return corners


class _DeformConv2d(Function):
    """Inputs: input, offset, weight, bias (or None), mask (or None).

    Internally samples are kept channel-last, (N, G, K*P, Cg) per offset group G: each of the
    N*G*K*P sampling points gathers one contiguous row of Cg channels from the (N*G*H*W, Cg)
    channel-last input, and the input gradient is the matching row scatter-add.
    """

    def forward(self, x, offset, weight, bias, mask):
        xp = get_array_module()
        n, channels, height, width = x.shape
        kh, kw = weight.shape[2:]
        groups, offset_groups = self.groups, self.offset_groups
        out_h, out_w = self.out_size
        taps, positions = kh * kw, out_h * out_w
        (pad_top, _), (pad_left, _) = self.pads
        stride_h, stride_w = self.stride
        dil_h, dil_w = self.dilation
        dtype = x.dtype
        # Undeformed sampling grid, in the input's dtype (an int64 grid would promote float32 to float64).
        tap_y = (xp.arange(kh) * dil_h).repeat(kw)
        tap_x = xp.tile(xp.arange(kw) * dil_w, kh)
        pos_y = (xp.arange(out_h) * stride_h - pad_top).repeat(out_w)
        pos_x = xp.tile(xp.arange(out_w) * stride_w - pad_left, out_h)
        base_y = (tap_y[:, None] + pos_y[None, :]).astype(dtype)
        base_x = (tap_x[:, None] + pos_x[None, :]).astype(dtype)
        pairs = offset.reshape(n, offset_groups, taps, 2, positions)
        y = (base_y + pairs[:, :, :, 0, :]).reshape(n, offset_groups, taps * positions)
        x_coord = (base_x + pairs[:, :, :, 1, :]).reshape(n, offset_groups, taps * positions)
        corners = _bilinear_corners(y, x_coord, height, width)
        rows = self._channel_last(x)
        sampled = xp.zeros((n, offset_groups, taps * positions, channels // offset_groups), dtype=dtype)
        for index, corner_weight, _, _ in corners:
            sampled += corner_weight[..., None] * rows[self._row_index(index, height * width)]
        modulation = None if mask is None else mask.reshape(n, offset_groups, taps * positions, 1)
        columns = self._columns(sampled if modulation is None else sampled * modulation, channels, taps, positions)
        # One GEMM per weight group: (Cout/g, Cin/g*K) @ (Cin/g*K, P).
        weight_matrix = weight.reshape(groups, weight.shape[0] // groups, -1)
        out = matmul(weight_matrix, columns).reshape(n, weight.shape[0], out_h, out_w)
        if bias is not None:
            out = out + bias.reshape(1, -1, 1, 1)
        if any(self.needs_input_grad):  # only set when the graph is being recorded
            self.saved = (x, weight, modulation, y, x_coord, sampled)
        return out

    def _channel_last(self, x):
        """(N, C, H, W) -> rows (N*G*H*W, Cg): one row of an offset group's channels per pixel."""
        n, channels, height, width = x.shape
        groups = self.offset_groups
        grouped = x.reshape(n, groups, channels // groups, height * width).transpose(0, 1, 3, 2)
        return grouped.reshape(n * groups * height * width, channels // groups)

    def _row_index(self, index, plane):
        """Row of (sample n, group g, pixel index) in the channel-last rows: (n*G + g)*H*W + index."""
        xp = get_array_module()
        n, groups = index.shape[:2]
        return (xp.arange(n * groups) * plane).reshape(n, groups, 1) + index

    def _columns(self, samples, channels, taps, positions):
        """Channel-last samples (N, G, K*P, Cg) -> GEMM columns (N, groups, C/groups*K, P)."""
        n = samples.shape[0]
        columns = samples.transpose(0, 1, 3, 2).reshape(n, channels, taps, positions)
        return columns.reshape(n, self.groups, (channels // self.groups) * taps, positions)

    def backward(self, grad):
        xp = get_array_module()
        x, weight, modulation, y, x_coord, sampled = self.saved
        need_input, need_offset, need_weight, need_bias, need_mask = self.needs_input_grad
        n, channels, height, width = x.shape
        out_channels, kh, kw = weight.shape[0], weight.shape[2], weight.shape[3]
        groups, offset_groups = self.groups, self.offset_groups
        taps = kh * kw
        positions = grad.shape[2] * grad.shape[3]
        grad_groups = grad.reshape(n, groups, out_channels // groups, positions)
        grad_weight = grad_bias = grad_input = grad_offset = grad_mask = None
        if need_bias:
            grad_bias = grad.sum(axis=(0, 2, 3))
        if need_weight:
            columns = self._columns(sampled if modulation is None else sampled * modulation, channels, taps, positions)
            grad_weight = xp.einsum("ngop,ngkp->gok", grad_groups, columns).reshape(weight.shape)
        if not (need_input or need_offset or need_mask):
            return grad_input, grad_offset, grad_weight, grad_bias, grad_mask
        weight_matrix = weight.reshape(groups, out_channels // groups, -1)
        grad_columns = matmul(weight_matrix.transpose(0, 2, 1), grad_groups)
        # Back to the channel-last sample layout (N, G, K*P, Cg).
        grad_samples = grad_columns.reshape(n, offset_groups, channels // offset_groups, taps * positions)
        grad_samples = grad_samples.transpose(0, 1, 3, 2)
        if need_mask:
            grad_mask = xp.einsum("ngkc,ngkc->ngk", grad_samples, sampled).reshape(n, offset_groups * taps,
                                                                                   *grad.shape[2:])
        if modulation is not None:
            grad_samples = grad_samples * modulation
        corners = _bilinear_corners(y, x_coord, height, width)
        plane = height * width
        if need_input:
            grad_input = self._scatter_rows(grad_samples, corners, x.shape)
        if need_offset:
            rows = self._channel_last(x)
            grad_y = xp.zeros(y.shape, dtype=x.dtype)
            grad_x = xp.zeros(y.shape, dtype=x.dtype)
            for index, _, weight_dy, weight_dx in corners:
                # d(sample)/dy = sum over corners of d(corner weight)/dy * corner value (same for x).
                upstream = xp.einsum("ngkc,ngkc->ngk", grad_samples, rows[self._row_index(index, plane)])
                grad_y += weight_dy * upstream
                grad_x += weight_dx * upstream
            grad_offset = xp.stack([grad_y.reshape(n, offset_groups, taps, positions),
                                    grad_x.reshape(n, offset_groups, taps, positions)], axis=3)
            grad_offset = grad_offset.reshape(n, -1, *grad.shape[2:])
        return grad_input, grad_offset, grad_weight, grad_bias, grad_mask

    def _scatter_rows(self, grad_samples, corners, input_shape):
        """Add each sample's gradient row onto its four corner pixels: sort the rows by pixel, sum runs."""
        xp = get_array_module()
        n, channels, height, width = input_shape
        plane = height * width
        targets = xp.concatenate([self._row_index(index, plane).reshape(-1) for index, _, _, _ in corners])
        values = xp.concatenate([(grad_samples * corner_weight[..., None]).reshape(-1, grad_samples.shape[3])
                                 for _, corner_weight, _, _ in corners])
        order = xp.argsort(targets, kind="stable")
        targets = targets[order]
        starts = xp.flatnonzero(xp.concatenate([xp.ones(1, dtype=bool), targets[1:] != targets[:-1]]))
        rows = xp.zeros((n * self.offset_groups * plane, channels // self.offset_groups), dtype=grad_samples.dtype)
        rows[targets[starts]] = xp.add.reduceat(values[order], starts, axis=0)
        grouped = rows.reshape(n, self.offset_groups, plane, channels // self.offset_groups).transpose(0, 1, 3, 2)
        return grouped.reshape(input_shape)


def _check_shapes(x, offset, weight, bias, mask, out_size):
    """Raise a clear error for inconsistent shapes; return (groups, offset_groups)."""
    layer = "deform_conv2d"
    if x.ndim != 4:
        raise ValueError(f"{layer}: expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"{layer}: weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {tuple(weight.shape)}")
    n, channels = x.shape[:2]
    out_channels, group_channels, kh, kw = weight.shape
    if group_channels == 0 or channels % group_channels:
        raise ValueError(f"{layer}: input has {channels} channels, not a multiple of weight.shape[1]={group_channels} "
                         f"(weight {tuple(weight.shape)}); weight.shape[1] must be C_in / groups")
    groups = channels // group_channels
    if out_channels % groups:
        raise ValueError(f"{layer}: weight has {out_channels} output channels, not divisible by groups={groups} "
                         f"(= C_in {channels} / weight.shape[1] {group_channels})")
    taps = kh * kw
    out_h, out_w = out_size
    if offset.ndim != 4 or offset.shape[0] != n or offset.shape[1] == 0 or offset.shape[1] % (2 * taps) \
            or tuple(offset.shape[2:]) != (out_h, out_w):
        raise ValueError(f"{layer}: offset must have shape (N, 2*offset_groups*kH*kW, H_out, W_out) = "
                         f"({n}, 2*offset_groups*{taps}, {out_h}, {out_w}), got {tuple(offset.shape)}")
    offset_groups = offset.shape[1] // (2 * taps)
    if channels % offset_groups:
        raise ValueError(f"{layer}: offset has {offset_groups} offset groups (offset {tuple(offset.shape)}) but the "
                         f"input's {channels} channels are not divisible by it")
    if mask is not None and tuple(mask.shape) != (n, offset_groups * taps, out_h, out_w):
        raise ValueError(f"{layer}: mask must have shape (N, offset_groups*kH*kW, H_out, W_out) = "
                         f"({n}, {offset_groups * taps}, {out_h}, {out_w}), got {tuple(mask.shape)}")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{layer}: bias must have shape ({out_channels},), got {tuple(bias.shape)}")
    return groups, offset_groups


def deform_conv2d(input, offset, weight, bias=None, stride=1, padding=0, dilation=1, mask=None):  # noqa: A002
    """Deformable 2-D convolution: out = sum_k w_k * mask_k * bilinear(input, p + p_k + offset_k) (+ bias).

    ``offset`` is (N, 2*offset_groups*kH*kW, H_out, W_out) holding (dy, dx) pairs per kernel tap,
    ``mask`` (optional, DCNv2) is (N, offset_groups*kH*kW, H_out, W_out); weight groups are
    inferred from ``weight.shape[1]`` and offset groups from the offset's channels.
    """
    stride = positive_pair(stride, "stride", "deform_conv2d")
    dilation = positive_pair(dilation, "dilation", "deform_conv2d")
    if input.ndim != 4 or weight.ndim != 4:
        _check_shapes(input, offset, weight, bias, mask, (0, 0))
    kernel = pair(tuple(weight.shape[2:]), "kernel", "deform_conv2d")
    pads = resolve_padding(padding, input.shape[2:], kernel, stride, dilation, layer="deform_conv2d")
    out_size = tuple(conv_output_size(input.shape[2 + axis], kernel[axis], stride[axis], sum(pads[axis]),
                                      dilation[axis]) for axis in range(2))
    if min(out_size) <= 0:
        raise ValueError(f"deform_conv2d: kernel {kernel} (dilation {dilation}) does not fit the padded input "
                         f"{tuple(input.shape[2:])} with padding {pads}; output size would be {out_size}")
    groups, offset_groups = _check_shapes(input, offset, weight, bias, mask, out_size)
    for name, value in (("offset", offset), ("weight", weight), ("bias", bias), ("mask", mask)):
        if value is not None and value.dtype != input.dtype:
            raise TypeError(f"deform_conv2d: {name} has dtype {value.dtype} but input has {input.dtype}; "
                            "cast them to the same dtype")
    return _DeformConv2d.apply(input, offset, weight, bias, mask, stride=stride, dilation=dilation, pads=pads,
                               out_size=out_size, groups=groups, offset_groups=offset_groups)
