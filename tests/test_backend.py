"""Process state (import changes nothing; tune_process changes what it says), BLAS narrowing and lending, the split
matmul, cnnkit's threads, and which conv kernel a geometry takes."""
import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from cnnkit import backend, kernels
from cnnkit.functional.conv import conv_geometry
from cnnkit.kernels import copy
from cnnkit.kernels import threads as kthreads
from cnnkit.kernels.conv_plan import plan_for


def _run_fresh(code, **env):
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "2", **env})
    return result.stdout.strip()


_STATE = """
import json, os, numpy as np
from threadpoolctl import threadpool_info
def state():
    return {"blas": [pool["num_threads"] for pool in threadpool_info()], "env": dict(os.environ)}
"""


def test_import_and_a_threaded_conv_leave_blas_threads_and_environ_alone():
    """After ``import cnnkit`` and a conv that narrows BLAS while its threads run, threadpoolctl sees the BLAS
    thread count it saw before, and os.environ is unchanged."""
    pytest.importorskip("threadpoolctl")
    code = _STATE + """
before = state()
import cnnkit, cnnkit.functional as F
after_import = state()
cnnkit.backend.set_num_threads(2)
x = cnnkit.tensor(np.ones((8, 32, 16, 16), np.float32), requires_grad=True)
w = cnnkit.tensor(np.ones((32, 32, 3, 3), np.float32), requires_grad=True)
F.conv2d(x, w, padding=1).sum().backward()
F.conv2d(x[:1], w, padding=1)  # one sample: BLAS is lent the threads for the call
print(json.dumps([before == after_import, before == state(), before["blas"]]))
"""
    same_after_import, same_after_ops, blas = json.loads(_run_fresh(code))
    assert same_after_import and same_after_ops
    assert blas and blas[0] == 2  # the count the test set, not one pinned by cnnkit


@pytest.mark.skipif(kthreads.blas_num_threads() is None, reason="NumPy's BLAS is not a bundled OpenBLAS")
def test_tune_process_pins_blas_tunes_malloc_and_says_so_once():
    code = """
import json, cnnkit.backend as b
first = b.tune_process(threads=3)
print(json.dumps([sorted(first), first.get("blas_threads"), b.blas_num_threads(), b.get_num_threads(),
                  b.tune_process(threads=3)]))
"""
    changed, blas_change, blas_now, threads, again = json.loads(_run_fresh(code, CNNKIT_MALLOC_TUNING="1"))
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert changed == (["blas_threads", "malloc", "num_threads"] if glibc else ["blas_threads", "num_threads"])
    assert blas_change == [2, 1] and blas_now == 1 and threads == 3
    assert again == {}  # idempotent
    opted_out = json.loads(_run_fresh("import json, cnnkit.backend as b; print(json.dumps(sorted(b.tune_process())))",
                                      CNNKIT_MALLOC_TUNING="0"))
    assert opted_out == ["blas_threads"]
    code = "import json, cnnkit.backend as b; print(json.dumps([b.tune_process(), b.blas_num_threads()]))"
    left_alone = _run_fresh(code, CNNKIT_MALLOC_TUNING="0", CNNKIT_BLAS_THREADS="native")
    assert json.loads(left_alone) == [{}, 2]


@pytest.mark.parametrize("shape, stride, expected", [
    ((64, 960, 4, 4), 1, True),     # 16 x 16 entries per channel
    ((64, 576, 8, 8), 2, True),     # 64 x 16
    ((64, 384, 8, 8), 1, True),     # 64 x 64: pays back from about 32 images
    ((16, 384, 8, 8), 1, False),
    ((64, 192, 16, 16), 2, True),   # 256 x 64
    ((64, 128, 16, 16), 1, False),  # 256 x 256: im2col is faster
    ((1, 960, 4, 4), 1, False),     # one image cannot pay for building the matrix
])
def test_depthwise_kernel_choice(shape, stride, expected):
    channels = shape[1]
    geo = conv_geometry(shape, (channels, 1, 3, 3), (stride, stride), 1, (1, 1), channels)
    assert (kernels.pick("conv2d", geo).name == "conv2d.banded_depthwise") is expected
    assert (kernels.pick("conv2d_input_grad", geo).name == "conv2d_input_grad.banded_depthwise") is expected


@pytest.mark.parametrize("channels", [3, 24, 96])
def test_unpadded_1x1_convs_take_the_pointwise_kernel_whatever_their_channel_count(channels):
    """Few input channels once sent 1x1 convs through the wide im2col layout (a copy and several times the time)."""
    geo = conv_geometry((64, channels, 32, 32), (144, channels, 1, 1), (1, 1), 0, (1, 1), 1)
    assert kernels.pick("conv2d", geo).name == "conv2d.pointwise"


@pytest.mark.parametrize("op, shape, weight, kwargs, expected", [
    ("conv2d_input_grad", (8, 32, 8, 8), (32, 32, 3, 3), dict(padding=1), "dual"),
    ("conv2d_input_grad", (8, 4, 8, 8), (32, 4, 3, 3), dict(padding=1), "col2im"),       # few input channels
    ("conv2d_input_grad", (8, 32, 8, 8), (32, 32, 3, 3), dict(padding=1, stride=2), "col2im"),
    ("conv2d_input_grad", (2, 32, 16, 16), (32, 1, 3, 3), dict(padding=1, stride=2, groups=32), "polyphase"),
    ("conv2d_backward", (8, 32, 8, 8), (32, 32, 3, 3), dict(padding=1), "dual"),
    ("conv2d", (0, 32, 8, 8), (32, 32, 3, 3), dict(padding=1), None),                   # empty batch: reference
])
def test_input_gradient_kernel_choice(op, shape, weight, kwargs, expected):
    geo = conv_geometry(shape, weight, kwargs.get("stride", 1), kwargs["padding"], 1, kwargs.get("groups", 1))
    kernel = kernels.pick(op, geo)
    assert (kernel.name.split(".")[1] if kernel is not None else None) == expected
    with backend.use_kernels("reference"):
        assert kernels.pick(op, geo) is None


@pytest.mark.skipif(not kthreads.CONTROLS_BLAS, reason="NumPy's BLAS is not reachable")
def test_narrowing_and_lending_restore_the_count_they_found():
    found = kthreads.blas_num_threads()
    try:
        backend.set_blas_num_threads(3)
        with kthreads.narrow_blas():
            assert kthreads.blas_num_threads() == 1
            with kthreads.blas_threads(2):  # nested on one thread: each block gives back what it replaced
                assert kthreads.blas_num_threads() == 2
            assert kthreads.blas_num_threads() == 1
        assert kthreads.blas_num_threads() == 3
        with kthreads.blas_threads(2):  # lending never lowers the count
            assert kthreads.blas_num_threads() == 3
        with pytest.raises(RuntimeError), kthreads.narrow_blas():
            raise RuntimeError("an op failing inside still restores BLAS")
        assert kthreads.blas_num_threads() == 3
        # two threads' blocks interleaved: the first to close leaves BLAS narrowed for the other
        first, second = kthreads.narrow_blas(), kthreads.narrow_blas()
        first.__enter__()
        second.__enter__()
        first.__exit__(None, None, None)
        assert kthreads.blas_num_threads() == 1
        second.__exit__(None, None, None)
        assert kthreads.blas_num_threads() == 3
    finally:
        backend.set_blas_num_threads(found)


@pytest.mark.parametrize("a_shape, b_shape", [
    ((300, 200), (200, 150)),     # more rows than columns: rows are split
    ((3, 400), (400, 9000)),      # columns split
    ((7, 65, 64), (64, 130)),     # batched: one call with BLAS's own threads
    ((20000,), (20000, 300)),     # vector @ matrix
    ((5, 4), (4, 3)),             # small: one call
])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.skipif(not kthreads.CONTROLS_BLAS, reason="NumPy's BLAS is not reachable: matmul does not split")
def test_split_matmul_equals_numpy(monkeypatch, a_shape, b_shape, dtype):
    monkeypatch.setattr(backend, "_num_threads", 2)
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape).astype(dtype), rng.standard_normal(b_shape).astype(dtype)
    ours = kthreads.matmul(a, b, min_split_macs=1000)
    assert ours.dtype == dtype and ours.shape == (a @ b).shape
    exact = a.astype(np.float64) @ b.astype(np.float64)
    tolerance = (1e-6 if dtype == np.float32 else 1e-14) * a_shape[-1]  # rounding grows with the inner length
    np.testing.assert_allclose(ours, exact, rtol=0, atol=tolerance)


@pytest.mark.parametrize("shape, weight, padding, expected", [
    ((64, 6, 14, 14), (16, 6, 5, 5), 0, 1),   # LeNet's second conv: 15M multiply-adds, one thread
    ((64, 64, 32, 32), (64, 64, 3, 3), 1, 2),  # 604M: chunks shared out
    ((1, 64, 56, 56), (64, 64, 3, 3), 1, 2),   # a batch of one: one chunk, BLAS lent the threads
])
@pytest.mark.skipif(not kthreads.CONTROLS_BLAS, reason="NumPy's BLAS is not reachable: dense convs never split")
def test_dense_convs_share_chunks_out_only_when_large(monkeypatch, shape, weight, padding, expected):
    monkeypatch.setattr(backend, "_num_threads", 2)
    geo = plan_for(conv_geometry(shape, weight, (1, 1), padding, (1, 1), 1))
    assert geo.threads == expected
    chunks = len(list(geo.chunks()))
    assert chunks % expected == 0 or chunks == shape[0]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_runs_threaded_ops():
    """The parent's pool threads do not exist in a forked child: it once waited on them forever."""
    code = """
import os, numpy as np, cnnkit, cnnkit.functional as F
cnnkit.backend.set_num_threads(2)
x = cnnkit.tensor(np.ones((16, 64, 32, 32), np.float32))
w = cnnkit.tensor(np.ones((64, 64, 3, 3), np.float32))
expected = F.conv2d(x, w, padding=1).data  # starts the pool's threads
pid = os.fork()
if pid == 0:
    os._exit(0 if np.array_equal(F.conv2d(x, w, padding=1).data, expected) else 3)
print(os.waitpid(pid, 0)[1])
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "0"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64, np.bool_])
@pytest.mark.parametrize("case", ["pad", "crop", "transposed", "strided_rows", "broadcast", "one_column"])
def test_assign_equals_plain_assignment(dtype, case):
    """The whole-row copy gives exactly what ``target[...] = source`` gives, and falls back where it cannot apply."""
    rng = np.random.default_rng(0)
    source = (rng.standard_normal((3, 5, 7, 9)) * 10).astype(dtype)
    big = np.zeros((3, 5, 9, 11), dtype)
    target, value = {
        "pad": (big[:, :, 1:8, 1:10], source),
        "crop": (np.zeros((3, 5, 7, 6), dtype), source[..., 2:8]),
        "transposed": (np.zeros((5, 3, 7, 9), dtype), source.transpose(1, 0, 2, 3)),
        "strided_rows": (big[:, :, ::2, 1:10], source[:, :, :5]),
        "broadcast": (big[:, :, 1:8, 1:10], source[:1]),
        "one_column": (big[:, :, 1:8, :1], source[..., :1]),
    }[case]
    expected = np.zeros_like(target)
    expected[...] = value
    copy.assign(target, value)
    assert np.array_equal(target, expected)
    if target.base is big:  # nothing outside the target region was written
        untouched = np.ones(big.shape, bool)
        untouched[{"pad": (slice(None), slice(None), slice(1, 8), slice(1, 10)),
                   "strided_rows": (slice(None), slice(None), slice(None, None, 2), slice(1, 10)),
                   "broadcast": (slice(None), slice(None), slice(1, 8), slice(1, 10)),
                   "one_column": (slice(None), slice(None), slice(1, 8), slice(0, 1))}[case]] = False
        assert not big[untouched].any()


def test_parallel_map_runs_the_first_task_on_the_caller(monkeypatch):
    """The caller runs the first share itself (no wait to be woken), the pool the rest; results keep task order,
    and a nested parallel_map inside the caller's share runs inline instead of queueing behind it."""
    import threading

    monkeypatch.setattr(backend, "get_num_threads", lambda: 3)
    caller = threading.current_thread().name

    def task(index):
        nested = kthreads.parallel_map(lambda _: threading.current_thread().name, [0, 1])
        return index, threading.current_thread().name, nested

    results = kthreads.parallel_map(task, range(3))
    assert [index for index, _, _ in results] == [0, 1, 2]
    assert results[0][1] == caller and results[0][2] == [caller, caller]
    assert all(name.startswith("cnnkit") and nested == [name, name] for _, name, nested in results[1:])


def test_parallel_map_waits_for_every_share_when_the_caller_fails(monkeypatch):
    """An exception in the caller's own share is raised only after the pool's shares have finished."""
    import time

    monkeypatch.setattr(backend, "get_num_threads", lambda: 2)
    finished = []

    def task(index):
        if index == 0:
            raise RuntimeError("first share failed")
        time.sleep(0.2)
        finished.append(index)

    with pytest.raises(RuntimeError, match="first share failed"):
        kthreads.parallel_map(task, [0, 1])
    assert finished == [1]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_for_runs_every_task_once_with_one_scratch_per_thread(monkeypatch, threads):
    """Results in task order whichever thread ran each task; each participant reuses one scratch object."""
    import threading

    monkeypatch.setattr(backend, "get_num_threads", lambda: threads)
    made = []

    def scratch():
        made.append(threading.current_thread().name)
        return {"tasks": []}

    def task(index, work):
        work["tasks"].append(index)
        return index * index, id(work)

    results = kthreads.parallel_for(task, range(40), scratch)
    assert [value for value, _ in results] == [index * index for index in range(40)]
    assert 1 <= len({owner for _, owner in results}) <= len(made) <= threads


def test_parallel_for_stops_and_raises_when_a_task_fails(monkeypatch):
    monkeypatch.setattr(backend, "get_num_threads", lambda: 2)
    ran = []

    def task(index, work):
        ran.append(index)
        if index == 3:
            raise ValueError("task 3")

    with pytest.raises(ValueError, match="task 3"):
        kthreads.parallel_for(task, range(1000))
    assert len(ran) < 1000


def test_threaded_conv_weight_gradient_is_the_same_on_every_run(monkeypatch):
    """Chunks go to whichever thread is free, but their dW are added in chunk order: bitwise repeatable."""
    from cnnkit.functional import conv

    monkeypatch.setattr(backend, "get_num_threads", lambda: 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64, 16, 16)).astype(np.float32)
    weight = rng.standard_normal((64, 1, 3, 3)).astype(np.float32)
    geo = conv_geometry(x.shape, weight.shape, 1, 1, 1, 64)
    upstream = rng.standard_normal((32, 64, 16, 16)).astype(np.float32)
    plan = plan_for(geo)
    assert plan.threads == 2 and len(list(plan.chunks())) > 2
    grads = [conv.correlate(x, None, geo, compute_output=False, upstream=upstream)[1] for _ in range(20)]
    expected = sum(conv.correlate(x[start:stop], None, conv_geometry(x[start:stop].shape, weight.shape, 1, 1, 1, 64),
                                  compute_output=False, upstream=upstream[start:stop])[1].astype(np.float64)
                   for start, stop in plan.chunks())
    assert all(np.array_equal(grad, grads[0]) for grad in grads)
    np.testing.assert_allclose(grads[0], expected, rtol=1e-5, atol=1e-4)
