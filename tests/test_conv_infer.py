"""kernels.conv_infer.conv_forward against the reference conv2d (+ bias, + relu / relu6), every geometry and path."""
from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cnnkit.functional as F
from cnnkit import backend
from cnnkit.autograd import Tensor
from cnnkit.functional.conv_checks import conv_geometry
from cnnkit.kernels import conv_depthwise_direct, conv_infer


def _reference(x, weight, bias, geo, activation):
    """The textbook conv2d (reference path) with the activation applied after it."""
    pads = geo.pads
    with backend.use_kernels("reference"):
        y = F.conv2d(Tensor(x), Tensor(weight), None if bias is None else Tensor(bias), stride=geo.stride,
                     padding=pads, dilation=geo.dilation, groups=geo.groups).data
    if activation == "relu":
        y = np.maximum(y, 0)
    elif activation == "relu6":
        y = np.clip(y, 0, 6)
    return y


@st.composite
def geometries(draw, kinds=("dense", "dense", "pointwise", "depthwise", "grouped"), multipliers=(1, 1, 2)):
    """(x shape, weight shape, stride, pads, dilation, groups): dense, grouped, depthwise (channel multiplier
    from ``multipliers``), 1x1, strided, dilated."""
    kind = draw(st.sampled_from(kinds))
    batch = draw(st.integers(1, 3))
    if kind == "depthwise":
        channels = groups = draw(st.integers(2, 9))
        out_channels = channels * draw(st.sampled_from(multipliers))
    elif kind == "grouped":
        groups = draw(st.integers(2, 3))
        channels, out_channels = groups * draw(st.integers(1, 4)), groups * draw(st.integers(1, 4))
    else:
        groups, channels, out_channels = 1, draw(st.integers(1, 12)), draw(st.integers(1, 12))
    if kind == "pointwise":
        kernel, dilation = (1, 1), (1, 1)
    else:
        kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
        dilation = (draw(st.sampled_from([1, 1, 2])), draw(st.sampled_from([1, 1, 2])))
    stride = (draw(st.sampled_from([1, 1, 2, 3])), draw(st.sampled_from([1, 1, 2, 3])))
    if draw(st.booleans()):
        stride = (stride[0], stride[0])
    reach = [dilation[a] * (kernel[a] - 1) for a in range(2)]
    pads = tuple((draw(st.integers(0, reach[a])), draw(st.integers(0, reach[a]))) for a in range(2))
    if kind == "pointwise" and draw(st.booleans()):
        pads = ((0, 0), (0, 0))
    size = tuple(max(1, reach[a] + 1 - sum(pads[a])) + draw(st.integers(0, 9)) for a in range(2))
    return (batch, channels) + size, (out_channels, channels // groups) + kernel, stride, pads, dilation, groups


def _check_case(case, dtype, use_bias, activation, use_out, seed):
    x_shape, w_shape, stride, pads, dilation, groups = case
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(x_shape).astype(dtype)
    weight = rng.standard_normal(w_shape).astype(dtype)
    bias = rng.standard_normal(w_shape[0]).astype(dtype) if use_bias else None
    geo = conv_geometry(x_shape, w_shape, stride, pads, dilation, groups)
    out = np.full((geo.batch, geo.out_channels) + geo.out_size, np.nan, dtype) if use_out else None
    y = conv_infer.conv_forward(x, weight, bias, geo, activation, out=out)
    if use_out:
        assert y is out
    assert y.dtype == dtype and y.shape == (geo.batch, geo.out_channels) + geo.out_size
    expected = _reference(x.astype(np.float64), weight.astype(np.float64),
                          None if bias is None else bias.astype(np.float64), geo, activation)
    tolerance = 1e-4 if dtype == np.float32 else 1e-10
    scale = max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(y, expected, rtol=0, atol=tolerance * scale, err_msg=f"{conv_infer.path_for(geo)}")


@settings(max_examples=150, deadline=None)
@given(geometries(), st.sampled_from([np.float32, np.float64]), st.booleans(), st.sampled_from(conv_infer.ACTIVATIONS),
       st.booleans(), st.integers(0, 2**31 - 1))
def test_matches_reference_conv2d(case, dtype, use_bias, activation, use_out, seed):
    _check_case(case, dtype, use_bias, activation, use_out, seed)


# One geometry per fast path at a size where the path's own rule picks it (the random ones are too small for some).
PATH_CASES = {
    "pointwise": ((1, 16, 20, 20), (24, 16, 1, 1), 1, ((0, 0), (0, 0)), 1, 1),
    "pointwise_grouped": ((2, 8, 30, 20), (12, 4, 1, 1), 1, ((0, 0), (0, 0)), 1, 2),
    "pointwise_strided": ((2, 6, 31, 20), (12, 6, 1, 1), (2, 3), ((0, 0), (0, 0)), 1, 1),
    "depthwise": ((1, 64, 13, 11), (64, 1, 3, 3), 1, ((1, 1), (1, 1)), 1, 64),
    "depthwise_strided": ((2, 70, 14, 9), (70, 1, 3, 3), 2, ((1, 1), (0, 1)), 1, 70),
    "depthwise_dilated": ((1, 65, 17, 16), (65, 1, 3, 5), (3, 2), ((2, 0), (1, 3)), (2, 3), 65),
    "shifted": ((1, 16, 23, 100), (16, 1, 3, 3), 1, ((1, 1), (1, 1)), 1, 16),
    "shifted_dilated": ((2, 8, 9, 110), (8, 1, 3, 5), 1, ((2, 0), (1, 3)), (2, 3), 8),
    "shifted_strided": ((1, 8, 11, 100), (8, 1, 3, 3), (2, 3), ((1, 0), (1, 1)), 1, 8),  # on 2+ threads
    "bands_depthwise": ((1, 16, 23, 21), (16, 1, 3, 3), 1, ((1, 1), (1, 1)), 1, 16),
    "bands": ((1, 3, 40, 37), (8, 3, 7, 7), 2, ((3, 3), (3, 3)), 1, 1),
    "bands_grouped": ((3, 6, 9, 7), (4, 3, 2, 3), (2, 1), ((1, 0), (0, 2)), (1, 2), 2),
    "im2col": ((6, 3, 9, 7), (4, 3, 2, 3), (2, 1), ((1, 0), (0, 2)), (1, 2), 1),
}


@pytest.mark.parametrize("path", sorted(PATH_CASES))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("activation", conv_infer.ACTIVATIONS)
def test_each_path_runs_and_matches(path, dtype, activation):
    x_shape, w_shape, stride, pads, dilation, groups = PATH_CASES[path]
    geo = conv_geometry(x_shape, w_shape, stride, pads, dilation, groups)
    with mock.patch.object(backend, "_num_threads", 2):  # the rules of this project's usual two threads
        assert conv_infer.path_for(geo) == path.split("_")[0]
        _check_case(PATH_CASES[path], dtype, True, activation, activation == "relu", 7)


def test_bad_activation_and_bad_out_are_clear_errors():
    geo = conv_geometry((1, 2, 5, 5), (3, 2, 3, 3), 1, 1, 1, 1)
    x, weight = np.zeros((1, 2, 5, 5), np.float32), np.zeros((3, 2, 3, 3), np.float32)
    with pytest.raises(ValueError, match="activation must be one of"):
        conv_infer.conv_forward(x, weight, None, geo, activation="gelu")
    with pytest.raises(ValueError, match=r"out must be a C-contiguous float32 array of shape \(1, 3, 5, 5\)"):
        conv_infer.conv_forward(x, weight, None, geo, out=np.zeros((1, 3, 5, 4), np.float32))
    with pytest.raises(ValueError, match=r"out must be .* got float64"):
        conv_infer.conv_forward(x, weight, None, geo, out=np.zeros((1, 3, 5, 5), np.float64))
    with pytest.raises(ValueError, match=r"input of shape \(1, 2, 6, 5\) does not match"):
        conv_infer.conv_forward(np.zeros((1, 2, 6, 5), np.float32), weight, None, geo)
    with pytest.raises(TypeError, match=r"conv_forward: input \(float32\), weight \(float64\)"):
        conv_infer.conv_forward(x, weight.astype(np.float64), None, geo)


@settings(max_examples=40, deadline=None)
@given(geometries(kinds=("depthwise",), multipliers=(1,)), st.sampled_from([np.float32, np.float64]),
       st.sampled_from(conv_infer.ACTIVATIONS), st.integers(0, 2**31 - 1))
def test_depthwise_path_on_random_geometries(case, dtype, activation, seed):
    """The einsum path on random depthwise geometries (too few channels to take it by its own rule)."""
    with mock.patch.object(conv_depthwise_direct, "MIN_CHANNELS", 1):
        x_shape, w_shape, stride, pads, dilation, groups = case
        path = conv_infer.path_for(conv_geometry(x_shape, w_shape, stride, pads, dilation, groups))
        assert path == "depthwise" or (path == "pointwise" and w_shape[2:] == (1, 1))
        _check_case(case, dtype, True, activation, True, seed)


@pytest.mark.parametrize("weight_shape, groups, width, expected", [
    ((8, 4, 1, 1), 1, 8, "conv2d.one_image_pointwise"),
    ((64, 1, 3, 3), 64, 8, "conv2d.one_image_depthwise"),
    ((4, 1, 3, 3), 4, 100, "conv2d.one_image_shifted"),  # depthwise on few channels, wide rows
    ((8, 4, 3, 3), 1, 8, "conv2d.one_image_bands"),
    ((4, 1, 3, 3), 4, 8, "conv2d.one_image_bands"),  # depthwise on few channels
])
def test_eager_batch_of_one_forward_runs_the_one_image_kernels(weight_shape, groups, width, expected):
    """Under no_grad a batch of one takes conv_forward's paths through the kernel seam; a batch of two does not."""
    from cnnkit import kernels
    from cnnkit.autograd import no_grad

    rng = np.random.default_rng(1)
    weight, bias = rng.standard_normal(weight_shape), rng.standard_normal(weight_shape[0])
    for batch in (1, 2):
        x = rng.standard_normal((batch, weight_shape[1] * groups, 9, width))
        with no_grad(), kernels.record_picks() as picks:
            y = F.conv2d(Tensor(x), Tensor(weight), Tensor(bias), padding=weight_shape[2] // 2, groups=groups)
        assert (picks == [expected]) is (batch == 1), picks
        geo = conv_geometry(x.shape, weight_shape, 1, weight_shape[2] // 2, 1, groups)
        np.testing.assert_allclose(y.data, _reference(x, weight, bias, geo, None), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("threads", [2, 3])
@pytest.mark.parametrize("path", sorted(PATH_CASES))
def test_each_path_split_over_threads(path, threads):
    """Every layer split over the threads, whatever its size (small layers run on one thread by default)."""
    from cnnkit.kernels import conv_bands

    with mock.patch.object(conv_bands, "SPLIT_MIN_MACS", 0), mock.patch.object(conv_infer, "SPLIT_MIN_MACS", 0), \
            mock.patch.object(conv_depthwise_direct, "SPLIT_MIN_MACS", 0), \
            mock.patch.object(backend, "_num_threads", threads):
        for dtype in (np.float32, np.float64):
            _check_case(PATH_CASES[path], dtype, True, "relu6", True, 5)
