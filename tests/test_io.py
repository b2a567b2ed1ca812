"""cnnkit.io: safetensors checkpoints round trip, rebuild from metadata, survive kills, and fail clearly."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import cnnkit
from cnnkit import backend, io, nn, optim
from cnnkit.io.state import decode_state, encode_state
from cnnkit.models import create
from cnnkit.optim import lr_scheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train_a_little(model, optimizer, scheduler=None, steps=2):
    for _ in range(steps):
        x = cnnkit.randn(4, 1, 28, 28)
        loss = (model(x) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if scheduler is not None:
        scheduler.step()


def _assert_same_state(a, b):
    assert list(a) == list(b)
    for key in a:
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)


def test_state_encoding_round_trips_nested_values():
    value = {"state": {0: {"step": np.array(3.0, np.float32), "exp_avg": np.arange(6.0).reshape(2, 3)}},
             "param_groups": [{"lr": 0.1, "betas": (0.9, 0.999), "params": [0, 1], "name": None}],
             "best": float("inf"), "scalar": np.float32(0.25)}
    text, arrays = encode_state(value, "optimizer")
    assert "optimizer.state.0.exp_avg" in arrays
    decoded = decode_state(text, arrays)
    assert list(decoded["state"]) == [0]
    assert decoded["param_groups"][0]["betas"] == (0.9, 0.999)
    assert decoded["best"] == float("inf")
    assert decoded["scalar"].dtype == np.float32 and decoded["scalar"] == np.float32(0.25)
    np.testing.assert_array_equal(decoded["state"][0]["exp_avg"], value["state"][0]["exp_avg"])
    assert decoded["state"][0]["step"].dtype == np.float32


@pytest.mark.parametrize("name", ["lenet5", "simple_cnn"])  # simple_cnn: BatchNorm buffers, 0-d counters
def test_checkpoint_round_trip_restores_model_optimizer_scheduler_rng_and_epoch(tmp_path, name):
    model = create(name, num_classes=10, in_channels=1)
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    scheduler = lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    _train_a_little(model, optimizer, scheduler)
    path = tmp_path / "ckpt.safetensors"
    rng_state = backend.get_rng_state()
    io.save_checkpoint(path, model, optimizer, scheduler, epoch=7, extra={"classes": ["a", "b"], "best": 0.5})
    expected_draw = backend.get_rng().random(3)

    cnnkit.manual_seed(123)
    fresh = create(name, num_classes=10, in_channels=1)
    fresh_optimizer = optim.Adam(fresh.parameters(), lr=0.5)
    fresh_scheduler = lr_scheduler.StepLR(fresh_optimizer, step_size=1, gamma=0.5)
    state = io.load_checkpoint(path, fresh, fresh_optimizer, fresh_scheduler)

    _assert_same_state(model.state_dict(), fresh.state_dict())
    assert all(fresh.state_dict()[key].shape == value.shape for key, value in model.state_dict().items())
    saved, loaded = optimizer.state_dict(), fresh_optimizer.state_dict()
    assert loaded["param_groups"] == saved["param_groups"]
    for index, entry in saved["state"].items():
        _assert_same_state(entry, loaded["state"][index])
    assert fresh_scheduler.state_dict() == scheduler.state_dict()
    assert state["epoch"] == 7 and state["extra"] == {"classes": ["a", "b"], "best": 0.5}
    assert state["rng_state"] == rng_state
    backend.set_rng_state(state["rng_state"])
    np.testing.assert_array_equal(backend.get_rng().random(3), expected_draw)


def test_load_model_rebuilds_the_network_from_metadata(tmp_path):
    model = create("lenet5", num_classes=4, in_channels=3, activation="tanh", pool="avg")
    path = tmp_path / "weights.safetensors"
    io.save_weights(model, path)
    rebuilt = io.load_model(path)
    assert rebuilt.model_name == "lenet5"
    assert rebuilt.model_config == {"num_classes": 4, "in_channels": 3, "activation": "tanh", "pool": "avg"}
    assert not rebuilt.training
    x = cnnkit.randn(2, 3, 28, 28)
    np.testing.assert_array_equal(rebuilt(x).data, model.eval()(x).data)
    # a full checkpoint rebuilds the same way
    io.save_checkpoint(tmp_path / "full.safetensors", model, epoch=1)
    np.testing.assert_array_equal(io.load_model(tmp_path / "full.safetensors")(x).data, model(x).data)


def test_float64_weights_rebuild_as_float64(tmp_path):
    model = create("lenet5").double()
    io.save_weights(model, tmp_path / "w.safetensors")
    assert io.load_model(tmp_path / "w.safetensors").classifier[1].weight.dtype == np.float64


_WRITER = """
import sys
import numpy as np
import cnnkit
from cnnkit import io, nn

class Big(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(np.zeros(1_500_000, dtype=np.float32))

model = Big()
index = 0
while True:
    model.weight.data[:] = index
    io.save_checkpoint(sys.argv[1], model, epoch=index, extra={"value": index})
    if index == 0:
        print("ready", flush=True)
    index += 1
"""


def test_killed_writer_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "last.safetensors"
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for delay in (0.05, 0.23):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, env=env)
        try:
            assert writer.stdout.readline().strip() == b"ready"
            time.sleep(delay)  # kill it at some point of its write loop, most likely in the middle of a write
        finally:
            writer.send_signal(signal.SIGKILL)
            writer.wait()
            writer.stdout.close()
        state = io.load_checkpoint(path, _big_module())
        value = state["extra"]["value"]
        assert state["epoch"] == value
        assert np.all(state["model"].weight.data == value)


def _big_module():
    class Big(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(np.zeros(1_500_000, dtype=np.float32))

    return Big()


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "model.safetensors"
    io.save_checkpoint(path, create("lenet5", num_classes=10, in_channels=1), epoch=1)
    return path


def test_truncated_file_is_a_clear_error(checkpoint):
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.CheckpointError, match="truncated") as info:
        io.load_model(checkpoint)
    assert str(checkpoint) in str(info.value)


def test_random_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "noise.safetensors"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(io.CheckpointError, match="not a readable safetensors file") as info:
        io.load_checkpoint(path, create("lenet5"))
    assert str(path) in str(info.value)
    with pytest.raises(io.CheckpointError):
        io.load_state_dict(path)


def test_flipped_tensor_byte_fails_the_checksum(checkpoint):
    data = bytearray(checkpoint.read_bytes())
    data[-10] ^= 0xFF  # inside the last tensor, after the header
    checkpoint.write_bytes(bytes(data))
    with pytest.raises(io.CheckpointError, match="corrupted"):
        io.load_model(checkpoint)


def test_checkpoint_of_another_model_is_a_clear_error(checkpoint):
    with pytest.raises(io.CheckpointError, match="'lenet5'.*'simple_cnn'"):
        io.load_checkpoint(checkpoint, create("simple_cnn", num_classes=10, in_channels=1))


def test_mismatched_shapes_name_the_keys(checkpoint):
    with pytest.raises(io.CheckpointError, match=r"classifier\.5\.weight: checkpoint \(10, 84\) vs model \(5, 84\)"):
        io.load_checkpoint(checkpoint, create("lenet5", num_classes=5, in_channels=1))
    # a model without a registry name is checked by its keys and shapes alone
    plain = create("lenet5", num_classes=5, in_channels=1)
    del plain.model_name
    with pytest.raises(io.CheckpointError, match="does not fit"):
        io.load_checkpoint(checkpoint, plain)


def test_missing_optimizer_state_is_a_clear_error(checkpoint):
    model = create("lenet5", num_classes=10, in_channels=1)
    with pytest.raises(io.CheckpointError, match="no optimizer state"):
        io.load_checkpoint(checkpoint, model, optim.SGD(model.parameters(), lr=0.1))


def test_weights_without_model_name_cannot_rebuild(tmp_path):
    model = create("lenet5")
    del model.model_name
    io.save_weights(model, tmp_path / "w.safetensors")
    with pytest.raises(io.CheckpointError, match="no model name"):
        io.load_model(tmp_path / "w.safetensors")
    assert set(io.load_state_dict(tmp_path / "w.safetensors")) == set(create("lenet5").state_dict())


def _torch_lenet():
    torch = pytest.importorskip("torch")
    tnn = torch.nn
    torch.manual_seed(0)
    model = tnn.Module()
    model.features = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2),
                                    tnn.Conv2d(6, 16, 5), tnn.ReLU(), tnn.MaxPool2d(2))
    model.classifier = tnn.Sequential(tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(), tnn.Linear(120, 84),
                                      tnn.ReLU(), tnn.Linear(84, 10))
    return torch, model


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_torch_saved_state_dict_loads_and_matches_torch(tmp_path, suffix):
    torch, reference = _torch_lenet()
    path = tmp_path / f"torch_lenet{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(reference.state_dict(), str(path))
    else:
        torch.save(reference.state_dict(), path)
    model = create("lenet5", num_classes=10, in_channels=1)
    model.load_state_dict(io.load_state_dict(path))
    x = np.random.default_rng(1).standard_normal((2, 1, 28, 28)).astype(np.float32)
    expected = reference.classifier(reference.features(torch.from_numpy(x))).detach().numpy()
    np.testing.assert_allclose(model(cnnkit.tensor(x)).data, expected, rtol=1e-4, atol=1e-5)


def test_latest_pointer_resolves_to_the_run_checkpoint(tmp_path):
    run = tmp_path / "runs" / "lenet5-shapes-1"
    run.mkdir(parents=True)
    io.save_weights(create("lenet5"), run / "last.safetensors")
    pointer = io.write_latest(run)
    assert os.path.basename(pointer) == "latest"
    assert os.path.samefile(io.resolve_checkpoint(pointer), run / "last.safetensors")
    io.save_weights(create("lenet5"), run / "best.safetensors")
    assert os.path.samefile(io.resolve_checkpoint(run), run / "best.safetensors")
    assert os.path.samefile(io.resolve_checkpoint(pointer, prefer="last"), run / "last.safetensors")
    with pytest.raises(FileNotFoundError, match="without best.safetensors or last.safetensors"):
        io.resolve_checkpoint(tmp_path)


def test_metadata_is_json_strings(checkpoint):
    from safetensors import safe_open

    with safe_open(str(checkpoint), framework="np") as file:
        metadata = file.metadata()
    assert metadata["format"] == "cnnkit" and metadata["model_name"] == "lenet5"
    assert json.loads(metadata["model_config"]) == {"num_classes": 10, "in_channels": 1}
    assert json.loads(metadata["epoch"]) == 1
    assert isinstance(json.loads(metadata["rng_state"]), dict)


def test_newer_format_version_is_refused(tmp_path):
    from cnnkit.io.files import write_safetensors

    path = tmp_path / "future.safetensors"
    write_safetensors(path, {"model.weight": np.zeros(3, np.float32)},
                      {"format": "cnnkit", "format_version": "99", "kind": "checkpoint"})
    with pytest.raises(io.CheckpointError, match="format version 99, newer than"):
        io.load_model(path)
