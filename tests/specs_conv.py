"""Op-table specs for conv2d and conv_transpose2d: random geometries against torch, tiny gradchecks.

Covered: batch 1, odd sizes, stride > 1 with leftover pixels, dilation > 1, groups, depthwise with a
channel multiplier, 1x1 and asymmetric (1x3, 3x1) kernels, bias on/off, padding as int / pair /
per-side / 'valid' / 'same' (even kernels, and stride > 1, compared with torch on the input padded
explicitly), and conv_transpose2d with stride / padding / output_padding / groups / dilation.
"""
from __future__ import annotations

import contextlib
import functools

import numpy as np
from hypothesis import strategies as st
from optable import Case, OpSpec, cnnkit_op, torch_op

from cnnkit.functional.windows import same_padding


def _torch_conv2d_on_padded(input, weight, bias=None, pads=(0, 0, 0, 0), **kwargs):
    """torch's conv2d after explicit zero padding ``pads`` = (left, right, top, bottom)."""
    import torch.nn.functional as TF

    return TF.conv2d(TF.pad(input, pads), weight, bias, padding=0, **kwargs)


def _data(draw, shape):
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    return rng.standard_normal(shape)


def _kernel_axis(draw, max_kernel, max_stride, max_dilation):
    return (draw(st.integers(1, max_kernel)), draw(st.integers(1, max_stride)), draw(st.integers(1, max_dilation)))


def _conv_tensors(draw, batch, channels, out_channels, groups, size, kernel, small=False):
    x = _data(draw, (batch, channels) + size)
    weight = _data(draw, (out_channels, channels // groups) + kernel) * (0.3 if small else 1.0)
    bias = _data(draw, (out_channels,)) if draw(st.booleans()) else None
    return x, weight, bias


@st.composite
def conv2d_cases(draw, small=False):
    """Integer / pair padding, any groups, strides that leave pixels unused, dilation, 1x1 and 1x3 kernels."""
    max_kernel, max_extra = (3, 2) if small else (4, 6)
    groups = 1 if small else draw(st.sampled_from([1, 1, 2, 3]))
    channels = groups * draw(st.integers(1, 2 if small else 3))
    out_channels = groups * draw(st.integers(1, 2 if small else 3))
    batch = 1 if small else draw(st.integers(1, 3))
    shape = draw(st.sampled_from(["square", "1x3", "3x1", "1x1", "any"]))
    rows = _kernel_axis(draw, max_kernel, 3, 2)
    cols = _kernel_axis(draw, max_kernel, 3, 2)
    fixed = {"square": (3, 3), "1x3": (1, 3), "3x1": (3, 1), "1x1": (1, 1)}.get(shape)
    kernel = fixed if fixed else (rows[0], cols[0])
    stride, dilation = (rows[1], cols[1]), (rows[2], cols[2])
    padding = tuple(draw(st.integers(0, (dilation[a] * (kernel[a] - 1) + 1) // 2)) for a in range(2))
    size = tuple(max(1, dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a]) + draw(st.integers(0, max_extra))
                 for a in range(2))
    x, weight, bias = _conv_tensors(draw, batch, channels, out_channels, groups, size, kernel, small)
    as_int = padding[0] == padding[1] and draw(st.booleans())
    kwargs = {"stride": stride if stride[0] != stride[1] else stride[0], "padding": padding[0] if as_int else padding,
              "dilation": dilation, "groups": groups}
    return Case([x, weight, bias], kwargs)


@st.composite
def depthwise_cases(draw, small=False):
    """groups == in_channels, with channel multiplier 1-3 (out_channels = multiplier * in_channels)."""
    channels = draw(st.integers(2, 2 if small else 4))
    multiplier = draw(st.integers(1, 2 if small else 3))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.integers(1, 1 if small else 2))
    dilation = draw(st.integers(1, 1 if small else 2))
    padding = draw(st.integers(0, 1))
    size = tuple(max(1, dilation * (k - 1) + 1 - 2 * padding) + draw(st.integers(0, 2 if small else 6))
                 for k in kernel)
    x, weight, bias = _conv_tensors(draw, 1 if small else draw(st.integers(1, 2)), channels,
                                    channels * multiplier, channels, size, kernel, small)
    return Case([x, weight, bias], {"stride": stride, "padding": padding, "dilation": dilation, "groups": channels})


@st.composite
def padded_conv2d_cases(draw, small=False):
    """Per-side, 'valid' and 'same' (even kernels, stride > 1); torch sees the explicitly padded input."""
    mode = draw(st.sampled_from(["same", "same", "valid", "sides", "sides"]))
    kernel = (draw(st.sampled_from([1, 2, 3, 4, 4])), draw(st.sampled_from([1, 2, 3, 4, 4])))
    strides = [1] if small else [1, 1, 2, 3]  # stride 1 often: its input gradient takes the dual path
    stride = (draw(st.sampled_from(strides)), draw(st.sampled_from(strides)))
    dilation = (1, 1) if small else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    groups = 1 if small else draw(st.sampled_from([1, 2]))
    size = tuple(dilation[a] * (kernel[a] - 1) + 1 + draw(st.integers(0, 3 if small else 6)) for a in range(2))
    if mode == "sides":
        sides = tuple((draw(st.integers(0, 2)), draw(st.integers(0, 2))) for _ in range(2))
        padding = sides
    elif mode == "same":
        sides = tuple(same_padding(size[a], kernel[a], stride[a], dilation[a]) for a in range(2))
        padding = "same"
    else:
        sides, padding = ((0, 0), (0, 0)), "valid"
    channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    x, weight, bias = _conv_tensors(draw, 1 if small else draw(st.integers(1, 2)), channels, out_channels, groups,
                                    size, kernel, small)
    common = {"stride": stride, "dilation": dilation, "groups": groups}
    torch_pads = (sides[1][0], sides[1][1], sides[0][0], sides[0][1])
    return Case([x, weight, bias], {"padding": padding, **common}, torch_kwargs={"pads": torch_pads, **common})


@st.composite
def conv_transpose2d_cases(draw, small=False, depthwise=False):
    """stride, padding, output_padding (< max(stride, dilation)), groups, dilation, bias on/off.

    ``depthwise``: one output channel per group, the transpose of a depthwise conv2d with a multiplier.
    """
    groups = draw(st.integers(2, 3)) if depthwise else 1 if small else draw(st.sampled_from([1, 1, 2]))
    channels = groups * draw(st.integers(1, 2 if small else 3))
    out_channels = groups if depthwise else groups * draw(st.integers(1, 2 if small else 3))
    kernel = (draw(st.integers(1, 3 if small else 4)), draw(st.integers(1, 3 if small else 4)))
    stride = (draw(st.integers(1, 2 if small else 3)), draw(st.integers(1, 2 if small else 3)))
    dilation = (1, 1) if small else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    padding = tuple(draw(st.integers(0, dilation[a] * (kernel[a] - 1))) for a in range(2))
    output_padding = tuple(draw(st.integers(0, max(stride[a], dilation[a]) - 1)) for a in range(2))
    # the output (H - 1)*s - 2p + d(k - 1) + output_padding + 1 must be positive
    size = tuple(1 + max(0, -(-(2 * padding[a] - dilation[a] * (kernel[a] - 1) - output_padding[a]) // stride[a]))
                 + draw(st.integers(0, 2 if small else 4)) for a in range(2))
    x = _data(draw, (1 if small else draw(st.integers(1, 2)), channels) + size)
    weight = _data(draw, (channels, out_channels // groups) + kernel) * (0.3 if small else 1.0)
    bias = _data(draw, (out_channels,)) if draw(st.booleans()) else None
    return Case([x, weight, bias], {"stride": stride, "padding": padding, "output_padding": output_padding,
                                    "groups": groups, "dilation": dilation})


@contextlib.contextmanager
def _depthwise_matrix_limit(entries):
    """Force depthwise convolutions onto the banded-matrix path (huge limit) or the im2col path (0), any batch."""
    from cnnkit.functional import depthwise

    names = ("MAX_ENTRIES", "MIN_BATCH", "LARGE_MAX_ENTRIES")
    saved = [getattr(depthwise, name) for name in names]
    for name, value in zip(names, (entries, 1, entries)):
        setattr(depthwise, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(depthwise, name, value)


def _on_both_depthwise_paths(op, cases, gradcheck_cases):
    """One spec per depthwise path (im2col, banded matrix) for ``op``, named ``<op>_depthwise_<path>``."""
    return [OpSpec(f"{op}_depthwise_{path}", cases, ours=cnnkit_op(op), theirs=torch_op(op),
                   gradcheck_cases=gradcheck_cases, context=functools.partial(_depthwise_matrix_limit, limit))
            for path, limit in (("im2col", 0), ("matrix", 10 ** 9))]


SPECS = [
    OpSpec("conv2d", conv2d_cases(), gradcheck_cases=conv2d_cases(small=True)),
    *_on_both_depthwise_paths("conv2d", depthwise_cases(), depthwise_cases(small=True)),
    *_on_both_depthwise_paths("conv_transpose2d", conv_transpose2d_cases(depthwise=True),
                              conv_transpose2d_cases(small=True, depthwise=True)),
    OpSpec("conv2d_padding", padded_conv2d_cases(), ours=cnnkit_op("conv2d"), theirs=_torch_conv2d_on_padded,
           gradcheck_cases=padded_conv2d_cases(small=True)),
    OpSpec("conv_transpose2d", conv_transpose2d_cases(), gradcheck_cases=conv_transpose2d_cases(small=True)),
]
