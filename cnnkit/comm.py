"""Collectives on NumPy arrays over MPI (mpi4py, imported lazily), or a one-process world without it.

Every process of a job started by ``mpiexec`` calls the same collectives in the same order. Outside a
launcher (no PMI/Open MPI variables) or without mpi4py the world has one process and each collective
returns at once. With ``$CNNKIT_COLLECTIVE_TIMEOUT`` (seconds) a watchdog thread aborts the whole job
when one collective waits longer, naming it, so a rank that stopped calling collectives never hangs the job.
"""
from __future__ import annotations

import os
import sys
import threading
import time
import traceback

import numpy as np

__all__ = ["launched_by_mpi", "world", "rank", "world_size", "all_reduce", "broadcast", "barrier", "abort",
           "abort_on_exception", "TIMEOUT_VARIABLE"]

TIMEOUT_VARIABLE = "CNNKIT_COLLECTIVE_TIMEOUT"
# variables a launcher sets in every process it starts: MPICH/Hydra (PMI), Open MPI, Slurm's PMI
LAUNCHER_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN"}
_state = {"comm": None, "checked": False}


def launched_by_mpi():
    """Whether a launcher (mpiexec, mpirun, srun) started this process as one of more than one."""
    for name in LAUNCHER_SIZE_VARIABLES:
        try:
            if int(os.environ.get(name, "1")) > 1:
                return True
        except ValueError:
            continue
    return False


def world():
    """The MPI communicator of all processes, or None in a one-process world (no launcher or no mpi4py)."""
    if not _state["checked"]:
        _state["checked"] = True
        if launched_by_mpi():
            try:
                from mpi4py import MPI
            except ImportError as error:
                raise RuntimeError("cnnkit: this process was started by an MPI launcher but mpi4py is not "
                                   "installed; pip install 'cnnkit[mpi]'") from error
            _state["comm"] = MPI.COMM_WORLD
            abort_on_exception()
    return _state["comm"]


def rank():
    """This process's index in the world, 0 .. world_size() - 1."""
    comm = world()
    return 0 if comm is None else comm.Get_rank()


def world_size():
    """How many processes share the job."""
    comm = world()
    return 1 if comm is None else comm.Get_size()


def _contiguous(array, op_name):
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{op_name}: expected a NumPy array, got {type(array).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError(f"{op_name}: the array of shape {array.shape} is not C-contiguous; "
                         "pass np.ascontiguousarray(array)")
    return array


def all_reduce(array, op="sum"):
    """Combine ``array`` element-wise over all processes in place (``op``: sum, max or min); returns it."""
    if op not in _OPS:
        raise ValueError(f"all_reduce: op must be one of {sorted(_OPS)}, got {op!r}")
    array = _contiguous(array, "all_reduce")
    comm = world()
    if comm is None or array.size == 0:
        return array
    from mpi4py import MPI
    with _watched(f"all_reduce({op}, {array.size} x {array.dtype})"):
        comm.Allreduce(MPI.IN_PLACE, array, op=getattr(MPI, _OPS[op]))
    return array


def broadcast(array, root=0):
    """Overwrite ``array`` in every process with root's copy, in place; returns it."""
    array = _contiguous(array, "broadcast")
    comm = world()
    if comm is None or array.size == 0:
        return array
    with _watched(f"broadcast({array.size} x {array.dtype} from rank {root})"):
        comm.Bcast(array, root=root)
    return array


def barrier():
    """Wait until every process has reached this call."""
    comm = world()
    if comm is not None:
        with _watched("barrier"):
            comm.Barrier()


def abort(code=1):
    """End every process of the job with exit status ``code`` (MPI_Abort), or this one alone without MPI."""
    sys.stdout.flush()
    sys.stderr.flush()
    comm = world() if _state["checked"] else None
    if comm is not None:
        comm.Abort(code)
    os._exit(code)


def abort_on_exception():
    """Make an uncaught exception print its traceback and end every rank (MPI_Abort); done when MPI starts.

    Without it the other ranks would wait forever in their next collective.
    """
    if getattr(sys.excepthook, "cnnkit_aborts", False):
        return
    previous = sys.excepthook

    def hook(kind, value, trace):
        if issubclass(kind, KeyboardInterrupt) or world_size() == 1:
            previous(kind, value, trace)
            return
        text = "".join(traceback.format_exception(kind, value, trace))
        print(f"cnnkit: rank {rank()} of {world_size()} failed; ending the job\n{text}",
              file=sys.stderr, end="", flush=True)
        abort(1)

    hook.cnnkit_aborts = True
    sys.excepthook = hook


# ------------------------------------------------------------------------------------------------ watchdog
class _Watchdog:
    """A daemon thread that aborts the job when one collective has run past the deadline."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.lock = threading.Lock()
        self.current = None  # (description, start time) of the collective in progress
        thread = threading.Thread(target=self._watch, name="cnnkit-collective-watchdog", daemon=True)
        thread.start()

    def _watch(self):
        while True:
            time.sleep(min(1.0, self.seconds / 4))
            with self.lock:
                current = self.current
            if current is not None and time.monotonic() - current[1] > self.seconds:
                print(f"cnnkit: rank {rank()} waited more than {self.seconds:g} s in collective {current[0]} "
                      f"(${TIMEOUT_VARIABLE}); another rank stopped calling collectives or died; aborting the job",
                      file=sys.stderr, flush=True)
                abort(1)


def _deadline():
    text = os.environ.get(TIMEOUT_VARIABLE, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        raise ValueError(f"${TIMEOUT_VARIABLE} must be a number of seconds, got {text!r}") from None
    return seconds if seconds > 0 else None


class _watched:  # noqa: N801 - used as a context manager
    """Report a collective to the watchdog (started on first use when the deadline variable is set)."""

    def __init__(self, description):
        self.description = description

    def __enter__(self):
        watchdog = _state.get("watchdog")
        if watchdog is None and "watchdog" not in _state:
            seconds = _deadline()
            watchdog = _state["watchdog"] = _Watchdog(seconds) if seconds else None
        if watchdog is not None:
            with watchdog.lock:
                watchdog.current = (self.description, time.monotonic())
        self.watchdog = watchdog
        return self

    def __exit__(self, *exc):
        if self.watchdog is not None:
            with self.watchdog.lock:
                self.watchdog.current = None
