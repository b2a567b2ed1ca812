"""Ways to allreduce ResNet-18 CIFAR's 44.7 MB of float32 gradients on 2 ranks, timed interleaved.

Used by ``bench/distributed.py`` on its ranks. Each round runs every variant once (after a barrier), so a
slow phase of a shared machine slows all of them alike; the minimum and the median over rounds are reported.
MPI does every collective; the variants differ in bucket size, in how the calls are issued, in the
reduction function (MPI's built-in sum, which ``cnnkit.comm.all_reduce`` uses, or NumPy's add given to MPI
as a user op) and, for DistributedDataParallel's averaging, in whether gradients are copied back.

NumPy's add sums 4 MB about 2.7x faster than MPICH's built-in float sum, but with a user op MPICH switches
from reduce-scatter + allgather (each rank sums half a bucket) to recursive doubling (each rank copies and
sums all of it); on 2 ranks the two come out within a few percent, and with more ranks recursive doubling
sends more bytes than the ring cost the projection assumes, so cnnkit keeps the built-in sum.
"""
from __future__ import annotations

import time

import numpy as np

import cnnkit
from cnnkit import comm
from cnnkit.models import create
from cnnkit.nn.parallel import DistributedDataParallel

GRADIENT_BYTES = 44.7e6
BUCKETS_MB = [1, 2, 4, 8, 16, 25]


def _numpy_sum(incoming, inout, datatype):
    """MPI user reduction on float32 buffers: ``inout += incoming`` with NumPy's vectorized add."""
    inout_array = np.frombuffer(inout, np.float32)
    np.add(inout_array, np.frombuffer(incoming, np.float32), out=inout_array)


def _buckets(flat, megabytes):
    step = int(megabytes * 1e6) // flat.itemsize
    return [flat[start:start + step] for start in range(0, flat.size, step)]


def _ddp_averaging(as_view):
    """DistributedDataParallel's gradient averaging on ResNet-18 CIFAR, with fresh gradients before each call."""
    cnnkit.manual_seed(0)
    model = create("resnet18", num_classes=10, small_input=True)
    parallel = DistributedDataParallel(model, gradient_as_bucket_view=as_view)
    params = list(model.parameters())
    rng = np.random.default_rng(comm.rank())
    gradients = [rng.standard_normal(param.data.shape).astype(np.float32) for param in params]

    def prepare():  # as after a backward: every parameter holds a new gradient array
        for param, gradient in zip(params, gradients):
            param.grad = gradient.copy()
    return parallel._average_gradients, prepare


def variants():
    """name -> (function, preparation run before the barrier or None); plus a cleanup function."""
    from mpi4py import MPI

    world = comm.world()
    flat = np.zeros(int(GRADIENT_BYTES) // 4, np.float32)  # zeros: repeated sums stay finite
    four = _buckets(flat, 4)
    outputs = [np.empty_like(bucket) for bucket in four]
    numpy_sum = MPI.Op.Create(_numpy_sum, commute=True)
    persistent = [world.Allreduce_init(MPI.IN_PLACE, bucket, op=MPI.SUM) for bucket in four] \
        if hasattr(world, "Allreduce_init") else []

    def cnnkit_sum(buckets):
        def run():
            for bucket in buckets:
                comm.all_reduce(bucket)
        return run

    def numpy_add(buckets):
        def run():
            for bucket in buckets:
                world.Allreduce(MPI.IN_PLACE, bucket, op=numpy_sum)
        return run

    def separate_output():
        for bucket, output in zip(four, outputs):
            world.Allreduce(bucket, output, op=MPI.SUM)

    def all_in_flight():
        MPI.Request.Waitall([world.Iallreduce(MPI.IN_PLACE, bucket, op=MPI.SUM) for bucket in four])

    def started_together():
        MPI.Prequest.Startall(persistent)
        MPI.Request.Waitall(persistent)

    table = {f"{megabytes} MB buckets, all_reduce": (cnnkit_sum(_buckets(flat, megabytes)), None)
             for megabytes in BUCKETS_MB}
    table["one call, all_reduce"] = (cnnkit_sum([flat]), None)
    table.update({f"{megabytes} MB, NumPy add as MPI user op": (numpy_add(_buckets(flat, megabytes)), None)
                  for megabytes in (2, 4, 8)})
    table["4 MB, separate output buffer"] = (separate_output, None)
    table["4 MB, all Iallreduce then Waitall"] = (all_in_flight, None)
    if persistent:
        table["4 MB, persistent (Allreduce_init)"] = (started_together, None)
    table["DDP averaging, copied back"] = _ddp_averaging(False)
    table["DDP averaging, bucket views"] = _ddp_averaging(True)

    def cleanup():
        for request in persistent:
            request.Free()
        numpy_sum.Free()
    return table, cleanup


def interleaved(rounds):
    """{name: (min seconds, median seconds)} of every variant over ``rounds`` interleaved rounds."""
    table, cleanup = variants()
    times = {name: [] for name in table}
    try:
        for round_index in range(rounds + 1):  # round 0 warms up (first touches, MPI's first-use set-up)
            for name, (function, prepare) in table.items():
                if prepare is not None:
                    prepare()
                comm.barrier()
                started = time.perf_counter()
                function()
                if round_index:
                    times[name].append(time.perf_counter() - started)
    finally:
        cleanup()
    return {name: (min(seconds), float(np.median(seconds))) for name, seconds in times.items()}
