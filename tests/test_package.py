"""``import cnnkit`` as ``import torch``: subpackages reachable as attributes, loaded only when first used."""
import json
import pathlib
import subprocess
import sys

import pytest

import cnnkit

PACKAGE = pathlib.Path(cnnkit.__file__).resolve().parent
SUBPACKAGES = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))


def _in_fresh_interpreter(code):
    """Run ``code`` in a new Python (so nothing is imported yet) and return what it printed as JSON."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_import_cnnkit_loads_no_layer_above_autograd():
    loaded = _in_fresh_interpreter(
        "import json, sys; import cnnkit; print(json.dumps(sorted(m for m in sys.modules if m.startswith('cnnkit'))))")
    heavy = {f"cnnkit.{name}" for name in ("nn", "functional", "models", "optim", "data", "io", "onnx",
                                             "analysis", "train", "viz", "web", "cli")}
    assert "cnnkit.autograd" in loaded and not heavy & set(loaded)


def test_subpackages_are_attributes_without_importing_them_first():
    found = _in_fresh_interpreter(
        "import json, cnnkit\n"
        "layer = cnnkit.nn.Conv2d(1, 2, 3)\n"
        "names = ['functional', 'optim', 'models', 'io', 'data', 'onnx', 'analysis', 'kernels', 'train']\n"
        "print(json.dumps({'conv': type(layer).__name__, 'modules': [getattr(cnnkit, n).__name__ for n in names],\n"
        "                  'lenet': cnnkit.models.create('lenet5').__class__.__name__}))")
    assert found["conv"] == "Conv2d" and found["lenet"] == "LeNet5"
    # all of them load with NumPy alone (viz and web need their extras, matplotlib and Flask)
    assert found["modules"] == [f"cnnkit.{name}" for name in ("functional", "optim", "models", "io", "data", "onnx",
                                                               "analysis", "kernels", "train")]


def test_every_subpackage_is_reachable_from_cnnkit():
    """A new subpackage needs its line in cnnkit/__init__.py's lazy table (autograd is imported eagerly)."""
    listed = _in_fresh_interpreter("import json, cnnkit; print(json.dumps(dir(cnnkit)))")
    assert SUBPACKAGES and [name for name in SUBPACKAGES if name not in listed] == []


def test_an_unknown_attribute_is_an_attribute_error():
    assert not hasattr(cnnkit, "no_such_subpackage")
    with pytest.raises(AttributeError, match="no_such_subpackage"):
        cnnkit.no_such_subpackage  # noqa: B018
