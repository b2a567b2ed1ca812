"""The ONNX backend node tests: generated from the installed ``onnx`` package, run through ``cnnkit.onnx.load``.

``python tests/onnx_node_tests.py`` prints the counts for cnnkit and for onnxruntime on the same tests.
"""
from __future__ import annotations

import collections
import glob
import os
import sys
import warnings

import numpy as np

DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-7  # the tolerances onnx's own backend runner gives every node test
DEFAULT_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "d",
                             "onnx-node-tests")


def generate(cache):
    """Write every node test of the installed onnx into ``cache/onnx-<version>/node`` once; returns that folder.

    The layout is the one ``onnx.backend.test.cmd_tools generate-data`` writes: ``test_*/model.onnx`` and
    ``test_*/test_data_set_0/{input,output}_*.pb``.
    """
    import onnx
    from onnx import numpy_helper
    from onnx.backend.test.case import node as node_cases

    root = os.path.join(cache, f"onnx-{onnx.__version__}", "node")
    complete = os.path.join(root, ".complete")
    if os.path.exists(complete):
        return root
    with warnings.catch_warnings():  # the generators overflow on purpose while making their float8 cases
        warnings.simplefilter("ignore")
        cases = node_cases.collect_testcases()
    for case in cases:
        folder = os.path.join(root, case.name)
        data_folder = os.path.join(folder, "test_data_set_0")
        os.makedirs(data_folder, exist_ok=True)
        with open(os.path.join(folder, "model.onnx"), "wb") as file:
            file.write(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        _write_values(numpy_helper, onnx, data_folder, "input", inputs, case.model.graph.input)
        _write_values(numpy_helper, onnx, data_folder, "output", outputs, case.model.graph.output)
    with open(complete, "w") as file:
        file.write(f"{len(cases)}\n")
    return root


def _write_values(numpy_helper, onnx, folder, kind, values, declared):
    for index, (value, info) in enumerate(zip(values, declared)):
        if not info.type.HasField("tensor_type"):
            continue  # sequences, maps and optionals: no cnnkit operator takes them
        proto = value if isinstance(value, onnx.TensorProto) else numpy_helper.from_array(np.asarray(value),
                                                                                          info.name)
        with open(os.path.join(folder, f"{kind}_{index}.pb"), "wb") as file:
            file.write(proto.SerializeToString())


# Training-mode Dropout draws its mask from a random generator: the expected values come from NumPy's seeded
# one, so these tests check the definition instead (every output is 0 or x / (1 - ratio), as the mask says).
RANDOM = frozenset({"test_training_dropout", "test_training_dropout_default", "test_training_dropout_mask",
                    "test_training_dropout_default_mask"})


class NodeTest:
    """One generated test folder: its model, single op type (None for several nodes) and data."""

    def __init__(self, folder):
        import onnx

        self.folder, self.name = folder, os.path.basename(folder)
        self.model = onnx.load(os.path.join(folder, "model.onnx"))
        nodes = self.model.graph.node
        self.op_type = nodes[0].op_type if len(nodes) == 1 and nodes[0].domain in ("", "ai.onnx") else None

    def values(self, kind):
        import onnx
        from onnx import numpy_helper

        arrays = []
        for path in sorted(glob.glob(os.path.join(self.folder, "test_data_set_0", f"{kind}_*.pb")),
                           key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])):
            proto = onnx.TensorProto()
            with open(path, "rb") as file:
                proto.ParseFromString(file.read())
            arrays.append(numpy_helper.to_array(proto))
        return arrays

    def element_types(self):
        """The NumPy dtypes of the graph's declared inputs and outputs (None for non-tensor values)."""
        from onnx import helper

        types = []
        for info in [*self.model.graph.input, *self.model.graph.output]:
            element = info.type.tensor_type.elem_type if info.type.HasField("tensor_type") else 0
            try:
                types.append(np.dtype(helper.tensor_dtype_to_np_dtype(element)) if element else None)
            except (KeyError, TypeError):
                types.append(None)
        return types

    def tolerances(self):
        return DEFAULT_RTOL, DEFAULT_ATOL


def collect(root):
    """Every generated node test, sorted by name."""
    return [NodeTest(folder) for folder in sorted(glob.glob(os.path.join(root, "test_*")))]


def check(expected, actual, rtol, atol):
    """onnx's comparison: same count, shapes and dtypes, values within ``rtol``/``atol`` (NaN equal to NaN)."""
    if len(actual) != len(expected):
        raise AssertionError(f"{len(actual)} outputs, expected {len(expected)}")
    for index, (want, got) in enumerate(zip(expected, actual)):
        got = np.asarray(got)
        if got.shape != want.shape:
            raise AssertionError(f"output {index} has shape {got.shape}, expected {want.shape}")
        if got.dtype != want.dtype:
            raise AssertionError(f"output {index} has dtype {got.dtype}, expected {want.dtype}")
        if want.dtype == object:
            np.testing.assert_array_equal(got, want)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=f"output {index}")


def run_cnnkit(test):
    """The outputs of ``cnnkit.onnx.load`` on the test's inputs, as arrays."""
    from cnnkit.autograd import Tensor, no_grad
    from cnnkit.onnx import load

    module = load(os.path.join(test.folder, "model.onnx"))
    with no_grad():
        outputs = module(*test.values("input"))
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    return [np.asarray(o.data if isinstance(o, Tensor) else o) for o in outputs]


def run_onnxruntime(test):
    import onnxruntime

    onnxruntime.set_default_logger_severity(3)  # the opset-1 models draw a warning each
    session = onnxruntime.InferenceSession(os.path.join(test.folder, "model.onnx"),
                                           providers=["CPUExecutionProvider"])
    names = [value.name for value in session.get_inputs()]
    return session.run(None, dict(zip(names, test.values("input"))))


def check_dropout(inputs, expected, actual):
    """Training-mode Dropout: same shapes and types as expected, kept values scaled by 1 / (1 - ratio)."""
    x, ratio = inputs[0], float(inputs[1]) if len(inputs) > 1 else 0.5
    if len(actual) != len(expected) or any(a.shape != e.shape or a.dtype != e.dtype
                                           for a, e in zip(actual, expected)):
        raise AssertionError(f"outputs {[(a.shape, a.dtype) for a in actual]}, expected "
                             f"{[(e.shape, e.dtype) for e in expected]}")
    kept = actual[1] if len(actual) > 1 else actual[0] != 0
    np.testing.assert_allclose(actual[0], np.where(kept, x / (1 - ratio), 0), rtol=1e-6, atol=1e-7)
    if not 0 < kept.mean() < 1:
        raise AssertionError(f"ratio {ratio} kept {kept.mean():.0%} of the values")


def outcome(test, runner):
    """None when ``runner`` reproduces the test's outputs, else the reason it does not (one line)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            actual = runner(test)
        if test.name in RANDOM:
            check_dropout(test.values("input"), test.values("output"), actual)
        else:
            check(test.values("output"), actual, *test.tolerances())
    except Exception as error:  # a crash and a wrong value both fail the test; the message says which
        first = str(error).strip().splitlines()
        return f"{type(error).__name__}: {' '.join(line.strip() for line in first[:3])[:300]}"
    return None


def in_scope(tests, supported, runnable):
    """``(chosen, skipped)``: the single-node tests of ``supported`` operators whose inputs and outputs are
    tensors of NumPy types cnnkit runs, and a Counter of the reasons the other single-node tests were left out.
    """
    chosen, skipped = [], collections.Counter()
    for test in tests:
        if test.op_type is None:
            continue
        if test.op_type not in supported:
            skipped[f"operator {test.op_type}"] += 1
        elif any(dtype is None or not runnable(dtype) for dtype in test.element_types()):
            skipped["element type (float8, bfloat16, 4-bit, string, sequence, optional)"] += 1
        else:
            chosen.append(test)
    return chosen, skipped


def main():
    from cnnkit.onnx import SUPPORTED_OPS
    from cnnkit.onnx.ops import runnable

    tests, skipped = in_scope(collect(generate(DEFAULT_CACHE)), SUPPORTED_OPS, runnable)
    counts = {}
    for label, runner in (("cnnkit", run_cnnkit), ("onnxruntime", run_onnxruntime)):
        failures = {test.name: outcome(test, runner) for test in tests}
        failures = {name: reason for name, reason in failures.items() if reason}
        counts[label] = len(tests) - len(failures)
        for name, reason in failures.items():
            print(f"{label} FAIL {name}: {reason}")
    print(f"in scope: {len(tests)} tests of {len({t.op_type for t in tests})} operators; passed: cnnkit "
          f"{counts['cnnkit']}, onnxruntime {counts['onnxruntime']}; left out: {sum(skipped.values())} tests")
    for reason, count in sorted(skipped.items()):
        print(f"  left out {count:3d}: {reason}")


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()
