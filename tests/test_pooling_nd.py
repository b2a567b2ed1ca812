"""1-D and 3-D pooling and batch norm beyond the op table: layers against torch (reprs, unbatched input, state_dict),
BatchNorm1d/3d statistics, SyncBatchNorm conversion and fusion, indices and unpooling, ONNX both ways, summary."""
import warnings

import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
import cnnkit.nn as nn
from cnnkit.nn.utils import fuse

torch = pytest.importorskip("torch")
TNN, TF = torch.nn, torch.nn.functional


def _random(shape, seed=0, scale=1.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.fixture(params=["auto", "reference"])
def kernels_mode(request):
    """Run the test on the fast kernels ('auto') and on the reference ops."""
    from cnnkit import backend

    with backend.use_kernels(request.param):
        yield request.param


# ------------------------------------------------------------------------------------------- pooling layers
LAYERS_1D = [
    lambda m: m.MaxPool1d(3), lambda m: m.MaxPool1d(3, 2, 1, dilation=2, ceil_mode=True),
    lambda m: m.AvgPool1d(3, 2, 1), lambda m: m.AvgPool1d(4, 3, 2, ceil_mode=True, count_include_pad=False),
    lambda m: m.LPPool1d(2, 3), lambda m: m.LPPool1d(3, 2, 3, ceil_mode=True),
    lambda m: m.AdaptiveAvgPool1d(4), lambda m: m.AdaptiveMaxPool1d(5),
]
LAYERS_3D = [
    lambda m: m.MaxPool3d(2), lambda m: m.MaxPool3d((3, 2, 2), (2, 1, 2), (1, 0, 1), dilation=(1, 2, 1)),
    lambda m: m.AvgPool3d(3, 2, 1), lambda m: m.AvgPool3d(2, ceil_mode=True, count_include_pad=False,
                                                         divisor_override=5),
    lambda m: m.LPPool3d(2, 2), lambda m: m.LPPool3d(1.5, (2, 3, 2), 2, ceil_mode=True),
    lambda m: m.AdaptiveAvgPool3d((2, None, 3)), lambda m: m.AdaptiveMaxPool3d((3, 2, 4)),
]
UNPOOLS = [lambda m: m.MaxUnpool1d(2), lambda m: m.MaxUnpool1d(3, 2, 1), lambda m: m.MaxUnpool3d((2, 1, 2)),
           lambda m: m.MaxUnpool3d(3, stride=2, padding=1)]


@pytest.mark.parametrize("make", LAYERS_1D + LAYERS_3D + UNPOOLS)
def test_layer_repr_matches_torch_and_has_no_state(make):
    assert repr(make(nn)) == repr(make(TNN))
    assert len(make(nn).state_dict()) == 0


@pytest.mark.parametrize("make, shapes", [(make, ((2, 3, 17), (3, 17))) for make in LAYERS_1D]
                         + [(make, ((2, 2, 7, 6, 8), (2, 7, 6, 8))) for make in LAYERS_3D])
def test_layers_match_torch_on_batched_and_unbatched_input(make, shapes, kernels_mode):
    for shape in shapes:
        x = np.abs(_random(shape)) + 0.1  # positive: torch's LP pools x^p
        inp, tin = cnnkit.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, tout = make(nn)(inp), make(TNN)(tin)
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-5, atol=1e-6)
        upstream = _random(tout.shape, seed=1)
        out.backward(upstream)
        tout.backward(torch.from_numpy(upstream))
        np.testing.assert_allclose(inp.grad, tin.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_layer_errors_name_the_layer_and_its_dimensions():
    with pytest.raises(ValueError, match=r"^MaxPool1d\(kernel_size=3, .*strict=True\) on input of shape \(1, 2, 7\): "
                                         r"hyper-parameters do not tile the input length"):
        nn.MaxPool1d(3, strict=True)(cnnkit.zeros(1, 2, 7))
    with pytest.raises(ValueError, match=r"^AvgPool3d\(.*\): expected a 4-D \(C, D, H, W\) or 5-D \(N, C, D, H, W\)"):
        nn.AvgPool3d(2)(cnnkit.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"MaxPool3d: kernel_size must be positive"):
        nn.MaxPool3d((2, 0, 2))
    with pytest.raises(TypeError, match=r"LPPool1d: kernel_size must be an int or a 1-tuple of ints"):
        nn.LPPool1d(2, (2, 2))
    with pytest.raises(ValueError, match=r"AdaptiveMaxPool3d: output_size must be a positive int or a triple"):
        nn.AdaptiveMaxPool3d((2, 2))


@pytest.mark.parametrize("dims, kwargs", [
    (1, dict(kernel_size=3, stride=2, padding=1)), (1, dict(kernel_size=2, dilation=3, ceil_mode=True)),
    (3, dict(kernel_size=2)), (3, dict(kernel_size=(3, 2, 3), stride=(2, 1, 2), padding=(1, 1, 0), ceil_mode=True)),
    (3, dict(kernel_size=2, stride=1, dilation=(2, 1, 2))),
])
def test_max_pool_indices_and_unpooling_equal_torch(dims, kwargs, kernels_mode):
    x = _random((2, 3) + ((19,) if dims == 1 else (6, 7, 8)))
    pool, unpool = f"max_pool{dims}d", f"max_unpool{dims}d"
    out, indices = getattr(F, pool)(cnnkit.tensor(x, requires_grad=True), return_indices=True, **kwargs)
    expected_out, expected_indices = getattr(TF, pool)(torch.from_numpy(x), return_indices=True, **kwargs)
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
    np.testing.assert_array_equal(out.numpy(), expected_out.numpy())
    if kwargs.get("dilation", 1) == 1:  # unpooling takes no dilation (torch's neither)
        shape = x.shape[2:]
        args = {key: kwargs[key] for key in ("kernel_size", "stride", "padding") if key in kwargs}
        restored = getattr(F, unpool)(out, indices, output_size=shape, **args)
        expected = getattr(TF, unpool)(expected_out, expected_indices, output_size=shape, **args)
        np.testing.assert_array_equal(restored.numpy(), expected.numpy())


def test_adaptive_max_pool3d_indices_on_uneven_windows_equal_torch(kernels_mode):
    x = _random((2, 2, 5, 7, 6))
    out, indices = F.adaptive_max_pool3d(cnnkit.tensor(x), (3, 4, 4), return_indices=True)
    expected_out, expected_indices = TF.adaptive_max_pool3d(torch.from_numpy(x), (3, 4, 4), return_indices=True)
    np.testing.assert_array_equal(indices.numpy(), expected_indices.numpy())
    np.testing.assert_array_equal(out.numpy(), expected_out.numpy())


def test_pooling_keeps_float64_and_accepts_same_padding():
    x = _random((2, 3, 11)).astype(np.float64)
    out = F.max_pool1d(cnnkit.tensor(x), 3, 2, "same")
    assert out.dtype == np.float64 and out.shape == (2, 3, 6)  # 'same': ceil(11 / 2) positions
    np.testing.assert_array_equal(out.numpy(), F.max_pool1d(cnnkit.tensor(x), 3, 2, ((1, 1),)).numpy())
    volume = F.avg_pool3d(cnnkit.tensor(_random((1, 1, 4, 5, 6)).astype(np.float64)), 2, 2, 0)
    assert volume.dtype == np.float64 and volume.shape == (1, 1, 2, 2, 3)


# ------------------------------------------------------------------------------------------- batch norm
@pytest.mark.parametrize("name, shape", [("BatchNorm1d", (6, 3)), ("BatchNorm1d", (4, 3, 7)),
                                         ("BatchNorm3d", (3, 3, 4, 5, 2))])
@pytest.mark.parametrize("kwargs", [{}, {"momentum": None, "affine": False}, {"track_running_stats": False}])
def test_batch_norm_layers_match_torch_in_training_and_eval(name, shape, kwargs, kernels_mode):
    ours, theirs = getattr(nn, name)(3, **kwargs), getattr(TNN, name)(3, **kwargs)
    assert repr(ours) == repr(theirs) and list(ours.state_dict()) == list(theirs.state_dict())
    for step in range(2):
        x = _random(shape, seed=step, scale=3.0) + 1
        inp, tin = cnnkit.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, tout = ours(inp), theirs(tin)
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-4, atol=1e-5)
        out.backward(np.ones(shape, np.float32) + x)
        tout.backward(torch.from_numpy(np.ones(shape, np.float32) + x))
        np.testing.assert_allclose(inp.grad, tin.grad.numpy(), rtol=1e-4, atol=1e-4)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key], value.numpy(), rtol=1e-5, atol=1e-6)
    ours.eval()
    theirs.eval()
    x = _random(shape, seed=5)
    np.testing.assert_allclose(ours(cnnkit.tensor(x)).numpy(), theirs(torch.from_numpy(x)).detach().numpy(),
                               rtol=1e-4, atol=1e-5)


def test_batch_norm3d_loads_torchs_state_and_names_the_shape_it_wants():
    theirs = TNN.BatchNorm3d(4)
    theirs(torch.randn(2, 4, 3, 3, 3) * 2 + 1)
    ours = nn.BatchNorm3d(4)
    ours.load_state_dict(theirs.state_dict())
    assert ours.num_batches_tracked.item() == 1
    np.testing.assert_allclose(ours.running_var.data, theirs.running_var.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"BatchNorm3d\(4\): expected a 5-D \(N, C, D, H, W\) input, got shape "
                                         r"\(2, 4, 3, 3\)"):
        ours(cnnkit.zeros(2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(4\): expected a 2-D \(N, C\) or 3-D \(N, C, L\) input"):
        nn.BatchNorm1d(4)(cnnkit.zeros(2, 4, 3, 3))


def test_convert_sync_batchnorm_and_fuse_handle_batch_norm_1d_and_3d():
    model = nn.Sequential(nn.BatchNorm1d(3), nn.ReLU(), nn.Flatten(), nn.Unflatten(1, (3, 1, 2, 2)),
                          nn.BatchNorm3d(3), nn.ReLU6())
    converted = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert isinstance(converted[0], nn.SyncBatchNorm) and isinstance(converted[4], nn.SyncBatchNorm)
    plain = nn.Sequential(nn.BatchNorm3d(3), nn.ReLU6())
    fused = fuse(nn.Sequential(nn.BatchNorm3d(3), nn.ReLU6()))
    x = _random((2, 3, 3, 4, 2), scale=8.0)
    results, clamps = [], []
    for layers in (plain, fused):
        inp = cnnkit.tensor(x, requires_grad=True)
        out = layers(inp)
        clamps.append(getattr(out.grad_fn, "relu", None))  # fused: the norm ran the clamp itself
        out.backward(np.ones(x.shape, np.float32))
        results.append((out.numpy(), inp.grad, layers[0].running_var.data))
    assert clamps == [None, (6.0,)]
    for ours, reference in zip(results[1], results[0]):
        np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-6)


# ------------------------------------------------------------------------------------------------------ ONNX
def _pool_models():
    one = nn.Sequential(nn.BatchNorm1d(3), nn.MaxPool1d(3, 2, 1, ceil_mode=True),
                        nn.AvgPool1d(2, padding=1, count_include_pad=False), nn.LPPool1d(2, 2),
                        nn.AdaptiveAvgPool1d(3))
    three = nn.Sequential(nn.BatchNorm3d(2), nn.MaxPool3d(2, (1, 2, 2), dilation=(1, 1, 2)),
                          nn.AvgPool3d(2, ceil_mode=True), nn.LPPool3d(1, 2, 1), nn.AdaptiveAvgPool3d((2, 3, 1)),
                          nn.AdaptiveMaxPool3d(1))
    return {"1d": (one, (3, 23)), "3d": (three, (2, 7, 9, 11))}


@pytest.mark.parametrize("name", ["1d", "3d"])
def test_n_d_pool_models_export_and_load_back(name, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from cnnkit.onnx import export, load

    model, size = _pool_models()[name]
    model(cnnkit.tensor(_random((4, *size), scale=3.0) + 1))  # running statistics that are not 0 and 1
    model.eval()
    x = _random((3, *size), seed=1)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(x)).numpy()
        path = export(model, size, tmp_path / f"{name}.onnx")
        again = load(path)(x).numpy()
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(again, expected, rtol=1e-6, atol=1e-7)


class _TorchPools(TNN.Module):
    """1-D or 3-D pools and a batch norm as torch.onnx.export writes them (it writes MaxUnpool as ScatterND and
    LPPool with Sign, which cnnkit does not load: those two are left out)."""

    def __init__(self, dims):
        super().__init__()
        self.norm = TNN.BatchNorm1d(3) if dims == 1 else TNN.BatchNorm3d(3)
        self.pool = TNN.MaxPool1d(3, 1, 1) if dims == 1 else TNN.MaxPool3d(3, 1, 1)
        self.average = TNN.AvgPool1d(3, 2, 1) if dims == 1 else TNN.AvgPool3d(3, 2, 1, count_include_pad=False)
        self.adaptive = TNN.AdaptiveAvgPool1d(1) if dims == 1 else TNN.AdaptiveMaxPool3d(1)

    def forward(self, x):
        return self.adaptive(self.average(self.pool(self.norm(x))))


@pytest.mark.parametrize("dims, size", [(1, (3, 16)), (3, (3, 4, 6, 8))])
def test_torch_exported_n_d_pools_load_and_match_torch(dims, size, tmp_path):
    pytest.importorskip("onnx")
    from cnnkit.onnx import load

    torch.manual_seed(0)
    module = _TorchPools(dims)
    module(torch.randn(4, *size) * 2 + 1)
    module.eval()
    path = tmp_path / f"pools{dims}d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.randn(2, *size),), str(path), dynamo=False, opset_version=17,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}})
    x = torch.randn(3, *size)
    with torch.no_grad():
        expected = module(x).numpy()
    with cnnkit.no_grad():
        got = load(path)(x.numpy()).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


class _Unpooling(nn.Module):
    """Max pooling whose indices feed an unpooling (SegNet's decoder step) over ``dims`` spatial axes."""

    def __init__(self, dims, keep_size=False):
        super().__init__()
        self.pool = getattr(nn, f"MaxPool{dims}d")(2, return_indices=True)
        self.unpool = getattr(nn, f"MaxUnpool{dims}d")(2)
        self.keep_size = keep_size

    def forward(self, x):
        values, indices = self.pool(x)
        return self.unpool(values * 2, indices, output_size=x.shape if self.keep_size else None) + 1


@pytest.mark.parametrize("dims, size", [(1, (3, 12)), (2, (2, 6, 8)), (3, (2, 4, 6, 4))])
def test_max_pool_indices_and_unpooling_export_as_one_maxpool_maxunpool_pair(dims, size, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from cnnkit.onnx import export, load

    model = _Unpooling(dims)
    x = _random((3, *size))
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(x)).numpy()
        path = export(model, size, tmp_path / "unpool.onnx")
        again = load(path)(x).numpy()
    nodes = onnx.load(str(path)).graph.node
    pool, unpool = (next(n for n in nodes if n.op_type == kind) for kind in ("MaxPool", "MaxUnpool"))
    assert unpool.input[1] == pool.output[1]  # the pool's Indices output feeds the unpooling
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_array_equal(session.run(None, {"input": x})[0], expected)
    np.testing.assert_array_equal(again, expected)


def test_unpooling_to_a_size_other_than_the_default_is_not_exported(tmp_path):
    pytest.importorskip("onnx")
    from cnnkit.onnx import OnnxError, export

    with pytest.raises(OnnxError, match=r"max_unpool to \(7, 8\) instead of its default size \(6, 8\)"):
        export(_Unpooling(2, keep_size=True), (2, 7, 8), tmp_path / "unpool.onnx")


# --------------------------------------------------------------------------------------------------- summary
@pytest.mark.parametrize("name", ["1d", "3d"])
def test_summary_lists_n_d_pools_with_their_output_shapes(name):
    from cnnkit.analysis import summary

    model, size = _pool_models()[name]
    table = summary(model, size, batch_size=2)
    with cnnkit.no_grad():
        x = cnnkit.tensor(np.random.default_rng(0).standard_normal((2, *size)).astype(np.float32))
        shapes = []
        for layer in model:
            x = layer(x)
            shapes.append([list(x.shape)])
    assert [row.output_shape for row in table.layers] == shapes
    assert table.total_params == 2 * size[0]  # the batch norm's weight and bias
