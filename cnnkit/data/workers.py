"""DataLoader worker processes: each loads whole batches and hands their arrays back through shared memory.

Batch b of an epoch goes to worker b % K, and the main process takes batches back in order, so the batches
and their order do not depend on K. Random augmentation of a sample draws from a generator seeded by
(loader seed, epoch, sample index), the same in every process. Only a small description of each batch
(its shared-memory segment, offsets, shapes, dtypes; see batch_memory) crosses the queues; array contents
never do. Workers are forked (Linux, macOS): the data set is not copied or serialized, and a worker that
finds its parent gone exits.
"""
from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import traceback
from multiprocessing import resource_tracker

import numpy as np

from .batch_memory import SegmentMaps, SegmentRing, unlink_segment
from .random import use_data_rng

__all__ = ["WorkerPool", "sample_rng", "load_samples"]

AUGMENT_STREAM = 1
_POLL_SECONDS = 0.1


def sample_rng(seed, epoch, index):
    """The augmentation generator of sample ``index`` in ``epoch``: independent of batch size and process count."""
    return np.random.default_rng([int(seed), AUGMENT_STREAM, int(epoch), int(index)])


class _OnFirstUse:
    """Stands for ``sample_rng(*key)`` and makes it when a transform first draws: seeding costs more than
    loading a small sample, and data sets without random transforms never draw."""

    __slots__ = ("_key", "_generator")

    def __init__(self, *key):
        self._key, self._generator = key, None

    def __getattr__(self, name):
        if self._generator is None:
            self._generator = sample_rng(*self._key)
        return getattr(self._generator, name)


class SampleError(RuntimeError):
    """A sample failed to load; the message names its index (and, from a worker, the worker's traceback)."""


def load_samples(dataset, indices, seed, epoch):
    """[dataset[i] for i in indices], each drawn with its own augmentation generator; errors name the index."""
    samples = []
    for index in indices:
        index = int(index)
        try:
            with use_data_rng(_OnFirstUse(seed, epoch, index)):
                samples.append(dataset[index])
        except Exception as error:
            if hasattr(error, "add_note"):
                error.add_note(f"(while loading sample {index} of the data set)")
            error.sample_index = index
            raise
    return samples


# ------------------------------------------------------------------------------------------------ processes
def _worker_loop(worker_id, dataset, collate_fn, tasks, results, worker_init_fn, parent):
    """Load the batches asked for on ``tasks`` until told to stop (None) or the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the main process, which stops the workers
    try:
        if worker_init_fn is not None:
            worker_init_fn(worker_id)
    except Exception:
        results.put(("error", None, None, traceback.format_exc()))
        return
    ring = SegmentRing()
    try:
        while True:
            try:
                task = tasks.get(timeout=_POLL_SECONDS * 10)
            except queue.Empty:
                if os.getppid() != parent:  # the main process died without stopping us: nobody will map them
                    return
                continue
            if task is None:
                return
            key, indices, seed, epoch, freed = task
            ring.give_back(freed)
            try:
                # ``batch`` lives on until the next batch is built, so that where it is not stacked into
                # shared memory (a custom collate_fn) the allocator reuses its memory instead of handing
                # it back to the system and faulting it in again for every batch
                with ring.collating():
                    batch = collate_fn(load_samples(dataset, indices, seed, epoch))
                message = ring.fill(batch)
            except Exception as error:
                results.put(("error", key, getattr(error, "sample_index", None), traceback.format_exc()))
                continue
            results.put(("batch", key, message, None))
    finally:
        ring.unlink_all()


class WorkerPool:
    """``num_workers`` forked processes loading batches for one DataLoader; ``close()`` stops them all."""

    def __init__(self, dataset, collate_fn, num_workers, worker_init_fn=None):
        context = multiprocessing.get_context("fork")
        resource_tracker.ensure_running()  # one tracker, shared by the workers, instead of one each
        self.results = context.Queue()
        self.tasks = [context.Queue() for _ in range(num_workers)]
        self.processes = []
        for worker_id, tasks in enumerate(self.tasks):
            process = context.Process(target=_worker_loop, name=f"cnnkit-DataLoader-worker-{worker_id}", daemon=True,
                                      args=(worker_id, dataset, collate_fn, tasks, self.results, worker_init_fn,
                                            os.getpid()))
            process.start()
            self.processes.append(process)
        self.ready = {}  # (pass, batch) -> message, for batches that came back early
        self.segments = SegmentMaps(num_workers)

    def submit(self, key, indices, seed, epoch):
        """Ask worker ``batch % num_workers`` for the batch ``key = (pass, batch)`` (its indices, seed and epoch);
        the task also returns the worker's segments whose batches are gone."""
        worker = self._worker(key)
        self.tasks[worker].put((key, [int(i) for i in indices], seed, epoch, self.segments.freed(worker)))

    def _worker(self, key):
        return key[1] % len(self.tasks)

    def take(self, key):
        """Wait for the batch ``key`` and return it; a worker's error is raised here with its sample index.

        Batches of earlier passes (``key[0]`` smaller) that an abandoned iterator asked for are discarded.
        """
        for stale in [other for other in self.ready if other[0] != key[0]]:
            self.segments.drop(self._worker(stale), self.ready.pop(stale))
        while key not in self.ready:
            try:
                kind, got, detail, text = self.results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                dead = [p for p in self.processes if not p.is_alive()]
                if dead:
                    codes = ", ".join(f"{p.name} (exit code {p.exitcode})" for p in dead)
                    raise RuntimeError(f"DataLoader: worker process(es) ended unexpectedly: {codes}") from None
                continue
            if got is not None and got[0] != key[0]:
                if kind == "batch":
                    self.segments.drop(self._worker(got), detail)
                continue
            if kind == "error":
                where = "in worker_init_fn" if got is None else (
                    f"loading batch {got[1]}" + (f", sample index {detail}" if detail is not None else ""))
                raise SampleError(f"DataLoader worker failed {where}:\n{text}")
            self.ready[got] = detail
        return self.segments.open(self._worker(key), self.ready.pop(key))

    def close(self):
        """Stop every worker (terminating those that do not stop in time) and free unused batches."""
        for tasks in self.tasks:
            try:
                tasks.put(None)
            except (OSError, ValueError):
                pass
        for process in self.processes:
            process.join(timeout=2)
            if process.is_alive():
                process.terminate()
                process.join(timeout=2)
        while True:
            try:
                kind, _, detail, _ = self.results.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if kind == "batch":
                unlink_segment(detail[0])
        for message in self.ready.values():
            unlink_segment(message[0])
        self.ready = {}
        for channel in self.tasks + [self.results]:
            channel.close()
            channel.cancel_join_thread()
        self.processes = []

    def alive(self):
        return bool(self.processes) and all(p.is_alive() for p in self.processes)
