"""The command line under user mistakes: range-checked numbers, one line on stderr, a non-zero exit, no traceback."""
import errno
import os
import re
import struct
import subprocess
import sys
import zlib

import pytest
from PIL import Image

import cnnkit
from cnnkit.cli import main
from cnnkit.io import save_checkpoint
from cnnkit.models import create


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-errors")
    cnnkit.manual_seed(1)
    model = create("lenet5", num_classes=3, in_channels=1, image_size=28)
    save_checkpoint(folder / "best.safetensors", model,
                    extra={"data": {"classes": ["a", "b", "c"], "in_channels": 1, "image_size": 28}})
    Image.new("L", (28, 28)).save(folder / "ok.png")
    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 0, 0, 0, 0)

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    (folder / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    (folder / "text.png").write_bytes(b"not a picture")
    return folder


NUMERIC_MISTAKES = [
    ("predict {ckpt} {ok} --top 0", "--top"),
    ("predict {ckpt} {ok} --top -2", "--top"),
    ("predict {ckpt} {ok} --top five", "--top"),
    ("predict {ckpt} {ok} --image-size 0", "--image-size"),
    ("predict {ckpt} {ok} --image-size 1000000", "--image-size"),
    ("train --epochs 0", "--epochs"),
    ("train --epochs -5", "--epochs"),
    ("train --batch-size 0", "--batch-size"),
    ("train --lr -0.1", "--lr"),
    ("train --lr nan", "--lr"),
    ("train --lr inf", "--lr"),
    ("train --momentum 2", "--momentum"),
    ("train --weight-decay -1", "--weight-decay"),
    ("train --image-size 0", "--image-size"),
    ("train --seed -1", "--seed"),
    ("train --patience 0", "--patience"),
    ("train --warmup-epochs -1", "--warmup-epochs"),
    ("train --workers -1", "--workers"),
    ("eval {ckpt} --batch-size 0", "--batch-size"),
    ("export {ckpt} out.onnx --opset 0", "--opset"),
    ("models --num-classes 0", "--num-classes"),
    ("summary lenet5 --batch-size 0", "--batch-size"),
    ("serve --port 70000", "--port"),
    ("serve --threads 0", "--threads"),
    ("serve --train-epochs 0", "--train-epochs"),
    ("viz filters {ckpt} --max-filters 0", "--max-filters"),
    ("viz im2col --size 0", "--size"),
    ("viz im2col --stride 0", "--stride"),
    ("viz im2col --padding -1", "--padding"),
    ("viz rf lenet5 --channel -1", "--channel"),
]


def run_cli(command, files, capsys):
    argv = command.format(ckpt=files / "best.safetensors", ok=files / "ok.png", folder=files).split()
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command, option", NUMERIC_MISTAKES)
def test_every_numeric_option_is_range_checked(command, option, files, capsys):
    code, out, err = run_cli(command, files, capsys)
    assert code == 2 and out == ""
    assert f"argument {option}:" in err and ("must be" in err or "expected" in err)


OTHER_MISTAKES = [
    ("predict {ckpt} {folder}/bomb.png", "image too large: 60000 x 60000"),
    ("predict {ckpt} {folder}/text.png", "not an image"),
    ("predict {ckpt} {folder}/missing.png", "missing.png"),
    ("predict {folder}/ok.png {ok}", "safetensors"),
    ("viz features {ckpt} {folder}/bomb.png", "image too large"),
    ("viz rf lenet5 --image {folder}/bomb.png", "image too large"),
    ("summary nope", "unknown model"),
    ("summary lenet5 --input 1x0x28", "--input"),
    ("summary lenet5 --input 1x99999x99999", "4096 pixels a side"),
    ("export {ckpt} {folder}/out.onnx --input 1x5000x28", "4096 pixels a side"),
    ("rf lenet5 --option image_size=abc", "option image_size"),
    ("train --option image_size=abc", "option image_size"),
    ("train --model nope", "unknown model"),
    ("eval {folder}/missing", "no such checkpoint"),
]


@pytest.mark.parametrize("command, words", OTHER_MISTAKES)
def test_user_mistakes_are_one_line_on_stderr(command, words, files, capsys):
    code, out, err = run_cli(command, files, capsys)
    assert code == 2 and "error" not in out.lower()
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_real_process_exits_non_zero_with_the_error_on_stderr(files):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(cnnkit.__file__))}
    result = subprocess.run([sys.executable, "-m", "cnnkit", "predict", str(files / "best.safetensors"),
                             str(files / "bomb.png"), "--top", "3"], capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("cnnkit predict: error: image too large") and "Traceback" not in result.stderr


def test_uncaught_value_errors_become_one_line(monkeypatch, capsys):
    from cnnkit.cli import models as models_command

    def broken(args):
        raise MemoryError()

    monkeypatch.setattr(models_command, "run", broken)
    assert main(["models"]) == 2
    assert capsys.readouterr().err.startswith("cnnkit models: error: out of memory")


# ------------------------------------------------------------------ checkpoint writes
def test_a_fresh_run_removes_a_killed_writes_temp_file(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    stale = [out / ".last.safetensors.k1ll3d.tmp", out / ".best.safetensors.abc.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    unrelated = out / ".notes.tmp"
    unrelated.write_bytes(b"keep")
    assert main(["train", "--epochs", "1", "--out", str(out), "--train-split", "train[:64]", "--val-split", "none",
                 "--batch-size", "32", "--no-progress"]) == 0
    assert not any(path.exists() for path in stale) and unrelated.exists()
    assert [name for name in os.listdir(out) if name.endswith(".tmp") and name != ".notes.tmp"] == []


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EACCES])
def test_a_failed_checkpoint_write_names_the_path_and_keeps_the_old_file(code, tmp_path, monkeypatch):
    from cnnkit.io import files as io_files

    model = create("lenet5", num_classes=3, in_channels=1)
    path = tmp_path / "last.safetensors"
    save_checkpoint(path, model)
    before = path.read_bytes()

    def full(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(io_files.os, "fsync", full)
    with pytest.raises(OSError) as caught:
        save_checkpoint(path, model)
    assert str(path) in str(caught.value) and os.strerror(code) in str(caught.value)
    assert caught.value.errno == code
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.safetensors"]


def test_train_on_a_full_disk_names_the_file_on_stderr(tmp_path, monkeypatch, capsys):
    from cnnkit.io import files as io_files

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(io_files.os, "fsync", full)
    out = tmp_path / "run"
    code = main(["train", "--epochs", "1", "--out", str(out), "--train-split", "train[:64]", "--val-split", "none",
                 "--batch-size", "32", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(f"cannot write {re.escape(str(out))}/(best|last).safetensors: No space left on device", err)
    assert [name for name in os.listdir(out) if name.endswith(".tmp")] == []
