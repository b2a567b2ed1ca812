"""Op-table specs for pooling: random geometries (odd sizes, leftovers, overlap, padding, dilation, ceil_mode)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st
from optable import Case, ErrorCase, OpSpec, cnnkit_op, torch_op


def _first(out):
    return out[0]


def _data(draw, shape, positive=False):
    """Continuous random data (no ties between window elements), reproducible from a drawn seed."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    values = rng.standard_normal(shape)
    return np.abs(values) + 0.2 if positive else values


def _input_shape(draw, minima, max_size, allow_unbatched=True, small=False):
    """(N, C, *spatial) or, sometimes, unbatched (C, *spatial), each spatial size at least its minimum."""
    batch = 1 if small else draw(st.integers(1, 2))
    channels = 1 if small else draw(st.integers(1, 3))
    spatial = tuple(draw(st.integers(max(low, 1), max(low, 1) + max_size)) for low in minima)
    if allow_unbatched and draw(st.integers(0, 5)) == 0:
        return (channels,) + spatial
    return (batch, channels) + spatial


def _axis(draw, max_kernel, with_dilation):
    """(kernel, stride, padding, dilation) for one axis: stride > kernel leaves leftovers, padding <= kernel // 2."""
    kernel = draw(st.integers(1, max_kernel))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, kernel // 2))
    dilation = draw(st.integers(1, 2)) if with_dilation else 1
    return kernel, stride, padding, dilation


@st.composite
def _window_case(draw, op, dims=2, max_size=6, max_kernel=4, small=False):
    """Cases for max/avg/lp pooling over ``dims`` spatial axes (``op`` picks the extra arguments)."""
    axes = [_axis(draw, max_kernel, op == "max") for _ in range(dims)]
    if draw(st.booleans()):  # the classic overlapping 3/2 window, to be sure it is hit often
        axes = [(3, 2, draw(st.integers(0, 1)), 1)] * dims
    kernel, stride, padding, dilation = zip(*axes)
    minima = [dilation[a] * (kernel[a] - 1) + 1 - 2 * padding[a] for a in range(dims)]
    if op == "avg" and dims == 3:  # torch's avg_pool3d wants the unpadded input at least the kernel size
        minima = list(kernel)
    if op == "lp":
        padding = (0,) * dims  # torch 2.13's lp_pool has no padding argument (tested separately)
        minima = [dilation[a] * (kernel[a] - 1) + 1 for a in range(dims)]
    shape = _input_shape(draw, minima, max_size, allow_unbatched=op != "lp", small=small)
    if dims == 1:  # plain ints: torch's lp_pool1d multiplies by kernel_size, so it takes no tuple
        kernel, stride, padding, dilation = kernel[0], stride[0], padding[0], dilation[0]
    kwargs = {"kernel_size": kernel, "stride": None if (stride == kernel and draw(st.booleans())) else stride,
              "ceil_mode": draw(st.booleans())}
    if op == "max":
        kwargs.update(padding=padding, dilation=dilation)
        return Case([_data(draw, shape)], kwargs)
    if op == "avg":
        kwargs.update(padding=padding, count_include_pad=draw(st.booleans()))
        if dims > 1:  # torch's avg_pool1d has no divisor_override
            kwargs["divisor_override"] = draw(st.sampled_from([None, None, 1, 3, 7]))
        return Case([_data(draw, shape)], kwargs)
    norm_type = draw(st.sampled_from([1, 1.5, 2, 3, 4]))
    # torch pools x^p: it equals ours (|x|^p) for even p, or for any p on positive inputs
    positive = norm_type not in (2, 4)
    kwargs["norm_type"] = norm_type
    return Case([_data(draw, shape, positive)], kwargs)


@st.composite
def _unpool_case(draw, dims=2, small=False):
    """Values and indices from torch's max pooling on random data (overlapping windows give repeated indices)."""
    import torch
    import torch.nn.functional as TF

    kernel = draw(st.integers(2, 3))
    # overlapping windows repeat an index: fine for parity (torch's gradient is a gather too), but the
    # repeated value is then written twice, so finite differences would see only the last write
    stride = kernel if small else draw(st.integers(1, kernel))
    padding = draw(st.integers(0, kernel // 2))
    shape = (1, draw(st.integers(1, 2))) if small else (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    limit = (5 if small else 9) if dims < 3 else kernel + 2
    shape += tuple(draw(st.integers(kernel, limit)) for _ in range(dims))
    pool = getattr(TF, f"max_pool{dims}d")
    values, indices = pool(torch.from_numpy(_data(draw, shape)), kernel, stride, padding, return_indices=True)
    kwargs = {"kernel_size": kernel, "stride": stride, "padding": padding}
    default = tuple((values.shape[a] - 1) * stride - 2 * padding + kernel for a in range(2, 2 + dims))
    if default != shape[2:] or draw(st.booleans()):
        kwargs["output_size"] = shape  # needed where pooling dropped rows (floor) or padding shrank the default
    return Case([values.numpy(), indices.numpy()], kwargs)


@st.composite
def _adaptive_case(draw, dims=2, small=False):
    limit = (6 if small else 13) if dims < 3 else (3 if small else 5)
    shape = (1, draw(st.integers(1, 2))) if small else (draw(st.integers(1, 2)), draw(st.integers(1, 3)))
    shape += tuple(draw(st.integers(1, limit)) for _ in range(dims))
    keep = st.none() if dims > 1 else st.nothing()  # torch's 1-D adaptive pools take no None
    sizes = tuple(draw(st.one_of(keep, st.integers(1, length + 2))) for length in shape[2:])
    output_size = draw(st.sampled_from([sizes, sizes[0] or 1, 1]))
    if not small and draw(st.integers(0, 5)) == 0:
        shape = shape[1:]
    return Case([_data(draw, shape)], {"output_size": output_size})


def _windows_touch_input(case):
    """False when a dilated window reads only padding (torch gives -inf there; cnnkit raises, see test_pooling)."""
    if "dilation" not in case.kwargs:
        return True
    kwargs = {key: value if isinstance(value, tuple) else (value,) for key, value in case.kwargs.items()
              if key in ("kernel_size", "stride", "padding", "dilation")}
    dims = len(kwargs["kernel_size"])
    size = case.inputs[0].shape[-dims:]
    stride = kwargs["stride"] if case.kwargs["stride"] is not None else kwargs["kernel_size"]
    for axis in range(dims):
        kernel, step, pad = kwargs["kernel_size"][axis], kwargs["dilation"][axis], kwargs["padding"][axis]
        effective = step * (kernel - 1) + 1
        outputs = -(-(size[axis] + 2 * pad - effective) // stride[axis]) + 1 if case.kwargs["ceil_mode"] else \
            (size[axis] + 2 * pad - effective) // stride[axis] + 1
        for position in range(outputs):
            start = position * stride[axis] - pad
            if not any(0 <= start + i * step < size[axis] for i in range(kernel)):
                return False
    return True


def _with_indices(strategy):
    return strategy.map(lambda case: Case(case.inputs, {**case.kwargs, "return_indices": True}))


# gradcheck runs two forwards per input element: keep those inputs to ~100 elements
_SMALL = {"max_size": 3, "max_kernel": 3, "small": True}
_MAX = _window_case("max").filter(_windows_touch_input)
_MAX_SMALL = _window_case("max", **_SMALL).filter(_windows_touch_input)
# 1-D and 3-D: the same strategies over one and three axes (3-D inputs kept tiny)
_SIZES = {1: ({"max_size": 7}, {"max_size": 4, "max_kernel": 3, "small": True}),
          3: ({"max_size": 2, "max_kernel": 3}, {"max_size": 1, "max_kernel": 2, "small": True})}

# ------------------------------------------------------------------------------------------- error cases
_X = np.zeros((1, 1, 5, 5))
_NO_CHANNELS = np.zeros((2, 0, 4, 4))

_MAX_ERRORS = [
    ErrorCase([np.zeros((5, 5))], {"kernel_size": 2}, ValueError,
              r"max_pool2d: expected a 3-D .* got shape \(5, 5\)"),
    ErrorCase([_X], {"kernel_size": 7}, ValueError,
              r"max_pool2d on input of shape \(1, 1, 5, 5\): kernel 7 .* larger than the padded input height "
              r"5 \+ 0 = 5"),
    ErrorCase([_X], {"kernel_size": 3, "padding": 2}, ValueError,
              r"padding 2 is more than half the kernel size \(3, 3\)"),
    ErrorCase([_X], {"kernel_size": 0}, ValueError, r"max_pool2d: kernel_size must be positive, got 0"),
    ErrorCase([_X], {"kernel_size": 2, "dilation": 0}, ValueError, r"dilation must be positive"),
    ErrorCase([_X], {"kernel_size": 2, "strict": True}, ValueError,
              r"do not tile the input height: .* = \(5 - 2 \+ 0\) / 2 \+ 1 = 2\.5 is not an integer"),
    ErrorCase([np.zeros((1, 1, 1, 1))], {"kernel_size": (1, 2), "stride": 1, "padding": (0, 1), "dilation": (1, 2)},
              ValueError, r"window at output column 0 reads only padding"),
    ErrorCase([np.ones((1, 1, 4, 4), np.int64)], {"kernel_size": 2}, TypeError,
              r"max_pool2d: expected a float32 or float64 input, got int64"),
    ErrorCase([_X], {"kernel_size": 2.5}, TypeError, r"kernel_size must be an int or a pair of ints, got 2.5"),
    ErrorCase([_NO_CHANNELS], {"kernel_size": 2}, ValueError,
              r"max_pool2d: input of shape \(2, 0, 4, 4\) has no channels"),
]
_AVG_ERRORS = [
    ErrorCase([np.zeros((1, 1, 1, 5, 5))], {"kernel_size": 2}, ValueError,
              r"avg_pool2d: .*got shape \(1, 1, 1, 5, 5\)"),
    ErrorCase([_X], {"kernel_size": 8, "padding": 1}, ValueError,
              r"avg_pool2d on input of shape \(1, 1, 5, 5\): kernel 8 .* padded input height 5 \+ 2 = 7"),
    ErrorCase([_X], {"kernel_size": (2, 4), "padding": (1, 3)}, ValueError, r"more than half .* along the width"),
    ErrorCase([_X], {"kernel_size": 2, "stride": -1}, ValueError, r"avg_pool2d: stride must be positive, got -1"),
    ErrorCase([_X], {"kernel_size": 2, "divisor_override": 0}, ValueError,
              r"divisor_override must be a non-zero integer"),
    ErrorCase([_NO_CHANNELS], {"kernel_size": 2}, ValueError,
              r"avg_pool2d: input of shape \(2, 0, 4, 4\) has no channels"),
]
_LP_ERRORS = [
    ErrorCase([_X, 2, 3, 3], {"strict": True}, ValueError, r"lp_pool2d on input of shape \(1, 1, 5, 5\).*tile"),
    *[ErrorCase([np.zeros((1, 1, 4, 4)), p, 2], {}, ValueError, f"norm_type must be positive.*got {p}")
      for p in (0, -1, -math.inf)],
]
# pooling a 5x5 plane by 2 drops row and column 4; index 18 = 3 * 5 + 3 lies outside the default 4x4 output
_VALUES = np.zeros((1, 2, 2, 2))
_INDICES = np.array([0, 2, 10, 18] * 2, np.int64).reshape(1, 2, 2, 2)
_UNPOOL_ERRORS = [
    ErrorCase([_VALUES, _INDICES, 2], {}, ValueError,
              r"indices range over \[\d+, 18\] but the output planes are 4x4 .*output_size"),
    ErrorCase([_VALUES, _INDICES[:, :, :, :1], 2], {}, ValueError,
              r"indices have shape \(1, 2, 2, 1\) but the input has shape \(1, 2, 2, 2\)"),
    ErrorCase([_VALUES, _INDICES, 2], {"output_size": (7, 5)}, ValueError,
              r"output_size \(7, 5\) has height 7.*strictly between 2 and 6"),
    ErrorCase([_VALUES, _INDICES, 2], {"output_size": (5,)}, ValueError, "2 sizes"),
    ErrorCase([_VALUES, _INDICES.astype(np.float32), 2], {}, TypeError, "integer tensor"),
]
_ADAPTIVE_AVG_ERRORS = [
    ErrorCase([_X, 0], {}, ValueError, r"adaptive_avg_pool2d: output_size must be a positive int"),
    ErrorCase([np.zeros((4, 4)), 2], {}, ValueError, r"got shape \(4, 4\)"),
]
_ADAPTIVE_MAX_ERRORS = [
    ErrorCase([_X, (3, -1)], {}, ValueError, r"output_size must be a positive int.*\(3, -1\)"),
    ErrorCase([_NO_CHANNELS, 2], {}, ValueError, r"adaptive_max_pool2d: input of shape \(2, 0, 4, 4\) has no channels"),
]

# 1-D and 3-D: the same checks name their own op, shapes and axes
_L = np.zeros((1, 1, 5))
_V = np.zeros((1, 1, 3, 4, 5))
_N_D_ERRORS = {
    "max_pool1d": [
        ErrorCase([np.zeros(5)], {"kernel_size": 2}, ValueError,
                  r"max_pool1d: expected a 2-D \(C, L\) or 3-D \(N, C, L\) input .*got shape \(5,\)"),
        ErrorCase([_L], {"kernel_size": 6, "padding": 0}, ValueError,
                  r"max_pool1d on input of shape \(1, 1, 5\): kernel 6 .* larger than the padded input length"),
        ErrorCase([_L], {"kernel_size": 3, "padding": 2}, ValueError,
                  r"max_pool1d: padding 2 is more than half the kernel size \(3,\) along the length"),
        ErrorCase([_L], {"kernel_size": 2, "strict": True}, ValueError,
                  r"max_pool1d on .* do not tile the input length: .* = 2\.5 is not an integer"),
        ErrorCase([_L], {"kernel_size": (2, 2)}, TypeError,
                  r"max_pool1d: kernel_size must be an int or a 1-tuple of ints, got \(2, 2\)"),
        ErrorCase([np.zeros((1, 1, 1))], {"kernel_size": 2, "stride": 1, "padding": 1, "dilation": 2}, ValueError,
                  r"window at output position 0 reads only padding"),
    ],
    "max_pool3d": [
        ErrorCase([np.zeros((4, 4))], {"kernel_size": 2}, ValueError,
                  r"max_pool3d: expected a 4-D \(C, D, H, W\) or 5-D \(N, C, D, H, W\) input .*\(4, 4\)"),
        ErrorCase([_V], {"kernel_size": (4, 2, 2)}, ValueError,
                  r"max_pool3d on input of shape \(1, 1, 3, 4, 5\): kernel 4 .* larger than the padded input depth"),
        ErrorCase([_V], {"kernel_size": (3, 2, 2), "padding": (1, 1, 2)}, ValueError,
                  r"more than half the kernel size \(3, 2, 2\) along the width"),
        ErrorCase([_V], {"kernel_size": 2, "strict": True}, ValueError, r"do not tile the input depth"),
        ErrorCase([np.zeros((1, 0, 2, 2, 2))], {"kernel_size": 2}, ValueError, r"max_pool3d: .* has no channels"),
    ],
    "avg_pool1d": [
        ErrorCase([np.zeros((1, 1, 2, 5))], {"kernel_size": 2}, ValueError, r"avg_pool1d: .*got shape \(1, 1, 2, 5\)"),
        ErrorCase([_L], {"kernel_size": 8, "padding": 1}, ValueError, r"kernel 8 .* padded input length 5 \+ 2 = 7"),
        ErrorCase([_L], {"kernel_size": 2, "padding": 2}, ValueError, r"more than half .* along the length"),
    ],
    "avg_pool3d": [
        ErrorCase([_V], {"kernel_size": (2, 2, 6)}, ValueError, r"avg_pool3d on .*kernel 6 .* input width 5"),
        ErrorCase([_V], {"kernel_size": 3, "strict": True}, ValueError,
                  r"avg_pool3d on .*do not tile the input height"),
        ErrorCase([_V], {"kernel_size": 2, "divisor_override": 0}, ValueError, r"divisor_override must be a non-zero"),
    ],
    "lp_pool1d": [ErrorCase([_L, 2, 2], {"strict": True}, ValueError,
                            r"lp_pool1d on input of shape \(1, 1, 5\).*tile"),
                  ErrorCase([_L, 0, 2], {}, ValueError, r"lp_pool1d: norm_type must be positive")],
    "lp_pool3d": [ErrorCase([_V, 2, 4], {}, ValueError,
                            r"lp_pool3d on .*kernel 4 .* larger than the padded input depth"),
                  ErrorCase([np.zeros((2, 3))], {"norm_type": 2, "kernel_size": 2}, ValueError,
                            r"lp_pool3d: expected a 4-D .*got shape \(2, 3\)")],
    "max_unpool1d": [
        ErrorCase([np.zeros((1, 1, 2)), np.array([[[0, 9]]]), 2], {}, ValueError,
                  r"max_unpool1d: indices range over \[0, 9\] but the output planes are 4 .*output_size"),
        ErrorCase([np.zeros((1, 1, 2)), np.array([[[0, 1]]]), 2], {"output_size": (7,)}, ValueError,
                  r"output_size \(7,\) has length 7.*strictly between 2 and 6"),
        ErrorCase([np.zeros((1, 1, 2)), np.array([[[0, 1]]]), 2], {"output_size": (4, 4)}, ValueError,
                  r"max_unpool1d: output_size must hold 1 size \(L\) or 3"),
    ],
    "max_unpool3d": [
        ErrorCase([np.zeros((1, 1, 1, 1, 2)), np.array([0, 1]).reshape(1, 1, 1, 1, 2), 2], {"output_size": (2, 2)},
                  ValueError, r"max_unpool3d: output_size must hold 3 sizes \(D, H, W\) or 5"),
        ErrorCase([np.zeros((1, 1, 1, 1, 2)), np.array([0, 1]).reshape(1, 1, 1, 2), 2], {}, ValueError,
                  r"max_unpool3d: indices have shape \(1, 1, 1, 2\) but the input has shape \(1, 1, 1, 1, 2\)"),
    ],
    "adaptive_avg_pool1d": [ErrorCase([_L, 0], {}, ValueError, r"adaptive_avg_pool1d: output_size must be a positive"),
                            ErrorCase([_L, (2, 2)], {}, ValueError,
                                      r"adaptive_avg_pool1d: output_size must be a positive int or a 1-tuple")],
    "adaptive_avg_pool3d": [ErrorCase([_V, (2, 0, 1)], {}, ValueError, r"adaptive_avg_pool3d: output_size must"),
                            ErrorCase([_L, 2], {}, ValueError, r"adaptive_avg_pool3d: expected a 4-D")],
    "adaptive_max_pool1d": [ErrorCase([np.zeros((5,)), 2], {}, ValueError, r"adaptive_max_pool1d: expected a 2-D")],
    "adaptive_max_pool3d": [ErrorCase([_V, (2, 2)], {}, ValueError, r"adaptive_max_pool3d: output_size must be a "
                                                                    r"positive int or a triple of positive ints")],
}


def _n_d_specs(dims):
    """max/avg/LP pooling, unpooling and the adaptive pools over ``dims`` spatial axes, on every kernel that applies."""
    sizes, small = _SIZES[dims]
    big = {"max_kernel": 3, **sizes} if dims == 3 else sizes
    maximum = _window_case("max", dims, **big).filter(_windows_touch_input)
    maximum_small = _window_case("max", dims, **small).filter(_windows_touch_input)
    adaptive, adaptive_small = _adaptive_case(dims), _adaptive_case(dims, small=True)
    name = f"{{}}{dims}d"
    return [
        OpSpec(name.format("max_pool"), maximum, gradcheck_cases=maximum_small, kernel_ops=("max_pool",),
               errors=_N_D_ERRORS[name.format("max_pool")]),
        OpSpec(name.format("max_pool") + "[return_indices]", _with_indices(maximum),
               ours=cnnkit_op(name.format("max_pool")), theirs=torch_op(name.format("max_pool")), output=_first,
               gradcheck_cases=_with_indices(maximum_small), kernel_ops=("max_pool",)),
        OpSpec(name.format("avg_pool"), _window_case("avg", dims, **big),
               gradcheck_cases=_window_case("avg", dims, **small), kernel_ops=("window_sum",),
               errors=_N_D_ERRORS[name.format("avg_pool")]),
        OpSpec(name.format("lp_pool"), _window_case("lp", dims, **big),
               gradcheck_cases=_window_case("lp", dims, **small),
               kernel_ops=("window_sum",), errors=_N_D_ERRORS[name.format("lp_pool")]),
        OpSpec(name.format("max_unpool"), _unpool_case(dims), gradcheck_cases=_unpool_case(dims, small=True),
               errors=_N_D_ERRORS[name.format("max_unpool")]),
        OpSpec(name.format("adaptive_avg_pool"), adaptive, gradcheck_cases=adaptive_small,
               errors=_N_D_ERRORS[name.format("adaptive_avg_pool")]),
        OpSpec(name.format("adaptive_max_pool"), adaptive, gradcheck_cases=adaptive_small,
               kernel_ops=("adaptive_max_pool", "max_pool"), errors=_N_D_ERRORS[name.format("adaptive_max_pool")]),
        OpSpec(name.format("adaptive_max_pool") + "[return_indices]", _with_indices(adaptive),
               ours=cnnkit_op(name.format("adaptive_max_pool")), theirs=torch_op(name.format("adaptive_max_pool")),
               output=_first, gradcheck_cases=_with_indices(adaptive_small),
               kernel_ops=("adaptive_max_pool", "max_pool")),
    ]


SPECS = [
    OpSpec("max_pool2d", _MAX, gradcheck_cases=_MAX_SMALL, kernel_ops=("max_pool",), errors=_MAX_ERRORS),
    OpSpec("max_pool2d[return_indices]", _with_indices(_MAX), ours=cnnkit_op("max_pool2d"),
           theirs=torch_op("max_pool2d"), output=_first, gradcheck_cases=_with_indices(_MAX_SMALL),
           kernel_ops=("max_pool",)),
    OpSpec("avg_pool2d", _window_case("avg"), gradcheck_cases=_window_case("avg", **_SMALL),
           kernel_ops=("window_sum",), errors=_AVG_ERRORS),
    OpSpec("lp_pool2d", _window_case("lp"), gradcheck_cases=_window_case("lp", **_SMALL),
           kernel_ops=("window_sum",), errors=_LP_ERRORS),
    OpSpec("max_unpool2d", _unpool_case(), gradcheck_cases=_unpool_case(small=True), errors=_UNPOOL_ERRORS),
    OpSpec("adaptive_avg_pool2d", _adaptive_case(), gradcheck_cases=_adaptive_case(small=True),
           errors=_ADAPTIVE_AVG_ERRORS),
    OpSpec("adaptive_max_pool2d", _adaptive_case(), gradcheck_cases=_adaptive_case(small=True),
           kernel_ops=("adaptive_max_pool", "max_pool"), errors=_ADAPTIVE_MAX_ERRORS),
    OpSpec("adaptive_max_pool2d[return_indices]", _with_indices(_adaptive_case()),
           ours=cnnkit_op("adaptive_max_pool2d"), theirs=torch_op("adaptive_max_pool2d"), output=_first,
           gradcheck_cases=_with_indices(_adaptive_case(small=True)), kernel_ops=("adaptive_max_pool", "max_pool")),
    *_n_d_specs(1),
    *_n_d_specs(3),
]
