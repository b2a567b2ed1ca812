"""Pooling beyond the op table: switch routing, -inf padding, indices, unpooling, lp_pool edge cases, errors, layers."""
import math

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import cnnkit.nn as nn

torch = pytest.importorskip("torch")
TF = torch.nn.functional


@pytest.fixture(params=["auto", "reference"])
def kernels_mode(request):
    """Run the test on the fast kernels ('auto') and on the reference ops."""
    from cnnkit import backend

    with backend.use_kernels(request.param):
        yield request.param


def _random(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _reference_switches(x, kernel, stride, padding, dilation=1):
    """Brute-force argmax of every window as a flat H*W index (loops: small inputs only)."""
    n, c, height, width = x.shape
    out_h = (height + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    out_w = (width + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    switches = np.zeros((n, c, out_h, out_w), np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    taps = [(i * stride - padding + a * dilation, j * stride - padding + e * dilation)
                            for a in range(kernel) for e in range(kernel)]
                    taps = [(r, q) for r, q in taps if 0 <= r < height and 0 <= q < width]
                    r, q = max(taps, key=lambda tap: x[b, ch, tap[0], tap[1]])
                    switches[b, ch, i, j] = r * width + q
    return switches


# ------------------------------------------------------------------------------------------- switches and routing
@pytest.mark.parametrize("kernel, stride, padding, dilation", [(2, 2, 0, 1), (3, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 2),
                                                               (2, 3, 1, 1)])
def test_max_pool_gradient_lands_exactly_on_the_switches(kernel, stride, padding, dilation, kernels_mode):
    x = _random((2, 3, 9, 8))
    upstream = _random((2, 3) + F.max_pool2d(cnnkit.tensor(x), kernel, stride, padding, dilation).shape[2:], seed=1)
    inp = cnnkit.tensor(x, requires_grad=True)
    out, indices = F.max_pool2d(inp, kernel, stride, padding, dilation, return_indices=True)
    out.backward(upstream)
    switches = _reference_switches(x, kernel, stride, padding, dilation)
    np.testing.assert_array_equal(indices.numpy(), switches)
    expected = np.zeros((2 * 3, 9 * 8), np.float64)
    for plane in range(6):  # overlapping windows that share a winner add their gradients
        np.add.at(expected[plane], switches.reshape(6, -1)[plane], upstream.reshape(6, -1)[plane])
    np.testing.assert_allclose(inp.grad, expected.reshape(x.shape), rtol=1e-6, atol=1e-6)
    assert np.count_nonzero(inp.grad) == len(np.unique(switches.reshape(6, -1) + np.arange(6)[:, None] * 72))


def test_overlapping_windows_accumulate_on_a_shared_maximum(kernels_mode):
    x = _random((1, 1, 5, 5)) * 0.1
    x[0, 0, 2, 2] = 10.0  # the centre wins all four overlapping 3x3/2 windows
    inp = cnnkit.tensor(x, requires_grad=True)
    upstream = np.array([[[[1.0, 2.0], [3.0, 4.0]]]], np.float32)
    F.max_pool2d(inp, 3, 2).backward(upstream)
    assert inp.grad[0, 0, 2, 2] == pytest.approx(10.0)
    assert np.count_nonzero(inp.grad) == 1


@pytest.mark.parametrize("kwargs", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
                                    dict(kernel_size=(2, 3), stride=(1, 2), padding=(1, 1), dilation=(2, 1)),
                                    dict(kernel_size=4, stride=3, padding=2, ceil_mode=True)])
def test_max_pool_indices_equal_torch_with_and_without_grad(kwargs, kernels_mode):
    x = _random((2, 3, 11, 10))
    expected_out, expected_indices = TF.max_pool2d(torch.from_numpy(x), return_indices=True, **kwargs)
    for requires_grad in (False, True):
        out, indices = F.max_pool2d(cnnkit.tensor(x, requires_grad=requires_grad), return_indices=True, **kwargs)
        np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
        assert indices.dtype == np.int64
        np.testing.assert_array_equal(out.numpy(), expected_out.numpy())
    with cnnkit.no_grad():  # the forward-only path (no switches recorded) gives the same values
        np.testing.assert_array_equal(F.max_pool2d(cnnkit.tensor(x), **kwargs).numpy(), expected_out.numpy())


@pytest.mark.parametrize("output_size", [3, (4, 5), (None, 3), (7, 2), 1])
def test_adaptive_max_pool_indices_equal_torch(output_size, kernels_mode):
    x = _random((2, 3, 10, 7))
    expected_out, expected_indices = TF.adaptive_max_pool2d(torch.from_numpy(x), output_size, return_indices=True)
    out, indices = F.adaptive_max_pool2d(cnnkit.tensor(x, requires_grad=True), output_size, return_indices=True)
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
    np.testing.assert_array_equal(out.numpy(), expected_out.numpy())


def test_max_pool_nan_and_all_minus_inf_windows_follow_torch(kernels_mode):
    x = _random((1, 2, 6, 6))
    x[0, 0, 1, 1] = x[0, 0, 2, 2] = np.nan
    x[0, 1] = -np.inf  # every window ties with the -inf padding: torch keeps the first real pixel
    for kwargs in (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True), dict(kernel_size=2)):
        expected_out, expected_indices = TF.max_pool2d(torch.from_numpy(x), return_indices=True, **kwargs)
        out, indices = F.max_pool2d(cnnkit.tensor(x, requires_grad=True), return_indices=True, **kwargs)
        np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
        np.testing.assert_array_equal(out.numpy(), expected_out.numpy())


def test_max_pool_pads_with_minus_infinity_not_zero(kernels_mode):
    x = -np.abs(_random((2, 3, 7, 7))) - 1.0
    out = F.max_pool2d(cnnkit.tensor(x), 3, stride=2, padding=1, ceil_mode=True).numpy()
    assert (out <= -1.0).all()
    np.testing.assert_array_equal(out, TF.max_pool2d(torch.from_numpy(x), 3, 2, 1, ceil_mode=True).numpy())


def test_max_pool_accepts_unbatched_input_and_keeps_float64():
    x = _random((3, 7, 6)).astype(np.float64)
    out, indices = F.max_pool2d(cnnkit.tensor(x), 3, 2, 1, return_indices=True)
    expected_out, expected_indices = TF.max_pool2d(torch.from_numpy(x), 3, 2, 1, return_indices=True)
    assert out.dtype == np.float64 and out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out.numpy(), expected_out.numpy())
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())


@pytest.mark.parametrize("padding, torch_pad", [(((1, 0), (0, 1)), (0, 1, 1, 0)), ("same", (0, 1, 1, 1))])
def test_per_side_and_same_padding_equal_pooling_an_explicitly_padded_input(padding, torch_pad):
    x = _random((2, 3, 9, 8))  # 'same' with kernel 3, stride 2: output 5x4, pads (1, 1) rows and (0, 1) columns
    padded_max = TF.pad(torch.from_numpy(x), torch_pad, value=-math.inf)
    ours_max = F.max_pool2d(cnnkit.tensor(x), 3, 2, padding)
    np.testing.assert_array_equal(ours_max.numpy(), TF.max_pool2d(padded_max, 3, 2).numpy())
    ours_avg = F.avg_pool2d(cnnkit.tensor(x), 3, 2, padding)
    np.testing.assert_allclose(ours_avg.numpy(), TF.avg_pool2d(TF.pad(torch.from_numpy(x), torch_pad), 3, 2).numpy(),
                               rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------------------------------- unpooling
@pytest.mark.parametrize("kernel, stride, padding, size", [(2, 2, 0, (8, 6)), (2, 2, 0, (9, 7)), (3, 2, 1, (9, 8)),
                                                          (3, 3, 1, (10, 10))])
def test_max_unpool_round_trip_matches_torch(kernel, stride, padding, size, kernels_mode):
    x = _random((2, 3) + size)
    values, indices = F.max_pool2d(cnnkit.tensor(x), kernel, stride, padding, return_indices=True)
    their_values, their_indices = TF.max_pool2d(torch.from_numpy(x), kernel, stride, padding, return_indices=True)
    inp = cnnkit.tensor(values.numpy().copy(), requires_grad=True)
    theirs_in = their_values.clone().requires_grad_()
    ours = F.max_unpool2d(inp, indices, kernel, stride, padding, output_size=x.shape)
    theirs = TF.max_unpool2d(theirs_in, their_indices, kernel, stride, padding, output_size=x.shape)
    np.testing.assert_array_equal(ours.numpy(), theirs.detach().numpy())
    kept = ours.numpy() != 0  # every kept pixel is the input's own value at its argmax
    np.testing.assert_array_equal(ours.numpy()[kept], x[kept])
    upstream = _random(x.shape, seed=3)
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))
    np.testing.assert_allclose(inp.grad, theirs_in.grad.numpy())
    layer = nn.MaxUnpool2d(kernel, stride, padding)
    np.testing.assert_array_equal(layer(values, indices, output_size=x.shape).numpy(), theirs.detach().numpy())


# ------------------------------------------------------------------------------------------- lp_pool2d
def _lp_reference(x, p, kernel, stride, padding, ceil_mode):
    """torch's lp_pool2d formula, avg_pool2d(|x|^p) * kernel area, extended to padding, in torch autograd."""
    area = kernel * kernel
    return TF.avg_pool2d(x.abs() ** p, kernel, stride, padding, ceil_mode) * area


@pytest.mark.parametrize("p, kernel, stride, padding, ceil_mode", [(1.5, 3, 2, 1, False), (3, 2, 2, 1, True),
                                                                   (0.5, 3, 2, 0, True), (2.5, 2, 1, 0, False)])
def test_lp_pool_negative_inputs_non_integer_p_finite_and_correct(p, kernel, stride, padding, ceil_mode):
    x = _random((2, 3, 9, 8)).astype(np.float64)
    inp = cnnkit.tensor(x, requires_grad=True)
    out = F.lp_pool2d(inp, p, kernel, stride, ceil_mode, padding)
    theirs_in = torch.from_numpy(x).requires_grad_()
    theirs = _lp_reference(theirs_in, p, kernel, stride, padding, ceil_mode) ** (1 / p)
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_allclose(out.numpy(), theirs.detach().numpy(), rtol=1e-10)
    upstream = _random(out.shape, seed=2).astype(np.float64)
    out.backward(upstream)
    theirs.backward(torch.from_numpy(upstream))
    assert np.isfinite(inp.grad).all()
    np.testing.assert_allclose(inp.grad, theirs_in.grad.numpy(), rtol=1e-8, atol=1e-12)


def test_lp_pool_gradient_is_zero_where_a_window_sums_to_zero(kernels_mode):
    x = _random((1, 1, 4, 4))
    x[0, 0, :2, :2] = 0.0
    inp = cnnkit.tensor(x, requires_grad=True)
    out = F.lp_pool2d(inp, 2, 2)
    out.backward(np.ones(out.shape, np.float32))
    assert out.numpy()[0, 0, 0, 0] == 0.0
    assert np.isfinite(inp.grad).all()
    np.testing.assert_array_equal(inp.grad[0, 0, :2, :2], 0.0)
    theirs = torch.from_numpy(x).requires_grad_()  # torch's own gradient there is NaN
    TF.lp_pool2d(theirs, 2, 2).sum().backward()
    np.testing.assert_allclose(inp.grad[0, 0, 2:, 2:], theirs.grad.numpy()[0, 0, 2:, 2:], rtol=1e-6)


def test_lp_pool_infinite_norm_is_max_of_magnitudes():
    x = _random((2, 3, 7, 7))
    expected = TF.lp_pool2d(torch.from_numpy(x), math.inf, 3, 2).numpy()
    np.testing.assert_array_equal(F.lp_pool2d(cnnkit.tensor(x), math.inf, 3, 2).numpy(), expected)


@pytest.mark.parametrize("norm_type", [0, -1, -math.inf])
def test_lp_pool_layer_rejects_non_positive_norm_type(norm_type):
    with pytest.raises(ValueError, match="LPPool2d: norm_type must be a positive number"):
        nn.LPPool2d(norm_type, 2)


# ------------------------------------------------------------------------------------------- avg_pool2d ceil_mode
def test_avg_pool_ceil_mode_divisor_counts_padding_but_not_the_overhang(kernels_mode):
    ones = np.ones((1, 1, 5, 5), np.float32)
    for padding, count_include_pad in ((1, True), (1, False), (0, True)):
        ours = F.avg_pool2d(cnnkit.tensor(ones), 2, 2, padding, ceil_mode=True, count_include_pad=count_include_pad)
        theirs = TF.avg_pool2d(torch.from_numpy(ones), 2, 2, padding, ceil_mode=True,
                               count_include_pad=count_include_pad)
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    # 5x5 of ones, window 2, stride 2, pad 1: the last window covers the last row and one row of padding
    # (divisor 2 * 2) while the corner window covers one pixel and three padding cells (divisor 4 too)
    ours = F.avg_pool2d(cnnkit.tensor(ones), 2, 2, 1, ceil_mode=True).numpy()
    assert ours[0, 0, 0, 0] == pytest.approx(0.25) and ours[0, 0, 2, 2] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------- bad input
# the functional ops' error cases are in the op table (tests/specs_pool.py, ``errors``)
_X = cnnkit.randn(1, 1, 5, 5)


def test_layer_errors_name_the_layer():
    with pytest.raises(ValueError, match=r"^MaxPool2d\(kernel_size=3, stride=3, .*strict=True\) on input of shape "
                                         r"\(1, 1, 5, 5\): hyper-parameters do not tile the input height"):
        nn.MaxPool2d(3, strict=True)(_X)
    with pytest.raises(ValueError, match=r"^AvgPool2d\(kernel_size=6, .* on input of shape \(1, 1, 5, 5\): kernel 6"):
        nn.AvgPool2d(6)(_X)
    with pytest.raises(ValueError, match="MaxPool2d: kernel_size must be positive"):
        nn.MaxPool2d(0)
    with pytest.raises(ValueError, match="AdaptiveAvgPool2d: output_size must be a positive int"):
        nn.AdaptiveAvgPool2d((0, 2))


# ------------------------------------------------------------------------------------------- layers
@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(2), lambda m: m.MaxPool2d(3, 2, 1, ceil_mode=True), lambda m: m.MaxPool2d((3, 2), dilation=2),
    lambda m: m.AvgPool2d(3, 2, 1),
    lambda m: m.AvgPool2d(2, ceil_mode=True, count_include_pad=False, divisor_override=3),
    lambda m: m.LPPool2d(2, 3), lambda m: m.LPPool2d(1.5, (2, 3), stride=2, ceil_mode=True),
    lambda m: m.MaxUnpool2d(2), lambda m: m.MaxUnpool2d((3, 2), stride=2, padding=1),
    lambda m: m.AdaptiveAvgPool2d((None, 3)), lambda m: m.AdaptiveAvgPool2d(1), lambda m: m.AdaptiveMaxPool2d(3),
    lambda m: m.AdaptiveMaxPool2d((2, None), return_indices=True),
])
def test_layer_repr_matches_torch(make):
    assert repr(make(nn)) == repr(make(torch.nn))
    assert len(make(nn).state_dict()) == 0


def test_strict_and_padding_extras_show_in_repr_only_when_set():
    assert repr(nn.MaxPool2d(2, strict=True)).endswith("ceil_mode=False, strict=True)")
    assert repr(nn.AvgPool2d(2, strict=True)) == "AvgPool2d(kernel_size=2, stride=2, padding=0, strict=True)"
    assert repr(nn.LPPool2d(2, 3, padding=1)) == ("LPPool2d(norm_type=2, kernel_size=3, stride=None, ceil_mode=False, "
                                                  "padding=1)")


@pytest.mark.parametrize("make", [
    lambda m: m.MaxPool2d(3, 2, 1, ceil_mode=True), lambda m: m.AvgPool2d(3, 2, 1, count_include_pad=False),
    lambda m: m.LPPool2d(2, 3, 2), lambda m: m.AdaptiveAvgPool2d((3, 4)), lambda m: m.AdaptiveMaxPool2d((3, 4)),
])
def test_layers_match_torch_on_batched_and_unbatched_input(make):
    for shape in ((2, 3, 9, 10), (3, 9, 10)):
        x = _random(shape)
        np.testing.assert_allclose(make(nn)(cnnkit.tensor(x)).numpy(), make(torch.nn)(torch.from_numpy(x)).numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_max_pool_layer_return_indices():
    x = _random((2, 3, 8, 8))
    out, indices = nn.MaxPool2d(2, return_indices=True)(cnnkit.tensor(x))
    expected_out, expected_indices = torch.nn.MaxPool2d(2, return_indices=True)(torch.from_numpy(x))
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
    np.testing.assert_array_equal(out.numpy(), expected_out.numpy())


@pytest.mark.parametrize("op", [
    lambda t: F.max_pool2d(t, 3, 2, 1, ceil_mode=True), lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True),
    lambda t: F.lp_pool2d(t, 1.5, 3, 2, True, 1), lambda t: F.adaptive_avg_pool2d(t, (4, 3)),
    lambda t: F.adaptive_avg_pool2d(t, 1), lambda t: F.adaptive_max_pool2d(t, (4, 3)),
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outputs_and_gradients_keep_the_input_dtype(op, dtype):
    inp = cnnkit.tensor(_random((2, 3, 9, 7)).astype(dtype), requires_grad=True)
    out = op(inp)
    out.backward(np.ones(out.shape, dtype))
    assert out.dtype == dtype and inp.grad.dtype == dtype


# ------------------------------------------------------------------------------------------- empty batches
_EMPTY_OPS = {
    "max_pool2d": lambda f, x: f.max_pool2d(x, 3, 2, 1),
    "max_pool2d[return_indices]": lambda f, x: f.max_pool2d(x, 2, return_indices=True)[0],
    "avg_pool2d": lambda f, x: f.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    "lp_pool2d": lambda f, x: f.lp_pool2d(x, 2, 2),
    "adaptive_avg_pool2d": lambda f, x: f.adaptive_avg_pool2d(x, 3),
    "adaptive_max_pool2d": lambda f, x: f.adaptive_max_pool2d(x, 3),
    "max_unpool2d": lambda f, x: f.max_unpool2d(*f.max_pool2d(x, 2, return_indices=True), 2),
    "local_response_norm": lambda f, x: f.local_response_norm(x, 2),
    "relu": lambda f, x: f.relu(x),
    "relu6": lambda f, x: f.relu6(x),
}


@pytest.mark.parametrize("name", sorted(_EMPTY_OPS))
def test_an_empty_batch_gives_torchs_empty_output_and_gradient(name, kernels_mode):
    x = cnnkit.tensor(np.zeros((0, 3, 5, 4), np.float32), requires_grad=True)
    tx = torch.zeros((0, 3, 5, 4), requires_grad=True)
    out, tout = _EMPTY_OPS[name](F, x), _EMPTY_OPS[name](TF, tx)
    assert out.shape == tuple(tout.shape) and out.dtype == np.float32
    out.backward(np.zeros(out.shape, np.float32))
    tout.backward(torch.zeros(tout.shape))
    assert x.grad.shape == tuple(tx.grad.shape)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("max_value", [None, 6.0])
def test_batch_norm_of_an_empty_batch_is_empty_and_keeps_the_running_statistics(training, max_value, kernels_mode):
    x = cnnkit.tensor(np.zeros((0, 3, 4, 4), np.float32), requires_grad=True)
    weight, bias = cnnkit.ones(3, requires_grad=True), cnnkit.zeros(3, requires_grad=True)
    mean, var = cnnkit.tensor([0.5, 1.0, -1.0]), cnnkit.tensor([2.0, 1.0, 0.5])
    out = F.batch_norm_relu(x, mean, var, weight, bias, training=training, max_value=max_value)
    tx = torch.zeros((0, 3, 4, 4), requires_grad=True)
    tmean, tvar = torch.tensor([0.5, 1.0, -1.0]), torch.tensor([2.0, 1.0, 0.5])
    tout = TF.batch_norm(tx, tmean, tvar, torch.ones(3), torch.zeros(3), training=training)
    assert out.shape == tuple(tout.shape)
    np.testing.assert_array_equal(mean.numpy(), tmean.numpy())  # torch leaves them as they were
    np.testing.assert_array_equal(var.numpy(), tvar.numpy())
    out.backward(np.zeros(out.shape, np.float32))
    assert x.grad.shape == (0, 3, 4, 4) and (weight.grad == 0).all() and (bias.grad == 0).all()


def test_batch_norm_layer_counts_an_empty_batch_as_torch_does():
    ours, theirs = nn.BatchNorm2d(3), torch.nn.BatchNorm2d(3)
    out, tout = ours(cnnkit.zeros(0, 3, 2, 2)), theirs(torch.zeros(0, 3, 2, 2))
    assert out.shape == tuple(tout.shape)
    for key, value in theirs.state_dict().items():
        np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())
