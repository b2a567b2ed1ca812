"""Data-parallel training over MPI: ``init()`` from the launcher, rank and size, collectives, the watchdog.

Start K processes with ``mpiexec -n K python train.py`` (or ``mpiexec -n K cnnkit train ...``); each holds
the whole model, trains on its slice of every batch (``cnnkit.data.DistributedSampler``) and averages
gradients with ``cnnkit.nn.parallel.DistributedDataParallel``. Without a launcher everything runs as one
process and mpi4py need not be installed.

Install: ``pip install 'cnnkit[mpi]'`` (mpi4py and the mpich wheel, whose ``mpiexec`` then is on PATH); against
a cluster's own MPI instead: ``pip install --no-binary mpi4py mpi4py``. Several machines: every host needs the
same Python environment at the same path (and the data at the same path), reachable by ssh without a password:

    mpiexec -f hosts -n 8 cnnkit train ...                 # MPICH (Hydra); hosts lines: node1:4
    mpirun --hostfile hosts -np 8 cnnkit train ...          # Open MPI; hosts lines: node1 slots=4

Open MPI also needs ``--allow-run-as-root`` as root and ``--oversubscribe`` for more ranks than cores.
``$CNNKIT_COLLECTIVE_TIMEOUT`` (seconds) aborts a job stuck in one collective, naming it.
"""
from ..comm import (TIMEOUT_VARIABLE, abort, abort_on_exception, all_reduce, barrier, broadcast, launched_by_mpi,
                    rank, world_size)
from .launch import init, is_initialized, local_rank, local_world_size

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "local_world_size", "all_reduce",
           "broadcast", "barrier", "abort", "abort_on_exception", "launched_by_mpi", "TIMEOUT_VARIABLE"]
