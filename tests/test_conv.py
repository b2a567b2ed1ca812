"""Conv2d / ConvTranspose2d layers and conv errors: shapes, init, repr, state_dict, chunking, dtypes, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import backend, kernels, nn
from cnnkit.functional import conv as conv_module
from cnnkit.kernels.conv_plan import plan_for

torch = pytest.importorskip("torch")

CONV_CONFIGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=(1, 3), stride=2, padding=(0, 1), bias=False),
    dict(in_channels=4, out_channels=8, kernel_size=3, groups=4, dilation=2, padding=2),
    dict(in_channels=6, out_channels=6, kernel_size=2, padding="same"),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding="valid", padding_mode="reflect"),
    dict(in_channels=2, out_channels=4, kernel_size=3, padding=1, padding_mode="circular", groups=2),
    dict(in_channels=2, out_channels=4, kernel_size=5, padding=2, padding_mode="replicate", stride=(2, 1)),
]
TRANSPOSE_CONFIGS = [
    dict(in_channels=3, out_channels=8, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=4, stride=2, padding=1, output_padding=1, groups=2, bias=False),
    dict(in_channels=2, out_channels=3, kernel_size=(3, 2), stride=(1, 3), dilation=2, output_padding=(1, 2)),
]


def _pair(module_cls, torch_cls, config):
    ours = module_cls(**config)
    theirs = torch_cls(**config).double()
    ours.double()
    ours.load_state_dict({key: value.detach() for key, value in theirs.state_dict().items()})
    return ours, theirs


# ------------------------------------------------------------------------------------------- layer basics
@pytest.mark.parametrize("config", CONV_CONFIGS + [dict(c, bias=False) for c in CONV_CONFIGS[:1]])
def test_conv2d_matches_torch_shapes_keys_and_repr(config):
    ours, theirs = nn.Conv2d(**config), torch.nn.Conv2d(**config)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == tuple(value.shape)
    assert repr(ours) == repr(theirs)


@pytest.mark.parametrize("config", TRANSPOSE_CONFIGS)
def test_conv_transpose2d_matches_torch_shapes_keys_and_repr(config):
    ours, theirs = nn.ConvTranspose2d(**config), torch.nn.ConvTranspose2d(**config)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    for key, value in theirs.state_dict().items():
        assert ours.state_dict()[key].shape == tuple(value.shape)
    assert repr(ours) == repr(theirs)


def test_strict_shows_in_repr():
    assert repr(nn.Conv2d(3, 8, 3, strict=True)) == "Conv2d(3, 8, kernel_size=(3, 3), stride=(1, 1), strict=True)"


@pytest.mark.parametrize("layer, fan_in", [(lambda: nn.Conv2d(16, 64, 3), 16 * 9),
                                           (lambda: nn.Conv2d(16, 64, (1, 5), groups=4), 4 * 5),
                                           (lambda: nn.ConvTranspose2d(64, 16, 3), 16 * 9)])
def test_default_init_is_torchs_uniform(layer, fan_in):
    module = layer()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)): sqrt(6 / ((1 + 5) * fan_in))
    weight, bias = module.weight.data, module.bias.data
    assert weight.dtype == np.float32 and bias.dtype == np.float32
    assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
    # a uniform on (-b, b) has std b / sqrt(3) and fills the whole range
    assert abs(weight.std() - bound / math.sqrt(3)) < 0.1 * bound
    assert np.abs(weight).max() > 0.9 * bound


def test_init_follows_manual_seed():
    cnnkit.manual_seed(3)
    first = nn.Conv2d(3, 4, 3).weight.data.copy()
    cnnkit.manual_seed(3)
    assert np.array_equal(first, nn.Conv2d(3, 4, 3).weight.data)


def _check_layer_matches_torch(ours, theirs, x):
    """Output, input gradient and weight gradient of twin layers on float64 input x agree to 1e-10."""
    ours_x, theirs_x = cnnkit.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    ours_y, theirs_y = ours(ours_x), theirs(theirs_x)
    np.testing.assert_allclose(ours_y.data, theirs_y.detach().numpy(), atol=1e-10)
    upstream = np.random.default_rng(1).standard_normal(ours_y.shape)
    ours_y.backward(upstream)
    theirs_y.backward(torch.tensor(upstream))
    np.testing.assert_allclose(ours_x.grad, theirs_x.grad.numpy(), atol=1e-10)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), atol=1e-10)


@pytest.mark.filterwarnings("ignore:Using padding='same'")  # torch's note about its own even-kernel copy
@pytest.mark.parametrize("config", CONV_CONFIGS)
def test_conv2d_layer_forward_backward_match_torch(config):
    ours, theirs = _pair(nn.Conv2d, torch.nn.Conv2d, config)
    x = np.random.default_rng(0).standard_normal((2, config["in_channels"], 9, 8))
    _check_layer_matches_torch(ours, theirs, x)


@pytest.mark.parametrize("config", TRANSPOSE_CONFIGS)
def test_conv_transpose2d_layer_forward_backward_match_torch(config):
    ours, theirs = _pair(nn.ConvTranspose2d, torch.nn.ConvTranspose2d, config)
    x = np.random.default_rng(0).standard_normal((2, config["in_channels"], 5, 4))
    _check_layer_matches_torch(ours, theirs, x)


def test_conv_transpose2d_output_size_picks_output_padding():
    ours, theirs = _pair(nn.ConvTranspose2d, torch.nn.ConvTranspose2d, dict(in_channels=2, out_channels=3,
                                                                            kernel_size=3, stride=3, padding=1))
    x = np.random.default_rng(0).standard_normal((1, 2, 4, 5))
    for size in [(10, 13), (11, 14), (12, 15)]:
        expected = theirs(torch.tensor(x), output_size=size).detach().numpy()
        np.testing.assert_allclose(ours(cnnkit.tensor(x), output_size=size).data, expected, atol=1e-10)
    with pytest.raises(ValueError, match=r"output_size \(13, 13\).*between \(10, 13\) and \(12, 15\)"):
        ours(cnnkit.tensor(x), output_size=(13, 13))


# ------------------------------------------------------------------------------------ chunking and paths
def _check_output_and_grads(ours, theirs, ours_in, theirs_in, rng):
    """float64 outputs equal, then every input's gradient equal after backward with one random upstream."""
    np.testing.assert_allclose(ours.data, theirs.detach().numpy(), atol=1e-10)
    upstream = rng.standard_normal(ours.shape)
    ours.backward(upstream)
    theirs.backward(torch.tensor(upstream))
    for mine, reference in zip(ours_in, theirs_in):
        np.testing.assert_allclose(mine.grad, reference.grad.numpy(), atol=1e-10)


def _torch_conv2d(tensors, kwargs):
    """torch's conv2d, with per-side padding applied explicitly first."""
    if isinstance(kwargs.get("padding"), tuple):
        (top, bottom), (left, right) = kwargs["padding"]
        padded = torch.nn.functional.pad(tensors[0], (left, right, top, bottom))
        return torch.nn.functional.conv2d(padded, *tensors[1:], **dict(kwargs, padding=0))
    return torch.nn.functional.conv2d(*tensors, **kwargs)


def _applying_kernels(geo):
    """'auto' and the name of every conv kernel that applies to ``geo`` (its plan fixed by the geometry's hints)."""
    names = ["auto"]
    for op in ("conv2d", "conv2d_input_grad", "conv2d_backward"):
        names += [kernel.name for kernel in kernels.registered(op) if kernel.applies(geo)]
    return names


@pytest.mark.parametrize("wide", [True, False])
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("x_shape, kwargs", [
    ((7, 4, 8, 7), dict(weight=(6, 4, 3, 3), padding=1)),                    # generic GEMM
    ((7, 4, 8, 7), dict(weight=(6, 2, 3, 2), padding=((0, 2), (1, 0)), groups=2, dilation=(2, 1))),
    ((7, 4, 8, 7), dict(weight=(6, 4, 3, 3), stride=2, padding=1)),          # col2im input gradient
    ((7, 4, 8, 7), dict(weight=(4, 1, 3, 3), padding=1, groups=4)),          # depthwise, wide rows, dual
    ((7, 4, 8, 7), dict(weight=(8, 1, 3, 3), padding=2, groups=4, dilation=2)),  # depthwise with multiplier 2
    ((7, 4, 8, 7), dict(weight=(4, 1, 3, 3), stride=(2, 1), padding=1, groups=4)),  # depthwise, polyphase
    ((7, 4, 16, 16), dict(weight=(6, 4, 1, 1))),                               # 1x1: pointwise, dual
])
def test_many_chunks_with_a_partial_last_one_match_torch(x_shape, kwargs, chunk, threads, wide):
    """Chunks of 1 or 3 samples (scratch reused, last chunk of 7 shorter), on one thread or shared over two, in wide
    or plain columns, under 'auto' and every kernel that applies: the geometry's chunk_samples / chunk_threads /
    wide_columns fix the chunking and the layout."""
    kwargs = dict(kwargs)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(kwargs.pop("weight"))
    b = rng.standard_normal(w.shape[0])
    geometry = {**dict(stride=1, padding=0, dilation=1, groups=1), **kwargs}
    geo = conv_module.conv_geometry(x.shape, w.shape, **geometry)
    geo.chunk_samples, geo.chunk_threads, geo.wide_columns = chunk, threads, wide
    plan = plan_for(geo)
    assert plan.threads == threads and plan.wide == (wide and geo.stride == (1, 1))
    if threads == 1:
        assert plan.chunk == chunk
    else:  # as many chunks as a multiple of the thread count: 7 samples in 4 chunks of 2, 2, 2, 1
        assert plan.chunk <= chunk and len(list(plan.chunks())) in (2 * (-(-7 // (2 * chunk))), 7)
    paths = _applying_kernels(geo)
    assert len(paths) >= 3  # auto, one conv2d kernel and one input-gradient kernel at least
    for path in paths:
        ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w, b)]
        theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
        with backend.use_kernels(path):
            ours = conv_module.Conv2dFunction.apply(*ours_in, geo=geo)
            _check_output_and_grads(ours, _torch_conv2d(theirs_in, kwargs), ours_in, theirs_in, rng)


def test_lenet_sized_dense_layer_runs_narrow_im2col_and_wide_col2im():
    """LeNet's 6 -> 16 5x5 layer: its im2col GEMMs take plain columns (no garbage to multiply), its col2im wide
    rows (contiguous adds); the two layouts meet in one backward, which must still equal torch's."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((5, 6, 14, 14)), rng.standard_normal((16, 6, 5, 5)), rng.standard_normal(16)
    geo = conv_module.conv_geometry(x.shape, w.shape, stride=1, padding=0, dilation=1, groups=1)
    assert not plan_for(geo).wide and plan_for(geo, col2im=True).wide
    ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    with kernels.record_picks() as picks:
        ours = conv_module.Conv2dFunction.apply(*ours_in, geo=geo)
        _check_output_and_grads(ours, _torch_conv2d(theirs_in, {}), ours_in, theirs_in, rng)
    assert "conv2d_input_grad.col2im" in picks


def test_conv_transpose2d_many_chunks():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 4, 4, 5)), rng.standard_normal((4, 3, 3, 3))
    kwargs = dict(stride=2, padding=1, output_padding=1, groups=1)
    geo = conv_module.conv_transpose_geometry(x.shape, w.shape, dilation=1, **kwargs)
    geo.chunk_samples = 2  # chunks of 2 of the 5 samples
    ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w)] + [None]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w)]
    with kernels.record_picks() as picks:
        ours = conv_module.ConvTranspose2dFunction.apply(*ours_in, geo=geo)
        _check_output_and_grads(ours, torch.nn.functional.conv_transpose2d(*theirs_in, **kwargs), ours_in[:2],
                                theirs_in, rng)
    assert picks == ["conv2d_input_grad.col2im", "conv2d.im2col"]
    assert len(list(plan_for(geo).chunks())) == 3


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
@pytest.mark.parametrize("path", ["auto", "reference"])
def test_empty_batch_gives_what_torch_gives(op, path):
    """N = 0: an empty output of the right shape, an empty input gradient and zero weight and bias gradients."""
    weight_shape = (6, 4, 3, 3) if op == "conv2d" else (4, 3, 3, 3)
    x, w = np.zeros((0, 4, 7, 6), np.float32), np.random.default_rng(0).standard_normal(weight_shape)
    b = np.ones(weight_shape[0] if op == "conv2d" else weight_shape[1], np.float32)
    ours_in = [cnnkit.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b)]
    theirs_in = [torch.tensor(a.astype(np.float32), requires_grad=True) for a in (x, w, b)]
    with backend.use_kernels(path):
        ours = getattr(F, op)(*ours_in, stride=2, padding=1)
        theirs = getattr(torch.nn.functional, op)(*theirs_in, stride=2, padding=1)
        assert ours.shape == tuple(theirs.shape) and ours.shape[0] == 0
        ours.backward(np.zeros(ours.shape, np.float32))
    theirs.backward(torch.zeros(theirs.shape))
    for mine, reference in zip(ours_in, theirs_in):
        assert mine.grad.shape == tuple(reference.grad.shape)
        np.testing.assert_array_equal(mine.grad, reference.grad.numpy())


def test_only_requested_gradients_are_computed():
    """Backward runs only the kernels of the gradients asked for: no input gradient for a frozen input, no weight
    gradient for frozen weights (the picks made during backward say which ran)."""
    x = cnnkit.randn(2, 3, 6, 6)
    layer = nn.Conv2d(3, 4, 3, padding=1)
    out = layer(x).sum()
    with kernels.record_picks() as picks:
        out.backward()
    assert x.grad is None and layer.weight.grad is not None and layer.bias.grad is not None
    assert picks == ["conv2d.im2col", "channel_sum.gemv"]  # dW from im2col(x), db = sum(dY)

    layer.zero_grad()
    layer.requires_grad_(False)
    x.requires_grad_(True)
    out = layer(x).sum()
    with kernels.record_picks() as picks:
        out.backward()
    assert x.grad is not None and layer.weight.grad is None
    assert picks == ["conv2d_input_grad.col2im"]


# -------------------------------------------------------------------------------------------------- dtypes
@pytest.mark.parametrize("transpose", [False, True])
def test_float64_stays_float64_and_float32_stays_float32(transpose):
    for dtype in (np.float32, np.float64):
        layer = nn.ConvTranspose2d(2, 3, 3, stride=2) if transpose else nn.Conv2d(2, 3, 3, padding="same", stride=2)
        layer.to(dtype)
        x = cnnkit.tensor(np.random.default_rng(0).standard_normal((2, 2, 5, 5)).astype(dtype), requires_grad=True)
        y = layer(x)
        y.sum().backward()
        assert y.dtype == dtype and x.grad.dtype == dtype
        assert layer.weight.grad.dtype == dtype and layer.bias.grad.dtype == dtype


# ------------------------------------------------------------------------------------------- layer errors
# (the functional ops' error cases are in the op table: tests/specs_conv.py)
LAYER = r"Conv2d\(3, 8, kernel_size=\(3, 3\)\)"


def test_wrong_rank_names_layer_shape_and_fix():
    with pytest.raises(ValueError, match=LAYER + r".*3-D \(C, H, W\) or 4-D.*\(10, 10\)"):
        nn.Conv2d(3, 8, 3)(cnnkit.zeros(10, 10))
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(3, 8, kernel_size=\(3, 3\)\).*\(1, 1, 3, 10, 10\)"):
        nn.ConvTranspose2d(3, 8, 3)(cnnkit.zeros(1, 1, 3, 10, 10))


def test_channel_mismatch_names_layer_shape_and_fix():
    with pytest.raises(ValueError, match=LAYER + r".*4 channels.*\(2, 4, 10, 10\).*in_channels=3"):
        nn.Conv2d(3, 8, 3)(cnnkit.zeros(2, 4, 10, 10))


@pytest.mark.parametrize("args, message", [
    (dict(in_channels=3, out_channels=8, groups=2), r"in_channels=3 is not divisible by groups=2"),
    (dict(in_channels=4, out_channels=6, groups=4), r"out_channels=6 is not divisible by groups=4"),
    (dict(in_channels=4, out_channels=8, groups=0), r"groups must be a positive integer, got 0"),
])
def test_groups_must_divide_channels(args, message):
    with pytest.raises(ValueError, match=message):
        nn.Conv2d(kernel_size=3, **args)
    with pytest.raises(ValueError, match=message):
        nn.ConvTranspose2d(kernel_size=3, **args)


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(5, 5\)\).*kernel 5.*4 \+ 0 = 4"):
        nn.Conv2d(3, 8, 5)(cnnkit.zeros(1, 3, 4, 4))
    nn.Conv2d(3, 8, 5, padding=1)(cnnkit.zeros(1, 3, 3, 3))  # 3 + 2 = 5 fits exactly


@pytest.mark.parametrize("args, message", [
    (dict(in_channels=0, out_channels=8, kernel_size=3), r"in_channels must be a positive integer, got 0"),
    (dict(in_channels=3, out_channels=-1, kernel_size=3), r"out_channels must be a positive integer, got -1"),
    (dict(in_channels=3, out_channels=8, kernel_size=0), r"kernel_size must be positive, got 0"),
    (dict(in_channels=3, out_channels=8, kernel_size=(3, -2)), r"kernel_size must be positive"),
    (dict(in_channels=3, out_channels=8, kernel_size=3, stride=0), r"stride must be positive, got 0"),
    (dict(in_channels=3, out_channels=8, kernel_size=3, dilation=-1), r"dilation must be positive"),
    (dict(in_channels=3, out_channels=8, kernel_size=3, padding=-1), r"padding must be non-negative"),
    (dict(in_channels=3, out_channels=8, kernel_size=3, padding="full"), r"'valid' or 'same', got 'full'"),
    (dict(in_channels=3, out_channels=8, kernel_size=3, padding_mode="mirror"), r"padding_mode must be one of"),
])
def test_bad_constructor_arguments(args, message):
    with pytest.raises(ValueError, match=r"Conv2d\(.*\): .*" + message):
        nn.Conv2d(**args)


def test_bad_transpose_arguments():
    with pytest.raises(ValueError, match=r"output_padding \(2, 2\) must be >= 0 and smaller than either stride"):
        nn.ConvTranspose2d(3, 8, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"string padding is only defined for Conv2d"):
        nn.ConvTranspose2d(3, 8, 3, padding="same")


def test_strict_rejects_non_tiling_geometry_with_the_formula():
    x = cnnkit.zeros(1, 3, 10, 10)
    with pytest.raises(ValueError, match=LAYER + r".*\(10 - 3 \+ 0\) / 2 \+ 1 = 4\.5 is not an integer"):
        nn.Conv2d(3, 8, 3, stride=2, strict=True)(x)
    assert nn.Conv2d(3, 8, 3, stride=2)(x).shape == (1, 8, 4, 4)  # floors like torch without strict
    assert nn.Conv2d(3, 8, 3, stride=2, strict=True)(cnnkit.zeros(1, 3, 11, 11)).shape == (1, 8, 5, 5)


def test_reflect_padding_must_be_smaller_than_input():
    layer = nn.Conv2d(1, 1, 3, padding=3, padding_mode="reflect")
    with pytest.raises(ValueError, match=r"reflect padding \(3, 3\) must be smaller than the input height 3"):
        layer(cnnkit.zeros(1, 1, 3, 8))


@pytest.mark.parametrize("make", [
    lambda lib: lib.Conv2d(3, 4, 3, stride=2, padding=1, bias=True),
    lambda lib: lib.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
    lambda lib: lib.ConvTranspose2d(3, 4, 3, stride=2, output_padding=1),
])
def test_unbatched_chw_input_matches_torch(make):
    """A (C, H, W) input runs as a batch of one and comes back (K, H_out, W_out), as torch.nn does."""
    ours, theirs = make(nn), make(torch.nn)
    theirs.load_state_dict({key: torch.tensor(value) for key, value in ours.state_dict().items()})
    data = np.random.default_rng(1).standard_normal((3, 9, 7)).astype(np.float32)
    x, y = cnnkit.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    out, expected = ours(x), theirs(y)
    assert out.shape == tuple(expected.shape)
    np.testing.assert_allclose(out.data, expected.detach().numpy(), rtol=1e-5, atol=1e-5)
    out.sum().backward()
    expected.sum().backward()
    np.testing.assert_allclose(x.grad, y.grad.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.weight.grad, theirs.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
