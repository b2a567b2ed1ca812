"""Programs that tests/test_distributed.py starts under ``mpiexec -n 2``: ``python tests/mpi_programs.py NAME [ARGS]``.

Each prints ``OK name`` lines on rank 0 when its checks hold; an AssertionError ends the job (abort on exception).
"""
import os
import sys
import time

import numpy as np

import cnnkit
from cnnkit import distributed as dist
from cnnkit import nn, optim
from cnnkit.data import DataLoader, DistributedSampler, TensorDataset
from cnnkit.models import create
from cnnkit.nn.parallel import DistributedDataParallel


def _batches(shape, classes, steps, batch, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((steps, batch) + shape).astype(np.float32)
    labels = rng.integers(0, classes, (steps, batch))
    return images, labels


def _train(model, images, labels, lr=0.05):
    optimizer = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    for step_images, step_labels in zip(images, labels):
        loss = cnnkit.functional.cross_entropy(model(cnnkit.tensor(step_images)), cnnkit.tensor(step_labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _worst_relative(reference, candidate):
    worst = 0.0
    for key, expected in reference.state_dict().items():
        got = candidate.state_dict()[key]
        if expected.dtype.kind != "f":
            assert np.array_equal(expected, got), key
            continue
        scale = max(float(np.abs(expected).max()), 1e-12)
        worst = max(worst, float(np.abs(expected - got).max()) / scale)
    return worst


def _equivalence(name, builder, shape, tolerance, sync_bn, dtype="float32", as_view=False):
    """K ranks x (64 / K) images against one process x 64 images, over 5 SGD-momentum steps."""
    rank, size = dist.rank(), dist.world_size()
    images, labels = _batches(shape, 10, 5, 64)
    images = images.astype(dtype)
    cnnkit.manual_seed(0)
    reference = builder()
    cnnkit.manual_seed(100 + rank)  # other ranks start elsewhere: the broadcast must fix it
    local = builder()
    if sync_bn:
        local = nn.SyncBatchNorm.convert_sync_batchnorm(local)
    if rank == 0:
        local.load_state_dict(reference.state_dict())
    _train(reference, images, labels)
    share = 64 // size
    parallel = DistributedDataParallel(local, gradient_as_bucket_view=as_view)
    _train(parallel, images[:, rank * share:(rank + 1) * share], labels[:, rank * share:(rank + 1) * share])
    worst = _worst_relative(reference, local)
    assert worst <= tolerance, f"{name}: rank {rank} differs from one process by {worst:.3g} (> {tolerance})"
    if rank == 0:
        print(f"OK {name} worst relative difference {worst:.3g}", flush=True)


def equivalence():
    _equivalence("lenet5", lambda: create("lenet5", num_classes=10, in_channels=1), (1, 28, 28), 1e-6, sync_bn=False)
    _equivalence("lenet5-bucket-views", lambda: create("lenet5", num_classes=10, in_channels=1), (1, 28, 28), 1e-6,
                 sync_bn=False, as_view=True)
    # float64: in float32 the biases after batch norm, sums of gradients that nearly cancel, differ by rounding
    # alone (as much between two one-process runs that sum in another order); float64 tests the math
    _equivalence("resnet18-syncbn", lambda: create("resnet18", num_classes=10, small_input=True).double(),
                 (3, 8, 8), 1e-5, sync_bn=True, dtype="float64")


def pieces():
    """Unused parameters reduce as zeros, no_sync accumulates, the sampler splits every index once."""
    rank, size = dist.rank(), dist.world_size()
    cnnkit.manual_seed(rank)
    model = nn.ModuleDict({"used": nn.Linear(3, 2), "unused": nn.Linear(3, 2)})

    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, x):
            return self.inner["used"](x) if rank == 0 else self.inner["used"](x) + 0 * self.inner["unused"](x)

    parallel = DistributedDataParallel(Wrapper())
    x = cnnkit.tensor(np.full((4, 3), rank + 1.0, np.float32))
    parallel(x).sum().backward()
    unused = model["unused"].weight.grad
    assert unused is not None and np.allclose(unused, 0), "the unused parameter's gradient is not averaged zeros"
    used = model["used"].weight.grad.copy()
    assert np.allclose(used, np.full((2, 3), 4 * 1.5)), used  # mean over ranks of 4 * (rank + 1)
    model.zero_grad()
    with parallel.no_sync():
        parallel(x).sum().backward()
    assert np.allclose(model["used"].weight.grad, 4 * (rank + 1)), "no_sync averaged the gradients"
    parallel(x).sum().backward()
    assert np.allclose(model["used"].weight.grad, 8 * 1.5), "the step after no_sync did not average the sum"
    counts = np.zeros(11, np.int64)
    for index in DistributedSampler(range(11), size, rank, shuffle=True, seed=3):
        counts[index] += 1
    dist.all_reduce(counts)
    assert counts.sum() == 12 and counts.min() >= 1, counts  # padded to 12 by repeating one index
    loader = DataLoader(TensorDataset(np.arange(11.0)), batch_size=2,
                        sampler=DistributedSampler(range(11), size, rank, drop_last=True))
    batches = np.array([len(loader)], np.int64)
    dist.all_reduce(batches, op="max")
    assert batches[0] == len(loader), "ranks got different numbers of batches"
    if rank == 0:
        print("OK pieces", flush=True)


def fail():
    """Rank 1 raises while rank 0 waits in a collective: the job must end with rank 1's error."""
    dist.init()
    if dist.rank() == 1:
        time.sleep(0.5)
        raise RuntimeError("deliberate failure on rank 1")
    dist.barrier()
    time.sleep(60)


def killed():
    """Rank 1 kills itself while rank 0 waits in a collective: the job must end."""
    dist.init()
    if dist.rank() == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), 9)
    dist.barrier()
    time.sleep(60)


def stuck():
    """Rank 1 never reaches the collective: the watchdog (deadline in the environment) must end the job."""
    dist.init()
    if dist.rank() == 1:
        time.sleep(60)
    dist.all_reduce(np.zeros(3))


def train_cli():
    """``cnnkit train`` with the arguments after ``--stop-at STEP``: the last rank asks to stop after that global
    step (counted over epochs, from 1), so a test interrupts runs at a known step."""
    import functools

    from cnnkit.cli import train as train_command
    from cnnkit.cli.main import main

    stop_at, argv = int(sys.argv[3]), sys.argv[4:]
    steps = [0]

    def stopper(trainer, epoch, step, loss):
        steps[0] += 1
        if steps[0] == stop_at and dist.rank() == dist.world_size() - 1:
            trainer.request_stop()

    train_command.Trainer = functools.partial(train_command.Trainer, step_callback=stopper)
    sys.exit(main(argv))


def hello():
    rank, size = dist.init()
    total = dist.all_reduce(np.array([rank + 1.0]))
    assert total[0] == size * (size + 1) / 2
    assert dist.local_world_size() == size and dist.local_rank() == rank  # one machine
    blas = cnnkit.backend.blas_num_threads()  # narrowed to each rank's share, or every rank's BLAS takes every core
    assert blas is None or blas == cnnkit.backend.get_num_threads(), (blas, cnnkit.backend.get_num_threads())
    if rank == 0:
        print(f"OK hello {size} ranks, {cnnkit.backend.get_num_threads()} threads each", flush=True)


if __name__ == "__main__":
    dist.init()
    globals()[sys.argv[1]]()
