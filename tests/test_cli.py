"""The ``cnnkit train / eval / predict`` commands, run in-process with tiny settings."""
import json
import os
import re

import numpy as np
import pytest

from cnnkit import data, io
from cnnkit.cli import main

TINY = ["--train-split", "train[:192]", "--val-split", "test[:96]", "--batch-size", "32", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "lenet"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_metrics_and_checkpoints(run_dir, capsys):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1]
    assert {"train_loss", "val_loss", "val_top1", "val_top5", "lr", "seconds"} <= set(records[0])
    assert (run_dir / "last.safetensors").exists() and (run_dir / "best.safetensors").exists()
    metadata = io.read_metadata(run_dir / "best.safetensors")
    assert metadata["model_name"] == "lenet5"
    assert metadata["extra"]["config"]["dataset"] == "shapes"
    assert metadata["extra"]["data"]["classes"] == list(data.dataset_info("shapes")["classes"])


def test_train_resumes_and_extends_a_run(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("last.safetensors", "metrics.jsonl"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    assert main(["train", "--resume", str(copy), "--epochs", "2", "--no-progress"]) == 0
    output = capsys.readouterr().out
    assert "resumed from" in output and "epoch 2/2" in output and "epoch 1/2" not in output
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    # the resumed run kept the original run's settings
    assert io.read_metadata(copy / "last.safetensors")["extra"]["config"]["train_split"] == "train[:192]"


def test_eval_prints_accuracy_and_confusion_matrix(run_dir, capsys):
    assert main(["eval", str(run_dir), "--no-progress"]) == 0
    output = capsys.readouterr().out
    top1 = float(re.search(r"top-1 ([\d.]+)%", output).group(1))
    record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
    assert top1 == pytest.approx(100 * record["val_top1"], abs=0.01)  # the same split as in training
    assert "(96 images)" in output and "confusion matrix" in output
    classes = data.dataset_info("shapes")["classes"]
    table = output.split("confusion matrix")[1].strip().splitlines()[1:]
    assert len(table) == 1 + len(classes)
    counts = [int(value) for row in table[1:] for value in row.split()[-1 - len(classes):-1]]
    assert sum(counts) == 96


def test_predict_prints_top_classes_for_image_files(run_dir, tmp_path, capsys):
    from PIL import Image

    shapes = data.load_dataset("shapes", split="test[:2]")
    paths = []
    for index in range(2):
        image, _ = shapes[index]
        array = np.asarray(getattr(image, "data", image))
        path = tmp_path / f"shape{index}.png"
        Image.fromarray(np.squeeze(array).astype(np.uint8)).save(path)
        paths.append(str(path))
    assert main(["predict", str(run_dir / "best.safetensors"), *paths, "--top", "3"]) == 0
    output = capsys.readouterr().out.splitlines()
    assert output[0] == paths[0] and output[4] == paths[1]
    probabilities = [float(line.split()[-1].rstrip("%")) for line in output[1:4]]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 100.01
    assert output[1].split()[1] in data.dataset_info("shapes")["classes"]


def test_bad_checkpoint_is_a_one_line_error(tmp_path, capsys):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"not a checkpoint at all" * 10)
    assert main(["eval", str(path)]) == 2
    error = capsys.readouterr().err
    assert "cnnkit eval: error:" in error and "Traceback" not in error


@pytest.mark.parametrize("command", [[], ["train"], ["eval"], ["predict"]])
def test_help_explains_with_examples(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    output = capsys.readouterr().out
    assert "usage: cnnkit" in output
    if command:
        assert "examples:" in output


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


def test_default_run_directory_and_latest_pointer(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--train-split", "train[:64]", "--val-split", "test[:32]",
                 "--no-progress"]) == 0
    runs = [path for path in (tmp_path / "runs").iterdir() if path.name != "latest"]
    assert len(runs) == 1 and runs[0].name.startswith("lenet5-shapes-")
    assert (tmp_path / "runs" / "latest" / "last.safetensors").exists()
    assert f"checkpoint: {os.path.join('runs', runs[0].name, 'best.safetensors')}" in capsys.readouterr().out
    assert main(["eval", "runs/latest", "--no-progress"]) == 0
    assert "(32 images)" in capsys.readouterr().out


# A `cnnkit train` process whose write of last.safetensors after epoch 2 stops half-way, so the test can
# kill it at a known point of a checkpoint write (os.fdopen/tempfile.mkstemp are what write_safetensors uses).
_TRAIN_HANGING_IN_A_WRITE = """
import os, sys, tempfile, time
real_mkstemp, real_fdopen, temp_paths = tempfile.mkstemp, os.fdopen, {}

def mkstemp(*args, **kwargs):
    handle, path = real_mkstemp(*args, **kwargs)
    temp_paths[handle] = path
    return handle, path

class HalfWriteThenHang:
    def __init__(self, file):
        self.file = file
    def __enter__(self):
        return self
    def __exit__(self, *exc_info):
        return self.file.__exit__(*exc_info)
    def __getattr__(self, name):
        return getattr(self.file, name)
    def write(self, payload):
        self.file.write(payload[:len(payload) // 2])
        self.file.flush()
        print("mid-write", len(payload), flush=True)
        time.sleep(600)

def fdopen(handle, *args, **kwargs):
    file = real_fdopen(handle, *args, **kwargs)
    path = temp_paths.pop(handle, "")
    metrics = os.path.join(os.path.dirname(path), "metrics.jsonl")
    if os.path.basename(path).startswith(".last.safetensors.") and os.path.exists(metrics):
        with open(metrics) as lines:
            if len(lines.read().splitlines()) == 2:  # epoch 2 is logged: this is its last.safetensors
                return HalfWriteThenHang(file)
    return file

tempfile.mkstemp, os.fdopen = mkstemp, fdopen
from cnnkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


_TRAIN_PAUSED_AT_STEP_8 = """
import sys, time
from cnnkit import optim
from cnnkit.train import Trainer
real_step, real_request_stop, steps, stop_requests = optim.SGD.step, Trainer.request_stop, [], []

def request_stop(self):  # what the Ctrl-C handler calls
    stop_requests.append(1)
    real_request_stop(self)

def step(self, closure=None):
    loss = real_step(self, closure)
    steps.append(1)
    if len(steps) == 8:  # batch 2 of epoch 2 (6 batches an epoch)
        print("paused", flush=True)
        for _ in range(12000):  # until the parent's SIGINT has been handled (at most 2 minutes)
            if stop_requests:
                break
            time.sleep(0.01)
    return loss

optim.SGD.step, Trainer.request_stop = step, request_stop
from cnnkit.cli import main
sys.exit(main(sys.argv[1:]))
"""

RESUMABLE_RUN = ["train", "--epochs", "3", *TINY]


def _metrics(run):
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["epoch"], r["train_loss"], r["train_top1"], r["val_loss"], r["val_top1"], r["lr"]) for r in records]


@pytest.fixture(scope="module")
def uninterrupted_metrics(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    assert main([*RESUMABLE_RUN, "--out", str(out)]) == 0
    return _metrics(out)


def _signal_child(script, out, ready, signum):
    """Run ``cnnkit train`` in a child process, send it ``signum`` once it prints ``ready``; return its output."""
    import signal
    import subprocess
    import sys
    import threading

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    child = subprocess.Popen([sys.executable, "-c", script, *RESUMABLE_RUN, "--out", str(out)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    watchdog = threading.Timer(180, child.kill)  # a child that never gets ready fails the test, not hangs it
    watchdog.start()
    try:
        lines = []
        for line in child.stdout:
            lines.append(line)
            if line.startswith(ready):
                break
        assert lines and lines[-1].startswith(ready), "".join(lines) + child.stderr.read()
        child.send_signal(signum)
        if signum == signal.SIGKILL:
            return lines, child.wait(), ""
        rest, errors = child.communicate(timeout=120)
        return lines + rest.splitlines(keepends=True), child.returncode, errors
    finally:
        watchdog.cancel()
        child.kill()
        child.wait()
        child.stdout.close()
        child.stderr.close()


def test_killed_during_a_checkpoint_write_then_resumed_reproduces_the_uninterrupted_run(
        tmp_path, capsys, uninterrupted_metrics):
    import signal

    killed_dir = tmp_path / "killed"
    lines, _, _ = _signal_child(_TRAIN_HANGING_IN_A_WRITE, killed_dir, "mid-write", signal.SIGKILL)
    full_size = int(lines[-1].split()[1])
    partial = list(killed_dir.glob(".last.safetensors.*.tmp"))  # the write the kill cut short
    assert len(partial) == 1 and partial[0].stat().st_size == full_size // 2
    assert io.load_checkpoint(killed_dir / "last.safetensors")["epoch"] == 1  # the previous checkpoint survived

    assert main(["train", "--resume", str(killed_dir), "--no-progress"]) == 0
    capsys.readouterr()
    assert _metrics(killed_dir) == uninterrupted_metrics  # bit for bit, all three epochs
    assert len(uninterrupted_metrics) == 3
    assert not partial[0].exists()  # the resumed run removed the unfinished write


def test_ctrl_c_saves_the_position_in_the_epoch_and_resume_continues_exactly(tmp_path, capsys, uninterrupted_metrics):
    import signal

    stopped_dir = tmp_path / "stopped"
    _, returncode, errors = _signal_child(_TRAIN_PAUSED_AT_STEP_8, stopped_dir, "paused", signal.SIGINT)
    assert returncode == 130, errors
    assert f"stopped in epoch 2 after batch 2; {stopped_dir / 'last.safetensors'} continues from there" in errors
    assert f"continue with: cnnkit train --resume {stopped_dir}" in errors and "Traceback" not in errors
    assert main(["train", "--resume", str(stopped_dir), "--no-progress"]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert _metrics(stopped_dir) == uninterrupted_metrics  # bit for bit, the interrupted epoch included


def test_train_lenet5_on_real_mnist_digits_from_a_local_folder(mnist_dir, tmp_path, monkeypatch, capsys):
    # the README's MNIST command, shortened: 512 of the shared test digits, validated on 200 others
    out = tmp_path / "mnist"
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(mnist_dir, tmp_path)  # as in --data-dir ../shared/data/mnist
    assert main(["train", "--model", "lenet5", "--dataset", "mnist", "--data-dir", relative, "--train-split",
                 "test[:512]", "--val-split", "test[9800:]", "--epochs", "3", "--batch-size", "32",
                 "--no-progress", "--out", str(out)]) == 0
    assert "on mnist 'test[:512]' (512 images), validating on 'test[9800:]' (200 images)" in capsys.readouterr().out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["train_loss"] > 0.8 * np.log(10)  # it starts near chance ...
    assert records[-1]["train_loss"] < 0.5 * records[0]["train_loss"]  # ... and the loss falls well below that
    assert records[-1]["val_top1"] > 0.5  # chance is 0.1
    assert io.read_metadata(out / "best.safetensors")["model_config"] == {"num_classes": 10, "in_channels": 1,
                                                                          "image_size": 28}
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the run recorded where the files are, not a relative path
    assert main(["eval", str(out), "--no-progress"]) == 0
    assert "lenet5 on mnist 'test[9800:]' (200 images)" in capsys.readouterr().out


def test_damaged_or_foreign_checkpoints_are_one_line_errors_in_every_command(run_dir, tmp_path, capsys):
    truncated = tmp_path / "truncated.safetensors"
    content = (run_dir / "best.safetensors").read_bytes()
    truncated.write_bytes(content[:len(content) // 3])
    image = tmp_path / "image.png"
    from PIL import Image

    Image.fromarray(np.zeros((28, 28), np.uint8)).save(image)
    for command in (["eval", str(truncated)], ["predict", str(truncated), str(image)],
                    ["train", "--resume", str(truncated)]):
        assert main(command) == 2, command
        error = capsys.readouterr().err
        assert f"{truncated} is not a readable safetensors file" in error and "truncated" in error, command
        assert "Traceback" not in error and len(error.strip().splitlines()) == 1
    # resuming a LeNet-5 checkpoint into another model
    assert main(["train", "--resume", str(run_dir), "--model", "simple_cnn", "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert "checkpoint of model 'lenet5'" in error and "'simple_cnn'" in error and "Traceback" not in error


def test_missing_data_files_say_where_to_put_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(data.MNIST, "mirrors", ((tmp_path / "offline").as_uri() + "/",))  # never the network
    folder = tmp_path / "mnist"
    assert main(["train", "--dataset", "mnist", "--data-dir", str(folder), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cnnkit train: error: MNIST: could not download train-images-idx3-ubyte.gz")
    assert f"Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz (gzipped or not) in {folder}" in error
    assert "Traceback" not in error


def test_train_eval_predict_on_an_image_folder_of_mixed_sizes(tmp_path, capsys):
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "pictures"
    for name, size in (("cats", (30, 40)), ("dogs", (36, 36))):  # (width, height): files of different sizes
        (root / name).mkdir(parents=True)
        for index in range(6):
            pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index}.png")
    out = tmp_path / "run"
    assert main(["train", "--dataset", "folder", "--data-dir", str(root), "--image-size", "28", "--epochs", "1",
                 "--train-split", "train[:75%]", "--val-split", "train[75%:]", "--batch-size", "4",
                 "--no-progress", "--out", str(out)]) == 0
    assert "(9 images), validating on 'train[75%:]' (3 images)" in capsys.readouterr().out
    metadata = io.read_metadata(out / "best.safetensors")
    assert metadata["classes"] == ["cats", "dogs"] and metadata["model_config"]["image_size"] == 28
    assert main(["eval", str(out), "--no-progress"]) == 0
    assert "(3 images)" in capsys.readouterr().out
    assert main(["predict", str(out), str(root / "cats" / "0.png"), "--top", "2"]) == 0
    assert {line.split()[1] for line in capsys.readouterr().out.splitlines()[1:]} == {"cats", "dogs"}


def test_a_model_too_big_for_the_images_fails_before_training_with_a_hint(tmp_path, capsys):
    # NiN pools 28x28 images down to nothing; the check runs one blank image before the first epoch
    assert main(["train", "--model", "nin", "--out", str(tmp_path / "run"), *TINY]) == 2
    error = capsys.readouterr().err
    assert error.startswith("cnnkit train: error: nin cannot take 1x28x28 images: MaxPool2d")
    assert "--image-size" in error and "Traceback" not in error
    assert not (tmp_path / "run" / "last.safetensors").exists()


def test_the_default_learning_rate_suits_the_optimizer():
    from cnnkit.cli.main import build_parser
    from cnnkit.cli.train import resolve_config

    def lr(*flags, saved=None):
        return resolve_config(build_parser().parse_args(["train", *flags]), saved)["lr"]

    assert lr() == 0.05 and lr("--optimizer", "sgd") == 0.05
    assert lr("--optimizer", "adam") == lr("--optimizer", "adamw") == lr("--optimizer", "rmsprop") == 0.001
    assert lr("--optimizer", "adam", "--lr", "0.003") == 0.003
    assert lr(saved={"optimizer": "adam", "lr": 0.0005}) == 0.0005  # a resumed run keeps its own


def test_eval_on_a_data_set_with_other_classes_is_a_clear_error(run_dir, mnist_dir, capsys):
    assert main(["eval", str(run_dir), "--dataset", "mnist", "--data-dir", mnist_dir, "--split", "test[:50]",
                 "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "predicts 6 classes but mnist has 10" in error and "trained on shapes" in error


def test_image_size_draws_shapes_at_that_size(tmp_path, capsys):
    assert main(["train", "--image-size", "36", "--epochs", "1", "--out", str(tmp_path), *TINY]) == 0
    capsys.readouterr()
    metadata = io.read_metadata(tmp_path / "best.safetensors")
    assert metadata["model_config"]["image_size"] == 36 and metadata["extra"]["data"]["image_size"] == 36
    assert main(["eval", str(tmp_path), "--no-progress"]) == 0
    output = capsys.readouterr().out
    record = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert "(96 images)" in output  # the same images as in training, drawn at 36 pixels again:
    assert float(re.search(r"loss ([\d.]+)", output).group(1)) == pytest.approx(record["val_loss"], abs=1e-4)


def test_zoo_models_get_their_options_from_the_command_line():
    from cnnkit.cli.train import _model_options

    description = {"image_size": 28}
    resnet = {"model": "resnet18", "small_input": True, "options": ["width_per_group=64"]}
    assert _model_options(resnet, description, print) == {"small_input": True, "width_per_group": 64}
    lenet = {"model": "lenet5", "small_input": False, "options": ["activation=tanh", "pool=avg"]}
    assert _model_options(lenet, description, print) == {"image_size": 28, "activation": "tanh", "pool": "avg"}
    with pytest.raises(ValueError, match="lenet5 has no option colour; its options are: .*activation"):
        _model_options({"model": "lenet5", "small_input": False, "options": ["colour=red"]}, description, print)
