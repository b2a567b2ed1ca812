"""Data-parallel training on 2 MPI ranks (mpiexec from the mpich wheel): equivalence, failures, the CLI, resume.

Every job runs in its own session with a hard deadline and is killed as a group when it overruns.
"""
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
if MPIEXEC is None:
    pytest.skip("mpiexec is not installed (pip install 'cnnkit[mpi]')", allow_module_level=True)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROGRAMS = str(ROOT / "tests" / "mpi_programs.py")
MNIST = ROOT.parent / "shared" / "data" / "mnist"


def _environment(**extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CNNKIT_COLLECTIVE_TIMEOUT", None)  # only the watchdog test sets a deadline
    env.update(extra)
    return env


def _mpich_segments():
    return set(pathlib.Path("/dev/shm").glob("mpich_shm_*")) if os.path.isdir("/dev/shm") else set()


def run_job(args, ranks=2, timeout=120, env=None, launcher=(), aborts=False):
    """Run ``python tests/mpi_programs.py args`` on ``ranks`` ranks; returns (exit code, output, seconds).

    ``aborts``: the job is expected to end by MPI_Abort or a killed rank, after which MPICH leaves its
    shared-memory segment behind; the ones that appeared during the job are removed.
    """
    before = _mpich_segments() if aborts else set()
    command = [MPIEXEC, *launcher, "-n", str(ranks), sys.executable, PROGRAMS, *args] if ranks else \
        [sys.executable, PROGRAMS, *args]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=ROOT, env=env or _environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"the job did not end within {timeout} s:\n{output[-3000:]}")
    seconds = time.monotonic() - started
    for segment in _mpich_segments() - before if aborts else ():
        segment.unlink(missing_ok=True)
    return process.returncode, output, seconds


def test_two_ranks_train_as_one_process_on_the_whole_batch():
    code, output, _ = run_job(["equivalence"], timeout=240)
    assert code == 0, output
    assert all(f"OK {name} " in output for name in ("lenet5", "lenet5-bucket-views", "resnet18-syncbn")), output


def test_unused_parameters_no_sync_and_sampler():
    code, output, _ = run_job(["pieces"])
    assert code == 0 and "OK pieces" in output, output


def test_an_exception_on_one_rank_ends_the_job_and_shows_it():
    code, output, seconds = run_job(["fail"], timeout=30, aborts=True)
    assert code != 0
    assert "deliberate failure on rank 1" in output, output
    assert seconds <= 10, f"the job took {seconds:.1f} s to end"


def test_a_killed_rank_ends_the_job():
    code, output, seconds = run_job(["killed"], timeout=30, aborts=True)
    assert code != 0, output
    assert seconds <= 10, f"the job took {seconds:.1f} s to end"


def test_the_watchdog_aborts_a_stuck_collective_and_names_it():
    code, output, seconds = run_job(["stuck"], timeout=30, env=_environment(CNNKIT_COLLECTIVE_TIMEOUT="2"), aborts=True)
    assert code != 0, output
    assert "all_reduce(sum, 3 x float64)" in output and "CNNKIT_COLLECTIVE_TIMEOUT" in output, output
    assert seconds <= 10, f"the job took {seconds:.1f} s to end"


def test_a_hostfile_naming_localhost(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("localhost:2\n")
    environment = _environment()
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        environment.pop(name, None)
    code, output, _ = run_job(["hello"], launcher=("-f", str(hostfile)), env=environment)
    threads = max(1, (os.cpu_count() or 1) // 2)  # the cores shared out between the 2 local ranks
    assert code == 0 and f"OK hello 2 ranks, {threads} threads each" in output, output


# ------------------------------------------------------------------------------------------------ cnnkit train
needs_mnist = pytest.mark.skipif(not (MNIST / "t10k-images-idx3-ubyte.gz").exists(), reason="no MNIST in ../shared")
TRAIN = ["train", "--dataset", "mnist", "--data-dir", str(MNIST), "--train-split", "test[:1920]", "--epochs", "2",
         "--batch-size", "64", "--no-progress", "--val-split", "test[9000:9500]"]


def _weights(run):
    from safetensors.numpy import load_file

    arrays = load_file(str(run / "last.safetensors"))
    return {key: value for key, value in arrays.items() if key.startswith("model.") and value.dtype.kind == "f"}


def _worst_relative(expected, got):
    return max(float(np.abs(expected[key] - got[key]).max() / max(np.abs(expected[key]).max(), 1e-12))
               for key in expected)


def _train(tmp_path, name, ranks, stop_at=0, resume=False, extra=()):
    out = tmp_path / name
    args = ["train_cli", "--stop-at", str(stop_at)] + (
        ["train", "--resume", str(out), "--no-progress"] if resume else TRAIN + ["--out", str(out), *extra])
    return run_job(args, ranks=ranks, timeout=120)


@needs_mnist
def test_train_on_two_ranks_matches_one_process_and_resumes_on_another_count(tmp_path):
    """60 LeNet-5 steps: uninterrupted on 1 process; stopped at step 31 on 2 ranks and finished on 1; stopped at
    step 17 on 1 process and finished on 2 ranks. Weights agree within 1e-4 (summation order only)."""
    code, output, _ = _train(tmp_path, "whole", 0)
    assert code == 0, output
    reference = _weights(tmp_path / "whole")
    code, parallel_output, _ = _train(tmp_path, "parallel", 2)
    assert code == 0, parallel_output
    assert _worst_relative(reference, _weights(tmp_path / "parallel")) <= 1e-4
    accuracy = [line for line in output.splitlines() if line.startswith("final validation")]
    assert accuracy and accuracy[0] in parallel_output, (output, parallel_output)  # all 500 counted once
    for name, first, second, stop_at in (("two-then-one", 2, 0, 31), ("one-then-two", 0, 2, 17)):
        code, output, _ = _train(tmp_path, name, first, stop_at=stop_at)
        assert code == 130 and "stopped in epoch" in output, output
        code, output, _ = _train(tmp_path, name, second, resume=True)
        assert code == 0, output
        assert _worst_relative(reference, _weights(tmp_path / name)) <= 1e-4, name


@needs_mnist
def test_sigterm_stops_every_rank_at_the_same_step_with_a_checkpoint(tmp_path):
    out = tmp_path / "run"
    command = [MPIEXEC, "-n", "2", sys.executable, "-m", "cnnkit", "train", "--dataset", "mnist", "--data-dir",
               str(MNIST), "--train-split", "test[:8000]", "--val-split", "none", "--epochs", "20", "--no-progress",
               "--out", str(out)]
    process = subprocess.Popen(command, cwd=ROOT, env=_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        first_line = process.stdout.readline()  # printed just before training starts
        assert first_line.startswith("training lenet5"), first_line
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
    assert process.returncode == 130, output
    assert "stopped in epoch" in output and (out / "last.safetensors").exists(), output


@needs_mnist
def test_a_batch_size_the_ranks_do_not_divide_is_refused(tmp_path):
    code, output, _ = run_job(["train_cli", "--stop-at", "0", *TRAIN, "--batch-size", "63", "--out",
                               str(tmp_path / "odd")], timeout=60, aborts=True)
    assert code != 0 and "--batch-size 63 is the global batch" in output and "multiple of 2" in output, output
