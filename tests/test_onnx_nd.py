"""1-D and 3-D convolution models through ONNX: cnnkit's export runs in onnxruntime, torch's export loads in cnnkit."""
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")

import cnnkit  # noqa: E402
from cnnkit import nn  # noqa: E402
from cnnkit import onnx as cnnkit_onnx  # noqa: E402


def _cnnkit_model(dims):
    """Conv (padding, stride, dilation, groups), ReLU, a transposed conv with output_padding, flatten, linear."""
    conv, transpose = {1: (nn.Conv1d, nn.ConvTranspose1d), 3: (nn.Conv3d, nn.ConvTranspose3d)}[dims]
    size = {1: 9, 3: 4}[dims]
    model = nn.Sequential(conv(3, 8, 3, padding=1), nn.ReLU(),
                          conv(8, 4, 3, stride=2, padding=((1, 0),) * dims, dilation=1, groups=2, bias=False),
                          nn.ReLU(), transpose(4, 6, 2, stride=2, output_padding=1, groups=2), nn.Flatten(),
                          nn.Linear(6 * (2 * ((size - 2) // 2 + 1) + 1) ** dims, 5))
    return model.eval(), (3,) + (size,) * dims


@pytest.mark.parametrize("dims", [1, 3])
def test_cnnkit_export_runs_in_onnxruntime(dims, tmp_path):
    model, input_size = _cnnkit_model(dims)
    path = cnnkit_onnx.export(model, input_size, tmp_path / f"conv{dims}d.onnx")
    nodes = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert nodes.count("Conv") == 2 and nodes.count("ConvTranspose") == 1
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(dims).standard_normal((2,) + input_size).astype(np.float32)
    with cnnkit.no_grad():
        expected = model(cnnkit.tensor(x)).numpy()
    assert expected.std() > 0
    np.testing.assert_allclose(session.run(None, {"input": x})[0], expected, atol=1e-5, rtol=1e-5)
    loaded = cnnkit_onnx.load(path)  # and back into cnnkit, with the weights under their own keys
    assert set(loaded.state_dict()) == set(model.state_dict())
    with cnnkit.no_grad():
        np.testing.assert_allclose(loaded(x).numpy(), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dims", [1, 3])
def test_torch_export_loads_into_cnnkit(dims, tmp_path):
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    conv, transpose = {1: (tnn.Conv1d, tnn.ConvTranspose1d), 3: (tnn.Conv3d, tnn.ConvTranspose3d)}[dims]
    torch.manual_seed(dims)
    module = tnn.Sequential(conv(2, 6, 3, stride=2, padding=1, dilation=1), tnn.ReLU(),
                            conv(6, 6, 3, padding="same", dilation=2, groups=3), tnn.ReLU(),
                            transpose(6, 4, 3, stride=2, padding=1, output_padding=1, groups=2)).eval()
    x = torch.randn((2, 2) + (7,) * dims)
    path = tmp_path / f"torch_conv{dims}d.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    model = cnnkit_onnx.load(path)
    with torch.no_grad():
        expected = module(x).numpy()
    with cnnkit.no_grad():
        got = model(x.numpy()).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)
