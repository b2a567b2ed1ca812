"""PyTorch weights in and out: torch-saved files and live modules load into zoo models with the same eval
logits, cnnkit weights load into the torch layout with strict=True, and bad files fail clearly, never run code."""
import numpy as np
import pytest
from test_models import TORCHVISION_LAYOUTS, _randomise_batch_norm, _skip_init

import cnnkit
from cnnkit import io
from cnnkit.io import CheckpointError
from cnnkit.models import create

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

ACCEPTANCE_MODELS = ["resnet18", "vgg11_bn", "googlenet", "densenet121", "mobilenet_v2", "shufflenet_v2_x1_0",
                     "alexnet"]


def _reference(name):
    """The torch.nn rebuild of torchvision's layout with random weights and BatchNorm statistics, in eval mode."""
    builder, size = TORCHVISION_LAYOUTS[name]
    torch.manual_seed(0)
    module = builder().eval()
    _randomise_batch_norm(module)
    images = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    return module, images


def _logits_agree(module, model, images):
    with torch.no_grad():
        expected = module(torch.from_numpy(images)).numpy()
    with cnnkit.no_grad():
        got = model(cnnkit.tensor(images)).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def _reversed_weights(model):
    """New float weights for ``model``: each array's values in reverse order (same scale, different function)."""
    for _, value in model.state_dict(keep_vars=True).items():
        if value.data.dtype.kind == "f":
            value.data = np.ascontiguousarray(value.data.reshape(-1)[::-1]).reshape(value.shape)


@pytest.mark.parametrize("name", ACCEPTANCE_MODELS)
def test_torch_weights_file_loads_into_cnnkit_and_back_strictly(name, tmp_path, monkeypatch):
    module, images = _reference(name)
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(module.state_dict(), str(path))  # what a PyTorch user writes
    _skip_init(monkeypatch)  # the weights come from the file
    model = create(name).eval()
    model.load_state_dict(io.load_state_dict(path), strict=True)  # torchvision keys, num_batches_tracked too
    _logits_agree(module, model, images)

    # Back: different weights saved by cnnkit load into the torch layout with strict=True and agree again.
    _reversed_weights(model)
    back = tmp_path / "cnnkit.safetensors"
    io.save_weights(model, back)
    module.load_state_dict(safetensors_torch.load_file(str(back)), strict=True)
    _logits_agree(module, model, images)


def test_live_torch_module_and_pt_file_convert(tmp_path):
    module, images = _reference("resnet18")
    model = io.from_torch(module, create("resnet18").eval())
    _logits_agree(module, model, images)
    torch.save(module.state_dict(), tmp_path / "resnet18.pt")
    from_file = io.load_state_dict(tmp_path / "resnet18.pt")
    for key, value in io.from_torch(module).items():
        np.testing.assert_array_equal(from_file[key], value)

    _reversed_weights(model)
    io.to_torch(model, module)  # strict by default
    _logits_agree(module, model, images)


def test_mismatched_state_dict_lists_missing_unexpected_and_mis_shaped_keys():
    module, _ = _reference("resnet18")
    state = io.from_torch(module)
    del state["fc.bias"]
    state["fc.extra"] = np.zeros(3, np.float32)
    state["conv1.weight"] = np.zeros((64, 3, 3, 3), np.float32)
    with pytest.raises(ValueError) as error:
        create("resnet18").load_state_dict(state, strict=True)
    message = str(error.value)
    assert "missing keys (1): fc.bias" in message
    assert "unexpected keys (1): fc.extra" in message
    assert "conv1.weight: checkpoint (64, 3, 3, 3) vs model (64, 3, 7, 7)" in message


@pytest.fixture
def torch_weights(tmp_path):
    path = tmp_path / "small.safetensors"
    safetensors_torch.save_file(torch.nn.Conv2d(3, 8, 3).state_dict(), str(path))
    return path


def test_truncated_torch_safetensors_is_a_clear_error(torch_weights, tmp_path):
    data = torch_weights.read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) - 40])
    with pytest.raises(CheckpointError, match="truncated.safetensors is not a readable safetensors file"):
        io.load_state_dict(truncated)


def test_corrupted_safetensors_header_is_a_clear_error(torch_weights, tmp_path):
    data = bytearray(torch_weights.read_bytes())
    data[8:16] = b"\xff" * 8  # the JSON header starts at byte 8
    corrupted = tmp_path / "corrupted.safetensors"
    corrupted.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupted.safetensors"):
        io.load_state_dict(corrupted)


class _Payload:
    """Pickles to a call that would create a file when unpickled by a full (unsafe) pickle load."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_pt_file_with_code_is_refused_without_running_it(tmp_path):
    target = tmp_path / "created_by_the_file"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "payload": _Payload(str(target))}, path)
    with pytest.raises(CheckpointError, match="evil.pt could not be read by torch.load\\(weights_only=True\\)"):
        io.load_state_dict(path)
    assert not target.exists()
