"""Op-table specs for conv2d and conv_transpose2d: random geometries against torch, tiny gradchecks.

Covered: batch 1, odd sizes, stride > 1 with leftover pixels, dilation > 1, groups, depthwise with a
channel multiplier, 1x1 and asymmetric (1x3, 3x1) kernels, bias on/off, padding as int / pair /
per-side / 'valid' / 'same' (even kernels, and stride > 1, compared with torch on the input padded
explicitly), and conv_transpose2d with stride / padding / output_padding / groups / dilation.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from optable import Case, ErrorCase, OpSpec, cnnkit_op, torch_op

from cnnkit.functional.windows import same_padding


def _torch_conv2d_on_padded(input, weight, bias=None, pads=None, **kwargs):
    """torch's conv2d, after explicit zero padding ``pads`` = (left, right, top, bottom) when given."""
    import torch.nn.functional as TF

    if pads is None:
        return TF.conv2d(input, weight, bias, **kwargs)
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


# ------------------------------------------------------------------------------ cases each kernel applies to
def _with_bias(case):
    """The case with a bias (the bias-gradient kernel runs only when there is one)."""
    x, weight, bias = case.inputs
    channels = weight.shape[0] if "output_padding" not in case.kwargs else weight.shape[1] * case.kwargs["groups"]
    return Case([x, weight, np.linspace(-1, 1, channels) if bias is None else bias], case.kwargs, case.torch_kwargs)


@st.composite
def targeted_conv2d_cases(draw, kind, small=False):
    """conv2d cases one kernel applies to: 'banded' (depthwise on maps of at most 4x4, 4+ images), 'pointwise'
    (1x1 on 16x16), 'dual' (stride 1 where the dual beats col2im: 1x1, depthwise multiplier 1, or 16+ input
    channels per group; per-side padding within the kernel's reach), 'polyphase' (strided depthwise)."""
    depthwise_kind = kind in ("banded", "polyphase") or (kind == "dual" and draw(st.integers(0, 2)) == 0)
    multiplier = 1 if kind == "dual" else draw(st.integers(1, 2))
    if depthwise_kind:
        channels = groups = draw(st.integers(2, 3))
        out_channels = channels * multiplier
    elif kind == "dual" and draw(st.booleans()):  # 16+ channels per group, at most twice as many outputs
        groups = 1
        channels, out_channels = 16, draw(st.integers(4, 8 if small else 16))
    else:
        groups = draw(st.sampled_from([1, 2]))
        channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    if kind == "pointwise" or (kind == "dual" and not depthwise_kind and channels < 16):
        kernel = (1, 1)
    else:
        kernel = (draw(st.integers(1, 3 if kind != "polyphase" else 5)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(2, 3)), draw(st.integers(1, 3))) if kind == "polyphase" else (1, 1)
    if kind == "banded":
        stride = (draw(st.integers(1, 2)),) * 2
    dilation = (draw(st.integers(1, 2)), 1) if kind == "dual" else (1, 1)
    reach = [dilation[a] * (kernel[a] - 1) for a in range(2)]
    if kind == "pointwise":
        sides = ((0, 0), (0, 0))
    else:
        sides = tuple((draw(st.integers(0, min(reach[a], 2))), draw(st.integers(0, min(reach[a], 2))))
                      for a in range(2))
    if kind == "banded":  # in and out maps of at most 16 pixels, so the per-channel matrix stays small
        size = tuple(max(1, reach[a] + 1 - sum(sides[a])) + draw(st.integers(0, 4 - max(1, reach[a] + 1
                                                                                        - sum(sides[a]))))
                     for a in range(2))
        batch = draw(st.integers(4, 5))
    elif kind == "pointwise":
        size, batch = (16, 16), draw(st.integers(1, 1 if small else 2))
    else:
        size = tuple(max(1, reach[a] + 1 - sum(sides[a])) + draw(st.integers(0, 3 if small else 5)) for a in range(2))
        batch = draw(st.integers(1, 1 if small else 2))
    x, weight, bias = _conv_tensors(draw, batch, channels, out_channels, groups, size, kernel, small)
    common = {"stride": stride, "dilation": dilation, "groups": groups}
    torch_pads = (sides[1][0], sides[1][1], sides[0][0], sides[0][1])
    return Case([x, weight, bias], {"padding": sides, **common}, torch_kwargs={"pads": torch_pads, **common})


@st.composite
def targeted_transpose_cases(draw, kind, small=False):
    """conv_transpose2d cases one kernel applies to (its geometry is the conv2d whose input gradient it is):
    'banded' (one output channel per group, outputs of at most 4x4, 4+ images), 'pointwise' (1x1 on 16x16),
    'dual' (stride 1 and 1x1, or in = out = groups, or 16 output channels), 'polyphase' (strided, one
    output channel per group)."""
    depthwise_kind = kind in ("banded", "polyphase") or (kind == "dual" and draw(st.booleans()))
    if depthwise_kind:
        groups = draw(st.integers(2, 3))
        channels = groups * (1 if kind == "dual" else draw(st.integers(1, 2)))
        out_channels = groups
    elif kind == "dual":
        groups, channels, out_channels = 1, draw(st.integers(4, 8 if small else 16)), 16
    else:
        groups = draw(st.sampled_from([1, 2]))
        channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = (1, 1) if kind == "pointwise" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = {"polyphase": (draw(st.integers(2, 3)), draw(st.integers(1, 2))),
              "banded": (draw(st.integers(1, 2)),) * 2}.get(kind, (1, 1))
    padding = (0, 0) if kind == "pointwise" else tuple(draw(st.integers(0, kernel[a] - 1)) for a in range(2))
    output_padding = (0, 0) if kind in ("pointwise", "dual") else tuple(
        draw(st.integers(0, stride[a] - 1)) for a in range(2))
    if kind == "pointwise":
        size, batch = (16, 16), draw(st.integers(1, 1 if small else 2))
    else:
        low = [1 + max(0, -(-(2 * padding[a] - (kernel[a] - 1) - output_padding[a]) // stride[a])) for a in range(2)]
        high = [low[a] + (0 if kind == "banded" else 2 if small else 3) for a in range(2)]
        size = tuple(draw(st.integers(low[a], high[a])) for a in range(2))
        batch = draw(st.integers(4, 5)) if kind == "banded" else draw(st.integers(1, 1 if small else 2))
    x = _data(draw, (batch, channels) + size)
    weight = _data(draw, (channels, out_channels // groups) + kernel) * (0.3 if small else 1.0)
    bias = _data(draw, (out_channels,)) if draw(st.booleans()) else None
    return Case([x, weight, bias], {"stride": stride, "padding": padding, "output_padding": output_padding,
                                    "groups": groups, "dilation": (1, 1)})


def _one_image_window(draw, kind):
    """(groups, in channels, out channels, kernel, stride, dilation, per-side padding) of a one-image case: in =
    out = groups for 'depthwise' (64 or more, the kernel's rule), 1x1 with nothing else for 'pointwise'."""
    if kind == "depthwise":
        groups = channels = out_channels = draw(st.integers(64, 66))
    elif kind == "shifted":
        groups = channels = out_channels = draw(st.integers(2, 4))
    else:
        groups = draw(st.sampled_from([1, 1, 2]))
        channels, out_channels = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    if kind == "pointwise":
        return groups, channels, out_channels, (1, 1), (draw(st.integers(1, 2)), 1), (1, 1), ((0, 0), (0, 0))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (1, 1) if kind == "shifted" else (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    sides = tuple((draw(st.integers(0, min(dilation[a] * (kernel[a] - 1), 2))),
                   draw(st.integers(0, min(dilation[a] * (kernel[a] - 1), 2)))) for a in range(2))
    return groups, channels, out_channels, kernel, stride, dilation, sides


@st.composite
def one_image_conv2d_cases(draw, kind):
    """Batch-1 conv2d cases for the one-image kernels: 'pointwise' (1x1, no padding, any map size),
    'depthwise' (one output channel per input channel, 64+ channels; any stride, dilation, per-side padding),
    'shifted' (depthwise on few channels, stride 1, rows of 96+ outputs), 'bands' (the rest: dense, grouped)."""
    groups, channels, out_channels, kernel, stride, dilation, sides = _one_image_window(draw, kind)
    size = tuple(max(1, dilation[a] * (kernel[a] - 1) + 1 - sum(sides[a])) + draw(st.integers(0, 5)) for a in range(2))
    if kind == "shifted":  # output rows of at least 96
        size = (size[0], dilation[1] * (kernel[1] - 1) - sum(sides[1]) + draw(st.integers(96, 99)))
    x, weight, bias = _conv_tensors(draw, 1, channels, out_channels, groups, size, kernel)
    common = {"stride": stride, "dilation": dilation, "groups": groups}
    torch_pads = (sides[1][0], sides[1][1], sides[0][0], sides[0][1])
    return Case([x, weight, bias], {"padding": sides, **common}, torch_kwargs={"pads": torch_pads, **common})


@st.composite
def one_image_transpose_cases(draw, kind):
    """Batch-1 conv_transpose2d cases whose conv2d geometry (dY plays its input in backward) a one-image kernel
    serves: 'pointwise' (1x1, stride 1, no padding), 'depthwise' (in = out = groups), 'shifted' (few channels,
    stride 1, inputs 96+ wide), 'bands' (the rest)."""
    groups, channels, out_channels, kernel, stride, _, sides = _one_image_window(draw, kind)
    padding = tuple(min(sides[a]) for a in range(2))
    output_padding = tuple(draw(st.integers(0, stride[a] - 1)) for a in range(2))
    size = tuple(1 + max(0, -(-(2 * padding[a] - (kernel[a] - 1) - output_padding[a]) // stride[a]))
                 + draw(st.integers(0, 3)) for a in range(2))
    if kind == "shifted":  # the conv2d of dY returns maps of this size: rows of at least 96
        size = (size[0], draw(st.integers(96, 99)))
    x = _data(draw, (1, channels) + size)
    weight = _data(draw, (channels, out_channels // groups) + kernel)
    bias = _data(draw, (out_channels,)) if draw(st.booleans()) else None
    return Case([x, weight, bias], {"stride": stride, "padding": padding, "output_padding": output_padding,
                                    "groups": groups, "dilation": (1, 1)})


def _kernel_cases(targeted, any_cases, transpose=False):
    """kernel name -> cases it applies to, for every conv kernel (the chunked im2col / col2im take any case)."""
    cases = {
        "conv2d.banded_depthwise": targeted("banded"), "conv2d_input_grad.banded_depthwise": targeted("banded"),
        "conv2d.pointwise": targeted("pointwise"), "conv2d_input_grad.dual": targeted("dual"),
        "conv2d_input_grad.polyphase": targeted("polyphase"), "channel_sum.gemv": any_cases.map(_with_bias),
    }
    one_image = one_image_transpose_cases if transpose else one_image_conv2d_cases
    cases.update({f"conv2d.one_image_{kind}": one_image(kind)
                  for kind in ("pointwise", "depthwise", "shifted", "bands")})
    if not transpose:
        cases["conv2d_backward.dual"] = targeted("dual")
    return cases


def _zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


CONV2D_ERRORS = [
    ErrorCase([_zeros(2, 1, 3, 10, 10), _zeros(8, 3, 3, 3)], match=r"conv2d: expected a 4-D input.*\(2, 1, 3, 10, 10\)"
              r".*unsqueeze\(0\)"),
    ErrorCase([_zeros(1, 4, 5, 5), _zeros(8, 3, 3, 3)], match=r"conv2d: input of shape \(1, 4, 5, 5\) has 4 channels "
              r"but weight of shape \(8, 3, 3, 3\) with groups=1 expects 3"),
    ErrorCase([_zeros(1, 4, 5, 5), _zeros(6, 1, 3, 3)], {"groups": 4},
              match=r"out_channels=6 \(weight shape \(6, 1, 3, 3\)\) is not divisible by groups=4"),
    ErrorCase([_zeros(1, 4, 5, 5), _zeros(8, 2, 3, 3)], {"groups": 0}, match=r"groups must be a positive integer"),
    ErrorCase([_zeros(1, 1, 9, 4), _zeros(1, 1, 3, 3)], {"padding": 1, "dilation": 3},
              match=r"conv2d: kernel 3 \(dilation 3, effective size 7\).*width 4 \+ 2 = 6"),
    ErrorCase([_zeros(1, 3, 10, 10), _zeros(8, 3, 3, 3)], {"stride": 2, "strict": True},
              match=r"conv2d: .*\(10 - 3 \+ 0\) / 2 \+ 1 = 4\.5 is not an integer"),
    ErrorCase([_zeros(1, 3, 5, 5), _zeros(8, 3, 3, 3), _zeros(3)],
              match=r"conv2d: bias must have shape \(8,\).*got \(3,\)"),
    ErrorCase([_zeros(1, 3, 5, 5), _zeros(8, 3, 3)], match=r"conv2d: weight must be 4-D .* got shape \(8, 3, 3\)"),
    ErrorCase([_zeros(1, 3, 0, 5), _zeros(8, 3, 3, 3)], match=r"conv2d: input of shape \(1, 3, 0, 5\) has an empty "
              r"height or width"),
    ErrorCase([_zeros(1, 1, 3, 3, dtype=np.float64), _zeros(1, 1, 2, 2)], error=TypeError,
              match=r"conv2d: input \(float64\), weight \(float32\).*\.to\(dtype\)"),
    ErrorCase([_zeros(1, 1, 3, 3, dtype=np.int64), _zeros(1, 1, 2, 2, dtype=np.int64)], error=TypeError,
              match=r"conv2d: expected floating-point input"),
    ErrorCase([_zeros(1, 3, 8, 8), _zeros(8, 3, 3, 3)], {"padding": "full"}, match=r"'valid' or 'same', got 'full'"),
    ErrorCase([_zeros(1, 3, 8, 8), _zeros(8, 3, 3, 3)], {"stride": 0}, match=r"conv2d: stride must be positive"),
    ErrorCase([_zeros(1, 3, 8, 8), _zeros(8, 3, 3, 3)], {"padding": -1}, match=r"padding must be non-negative"),
]
CONV_TRANSPOSE2D_ERRORS = [
    ErrorCase([_zeros(1, 1, 3, 10, 10), _zeros(3, 8, 3, 3)], match=r"conv_transpose2d: expected a 4-D input"),
    ErrorCase([_zeros(1, 4, 5, 5), _zeros(3, 8, 3, 3)],
              match=r"conv_transpose2d: input of shape \(1, 4, 5, 5\) has 4 channels.*\(3, 8, 3, 3\)"),
    ErrorCase([_zeros(1, 3, 1, 1), _zeros(3, 2, 2, 2)], {"padding": 2},
              match=r"output height would be .* = \(1 - 1\) \* 1 - 4 \+ 1 \* \(2 - 1\) \+ 0 \+ 1 = -2 <= 0 "
                    r"for input \(1, 3, 1, 1\)"),
    ErrorCase([_zeros(1, 3, 4, 4), _zeros(3, 2, 3, 3)], {"stride": 2, "output_padding": 2},
              match=r"output_padding \(2, 2\) must be >= 0 and smaller than either stride"),
    ErrorCase([_zeros(1, 3, 4, 4), _zeros(3, 2, 3, 3)], {"padding": "same"},
              match=r"string padding is only defined for conv2d"),
    ErrorCase([_zeros(1, 3, 4, 4), _zeros(3, 2, 3, 3), _zeros(3)],
              match=r"conv_transpose2d: bias must have shape \(2,\)"),
    ErrorCase([_zeros(1, 4, 4, 4), _zeros(4, 2, 3, 3)], {"groups": 3},
              match=r"in_channels=4 is not divisible by groups=3"),
]


def _conv2d_spec(name, cases, gradcheck_cases, **kwargs):
    return OpSpec(name, cases, ours=cnnkit_op("conv2d"), theirs=_torch_conv2d_on_padded,
                  gradcheck_cases=gradcheck_cases,
                  kernel_ops=("conv2d", "conv2d_input_grad", "conv2d_backward", "channel_sum"),
                  kernel_cases=_kernel_cases(targeted_conv2d_cases, gradcheck_cases), **kwargs)


SPECS = [
    _conv2d_spec("conv2d", conv2d_cases(), conv2d_cases(small=True), errors=CONV2D_ERRORS),
    _conv2d_spec("conv2d_depthwise", depthwise_cases(), depthwise_cases(small=True)),
    _conv2d_spec("conv2d_padding", padded_conv2d_cases(), padded_conv2d_cases(small=True)),
    OpSpec("conv_transpose2d", conv_transpose2d_cases(), gradcheck_cases=conv_transpose2d_cases(small=True),
           errors=CONV_TRANSPOSE2D_ERRORS,
           kernel_ops=("conv2d", "conv2d_input_grad", "channel_sum"),
           kernel_cases=_kernel_cases(targeted_transpose_cases, conv_transpose2d_cases(small=True), transpose=True)),
    OpSpec("conv_transpose2d_depthwise", conv_transpose2d_cases(depthwise=True), ours=cnnkit_op("conv_transpose2d"),
           theirs=torch_op("conv_transpose2d"), gradcheck_cases=conv_transpose2d_cases(small=True, depthwise=True),
           kernel_ops=("conv2d_input_grad",),
           kernel_cases=_kernel_cases(targeted_transpose_cases,
                                      conv_transpose2d_cases(small=True, depthwise=True), transpose=True)),
]
