"""The backend's process-wide settings, and which conv path (depthwise matrix, 1x1 shortcut) a geometry takes."""
import os
import platform
import subprocess
import sys

import pytest

from cnnkit.functional import depthwise
from cnnkit.functional.conv import conv_geometry


def _tuned_in_fresh_process(**env):
    code = "import cnnkit.backend as b; print(b.MALLOC_TUNED)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, **env})
    return result.stdout.strip()


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_keeps_freed_memory_unless_turned_off():
    assert _tuned_in_fresh_process(CNNKIT_MALLOC_TUNING="1") == "True"
    assert _tuned_in_fresh_process(CNNKIT_MALLOC_TUNING="0") == "False"


@pytest.mark.parametrize("shape, stride, expected", [
    ((64, 960, 4, 4), 1, True),     # 16 x 16 entries per channel
    ((64, 576, 8, 8), 2, True),     # 64 x 16
    ((64, 384, 8, 8), 1, True),     # 64 x 64: pays back from about 32 images
    ((16, 384, 8, 8), 1, False),
    ((64, 192, 16, 16), 2, True),   # 256 x 64
    ((64, 128, 16, 16), 1, False),  # 256 x 256: im2col is 4x faster
    ((1, 960, 4, 4), 1, False),     # one image cannot pay for building the matrix
])
def test_depthwise_path_choice(shape, stride, expected):
    channels = shape[1]
    geo = conv_geometry(shape, (channels, 1, 3, 3), (stride, stride), 1, (1, 1), channels)
    assert depthwise.use_matrix(geo) is expected


@pytest.mark.parametrize("channels", [3, 24, 96])
def test_unpadded_1x1_convs_skip_im2col_whatever_their_channel_count(channels):
    """Few input channels once sent 1x1 convs through the wide im2col layout (a copy and 2-3x the time)."""
    geo = conv_geometry((64, channels, 32, 32), (144, channels, 1, 1), (1, 1), 0, (1, 1), 1)
    assert geo.pointwise
