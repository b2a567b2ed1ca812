"""Conv2d / ConvTranspose2d layers and conv errors: shapes, init, repr, state_dict, chunking, dtypes, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import backend, nn
from cnnkit.functional import conv as conv_module
from cnnkit.functional import im2col as im2col_module
from cnnkit.kernels import threads as kthreads

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


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("kwargs", [
    dict(weight=(6, 4, 3, 3), padding=1),                      # generic GEMM, stride-1 dual input gradient
    dict(weight=(6, 2, 3, 2), padding=((0, 2), (1, 0)), groups=2, dilation=(2, 1)),
    dict(weight=(6, 4, 3, 3), stride=2, padding=1),            # col2im input gradient
    dict(weight=(4, 1, 3, 3), padding=1, groups=4),            # depthwise, wide rows
    dict(weight=(8, 1, 3, 3), padding=2, groups=4, dilation=2),  # depthwise with multiplier 2
    dict(weight=(4, 1, 3, 3), stride=(2, 1), padding=1, groups=4),  # depthwise, strided views
    dict(weight=(6, 4, 1, 1)),                                  # 1x1
])
def test_many_chunks_with_a_partial_last_one_match_torch(monkeypatch, kwargs, chunk, threads):
    """A small CHUNK_COLUMNS forces chunks of 1 or 3 samples (scratch reused, last chunk of 7 shorter); on two
    threads the chunks are shared out (BLAS pinned to one thread or not: only the speed differs)."""
    monkeypatch.setattr(backend, "_num_threads", threads)
    monkeypatch.setattr(kthreads, "BLAS_PINNED", True)
    monkeypatch.setattr(im2col_module, "MIN_SPLIT_MACS", 0)  # share out even these tiny convs
    kwargs = dict(kwargs)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((7, 4, 8, 7)), rng.standard_normal(kwargs.pop("weight"))
    b = rng.standard_normal(w.shape[0])
    geometry = {**dict(stride=1, padding=0, dilation=1, groups=1), **kwargs}
    pixels = conv_module.conv_geometry(x.shape, w.shape, **geometry).pixels
    monkeypatch.setattr(im2col_module, "CHUNK_COLUMNS", chunk * pixels)
    # depthwise chunks are sized by all channels' columns: C * kh * kw rows per column
    monkeypatch.setattr(im2col_module, "DEPTHWISE_CHUNK_ELEMENTS", chunk * pixels * x.shape[1] * w[0].size)
    monkeypatch.setattr(im2col_module, "CHUNK_ELEMENTS", 0)  # no growth for few-row GEMMs: CHUNK_COLUMNS decides
    monkeypatch.setattr(im2col_module, "POINTWISE_MIN_PIXELS", 0)  # keep the 1x1 shortcut on these small images
    geo = conv_module.conv_geometry(x.shape, w.shape, **geometry)
    if threads == 1:
        assert geo.chunk == chunk
    else:  # as many chunks as a multiple of the thread count: 7 samples in 4 chunks of 2, 2, 2, 1
        assert geo.chunk <= chunk and len(list(geo.chunks())) in (2 * (-(-7 // (2 * chunk))), 7)
    ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    if isinstance(kwargs.get("padding"), tuple):  # per-side: torch needs the input padded explicitly
        (top, bottom), (left, right) = kwargs["padding"]
        padded = torch.nn.functional.pad(theirs_in[0], (left, right, top, bottom))
        theirs = torch.nn.functional.conv2d(padded, *theirs_in[1:], **dict(kwargs, padding=0))
    else:
        theirs = torch.nn.functional.conv2d(*theirs_in, **kwargs)
    ours = F.conv2d(*ours_in, **kwargs)
    _check_output_and_grads(ours, theirs, ours_in, theirs_in, rng)


@pytest.mark.parametrize("use_dual", [True, False])
@pytest.mark.parametrize("op, x_shape, w_shape, kwargs", [
    ("conv2d", (2, 4, 7, 6), (6, 4, 3, 3), dict(padding=1)),
    ("conv2d", (2, 4, 7, 6), (6, 2, 4, 2), dict(padding=((1, 2), (0, 1)), groups=2, dilation=(1, 2))),
    ("conv2d", (2, 4, 7, 6), (4, 1, 3, 3), dict(padding=2, dilation=2, groups=4)),
    ("conv2d", (2, 4, 7, 6), (8, 1, 3, 2), dict(padding=1, groups=4)),
    ("conv2d", (2, 4, 7, 6), (6, 4, 3, 3), dict(padding=3)),  # padding beyond the kernel's reach: no dual
    ("conv2d", (2, 4, 7, 6), (6, 2, 1, 1), dict(groups=2)),   # 1x1: the dual is 1x1 too, no im2col
    ("conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 2), dict(padding=1, dilation=2, output_padding=1)),
    ("conv_transpose2d", (2, 4, 5, 4), (4, 1, 3, 3), dict(padding=1, groups=4)),
])
def test_stride_one_input_gradient_paths_match_torch(monkeypatch, use_dual, op, x_shape, w_shape, kwargs):
    """The dual correlation and col2im compute the same adjoint; force each (both are picked by size)."""
    monkeypatch.setattr(conv_module, "_dual_is_faster", lambda geo: use_dual)
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w)]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w)]
    torch_kwargs = dict(kwargs)
    if isinstance(kwargs.get("padding"), tuple):
        (top, bottom), (left, right) = kwargs["padding"]
        theirs_in_x = torch.nn.functional.pad(theirs_in[0], (left, right, top, bottom))
        torch_kwargs["padding"] = 0
    else:
        theirs_in_x = theirs_in[0]
    ours = getattr(F, op)(*ours_in, **kwargs)
    theirs = getattr(torch.nn.functional, op)(theirs_in_x, theirs_in[1], **torch_kwargs)
    _check_output_and_grads(ours, theirs, ours_in, theirs_in, rng)


@pytest.mark.parametrize("polyphase", [True, False])
@pytest.mark.parametrize("op, x_shape, w_shape, kwargs", [
    ("conv2d", (4, 6, 9, 8), (6, 1, 3, 3), dict(stride=2, padding=1, groups=6)),     # MobileNet's stride-2 layer
    ("conv2d", (4, 6, 9, 7), (12, 1, 3, 2), dict(stride=(3, 2), padding=(1, 0), groups=6)),  # multiplier 2
    ("conv2d", (2, 4, 9, 8), (6, 2, 3, 3), dict(stride=3, padding=1, groups=2)),     # rows no window reads
    ("conv2d", (2, 4, 8, 8), (6, 4, 1, 1), dict(stride=2)),                          # phases without a tap
    ("conv2d", (2, 4, 7, 9), (6, 4, 5, 4), dict(stride=2, padding=2)),               # pads cropping dy
    ("conv_transpose2d", (2, 4, 5, 4), (4, 3, 3, 3), dict(stride=2, padding=1, output_padding=1)),
    ("conv_transpose2d", (4, 4, 4, 4), (4, 1, 4, 4), dict(stride=2, padding=1, groups=4)),
])
def test_strided_input_gradient_paths_match_torch(monkeypatch, polyphase, op, x_shape, w_shape, kwargs):
    """One stride-1 correlation per phase of dx, or col2im: force each (depthwise layers take the first)."""
    monkeypatch.setattr(conv_module, "_polyphase_applies", lambda geo: polyphase and geo.dilation == (1, 1))
    monkeypatch.setattr(im2col_module, "POINTWISE_MIN_PIXELS", 0)  # a 1x1 phase writes a strided slice of dx
    rng = np.random.default_rng(1)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    bias_channels = w_shape[1] * kwargs.get("groups", 1) if op == "conv_transpose2d" else w_shape[0]
    b = rng.standard_normal(bias_channels)
    ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w, b)]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w, b)]
    ours = getattr(F, op)(*ours_in, **kwargs)
    theirs = getattr(torch.nn.functional, op)(*theirs_in, **kwargs)
    _check_output_and_grads(ours, theirs, ours_in, theirs_in, rng)


def test_conv_transpose2d_many_chunks(monkeypatch):
    monkeypatch.setattr(im2col_module, "CHUNK_COLUMNS", 2 * 4 * 5)  # chunks of 2 of the 5 samples
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((5, 4, 4, 5)), rng.standard_normal((4, 3, 3, 3))
    kwargs = dict(stride=2, padding=1, output_padding=1, groups=1)
    ours_in = [cnnkit.tensor(a, requires_grad=True) for a in (x, w)]
    theirs_in = [torch.tensor(a, requires_grad=True) for a in (x, w)]
    ours, theirs = F.conv_transpose2d(*ours_in, **kwargs), torch.nn.functional.conv_transpose2d(*theirs_in, **kwargs)
    _check_output_and_grads(ours, theirs, ours_in, theirs_in, rng)


def test_only_requested_gradients_are_computed(monkeypatch):
    """With a frozen input, backward must not run the input-gradient kernel (and vice versa for W)."""
    x = cnnkit.randn(2, 3, 6, 6)
    layer = nn.Conv2d(3, 4, 3, padding=1)

    def forbidden(*args, **kwargs):
        raise AssertionError("input gradient computed although not requested")

    monkeypatch.setattr(conv_module, "correlate_transpose", forbidden)
    layer(x).sum().backward()
    assert x.grad is None and layer.weight.grad is not None and layer.bias.grad is not None
    monkeypatch.undo()

    layer.zero_grad()
    layer.requires_grad_(False)
    x.requires_grad_(True)
    original = conv_module.correlate

    def forward_only(*args, **kwargs):
        assert kwargs.get("upstream") is None, "weight gradient computed although not requested"
        return original(*args, **kwargs)

    monkeypatch.setattr(conv_module, "correlate", forward_only)
    layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is None


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


def test_mixed_dtypes_are_a_clear_type_error():
    with pytest.raises(TypeError, match=r"conv2d: input \(float64\), weight \(float32\).*\.to\(dtype\)"):
        F.conv2d(cnnkit.tensor(np.zeros((1, 1, 3, 3))), cnnkit.zeros(1, 1, 2, 2))


# -------------------------------------------------------------------------------------------------- errors
LAYER = r"Conv2d\(3, 8, kernel_size=\(3, 3\)\)"


def test_wrong_rank_names_layer_shape_and_fix():
    with pytest.raises(ValueError, match=LAYER + r".*3-D \(C, H, W\) or 4-D.*\(10, 10\)"):
        nn.Conv2d(3, 8, 3)(cnnkit.zeros(10, 10))
    with pytest.raises(ValueError, match=r"conv2d: expected a 4-D input.*\(2, 1, 3, 10, 10\).*unsqueeze\(0\)"):
        F.conv2d(cnnkit.zeros(2, 1, 3, 10, 10), cnnkit.zeros(8, 3, 3, 3))
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(3, 8, kernel_size=\(3, 3\)\).*\(1, 1, 3, 10, 10\)"):
        nn.ConvTranspose2d(3, 8, 3)(cnnkit.zeros(1, 1, 3, 10, 10))


def test_channel_mismatch_names_layer_shape_and_fix():
    with pytest.raises(ValueError, match=LAYER + r".*4 channels.*\(2, 4, 10, 10\).*in_channels=3"):
        nn.Conv2d(3, 8, 3)(cnnkit.zeros(2, 4, 10, 10))
    with pytest.raises(ValueError, match=r"conv2d: input of shape \(1, 4, 5, 5\) has 4 channels but weight of shape "
                                         r"\(8, 3, 3, 3\) with groups=1 expects 3"):
        F.conv2d(cnnkit.zeros(1, 4, 5, 5), cnnkit.zeros(8, 3, 3, 3))
    with pytest.raises(ValueError, match=r"conv_transpose2d: input of shape \(1, 4, 5, 5\) has 4 channels"
                                         r".*\(3, 8, 3, 3\)"):
        F.conv_transpose2d(cnnkit.zeros(1, 4, 5, 5), cnnkit.zeros(3, 8, 3, 3))


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


def test_functional_groups_errors_name_shapes():
    with pytest.raises(ValueError, match=r"out_channels=6 \(weight shape \(6, 1, 3, 3\)\) is not divisible by "
                                         r"groups=4"):
        F.conv2d(cnnkit.zeros(1, 4, 5, 5), cnnkit.zeros(6, 1, 3, 3), groups=4)


def test_kernel_larger_than_padded_input():
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(5, 5\)\).*kernel 5.*4 \+ 0 = 4"):
        nn.Conv2d(3, 8, 5)(cnnkit.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"conv2d: kernel 3 \(dilation 3, effective size 7\).*width 4 \+ 2 = 6"):
        F.conv2d(cnnkit.zeros(1, 1, 9, 4), cnnkit.zeros(1, 1, 3, 3), padding=1, dilation=3)
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
    with pytest.raises(ValueError, match=r"output height would be .* = \(1 - 1\) \* 1 - 4 \+ 1 \* \(2 - 1\) \+ 0 \+ 1 "
                                         r"= -2 <= 0 for input \(1, 3, 1, 1\)"):
        F.conv_transpose2d(cnnkit.zeros(1, 3, 1, 1), cnnkit.zeros(3, 2, 2, 2), padding=2)


def test_strict_rejects_non_tiling_geometry_with_the_formula():
    x = cnnkit.zeros(1, 3, 10, 10)
    with pytest.raises(ValueError, match=LAYER + r".*\(10 - 3 \+ 0\) / 2 \+ 1 = 4\.5 is not an integer"):
        nn.Conv2d(3, 8, 3, stride=2, strict=True)(x)
    with pytest.raises(ValueError, match=r"conv2d: .*\(10 - 3 \+ 0\) / 2 \+ 1 = 4\.5"):
        F.conv2d(x, cnnkit.zeros(8, 3, 3, 3), stride=2, strict=True)
    assert nn.Conv2d(3, 8, 3, stride=2)(x).shape == (1, 8, 4, 4)  # floors like torch without strict
    assert nn.Conv2d(3, 8, 3, stride=2, strict=True)(cnnkit.zeros(1, 3, 11, 11)).shape == (1, 8, 5, 5)


def test_bias_and_weight_shape_errors():
    with pytest.raises(ValueError, match=r"conv2d: bias must have shape \(8,\).*got \(3,\)"):
        F.conv2d(cnnkit.zeros(1, 3, 5, 5), cnnkit.zeros(8, 3, 3, 3), cnnkit.zeros(3))
    with pytest.raises(ValueError, match=r"conv2d: weight must be 4-D .* got shape \(8, 3, 3\)"):
        F.conv2d(cnnkit.zeros(1, 3, 5, 5), cnnkit.zeros(8, 3, 3))


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
