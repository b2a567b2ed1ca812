"""Data-parallel training over MPI: ``init()`` from the launcher, rank and size, collectives, the watchdog.

Start K processes with ``mpiexec -n K python train.py`` (or ``mpiexec -n K cnnkit train ...``); each holds
the whole model, trains on its slice of every batch (``cnnkit.data.DistributedSampler``) and averages
gradients with ``cnnkit.nn.parallel.DistributedDataParallel``. Without a launcher everything runs as one
process and mpi4py need not be installed.
"""
from ..comm import TIMEOUT_VARIABLE, abort, all_reduce, barrier, broadcast, launched_by_mpi, rank, world_size
from .launch import abort_on_exception, init, is_initialized, local_rank, local_world_size

__all__ = ["init", "is_initialized", "rank", "world_size", "local_rank", "local_world_size", "all_reduce",
           "broadcast", "barrier", "abort", "abort_on_exception", "launched_by_mpi", "TIMEOUT_VARIABLE"]
