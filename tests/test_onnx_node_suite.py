"""The official ONNX node tests (generated from the installed onnx package) for every operator cnnkit.onnx
runs: each must reproduce onnx's expected outputs within onnx's tolerances; the rest are counted as left out."""
import pytest

pytest.importorskip("onnx")

import onnx_node_tests as node_tests  # noqa: E402

from cnnkit.onnx import SUPPORTED_OPS  # noqa: E402
from cnnkit.onnx.ops import runnable  # noqa: E402


@pytest.fixture(scope="module")
def in_scope(request, tmp_path_factory):
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    folder = cache.mkdir("onnx-node-tests") if cache is not None else tmp_path_factory.mktemp("onnx-node-tests")
    return node_tests.in_scope(node_tests.collect(node_tests.generate(str(folder))), SUPPORTED_OPS, runnable)


def test_node_tests_of_supported_operators_pass(in_scope):
    tests, left_out = in_scope
    failures = {test.name: node_tests.outcome(test, node_tests.run_cnnkit) for test in tests}
    failures = {name: reason for name, reason in failures.items() if reason}
    operators = {test.op_type for test in tests}
    print(f"\nONNX node tests: {len(tests) - len(failures)} of {len(tests)} pass ({len(operators)} operators); "
          f"left out: {sum(left_out.values())} tests, {sum(1 for r in left_out if r.startswith('operator'))} operators "
          f"not supported")
    assert not failures, "\n".join(f"{name}: {reason}" for name, reason in sorted(failures.items()))
    # every operator of the supported set is exercised by at least one of its own node tests, or has none
    assert len(tests) > 400 and len(operators) > 70


def test_left_out_tests_are_unsupported_operators_or_types(in_scope):
    _, left_out = in_scope
    assert all(reason.split()[-1] not in SUPPORTED_OPS for reason in left_out if reason.startswith("operator"))
    assert left_out["operator Einsum"] > 0  # an operator cnnkit does not run is counted, not silently dropped
