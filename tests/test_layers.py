"""Layers against torch.nn with copied weights, state_dict keys and reprs, dropout statistics, loss details, errors."""
import warnings

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit import backend, kernels
from cnnkit.nn.normalization import fusable_relu
from cnnkit.nn.utils import fuse

torch = pytest.importorskip("torch")
TNN = torch.nn
TF = torch.nn.functional


def _pair(shape, seed=0, scale=1.0):
    """The same float32 data as a cnnkit and a torch leaf tensor, both requiring grad."""
    values = (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)
    return cnnkit.tensor(values.copy(), requires_grad=True), torch.tensor(values.copy(), requires_grad=True)


def _close(ours, theirs, atol=1e-5, rtol=1e-4):
    ours = ours.data if isinstance(ours, cnnkit.Tensor) else ours
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    np.testing.assert_allclose(np.asarray(ours, dtype=np.float64), np.asarray(theirs, dtype=np.float64),
                               atol=atol, rtol=rtol)


def _copy_params(ours, theirs):
    """Copy torch's parameters and buffers into our layer (same state_dict keys)."""
    ours.load_state_dict({key: value.detach().numpy().copy() for key, value in theirs.state_dict().items()})


def _backward_both(ours_out, theirs_out, seed=1):
    upstream = np.random.default_rng(seed).standard_normal(tuple(theirs_out.shape)).astype(np.float32)
    ours_out.backward(upstream)
    theirs_out.backward(torch.from_numpy(upstream.copy()))


# ------------------------------------------------------------------------------------------------------- Linear
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("shape", [(1, 7), (3, 7), (2, 3, 7), (7,)])
def test_linear_matches_torch_with_copied_weights(shape, bias):
    ours, theirs = nn.Linear(7, 5, bias=bias), TNN.Linear(7, 5, bias=bias)
    _copy_params(ours, theirs)
    x, tx = _pair(shape)
    out, tout = ours(x), theirs(tx)
    _close(out, tout)
    _backward_both(out, tout)
    _close(x.grad, tx.grad)
    _close(ours.weight.grad, theirs.weight.grad)
    if bias:
        _close(ours.bias.grad, theirs.bias.grad)


def test_linear_init_state_dict_and_dtype():
    layer = nn.Linear(50, 40)
    bound = 1 / np.sqrt(50)
    for param in (layer.weight, layer.bias):
        assert param.dtype == np.float32
        assert np.abs(param.data).max() <= bound
        assert np.abs(param.data).max() > 0.8 * bound  # spread over the whole range, not near zero
    assert list(layer.state_dict()) == list(TNN.Linear(50, 40).state_dict())
    assert list(nn.Linear(3, 2, bias=False).state_dict()) == list(TNN.Linear(3, 2, bias=False).state_dict())
    layer.double()
    assert layer(cnnkit.randn(2, 50).double()).dtype == np.float64


def test_linear_error_names_shapes_and_fix():
    layer = nn.Linear(10, 4)
    with pytest.raises(ValueError) as error:
        layer(cnnkit.randn(3, 12))
    message = str(error.value)
    assert "(3, 12)" in message and "in_features=10" in message and "nn.Linear(12, 4)" in message
    with pytest.raises(ValueError, match=r"nn.Flatten\(\).*= 18"):
        layer(cnnkit.randn(1, 2, 3, 3))
    with pytest.raises(TypeError, match="same dtype"):
        layer(cnnkit.randn(3, 10).double())
    with pytest.raises(ValueError, match=r"weight of shape \(4, 10\)"):
        F.linear(cnnkit.randn(2, 3), layer.weight)


def test_tensor_feeding_two_branches_gets_both_gradients():
    # y = linear(x) + x: dL/dx = W^T g + g
    ours, theirs = nn.Linear(4, 4), TNN.Linear(4, 4)
    _copy_params(ours, theirs)
    x, tx = _pair((3, 4))
    out, tout = ours(x) + x, theirs(tx) + tx
    _backward_both(out, tout)
    _close(x.grad, tx.grad)
    upstream = np.random.default_rng(1).standard_normal((3, 4)).astype(np.float32)
    _close(x.grad, upstream @ ours.weight.data + upstream)


def test_no_grad_records_nothing():
    layers = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU())
    x = cnnkit.randn(5, 4, requires_grad=True)
    with cnnkit.no_grad():
        out = layers(x)
        loss = F.cross_entropy(out, cnnkit.tensor(np.array([0, 1, 2, 0, 1])))
    for value in (out, loss):
        assert not value.requires_grad and value.grad_fn is None
    assert layers[1].num_batches_tracked.item() == 1  # running statistics still update, as in torch
    out = layers(x)
    assert out.requires_grad and out.grad_fn is not None


# ---------------------------------------------------------------------------------------------------- BatchNorm
def _batch_norm_pair(cls_name, **kwargs):
    ours, theirs = getattr(nn, cls_name)(3, **kwargs), getattr(TNN, cls_name)(3, **kwargs)
    if ours.affine:  # non-trivial affine parameters, the same in both
        rng = np.random.default_rng(5)
        with torch.no_grad():
            theirs.weight.copy_(torch.from_numpy(rng.standard_normal(3).astype(np.float32)))
            if theirs.bias is not None:
                theirs.bias.copy_(torch.from_numpy(rng.standard_normal(3).astype(np.float32)))
    _copy_params(ours, theirs)
    return ours, theirs


@pytest.mark.parametrize("kwargs", [{}, {"momentum": None}, {"affine": False}, {"momentum": 0.3, "bias": False},
                                    {"track_running_stats": False}])
def test_batchnorm2d_train_eval_sequence_matches_torch(kwargs):
    ours, theirs = _batch_norm_pair("BatchNorm2d", **kwargs)
    for step, shape in enumerate([(4, 3, 5, 5), (1, 3, 3, 2), (2, 3, 4, 3)]):
        x, tx = _pair(shape, seed=step, scale=2.0)
        x.data += 1.5  # a non-zero mean so the running mean moves
        tx.data += 1.5
        out, tout = ours(x), theirs(tx)
        _close(out, tout)
        _backward_both(out, tout, seed=step)
        _close(x.grad, tx.grad)
        if ours.affine:
            _close(ours.weight.grad, theirs.weight.grad, atol=1e-4)
        if ours.bias is not None:
            _close(ours.bias.grad, theirs.bias.grad, atol=1e-4)
        for name, value in theirs.state_dict().items():
            _close(ours.state_dict()[name], value)
    if ours.track_running_stats:
        assert ours.num_batches_tracked.dtype == np.int64 and ours.num_batches_tracked.item() == 3
    ours.eval()
    theirs.eval()
    x, tx = _pair((2, 3, 4, 4), seed=9)
    out, tout = ours(x), theirs(tx)
    _close(out, tout)
    _backward_both(out, tout)
    _close(x.grad, tx.grad)
    if ours.affine:
        _close(ours.weight.grad, theirs.weight.grad, atol=1e-4)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    if ours.track_running_stats:  # eval does not count batches
        assert ours.state_dict()["num_batches_tracked"].item() == 3


@pytest.mark.parametrize("shape", [(6, 3), (2, 3, 5)])
def test_batchnorm1d_matches_torch(shape):
    ours, theirs = _batch_norm_pair("BatchNorm1d")
    x, tx = _pair(shape, scale=3.0)
    out, tout = ours(x), theirs(tx)
    _close(out, tout)
    _backward_both(out, tout)
    _close(x.grad, tx.grad)
    _close(ours.running_var, theirs.running_var)


@pytest.fixture
def threads(request, monkeypatch):
    """Run the test with cnnkit's thread count set to the parameter (set_num_threads), then as it was."""
    monkeypatch.setattr(backend, "_num_threads", backend._num_threads)  # only restores the setting afterwards
    backend.set_num_threads(request.param)
    return request.param


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("relu6", [False, True])
def test_chunked_batchnorm_in_many_chunks_on_threads_matches_torch(threads, relu6):
    """Samples of over 1 MiB make the chunked kernel use one chunk per sample, shared out over threads: the
    chunks' sums are added up afterwards, so the statistics, the gradients and the fused clamp must come out
    as in one pass."""
    x, tx = _pair((5, 3, 300, 350), scale=3.0)
    ours, theirs = _batch_norm_pair("BatchNorm2d")
    with backend.use_kernels("batch_norm.chunked"), kernels.record_picks() as picks:
        if relu6:
            out = F.batch_norm_relu(x + 1, ours.running_mean, ours.running_var, ours.weight, ours.bias,
                                    training=True, max_value=6.0)
            tout = TF.relu6(theirs(tx + 1))
        else:
            out, tout = ours(x + 1), theirs(tx + 1)
        _close(out, tout)
        _backward_both(out, tout)
    assert set(picks) == {"batch_norm.chunked"}
    _close(x.grad, tx.grad)
    _close(ours.weight.grad, theirs.weight.grad, atol=1e-4)
    _close(ours.bias.grad, theirs.bias.grad, atol=1e-4)
    _close(ours.running_mean, theirs.running_mean)
    _close(ours.running_var, theirs.running_var)


@pytest.mark.parametrize("op", ["relu", "relu6"])
def test_chunked_relu_on_many_chunks_equals_the_reference(op):
    """Above the clip threshold and over several chunks the kernel gives the reference's values and mask exactly."""
    values = np.random.default_rng(3).standard_normal((3, 7, 130, 131)).astype(np.float32) * 8
    values[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
    results = []
    for path in ("relu.chunked", "reference"):
        x = cnnkit.tensor(values.copy(), requires_grad=True)
        with backend.use_kernels(path), kernels.record_picks() as picks:
            out = getattr(F, op)(x)
        out.backward(np.ones(values.shape, np.float32))
        results.append((out.numpy(), x.grad, picks))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert results[0][2] == ["relu.chunked"] and results[1][2] == []


@pytest.mark.parametrize("threads", [1, 2], indirect=True)
@pytest.mark.parametrize("op, kernel", [("sigmoid", "sigmoid.exp"), ("tanh", "tanh.threaded")])
def test_sigmoid_and_tanh_kernels_on_threads_match_torch_at_the_extremes(threads, op, kernel):
    """Over many threaded tasks, with NaN, infinities, overflowing and tiny inputs, the kernel's output equals
    torch's within float32 rounding (relative, so the tiny values count too), and so does its gradient, whose
    1 - s or 1 - t^2 from a saturated output is exact only to float32 rounding of 1, times the upstream value."""
    values = np.random.default_rng(5).standard_normal((4, 6, 90, 90)).astype(np.float32) * 8
    values[0, 0, 0, :10] = [np.nan, np.inf, -np.inf, 100, -100, 89, -89, 1e-30, -1e-30, 0]
    upstream = np.random.default_rng(6).standard_normal(values.shape).astype(np.float32)
    x, tx = cnnkit.tensor(values.copy(), requires_grad=True), torch.tensor(values.copy(), requires_grad=True)
    with warnings.catch_warnings(), backend.use_kernels(kernel), kernels.record_picks() as picks:
        warnings.simplefilter("error")  # no overflow warning from e^-x at -100
        out = getattr(F, op)(x)
        out.backward(upstream)
    tout = getattr(torch, op)(tx)
    tout.backward(torch.from_numpy(upstream))
    assert picks == [kernel]
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=3e-6, atol=1e-37)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=3e-5, atol=4 * np.finfo(np.float32).eps)


@pytest.mark.parametrize("op, kernel", [("sigmoid", "sigmoid.exp"), ("tanh", "tanh.threaded")])
def test_sigmoid_and_tanh_kernels_take_a_broadcast_gradient(op, kernel):
    """sum()'s backward hands the op a broadcast (zero-stride) gradient: the kernel reads it as the full array."""
    values = np.random.default_rng(7).standard_normal((3, 5, 4)) * 3
    grads = []
    for path in (kernel, "reference"):
        x = cnnkit.tensor(values.copy(), requires_grad=True)
        with backend.use_kernels(path):
            getattr(F, op)(x).sum().backward()
        grads.append(x.grad)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-13)


@pytest.mark.parametrize("kwargs", [{}, {"affine": False}, {"track_running_stats": False}, {"bias": False}])
def test_batchnorm_state_dict_keys_and_repr_equal_torch(kwargs):
    for name in ("BatchNorm1d", "BatchNorm2d"):
        ours, theirs = getattr(nn, name)(8, **kwargs), getattr(TNN, name)(8, **kwargs)
        assert list(ours.state_dict()) == list(theirs.state_dict())
        assert repr(ours) == repr(theirs)
        for key, value in theirs.state_dict().items():  # torch's initial values and dtypes
            assert ours.state_dict()[key].dtype == value.numpy().dtype
            np.testing.assert_array_equal(ours.state_dict()[key], value.numpy())


def test_batchnorm_loads_torch_state_dict_and_reset():
    theirs = TNN.BatchNorm2d(4)
    theirs(torch.randn(3, 4, 2, 2) * 3 + 1)
    ours = nn.BatchNorm2d(4)
    ours.load_state_dict(theirs.state_dict())
    assert ours.num_batches_tracked.item() == 1 and ours.num_batches_tracked.dtype == np.int64
    _close(ours.running_mean, theirs.running_mean)
    ours.reset_running_stats()
    assert ours.num_batches_tracked.item() == 0 and (ours.running_var.data == 1).all()


def test_batchnorm_errors_name_shapes():
    layer = nn.BatchNorm2d(16)
    with pytest.raises(ValueError) as error:
        layer(cnnkit.randn(2, 8, 4, 4))
    assert "(2, 8, 4, 4)" in str(error.value) and "num_features=16" in str(error.value)
    with pytest.raises(ValueError, match="4-D"):
        layer(cnnkit.randn(16, 4, 4))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(4)(cnnkit.randn(1, 4))
    nn.BatchNorm1d(4).eval()(cnnkit.randn(1, 4))  # fine in eval mode (F.batch_norm's errors: tests/specs_misc.py)


def test_functional_batch_norm_updates_running_stats_in_place_like_torch():
    values = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32) * 2 + 1
    mean, var = np.zeros(2, np.float32), np.ones(2, np.float32)
    tmean, tvar = torch.zeros(2), torch.ones(2)
    F.batch_norm(cnnkit.tensor(values), mean, var, training=True, momentum=0.25)
    TF.batch_norm(torch.tensor(values), tmean, tvar, training=True, momentum=0.25)
    _close(mean, tmean)
    _close(var, tvar)  # unbiased: differs from the biased variance by n / (n - 1) = 15 / 14
    assert not np.allclose(var, 0.75 + 0.25 * values.transpose(1, 0, 2).reshape(2, -1).var(axis=1))


def _input_of(module):
    """A list that a forward hook on ``module`` fills with the tensor each call receives."""
    seen = []
    module.register_forward_hook(lambda layer, inputs, output: seen.append(inputs[0]))
    return seen


@pytest.mark.parametrize("activation", ["ReLU", "ReLU6"])
@pytest.mark.parametrize("training", [True, False])
def test_fuse_runs_batchnorm_and_relu_as_one_op_with_torchs_values_stats_and_grads(activation, training):
    ours = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), getattr(nn, activation)(), nn.Conv2d(4, 2, 1))
    theirs = TNN.Sequential(TNN.Conv2d(3, 4, 3), TNN.BatchNorm2d(4), getattr(TNN, activation)(), TNN.Conv2d(4, 2, 1))
    _copy_params(ours, theirs)
    modules_before, keys_before = [name for name, _ in ours.named_modules()], list(ours.state_dict())
    assert fuse(ours) is ours
    assert [name for name, _ in ours.named_modules()] == modules_before and list(ours.state_dict()) == keys_before
    ours.train(training)
    theirs.train(training)
    fed = _input_of(ours[3])
    x, tx = _pair((3, 3, 7, 6), scale=4.0)  # wide enough that ReLU6 clips on both sides
    _close(ours(x), theirs(tx))
    ours(x).sum().backward()
    theirs(tx).sum().backward()
    # the last conv was fed the BatchNorm's own output, clamped inside it: one op, no separate activation
    assert fed[0].grad_fn.relu == (None if activation == "ReLU" else 6.0,)
    _close(x.grad, tx.grad)
    for mine, reference in zip(ours.parameters(), theirs.parameters()):
        _close(mine.grad, reference.grad, atol=1e-4)
    for key, value in theirs.state_dict().items():  # running statistics and num_batches_tracked moved once per call
        _close(ours.state_dict()[key], value)


def test_fused_resnet_blocks_match_the_unfused_ones():
    plain = nn.Sequential(nn.BasicBlock(4, 4), nn.Bottleneck(4, 1))
    fused = fuse(nn.Sequential(nn.BasicBlock(4, 4), nn.Bottleneck(4, 1)))
    fused.load_state_dict(plain.state_dict())
    x = np.random.default_rng(5).standard_normal((2, 4, 5, 5)).astype(np.float32)
    results = []
    for model in (plain, fused):
        inputs = cnnkit.tensor(x.copy(), requires_grad=True)
        out = model(inputs)
        out.backward(np.cos(np.arange(out.data.size, dtype=np.float32)).reshape(out.shape))
        results.append((out.numpy(), inputs.grad, [p.grad for p in model.parameters()]))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-5)
    for mine, reference in zip(results[1][2], results[0][2]):
        np.testing.assert_allclose(mine, reference, rtol=1e-4, atol=1e-5)
    assert fused[0].bn1._fused_activation is fused[0].relu and fused[1].bn2._fused_activation is fused[1].relu
    assert fused[1].bn3._fused_activation is None  # bn3's output is added to the shortcut before the relu


def test_hooks_or_a_subclass_keep_batchnorm_and_relu_apart():
    norm, relu = nn.BatchNorm2d(4), nn.ReLU()
    assert fusable_relu(norm, relu) == (None,)
    model = fuse(nn.Sequential(norm, relu))
    seen = []
    handle = norm.register_forward_hook(lambda module, inputs, output: seen.append(output.numpy().min()))
    assert fusable_relu(norm, relu) is None
    model(cnnkit.randn(2, 4, 3, 3))
    assert seen[0] < 0  # the hook, added after fuse, saw the BatchNorm's own output: the pair ran unfused
    handle.remove()
    fed = _input_of(relu)
    model(cnnkit.randn(2, 4, 3, 3))
    assert fed[0].numpy().min() < 0  # a hook on the activation also keeps the pair apart

    class Shifted(nn.ReLU):
        def forward(self, input):
            return F.relu(input) + 1

    assert fusable_relu(norm, Shifted()) is None
    assert fusable_relu(nn.LocalResponseNorm(2), relu) is None
    patched = nn.ReLU()
    patched.forward = lambda input: F.relu(input) * 2
    assert fusable_relu(norm, patched) is None


# --------------------------------------------------------------------------------------------- LocalResponseNorm
@pytest.mark.parametrize("size, shape", [(5, (2, 7, 3, 3)), (2, (1, 4, 5)), (4, (1, 3, 2, 2, 2))])
def test_local_response_norm_matches_torch(size, shape):
    ours, theirs = nn.LocalResponseNorm(size, alpha=0.5, beta=0.75, k=2.0), TNN.LocalResponseNorm(size, 0.5, 0.75, 2.0)
    x, tx = _pair(shape, scale=2.0)
    out, tout = ours(x), theirs(tx)
    _close(out, tout)
    _backward_both(out, tout)
    _close(x.grad, tx.grad)


# ------------------------------------------------------------------------------------------------------- reprs
REPR_CASES = [
    ("ReLU", (), {}), ("ReLU", (), {"inplace": True}), ("ReLU6", (), {}), ("ReLU6", (True,), {}),
    ("LeakyReLU", (), {}), ("LeakyReLU", (0.2, True), {}), ("ELU", (), {}), ("ELU", (0.5,), {"inplace": True}),
    ("GELU", (), {}), ("GELU", ("tanh",), {}), ("Sigmoid", (), {}), ("Tanh", (), {}), ("Hardswish", (True,), {}),
    ("Hardsigmoid", (), {}), ("SiLU", (), {}), ("SiLU", (True,), {}), ("Softmax", (), {"dim": 1}),
    ("Softmax", (), {}), ("LogSoftmax", (-1,), {}), ("Linear", (4, 3), {}), ("Linear", (4, 3), {"bias": False}),
    ("BatchNorm2d", (16,), {"momentum": None, "affine": False}), ("BatchNorm1d", (5,), {"eps": 1e-3}),
    ("LocalResponseNorm", (5,), {}), ("LocalResponseNorm", (3, 2e-4, 0.5, 2), {}), ("Dropout", (), {}),
    ("Dropout2d", (0.2, True), {}), ("Flatten", (), {}), ("Flatten", (0, 2), {}), ("Identity", (3,), {"a": 4}),
    ("ChannelShuffle", (3,), {}), ("Unflatten", (1, (2, 3)), {}),
]


@pytest.mark.parametrize("name, args, kwargs", REPR_CASES, ids=[f"{c[0]}{i}" for i, c in enumerate(REPR_CASES)])
def test_repr_equals_torch(name, args, kwargs):
    assert repr(getattr(nn, name)(*args, **kwargs)) == repr(getattr(TNN, name)(*args, **kwargs))


# ---------------------------------------------------------------------------------------- activation layers
@pytest.mark.parametrize("name, args", [("ReLU", ()), ("ReLU6", ()), ("LeakyReLU", (0.3,)), ("ELU", (0.7,)),
                                        ("GELU", ("tanh",)), ("Sigmoid", ()), ("Tanh", ()), ("Hardswish", ()),
                                        ("Hardsigmoid", ()), ("SiLU", ()), ("Softmax", (1,)), ("LogSoftmax", (0,))])
def test_activation_layers_match_torch(name, args):
    x, tx = _pair((2, 5, 3), scale=4.0)
    out, tout = getattr(nn, name)(*args)(x), getattr(TNN, name)(*args)(tx)
    _close(out, tout)
    _backward_both(out, tout)
    _close(x.grad, tx.grad)


def test_activations_keep_dtype_and_accept_inplace():
    x = cnnkit.randn(3, 4).double()
    for layer in (nn.ReLU(inplace=True), nn.GELU(), nn.Sigmoid(), nn.Softmax(dim=1), nn.Hardswish(inplace=True)):
        out = layer(x)
        assert out.dtype == np.float64 and out is not x
    extreme = cnnkit.tensor(np.array([-1000.0, 0.0, 1000.0], np.float32))
    assert np.isfinite(F.sigmoid(extreme).data).all() and np.isfinite(F.log_softmax(extreme, 0).data).all()
    with pytest.warns(UserWarning, match="Implicit dimension"):
        F.softmax(cnnkit.randn(2, 3))
    with pytest.raises(ValueError, match="dim 2 is out of range"):
        F.softmax(cnnkit.randn(2, 3), dim=2)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.relu(cnnkit.tensor(np.array([1, 2])))


# --------------------------------------------------------------------------------------------------- dropout
def test_dropout_statistics_and_gradient():
    x = cnnkit.ones(200, 500, requires_grad=True)
    out = F.dropout(x, p=0.3)
    zero_fraction = float((out.data == 0).mean())
    assert abs(zero_fraction - 0.3) < 0.01  # 100k draws: the standard error is 0.0015
    assert abs(float(out.data.mean()) - 1.0) < 0.02  # inverted dropout preserves the mean
    kept = out.data[out.data != 0]
    np.testing.assert_allclose(kept, 1 / 0.7, rtol=1e-6)
    upstream = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    out.backward(upstream)
    np.testing.assert_allclose(x.grad, upstream * out.data, rtol=1e-6)  # grad = mask * scale (x = 1)


def test_dropout2d_zeros_whole_channels():
    x = cnnkit.ones(40, 50, 3, 4, requires_grad=True)
    out = F.dropout2d(x, p=0.5)
    per_channel = out.data.reshape(40, 50, -1)
    assert (per_channel.min(axis=2) == per_channel.max(axis=2)).all()  # each channel all zero or all scaled
    assert set(np.unique(per_channel)) == {0.0, 2.0}
    assert abs(float((per_channel[:, :, 0] == 0).mean()) - 0.5) < 0.05  # 2000 channels
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, out.data)


def test_dropout_modes_edges_and_reproducibility():
    x = cnnkit.randn(4, 6, 5, 5)
    for layer in (nn.Dropout(0.5), nn.Dropout2d(0.5)):
        layer.eval()
        np.testing.assert_array_equal(layer(x).data, x.data)
        layer.train()
        assert (layer(x).data == 0).any()
    np.testing.assert_array_equal(F.dropout(x, p=0.0).data, x.data)
    y = cnnkit.randn(3, 4, requires_grad=True)
    dropped = F.dropout(y, p=1.0)
    dropped.sum().backward()
    assert (dropped.data == 0).all() and (y.grad == 0).all()
    cnnkit.manual_seed(3)
    first = F.dropout(x, 0.4).data
    cnnkit.manual_seed(3)
    np.testing.assert_array_equal(F.dropout(x, 0.4).data, first)
    assert F.dropout(x.double(), 0.4).dtype == np.float64
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="between 0 and 1"):
            nn.Dropout(bad)
        with pytest.raises(ValueError, match="between 0 and 1"):
            F.dropout(x, bad)
    with pytest.raises(ValueError, match="4-D"):
        F.dropout2d(cnnkit.randn(3, 4))


# ---------------------------------------------------------------------------------------------------- losses
def _loss_pair(fn_name, logits_shape, target, seed=0, **kwargs):
    x, tx = _pair(logits_shape, seed=seed, scale=2.0)
    weight = kwargs.pop("weight", None)
    ours = getattr(F, fn_name)(x, cnnkit.tensor(target), None if weight is None else cnnkit.tensor(weight), **kwargs)
    theirs = getattr(TF, fn_name)(tx, torch.tensor(target), None if weight is None else torch.tensor(weight), **kwargs)
    _close(ours, theirs)
    _backward_both(ours, theirs)
    _close(x.grad, tx.grad)
    return ours


def test_cross_entropy_label_smoothing_ignore_index_and_weights():
    target = np.array([0, 3, 2, 3, 1])
    weight = np.array([0.5, 1.0, 2.0, 0.3], np.float32)
    for smoothing in (0.0, 0.1, 0.6):
        for reduction in ("mean", "sum", "none"):
            _loss_pair("cross_entropy", (5, 4), target, weight=weight, ignore_index=3, reduction=reduction,
                       label_smoothing=smoothing)
    spatial = np.random.default_rng(1).integers(0, 3, (2, 3, 3))
    spatial[0, 0, 0] = -100
    _loss_pair("cross_entropy", (2, 3, 3, 3), spatial, label_smoothing=0.2)
    _loss_pair("nll_loss", (5, 4), np.array([0, -100, 2, 3, 1]), weight=weight)
    # every target ignored: the mean is 0 / 0 = nan, as in torch
    assert np.isnan(F.cross_entropy(cnnkit.randn(2, 3), cnnkit.tensor(np.array([-100, -100]))).item())


def test_cross_entropy_probability_targets():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    x, tx = _pair((4, 5))
    target, ttarget = cnnkit.tensor(probs, requires_grad=True), torch.tensor(probs, requires_grad=True)
    ours = F.cross_entropy(x, target, label_smoothing=0.15)
    theirs = TF.cross_entropy(tx, ttarget, label_smoothing=0.15)
    _close(ours, theirs)
    _backward_both(ours, theirs)
    _close(x.grad, tx.grad)
    _close(target.grad, ttarget.grad)
    # one-hot probabilities equal class indices
    onehot = np.eye(5, dtype=np.float32)[[1, 0, 4, 2]]
    _close(F.cross_entropy(x, onehot), F.cross_entropy(x, np.array([1, 0, 4, 2])))


def test_loss_errors_name_shapes_and_classes():
    logits = cnnkit.randn(4, 10)
    with pytest.raises(ValueError) as error:
        F.cross_entropy(logits, cnnkit.tensor(np.array([1, 10, 2, 3])))
    assert "class 10" in str(error.value) and "10 classes" in str(error.value) and "(4, 10)" in str(error.value)
    with pytest.raises(ValueError, match=r"target of shape \(5,\) does not fit input of shape \(4, 10\)"):
        F.cross_entropy(logits, np.zeros(5, np.int64))
    with pytest.raises(ValueError, match=r"probability target of shape \(4, 9\)"):
        F.cross_entropy(logits, np.zeros((4, 9), np.float32))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(logits, np.zeros(4, np.int64), reduction="avg")
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        F.cross_entropy(logits, np.zeros(4, np.int64), weight=np.ones(3, np.float32))
    with pytest.raises(ValueError, match="cannot differentiate with respect to weight"):
        F.nll_loss(logits, np.zeros(4, np.int64), weight=cnnkit.ones(10, requires_grad=True))
    with pytest.raises(ValueError, match=r"\(4, 10\)"):
        F.mse_loss(logits, cnnkit.randn(4, 1))


def test_legacy_reduce_flags_map_to_reduction():
    logits, target = cnnkit.randn(3, 4), np.array([0, 1, 2])
    with pytest.warns(UserWarning):
        summed = F.cross_entropy(logits, target, size_average=False)
    _close(summed, F.cross_entropy(logits, target, reduction="sum"))


# ------------------------------------------------------------------------------------------ shape layers
def test_shape_layers_match_torch():
    x, tx = _pair((2, 6, 3, 2))
    pairs = [(nn.Flatten(), TNN.Flatten()), (nn.Flatten(0, 2), TNN.Flatten(0, 2)),
             (nn.ChannelShuffle(3), TNN.ChannelShuffle(3)), (nn.Identity(), TNN.Identity())]
    for ours, theirs in pairs:
        _close(ours(x), theirs(tx))
    _close(nn.Unflatten(1, (2, -1))(x), TNN.Unflatten(1, (2, -1))(tx))
    out, tout = nn.ChannelShuffle(2)(x), TNN.ChannelShuffle(2)(tx)
    _backward_both(out, tout)
    _close(x.grad, tx.grad)
    with pytest.raises(ValueError, match="6 channels, which is not divisible by groups=4"):
        nn.ChannelShuffle(4)(x)
    with pytest.raises(ValueError, match="not the product"):
        nn.Unflatten(1, (4, 2))(x)


def test_pad_errors():
    x = cnnkit.randn(1, 1, 3, 3)
    with pytest.raises(ValueError, match="at most size - 1 = 2"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="even number"):
        F.pad(x, (1, 1, 1))
    with pytest.raises(ValueError, match="mode must be"):
        F.pad(x, (1, 1), mode="mirror")
    np.testing.assert_array_equal(F.pad(x, (5, 4, 0, 6), mode="replicate").data,
                                  TF.pad(torch.tensor(x.data), (5, 4, 0, 6), mode="replicate").numpy())


@pytest.mark.parametrize("size", [1000, 1 << 17])
@pytest.mark.parametrize("name", ["relu", "relu6"])
def test_relu_small_and_large_inputs_match_torch_with_nan_and_inf(name, size):
    """Large inputs clamp through clip(x, 0, inf) rather than maximum(x, 0): the same values either way."""
    values = np.random.default_rng(0).standard_normal(size).astype(np.float32) * 10
    values[:4] = [np.nan, np.inf, -np.inf, -0.0]
    x = cnnkit.tensor(values.copy(), requires_grad=True)
    tx = torch.tensor(values.copy(), requires_grad=True)
    out, tout = getattr(F, name)(x), getattr(TF, name)(tx)
    np.testing.assert_array_equal(out.data, tout.detach().numpy())
    out.backward(np.ones(size, np.float32))
    tout.backward(torch.ones(size))
    np.testing.assert_array_equal(x.grad[4:], tx.grad.numpy()[4:])
