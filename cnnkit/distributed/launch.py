"""``init()``: join the job a launcher started, give each process its share of the cores, abort on errors."""
from __future__ import annotations

import os

from .. import backend, comm

# per-node rank and size: MPICH/Hydra, Open MPI, Slurm
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID")
_LOCAL_SIZE_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE", "SLURM_NTASKS_PER_NODE")
_initialized = {"done": False}


def _environment_int(names, default):
    for name in names:
        value = os.environ.get(name, "")
        if value.strip().isdigit():
            return int(value)
    return default


def local_rank():
    """This process's index among the processes on its machine (from the launcher's variables)."""
    return _environment_int(_LOCAL_RANK_VARIABLES, 0)


def local_world_size():
    """How many processes of the job run on this machine (the launcher's variables, else the world size)."""
    return _environment_int(_LOCAL_SIZE_VARIABLES, comm.world_size())


def is_initialized():
    """Whether ``init()`` has run in this process."""
    return _initialized["done"]


def init(threads=None):
    """Join the job (MPI when launched by mpiexec/mpirun/srun, else a one-process world); returns (rank, size).

    Each process then splits its ops over ``threads`` threads: by default the machine's cores divided by
    the processes on it, unless $OMP_NUM_THREADS or $OPENBLAS_NUM_THREADS says otherwise. With several
    processes, NumPy's BLAS is narrowed to the same count (``CNNKIT_BLAS_THREADS=native`` keeps it): its
    default of every core in every process oversubscribes the machine. Under MPI an uncaught exception on
    any rank ends every rank (``abort_on_exception``).
    """
    size = comm.world_size()  # imports mpi4py, which initializes MPI, when a launcher started us
    if not _initialized["done"]:
        _initialized["done"] = True
        if threads is None and not any(os.environ.get(name) for name in backend.THREAD_VARIABLES):
            threads = max(1, (os.cpu_count() or 1) // max(1, local_world_size()))
        if threads is not None:
            backend.set_num_threads(int(threads))
            if size > 1 and not backend.blas_left_native():
                backend.set_blas_num_threads(int(threads))
    return comm.rank(), size
