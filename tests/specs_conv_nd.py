"""Op-table specs for conv1d, conv3d, conv_transpose1d and conv_transpose3d: random geometries against torch.

One strategy per op family, for any number of spatial axes: odd sizes, stride with leftover samples,
dilation, groups, bias on/off, padding as int / one int per axis / per-side / 'valid' / 'same' (torch sees
the explicitly padded input), and the transposed ops with stride / padding / output_padding / groups /
dilation. 3-D cases stay tiny: a gradcheck perturbs every input element twice.
"""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st
from optable import Case, ErrorCase, OpSpec, cnnkit_op, torch_op

from cnnkit.functional.windows import same_padding


def _torch_on_padded(name):
    """torch's ``name`` (conv1d / conv3d), after explicit zero padding ``pads`` (torch's F.pad order) when given."""
    def call(input, weight, bias=None, pads=None, **kwargs):
        import torch.nn.functional as TF

        if pads is None:
            return getattr(TF, name)(input, weight, bias, **kwargs)
        return getattr(TF, name)(TF.pad(input, pads), weight, bias, padding=0, **kwargs)

    return call


def _data(draw, shape):
    return np.random.default_rng(draw(st.integers(0, 2**31 - 1))).standard_normal(shape)


def _maybe_bias(draw, channels):
    return _data(draw, (channels,)) if draw(st.booleans()) else None


def _torch_pads(sides):
    """((before, after) per axis, first axis first) -> torch's F.pad tuple (last axis first)."""
    return tuple(amount for side in reversed(sides) for amount in side)


@st.composite
def conv_nd_cases(draw, dims, small=False):
    """Any groups, kernels 1-3 per axis, strides 1-3 that leave samples unused, dilation 1-2, every padding form."""
    largest = 2 if small and dims == 3 else 3
    groups = draw(st.sampled_from([1, 2] if small else [1, 1, 2, 3]))
    channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, largest)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    reach = [dilation[a] * (kernel[a] - 1) for a in range(dims)]
    mode = draw(st.sampled_from(["int", "axes", "sides", "same", "valid"]))
    if mode == "sides":
        sides = tuple((draw(st.integers(0, min(r, 2))), draw(st.integers(0, min(r, 2)))) for r in reach)
    elif mode in ("int", "axes"):
        amounts = [draw(st.integers(0, (r + 1) // 2)) for r in reach]
        if mode == "int":
            amounts = [amounts[0]] * dims
        sides = tuple((p, p) for p in amounts)
    else:
        sides = ((0, 0),) * dims
    extra = 1 if small and dims == 3 else 3 if small else 5
    size = tuple(max(1, reach[a] + 1 - sum(sides[a])) + draw(st.integers(0, extra)) for a in range(dims))
    if mode == "same":
        sides = tuple(same_padding(size[a], kernel[a], stride[a], dilation[a]) for a in range(dims))
    padding = {"int": sides[0][0], "axes": tuple(p for p, _ in sides), "sides": sides, "same": "same",
               "valid": "valid"}[mode]
    batch = 1 if small else draw(st.integers(1, 2))
    x = _data(draw, (batch, channels) + size)
    weight = _data(draw, (out_channels, channels // groups) + kernel) * (0.3 if small else 1.0)
    common = {"stride": stride, "dilation": dilation, "groups": groups}
    return Case([x, weight, _maybe_bias(draw, out_channels)], {"padding": padding, **common},
                torch_kwargs={"pads": _torch_pads(sides), **common})


@st.composite
def dual_conv1d_cases(draw):
    """1-D cases the dual backward applies to on the height-1 view: stride 1, padding within the kernel's reach,
    and 16 input channels per group, a 1x1 kernel, or depthwise with multiplier 1."""
    kind = draw(st.sampled_from(["wide", "pointwise", "depthwise"]))
    if kind == "wide":
        groups, channels, out_channels = 1, 16, draw(st.integers(4, 16))
    elif kind == "pointwise":
        groups = draw(st.integers(1, 2))
        channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    else:
        groups = channels = out_channels = draw(st.integers(2, 3))
    kernel = 1 if kind == "pointwise" else draw(st.integers(1, 3))
    dilation = draw(st.integers(1, 2))
    reach = dilation * (kernel - 1)
    sides = ((draw(st.integers(0, reach)), draw(st.integers(0, reach))),)
    size = max(1, reach + 1 - sum(sides[0])) + draw(st.integers(0, 5))
    x = _data(draw, (draw(st.integers(1, 2)), channels, size))
    weight = _data(draw, (out_channels, channels // groups, kernel)) * 0.3
    common = {"stride": 1, "dilation": dilation, "groups": groups}
    return Case([x, weight, _maybe_bias(draw, out_channels)], {"padding": sides, **common},
                torch_kwargs={"pads": _torch_pads(sides), **common})


@st.composite
def conv_transpose_nd_cases(draw, dims, small=False):
    """stride, padding <= d(k - 1), output_padding < max(stride, dilation), groups, dilation, bias on/off."""
    groups = draw(st.sampled_from([1, 2] if small else [1, 1, 2]))
    channels, out_channels = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 2 if small and dims == 3 else 3)) for _ in range(dims))
    stride = tuple(draw(st.integers(1, 2 if small else 3)) for _ in range(dims))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(dims))
    padding = tuple(draw(st.integers(0, dilation[a] * (kernel[a] - 1))) for a in range(dims))
    output_padding = tuple(draw(st.integers(0, max(stride[a], dilation[a]) - 1)) for a in range(dims))
    # the output (size - 1)*s - 2p + d(k - 1) + output_padding + 1 must be positive
    extra = 1 if small and dims == 3 else 3
    size = tuple(1 + max(0, -(-(2 * padding[a] - dilation[a] * (kernel[a] - 1) - output_padding[a]) // stride[a]))
                 + draw(st.integers(0, extra)) for a in range(dims))
    x = _data(draw, (1 if small else draw(st.integers(1, 2)), channels) + size)
    weight = _data(draw, (channels, out_channels // groups) + kernel) * (0.3 if small else 1.0)
    as_int = len(set(padding)) == 1 and draw(st.booleans())
    return Case([x, weight, _maybe_bias(draw, out_channels)],
                {"stride": stride, "padding": padding[0] if as_int else padding, "output_padding": output_padding,
                 "groups": groups, "dilation": dilation})


def _with_bias(case):
    """The case with a bias (the bias-gradient kernel runs only when there is one)."""
    x, weight, bias = case.inputs
    channels = weight.shape[0] if "output_padding" not in case.kwargs else weight.shape[1] * case.kwargs["groups"]
    return Case([x, weight, np.linspace(-1, 1, channels) if bias is None else bias], case.kwargs, case.torch_kwargs)


def _zeros(*shape, dtype=np.float32):
    return np.zeros(shape, dtype)


CONV1D_ERRORS = [
    ErrorCase([_zeros(2, 3, 4, 10), _zeros(8, 3, 3)], match=r"conv1d: expected a 3-D input \(N, C, L\).*"
              r"\(2, 3, 4, 10\)"),
    ErrorCase([_zeros(1, 4, 10), _zeros(8, 3, 3)], match=r"conv1d: input of shape \(1, 4, 10\) has 4 channels but "
              r"weight of shape \(8, 3, 3\) with groups=1 expects 3"),
    ErrorCase([_zeros(1, 4, 10), _zeros(6, 1, 3)], {"groups": 4},
              match=r"conv1d: out_channels=6 \(weight shape \(6, 1, 3\)\) is not divisible by groups=4"),
    ErrorCase([_zeros(1, 1, 4), _zeros(1, 1, 3)], {"padding": 1, "dilation": 3},
              match=r"conv1d: kernel 3 \(dilation 3, effective size 7\).*length 4 \+ 2 = 6"),
    ErrorCase([_zeros(1, 3, 10), _zeros(8, 3, 3)], {"stride": 2, "strict": True},
              match=r"conv1d: .*length.*\(10 - 3 \+ 0\) / 2 \+ 1 = 4\.5 is not an integer"),
    ErrorCase([_zeros(1, 3, 10), _zeros(8, 3, 3, 3)], match=r"conv1d: weight must be 3-D \(out_channels, "
              r"in_channels/groups, k\), got shape \(8, 3, 3, 3\)"),
    ErrorCase([_zeros(1, 3, 10), _zeros(8, 3, 3)], {"stride": (1, 2)}, error=TypeError,
              match=r"conv1d: stride must be an int or a 1-tuple of ints"),
    ErrorCase([_zeros(1, 3, 0), _zeros(8, 3, 3)], match=r"conv1d: input of shape \(1, 3, 0\) has an empty length"),
]
CONV3D_ERRORS = [
    ErrorCase([_zeros(1, 1, 3, 4, 5, 6), _zeros(8, 3, 3, 3, 3)], match=r"conv3d: expected a 5-D input "
              r"\(N, C, D, H, W\), got shape \(1, 1, 3, 4, 5, 6\)"),
    ErrorCase([_zeros(1, 4, 5, 5, 5), _zeros(8, 3, 3, 3, 3)], match=r"conv3d: input of shape \(1, 4, 5, 5, 5\) has 4 "
              r"channels but weight of shape \(8, 3, 3, 3, 3\) with groups=1 expects 3"),
    ErrorCase([_zeros(1, 4, 5, 5, 5), _zeros(6, 1, 3, 3, 3)], {"groups": 4},
              match=r"conv3d: out_channels=6 .* is not divisible by groups=4"),
    ErrorCase([_zeros(1, 1, 2, 5, 5), _zeros(1, 1, 3, 3, 3)],
              match=r"conv3d: kernel 3 \(dilation 1, effective size 3\) is larger than the padded input depth 2"),
    ErrorCase([_zeros(1, 3, 6, 6, 6), _zeros(8, 3, 3, 3, 3)], {"stride": (1, 1, 2), "strict": True},
              match=r"conv3d: hyper-parameters do not tile the input width"),
    ErrorCase([_zeros(1, 3, 6, 6, 6), _zeros(8, 3, 3, 3)], match=r"conv3d: weight must be 5-D \(out_channels, "
              r"in_channels/groups, kd, kh, kw\)"),
    ErrorCase([_zeros(1, 3, 6, 6, 6), _zeros(8, 3, 3, 3, 3)], {"padding": "full"},
              match=r"conv3d: padding must be .*'valid' or 'same', got 'full'"),
    ErrorCase([_zeros(1, 3, 6, 0, 6), _zeros(8, 3, 3, 3, 3)],
              match=r"conv3d: input of shape \(1, 3, 6, 0, 6\) has an empty depth, height or width"),
]
CONV_TRANSPOSE1D_ERRORS = [
    ErrorCase([_zeros(1, 1, 3, 10), _zeros(3, 8, 3)], match=r"conv_transpose1d: expected a 3-D input"),
    ErrorCase([_zeros(1, 4, 5), _zeros(3, 8, 3)],
              match=r"conv_transpose1d: input of shape \(1, 4, 5\) has 4 channels.*\(3, 8, 3\)"),
    ErrorCase([_zeros(1, 3, 1), _zeros(3, 2, 2)], {"padding": 2},
              match=r"conv_transpose1d: output length would be .* = -2 <= 0 for input \(1, 3, 1\)"),
    ErrorCase([_zeros(1, 3, 4), _zeros(3, 2, 3)], {"stride": 2, "output_padding": 2},
              match=r"output_padding \(2,\) must be >= 0 and smaller than either stride"),
    ErrorCase([_zeros(1, 3, 4), _zeros(3, 2, 3)], {"padding": "same"},
              match=r"string padding is only defined for conv1d"),
    ErrorCase([_zeros(1, 4, 4), _zeros(4, 2, 3)], {"groups": 3}, match=r"in_channels=4 is not divisible by groups=3"),
]
CONV_TRANSPOSE3D_ERRORS = [
    ErrorCase([_zeros(1, 1, 3, 4, 4, 4), _zeros(3, 2, 3, 3, 3)], match=r"conv_transpose3d: expected a 5-D input"),
    ErrorCase([_zeros(1, 4, 3, 3, 3), _zeros(3, 2, 3, 3, 3)],
              match=r"conv_transpose3d: input of shape \(1, 4, 3, 3, 3\) has 4 channels"),
    ErrorCase([_zeros(1, 3, 1, 1, 1), _zeros(3, 2, 2, 2, 2)], {"padding": (0, 2, 0)},
              match=r"conv_transpose3d: output height would be .* <= 0"),
    ErrorCase([_zeros(1, 4, 2, 2, 2), _zeros(4, 2, 3, 3, 3)], {"groups": 3},
              match=r"in_channels=4 is not divisible by groups=3"),
]


def _conv_spec(dims, errors):
    name = f"conv{dims}d"
    small = conv_nd_cases(dims, small=True)
    kernel_ops, kernel_cases = ("channel_sum",), {"channel_sum.gemv": small.map(_with_bias)}
    if dims == 1:
        kernel_ops = ("conv1d", "conv1d_input_grad", "conv1d_backward", "channel_sum")
        kernel_cases["conv1d_backward.as_2d"] = dual_conv1d_cases()
    return OpSpec(name, conv_nd_cases(dims), ours=cnnkit_op(name), theirs=_torch_on_padded(name),
                  gradcheck_cases=small, errors=errors, kernel_ops=kernel_ops, kernel_cases=kernel_cases)


def _conv_transpose_spec(dims, errors):
    name = f"conv_transpose{dims}d"
    small = conv_transpose_nd_cases(dims, small=True)
    kernel_ops = ("conv1d", "conv1d_input_grad", "channel_sum") if dims == 1 else ("channel_sum",)
    return OpSpec(name, conv_transpose_nd_cases(dims), ours=cnnkit_op(name), theirs=torch_op(name),
                  gradcheck_cases=small, errors=errors, kernel_ops=kernel_ops,
                  kernel_cases={"channel_sum.gemv": small.map(_with_bias)})


SPECS = [
    _conv_spec(1, CONV1D_ERRORS),
    _conv_spec(3, CONV3D_ERRORS),
    _conv_transpose_spec(1, CONV_TRANSPOSE1D_ERRORS),
    _conv_transpose_spec(3, CONV_TRANSPOSE3D_ERRORS),
]
