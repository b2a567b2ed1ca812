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
