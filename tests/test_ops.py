"""Every functional op, from one table: float32 forward/backward against torch, float64 gradcheck, error cases.

Each spec runs on the reference path and under every kernel registered for its ``kernel_ops``; a kernel that
never applied to any of the spec's cases fails its test, so every fast path is covered by construction.
"""
import contextlib
import importlib
import pathlib

import pytest
from hypothesis import given, settings
from optable import check_against_torch, check_error, check_gradcheck

from cnnkit import backend, kernels

SPECS = []
for path in sorted(pathlib.Path(__file__).parent.glob("specs_*.py")):
    SPECS.extend(importlib.import_module(path.stem).SPECS)

pytest.importorskip("torch")


def _context(spec):
    return spec.context() if spec.context is not None else contextlib.nullcontext()


def _on_paths(specs):
    return [pytest.param(spec, path, id=f"{spec.name}[{path}]") for spec in specs for path in spec.paths()]


def _run_on_path(spec, path, strategy, check, max_examples=None):
    picked = set()

    @given(strategy)
    def run(case):
        with _context(spec), backend.use_kernels(path), kernels.record_picks() as picks:
            check(spec, case)
        picked.update(picks)

    if max_examples is not None:
        run = settings(max_examples=max_examples)(run)
    run()
    if path != "reference":
        assert path in picked, f"{spec.name}: kernel {path} applied to none of the cases; give it kernel_cases"


@pytest.mark.parametrize("spec, path", _on_paths(SPECS))
def test_matches_torch(spec, path):
    _run_on_path(spec, path, spec.cases_for(path), check_against_torch)


@pytest.mark.parametrize("spec, path", _on_paths([s for s in SPECS if s.gradcheck]))
def test_gradcheck(spec, path):
    strategy = spec.kernel_cases.get(path)
    if strategy is None:
        strategy = spec.gradcheck_cases if spec.gradcheck_cases is not None else spec.cases
    _run_on_path(spec, path, strategy, check_gradcheck, max_examples=6)


@pytest.mark.parametrize("spec, case", [pytest.param(s, c, id=f"{s.name}-{i}") for s in SPECS
                                        for i, c in enumerate(s.errors)])
def test_error_inputs(spec, case):
    check_error(spec, case)
