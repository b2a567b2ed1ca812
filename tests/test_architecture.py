"""Design rules enforced: one-way imports, ops take the array module from the backend, no pickle loads."""
import ast
import pathlib
import shutil
import subprocess

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "cnnkit"

# Layers of the design, lowest first; a module may import only from its own layer or lower ones.
LAYERS = [
    {"backend", "comm"},
    {"kernels"},  # array code only: the fast paths of the functional ops, picked through cnnkit.kernels.pick
    {"autograd"},
    {"functional"},
    {"nn"},
    {"models"},
    {"analysis", "optim", "data", "train", "io", "onnx", "viz", "distributed", "inference"},
    {"cli", "web"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# Within the middle layer the order is: data/optim -> train (uses them); io -> train; viz uses analysis/io/train.
SAME_LAYER_ALLOWED = {
    "train": {"data", "optim", "io", "analysis"},
    "viz": {"analysis", "io", "train", "data"},
    "onnx": {"io", "analysis"},
    "io": {"optim", "data"},
    "web": {"cli"},
    "cli": {"web"},
}


def _package_of(path):
    parts = path.relative_to(PACKAGE).parts
    return parts[0].removesuffix(".py") if parts else None


def _imported_packages(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # folders below cnnkit/
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up < depth:
                    continue  # relative import inside the same package
                target = (node.module or "").split(".")[0]
                if target:
                    yield target, node.lineno
                else:
                    for alias in node.names:
                        yield alias.name, node.lineno
            elif node.module and node.module.startswith("cnnkit."):
                yield node.module.split(".")[1], node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cnnkit."):
                    yield alias.name.split(".")[1], node.lineno


def _sources():
    top_level = ("backend", "comm")
    return sorted(p for p in PACKAGE.rglob("*.py") if len(p.relative_to(PACKAGE).parts) > 1 or p.stem in top_level)


def test_imports_point_downward_only():
    violations = []
    for path in _sources():
        own = _package_of(path)
        if own not in RANK:
            continue
        for target, line in _imported_packages(path):
            if target not in RANK or target == own:
                continue
            same_layer_ok = target in SAME_LAYER_ALLOWED.get(own, ())
            if RANK[target] > RANK[own] or (RANK[target] == RANK[own] and not same_layer_ok):
                violations.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({own}) imports {target}")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def _numpy_imports(path):
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
            [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == "numpy" or n.startswith("numpy.") for n in names):
            yield node.lineno


@pytest.mark.parametrize("package", ["autograd", "functional", "nn"])
def test_ops_and_layers_take_the_array_module_from_the_backend(package):
    """Only backend (and the kernels' array code) imports NumPy, so another array module can be switched in."""
    offenders = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        name = str(path.relative_to(PACKAGE.parent))
        offenders += [f"{name}:{line}" for line in _numpy_imports(path)]
    assert not offenders, "use backend.get_array_module(), not numpy directly: " + ", ".join(offenders)


def _private_names_used(path, packages):
    """(line, 'package._name') for each private name of ``packages`` that ``path`` imports or reads."""
    tree = ast.parse(path.read_text())
    bound = {}  # local name -> the package it is (or is a module of)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(path, node)
            for alias in node.names:
                package = target or alias.name
                if package in packages:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        yield node.lineno, f"{package}.{alias.name}"
                    bound[alias.asname or alias.name] = package
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if alias.asname and parts[0] == "cnnkit" and len(parts) > 1 and parts[1] in packages:
                    bound[alias.asname] = parts[1]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                and node.attr.startswith("_") and not node.attr.startswith("__")):
            yield node.lineno, f"{bound[node.value.id]}.{node.attr}"


def _resolve(path, node):
    """The cnnkit package an ImportFrom reaches (``from ..backend import x`` -> 'backend'), or None for 'cnnkit'."""
    if not node.level:
        parts = (node.module or "").split(".")
        return parts[1] if parts[0] == "cnnkit" and len(parts) > 1 else (None if parts == ["cnnkit"] else "")
    here = list(path.relative_to(PACKAGE).parts[:-1])
    base = here[:len(here) - (node.level - 1)] if node.level - 1 <= len(here) else []
    full = base + ((node.module or "").split(".") if node.module else [])
    return full[0] if full else None


def test_no_module_reads_the_backends_private_names():
    """Optimizers, layers and ops use backend's and the kernels' public functions, never their internals."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        own = _package_of(path)
        watched = {"backend", "kernels"} - {own}
        offenders += [f"{path.relative_to(PACKAGE.parent)}:{line} uses {name}"
                      for line, name in _private_names_used(path, watched)]
    assert not offenders, "private names used across packages:\n" + "\n".join(offenders)


def test_no_plain_pickle_loading():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for needle in ("pickle.load(", "pickle.loads(", "allow_pickle=True", "torch.load("):
            for line_no, line in enumerate(text.splitlines(), 1):
                if needle in line and "weights_only=True" not in line and "noqa: pickle" not in line:
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{line_no}: {line.strip()}")
    assert not offenders, "unsafe deserialisation:\n" + "\n".join(offenders)


def test_ruff_finds_nothing():
    """The lint rules of pyproject.toml hold over the package, the tests and the bench."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the [dev] extra)")
    root = PACKAGE.parent
    result = subprocess.run([ruff, "check", "--no-cache", "cnnkit", "tests", "bench"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
