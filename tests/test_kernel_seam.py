"""The kernel seam: use_kernels / CNNKIT_KERNELS choose between the reference path and registered kernels."""
import os
import subprocess
import sys

import pytest

from cnnkit import backend, kernels


class _BigOnly(kernels.Kernel):
    name, op = "seamtest.big", "seamtest"

    def applies(self, size):
        return size > 1


@pytest.fixture(scope="module", autouse=True)
def _registered():
    if not any(k.name == _BigOnly.name for k in kernels.registered("seamtest")):
        kernels.register(_BigOnly)


def test_auto_picks_a_kernel_that_applies_and_reference_picks_none():
    assert kernels.pick("seamtest", 2).name == "seamtest.big"
    assert kernels.pick("seamtest", 1) is None
    with backend.use_kernels("reference"):
        assert kernels.pick("seamtest", 2) is None
    with backend.use_kernels("seamtest.big"), kernels.record_picks() as picks:
        kernels.pick("seamtest", 2)
        kernels.pick("seamtest", 1)
    assert picks == ["seamtest.big"]


def test_a_kernel_name_that_does_not_exist_is_a_clear_error():
    with backend.use_kernels("no.such.kernel"), pytest.raises(ValueError, match="no kernel is named"):
        kernels.pick("seamtest", 2)
    with pytest.raises(TypeError, match="use_kernels"):
        with backend.use_kernels(3):
            pass


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        kernels.register(_BigOnly)


def test_the_environment_variable_sets_the_default():
    code = "import cnnkit.backend as b; print(b.kernel_mode())"
    env = dict(os.environ, CNNKIT_KERNELS="reference")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "reference", out.stderr
