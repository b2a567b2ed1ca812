"""Every functional op, from one table: float32 forward/backward against torch, float64 gradcheck."""
import contextlib
import importlib
import pathlib

import pytest
from hypothesis import given, settings
from optable import check_against_torch, check_gradcheck

SPECS = []
for path in sorted(pathlib.Path(__file__).parent.glob("specs_*.py")):
    SPECS.extend(importlib.import_module(path.stem).SPECS)

pytest.importorskip("torch")


def _context(spec):
    return spec.context() if spec.context is not None else contextlib.nullcontext()


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_matches_torch(spec):
    @given(spec.cases)
    def run(case):
        with _context(spec):
            check_against_torch(spec, case)

    run()


@pytest.mark.parametrize("spec", [s for s in SPECS if s.gradcheck], ids=lambda s: s.name)
def test_gradcheck(spec):
    @settings(max_examples=6)
    @given(spec.gradcheck_cases if spec.gradcheck_cases is not None else spec.cases)
    def run(case):
        with _context(spec):
            check_gradcheck(spec, case)

    run()
