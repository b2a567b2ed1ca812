"""Deformable convolution: a per-pixel bilinear reference, conv equivalences, gradients and errors."""
import math

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit.autograd import gradcheck


def _tensor(array, requires_grad=False):
    return cnnkit.tensor(np.ascontiguousarray(array), requires_grad=requires_grad)


def _bilinear(image, y, x):
    """torchvision's rule: zero when y <= -1, y >= H, x <= -1 or x >= W; corners outside count as 0."""
    height, width = image.shape
    if y <= -1 or y >= height or x <= -1 or x >= width:
        return 0.0
    y0, x0 = math.floor(y), math.floor(x)
    value = 0.0
    for yy in (y0, y0 + 1):
        for xx in (x0, x0 + 1):
            if 0 <= yy < height and 0 <= xx < width:
                value += (1 - abs(y - yy)) * (1 - abs(x - xx)) * image[yy, xx]
    return value


def _reference(x, offset, weight, bias, stride, padding, dilation, mask):
    """Deformable convolution written as the definition: one output pixel, one tap at a time."""
    n, channels, _, _ = x.shape
    out_channels, group_channels, kh, kw = weight.shape
    groups = channels // group_channels
    out_h, out_w = offset.shape[2:]
    offset_groups = offset.shape[1] // (2 * kh * kw)
    out = np.zeros((n, out_channels, out_h, out_w))
    for b in range(n):
        for o in range(out_channels):
            group = o // (out_channels // groups)
            for oy in range(out_h):
                for ox in range(out_w):
                    total = 0.0 if bias is None else bias[o]
                    for cg in range(group_channels):
                        c = group * group_channels + cg
                        og = c // (channels // offset_groups)
                        for i in range(kh):
                            for j in range(kw):
                                tap = i * kw + j
                                dy = offset[b, og * 2 * kh * kw + 2 * tap, oy, ox]
                                dx = offset[b, og * 2 * kh * kw + 2 * tap + 1, oy, ox]
                                scale = 1.0 if mask is None else mask[b, og * kh * kw + tap, oy, ox]
                                y = oy * stride[0] - padding[0] + i * dilation[0] + dy
                                xx = ox * stride[1] - padding[1] + j * dilation[1] + dx
                                total += weight[o, cg, i, j] * scale * _bilinear(x[b, c], y, xx)
                    out[b, o, oy, ox] = total
    return out


def _out_size(size, kernel, stride, padding, dilation):
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


@pytest.mark.parametrize("modulated", [False, True])
def test_matches_per_pixel_reference_on_random_offsets(modulated):
    rng = np.random.default_rng(1)
    n, channels, height, width, out_channels = 2, 4, 6, 7, 6
    kh, kw, groups, offset_groups = 3, 2, 2, 2
    stride, padding, dilation = (2, 1), (1, 1), (1, 2)
    out_h = _out_size(height, kh, stride[0], padding[0], dilation[0])
    out_w = _out_size(width, kw, stride[1], padding[1], dilation[1])
    x = rng.standard_normal((n, channels, height, width))
    # Offsets up to +-4 pixels: many samples land outside the image or straddle its border.
    offset = rng.uniform(-4, 4, (n, 2 * offset_groups * kh * kw, out_h, out_w))
    weight = rng.standard_normal((out_channels, channels // groups, kh, kw))
    bias = rng.standard_normal(out_channels)
    mask = rng.uniform(0, 1, (n, offset_groups * kh * kw, out_h, out_w)) if modulated else None
    ours = F.deform_conv2d(_tensor(x), _tensor(offset), _tensor(weight), _tensor(bias), stride=stride,
                           padding=padding, dilation=dilation, mask=None if mask is None else _tensor(mask))
    expected = _reference(x, offset, weight, bias, stride, padding, dilation, mask)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_boundary_rule_is_torchvisions():
    """A sample at y = -1 (or x = W) is zero even though bilinear weights could reach pixel 0 (or W-1)."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    weight = np.ones((1, 1, 1, 1))
    for dy, dx, expected in [(-1.0, 0.0, 0.0), (-0.5, 0.0, 0.5 * 1.0), (0.0, 3.0, 0.0), (0.0, 2.5, 0.5 * 3.0),
                             (2.0, 2.0, 9.0), (-0.999, 0.0, 0.001 * 1.0)]:
        offset = np.zeros((1, 2, 3, 3))
        offset[0, 0, 0, 0], offset[0, 1, 0, 0] = dy, dx
        out = F.deform_conv2d(_tensor(x), _tensor(offset), _tensor(weight)).numpy()
        assert out[0, 0, 0, 0] == pytest.approx(expected, abs=1e-12), (dy, dx)


def test_zero_offsets_and_unit_mask_equal_conv2d():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 4, 7, 6))
    weight = rng.standard_normal((6, 2, 3, 3))
    bias = rng.standard_normal(6)
    stride, padding, dilation = (2, 1), (1, 2), (1, 2)
    out_h, out_w = _out_size(7, 3, 2, 1, 1), _out_size(6, 3, 1, 2, 2)
    offset = np.zeros((2, 2 * 9, out_h, out_w))
    mask = np.ones((2, 9, out_h, out_w))
    ours = F.deform_conv2d(_tensor(x), _tensor(offset), _tensor(weight), _tensor(bias), stride, padding, dilation,
                           mask=_tensor(mask))
    conv = F.conv2d(_tensor(x), _tensor(weight), _tensor(bias), stride=stride, padding=padding, dilation=dilation,
                    groups=2)
    np.testing.assert_allclose(ours.numpy(), conv.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shift", [(1, -2), (-3, 0), (2, 2)])
def test_integer_offsets_equal_a_shifted_convolution(shift):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 8, 9))
    weight = rng.standard_normal((4, 3, 3, 3))
    stride, padding, dilation = 2, 1, 1
    out_h, out_w = _out_size(8, 3, stride, padding, dilation), _out_size(9, 3, stride, padding, dilation)
    offset = np.zeros((1, 2 * 9, out_h, out_w))
    offset[:, 0::2], offset[:, 1::2] = shift
    ours = F.deform_conv2d(_tensor(x), _tensor(offset), _tensor(weight), stride=stride, padding=padding).numpy()
    # Tap (i, j) of output (y, x) reads input (y*s - p + i + dy, x*s - p + j + dx): a valid conv on a big
    # zero-padded copy of the input, started at (dy - p, dx - p).
    margin = 6
    big = np.pad(x, ((0, 0), (0, 0), (margin, margin), (margin, margin)))
    top, left = margin + shift[0] - padding, margin + shift[1] - padding
    shifted = F.conv2d(_tensor(big[:, :, top:, left:]), _tensor(weight), stride=stride).numpy()
    np.testing.assert_allclose(ours, shifted[:, :, :out_h, :out_w], rtol=1e-10, atol=1e-10)


def test_gradcheck_all_five_gradients():
    rng = np.random.default_rng(4)
    kh = kw = 2
    x = _tensor(rng.standard_normal((1, 4, 4, 4)), True)
    offset = _tensor(rng.uniform(-1.5, 1.5, (1, 2 * 2 * kh * kw, 3, 3)), True)  # 2 offset groups
    weight = _tensor(rng.standard_normal((4, 2, kh, kw)), True)  # 2 weight groups
    bias = _tensor(rng.standard_normal(4), True)
    mask = _tensor(rng.uniform(0.2, 1, (1, 2 * kh * kw, 3, 3)), True)
    assert gradcheck(lambda *args: F.deform_conv2d(*args[:4], mask=args[4]), [x, offset, weight, bias, mask])


def test_gradcheck_with_stride_padding_dilation():
    rng = np.random.default_rng(5)
    x = _tensor(rng.standard_normal((1, 2, 5, 5)), True)
    offset = _tensor(rng.uniform(-2, 2, (1, 2 * 9, 3, 3)), True)
    weight = _tensor(rng.standard_normal((2, 2, 3, 3)), True)
    assert gradcheck(lambda a, o, w: F.deform_conv2d(a, o, w, stride=(2, 1), padding=1, dilation=(1, 2)),
                     [x, offset, weight])


def test_only_requested_gradients_are_computed():
    rng = np.random.default_rng(6)
    x = _tensor(rng.standard_normal((1, 2, 4, 4)))
    offset = _tensor(rng.uniform(-1, 1, (1, 8, 3, 3)), True)
    weight = _tensor(rng.standard_normal((3, 2, 2, 2)))
    F.deform_conv2d(x, offset, weight).sum().backward()
    assert offset.grad is not None and offset.grad.shape == offset.shape
    assert x.grad is None and weight.grad is None


def test_float32_stays_float32():
    rng = np.random.default_rng(7)
    x = _tensor(rng.standard_normal((1, 2, 5, 5)).astype(np.float32), True)
    offset = _tensor(rng.uniform(-1, 1, (1, 18, 5, 5)).astype(np.float32), True)
    weight = _tensor(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), True)
    mask = _tensor(rng.uniform(0, 1, (1, 9, 5, 5)).astype(np.float32), True)
    out = F.deform_conv2d(x, offset, weight, padding=1, mask=mask)
    assert out.dtype == np.float32
    out.sum().backward()
    assert all(t.grad.dtype == np.float32 for t in (x, offset, weight, mask))


@pytest.mark.parametrize("bad, message", [
    ({"offset": (1, 17, 4, 4)}, "offset"),  # not a multiple of 2*kh*kw
    ({"offset": (1, 18, 3, 4)}, "offset"),  # wrong output size
    ({"offset": (1, 54, 4, 4)}, "offset"),  # 3 offset groups do not divide 4 channels
    ({"mask": (1, 18, 4, 4)}, "mask"),
    ({"mask": (1, 9, 4, 3)}, "mask"),
    ({"weight": (3, 3, 3, 3)}, "weight.shape"),
])
def test_wrong_shapes_raise_naming_the_argument(bad, message):
    shapes = {"offset": (1, 18, 4, 4), "mask": (1, 9, 4, 4), "weight": (3, 4, 3, 3), **bad}
    x = cnnkit.zeros(1, 4, 4, 4)
    with pytest.raises(ValueError, match=message):
        F.deform_conv2d(x, cnnkit.zeros(*shapes["offset"]), cnnkit.zeros(*shapes["weight"]), padding=1,
                        mask=cnnkit.zeros(*shapes["mask"]))


@pytest.mark.parametrize("modulated", [False, True])
def test_layer_starts_equal_to_a_conv2d(modulated):
    import cnnkit.nn as nn

    layer = nn.DeformConv2d(4, 6, 3, stride=2, padding=1, groups=2, offset_groups=2, modulated=modulated)
    conv = nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
    conv.load_state_dict({"weight": layer.weight.data, "bias": layer.bias.data})
    x = cnnkit.randn(2, 4, 9, 8)
    np.testing.assert_allclose(layer(x).numpy(), conv(x).numpy(), rtol=1e-5, atol=1e-5)
    expected = ["weight", "bias", "offset_conv.weight", "offset_conv.bias"]
    if modulated:
        expected += ["mask_conv.weight", "mask_conv.bias"]
    assert list(layer.state_dict()) == expected
    assert layer.offset_conv.weight.shape == (2 * 2 * 9, 4, 3, 3)


def test_layer_trains_its_offset_predictor():
    import cnnkit.nn as nn

    layer = nn.DeformConv2d(2, 3, 3, padding=1, modulated=True)
    x = cnnkit.randn(1, 2, 6, 6)
    (layer(x) ** 2).sum().backward()
    # Zero-initialised predictors still get gradients (through the sampling positions and the mask).
    assert np.abs(layer.offset_conv.weight.grad).sum() > 0
    assert np.abs(layer.mask_conv.weight.grad).sum() > 0
    assert layer.weight.grad.shape == layer.weight.shape


def test_offset_and_mask_layout_is_torchvisions():
    """Per offset group g and tap t = i*kW + j: channel g*2*kH*kW + 2t is dy, + 1 is dx; mask channel g*kH*kW + t.

    torchvision.ops.deform_conv2d's layout (its CPU kernel reads offset_ptr[2*(i*weight_w + j)] as the
    height offset and the next channel as the width offset, after skipping 2*kH*kW channels per group).
    """
    x = np.arange(2 * 4 * 5, dtype=np.float64).reshape(1, 2, 4, 5)
    weight = np.zeros((1, 2, 1, 2))
    weight[0, 1, 0, 1] = 1.0  # only input channel 1 (offset group 1 of 2) and tap (0, 1) count
    out_h, out_w = 4, 4
    offset = np.zeros((1, 2 * 2 * 2, out_h, out_w))
    offset[0, :4] = 5.0  # group 0's offsets: channel 0 has zero weight, so nothing changes
    offset[0, 4 + 0] = 3.0  # group 1, tap 0: zero weight
    offset[0, 4 + 2] = 1.0  # group 1, tap 1: dy = 1
    offset[0, 4 + 3] = -1.0  # group 1, tap 1: dx = -1
    mask = np.ones((1, 2 * 2, out_h, out_w))
    mask[0, 2 + 1, 0, 0] = 0.5  # group 1, tap 1, output (0, 0)
    out = F.deform_conv2d(_tensor(x), _tensor(offset), _tensor(weight), mask=_tensor(mask)).numpy()[0, 0]
    # Tap (0, 1) of output (y, x) reads channel 1 at (y + 0 + dy, x + 1 + dx) = (y + 1, x); row 4 is outside.
    expected = np.zeros((out_h, out_w))
    expected[:3] = x[0, 1, 1:4, :4]
    expected[0, 0] *= 0.5
    np.testing.assert_array_equal(out, expected)
