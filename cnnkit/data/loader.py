"""``DataLoader``: batches, seeded shuffling, a prefetch thread or worker processes, exact resume; ``default_collate``.

Randomness is a pure function of ``(seed, epoch, sample index)``: the shuffle order of epoch ``e`` comes from a
generator seeded with ``(seed, e)``, and random transforms of sample ``i`` draw from one seeded with
``(seed, e, i)``. So ``state_dict()`` needs only ``{seed, epoch, batch}`` to resume mid-epoch exactly, the
prefetch thread and worker processes never share a generator with the training loop, and a sample is
augmented the same way whatever the batch size, the number of workers or the number of training processes.
"""
from __future__ import annotations

import math
import numbers
import queue
import threading

import numpy as np

from .. import backend
from ..autograd import Tensor
from .batch_memory import stack_output
from .sampler import shuffled_order
from .transforms import to_tensor
from .workers import WorkerPool, load_samples

__all__ = ["DataLoader", "default_collate"]

_POLL_SECONDS = 0.05


def _is_raw_image(array):
    return array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)))


def _stack(arrays, what):
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        raise ValueError(f"default_collate: the {what} in a batch have different shapes {sorted(shapes)[:3]}; "
                         "make them one size (e.g. transforms.Resize/CenterCrop) or pass collate_fn")
    # in a worker process the stack goes straight into the shared memory that carries the batch
    out = stack_output((len(arrays),) + arrays[0].shape, np.result_type(*{array.dtype for array in arrays}))
    return np.stack(arrays) if out is None else np.stack(arrays, out=out)


def default_collate(batch):
    """Stack samples: raw uint8 images -> float ``(N, C, H, W)`` Tensor in [0, 1]; float arrays -> float
    Tensor (default dtype); integers -> int64 Tensor; tuples/dicts are collated field by field."""
    if len(batch) == 0:
        raise ValueError("default_collate: got an empty batch")
    first = batch[0]
    if isinstance(first, (tuple, list)):
        if len({len(sample) for sample in batch}) != 1:
            raise ValueError("default_collate: samples in a batch have different numbers of fields")
        return tuple(default_collate(list(field)) for field in zip(*batch))
    if isinstance(first, dict):
        return {key: default_collate([sample[key] for sample in batch]) for key in first}
    if isinstance(first, Tensor):
        return Tensor(_stack([sample.data for sample in batch], "tensors"))
    if isinstance(first, (str, bytes)):
        return list(batch)
    if isinstance(first, (bool, np.bool_)):
        return Tensor(np.asarray(batch, dtype=bool))
    if isinstance(first, (numbers.Integral, np.integer)):
        return Tensor(np.asarray(batch, dtype=np.int64))
    if isinstance(first, (numbers.Real, np.floating)):
        return Tensor(np.asarray(batch, dtype=backend.get_default_dtype()))
    if hasattr(first, "__array_interface__") or isinstance(first, np.ndarray):
        arrays = [np.asarray(sample) for sample in batch]
        if arrays[0].ndim == 0:
            return default_collate([array.item() for array in arrays])
        if _is_raw_image(arrays[0]):
            # raw images: same conversion as ToTensor, so a loader works without a transform
            return Tensor(_stack([to_tensor(array) for array in arrays], "images").astype(
                backend.get_default_dtype(), copy=False))
        stacked = _stack(arrays, "arrays")
        if stacked.dtype.kind == "f":
            return Tensor(stacked.astype(backend.get_default_dtype(), copy=False))
        if stacked.dtype.kind in "iu":
            return Tensor(stacked.astype(np.int64, copy=False))
        return Tensor(stacked)
    raise TypeError(f"default_collate: cannot batch samples of type {type(first).__name__}; "
                    "return arrays, numbers, tuples or dicts from the data set, or pass collate_fn")


def _prefetch_worker(load, batches, out_queue, stop):
    """Producer thread: put ('batch', b) for each batch, ('error', exc) on failure, then ('end', None)."""

    def put(item):
        while not stop.is_set():
            try:
                out_queue.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    try:
        for batch in batches:
            if stop.is_set() or not put(("batch", load(batch))):
                return
    except BaseException as error:  # noqa: B036 - everything is handed to the consumer, which re-raises it
        put(("error", error))
        return
    put(("end", None))


class _LoaderIterator:
    """One pass over a DataLoader; stops its prefetch thread when exhausted, closed or garbage-collected."""

    def __init__(self, loader, epoch, start_batch):
        self._loader = loader
        self._epoch = epoch
        self._next_batch = start_batch
        self._total = len(loader)
        order = loader._order(epoch)
        size, dataset, collate, seed = loader.batch_size, loader.dataset, loader.collate_fn, loader.seed

        def indices(batch):
            return order[batch * size:(batch + 1) * size]

        def load(batch):  # each sample with its own augmentation generator (seed, epoch, index)
            return collate(load_samples(dataset, indices(batch), seed, epoch))

        self._load = load
        self._thread = None
        self._pool = None
        if loader.num_workers > 0 and start_batch < self._total:
            pool = self._pool = loader._worker_pool()
            loader._passes += 1
            self._pass = loader._passes

            def submit(batch, key=self._pass):
                pool.submit((key, batch), indices(batch), seed, epoch)

            self._submit = submit
            ahead = min(self._total, start_batch + loader.num_workers * loader.prefetch_factor)
            for batch in range(start_batch, ahead):
                submit(batch)
            self._submitted = ahead
        elif loader.prefetch > 0 and start_batch < self._total:
            self._queue = queue.Queue(maxsize=loader.prefetch)
            self._stop = threading.Event()
            # the thread gets only what it needs (not self), so an abandoned iterator can be collected
            self._thread = threading.Thread(target=_prefetch_worker, name="cnnkit-DataLoader-prefetch", daemon=True,
                                            args=(load, range(start_batch, self._total), self._queue, self._stop))
            self._thread.start()

    def __iter__(self):
        return self

    def __len__(self):
        return self._total - self._next_batch

    def __next__(self):
        if self._next_batch >= self._total:
            self.close()
            raise StopIteration
        if self._pool is not None:
            if self._submitted < self._total:
                self._submit(self._submitted)
                self._submitted += 1
            try:
                batch = self._pool.take((self._pass, self._next_batch))
            except BaseException:
                self.close()
                raise
        elif self._thread is None:
            batch = self._load(self._next_batch)
        else:
            kind, batch = self._queue.get()
            if kind == "error":
                self.close()
                if hasattr(batch, "add_note"):
                    batch.add_note(f"(raised in the DataLoader prefetch thread while loading batch "
                                   f"{self._next_batch} of epoch {self._epoch})")
                raise batch
            if kind == "end":
                self.close()
                raise StopIteration
        self._next_batch += 1
        self._loader._progress = (self._epoch, self._next_batch)
        return batch

    def close(self, join=True):
        """Stop the prefetch thread (it finishes at most the batch it is loading) or this pass's worker processes."""
        pool, self._pool = self._pool, None
        if pool is not None:
            self._loader._release_pool(pool)
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        while True:  # free queue slots so a blocked put() notices the stop at once
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if join and thread is not threading.current_thread():
            thread.join(timeout=10)

    def __del__(self):
        try:
            self.close(join=False)
        except Exception:  # noqa: S110 - interpreter shutdown may have torn down modules
            pass


class DataLoader:
    """Iterate over ``dataset`` in batches of ``batch_size``, shuffled per epoch if ``shuffle``.

    ``seed`` fixes the shuffle orders and the augmentation randomness (drawn from ``cnnkit.backend.get_rng()``
    when None, so ``cnnkit.manual_seed`` makes runs reproducible). Each ``iter()`` runs one epoch and advances
    ``epoch``; ``set_epoch(e)`` picks the next one. ``prefetch`` batches are loaded ahead in a background
    thread (0: load in the caller's thread); errors there are re-raised in the caller.

    ``sampler`` (e.g. ``DistributedSampler``) gives the indices instead of ``shuffle``; its ``set_epoch`` is
    called each epoch. ``num_workers > 0`` loads batches in that many worker processes (``prefetch_factor``
    batches ahead each), with the same batches in the same order as ``num_workers=0``; ``worker_init_fn(id)``
    runs first in each worker, and ``persistent_workers`` keeps them between epochs. A worker's exception is
    raised in the caller with the failing sample's index. A batch from a worker is a view of shared memory
    that its worker fills again only once every array of the batch is gone, so batches can be kept as long as
    needed (each kept batch holds its own segment).
    """

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=None, collate_fn=None,
                 prefetch=2, *, sampler=None, num_workers=0, worker_init_fn=None, persistent_workers=False,
                 prefetch_factor=2):
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        if isinstance(prefetch, bool) or not isinstance(prefetch, numbers.Integral) or prefetch < 0:
            raise ValueError(f"DataLoader: prefetch must be an integer >= 0 (0 disables the thread), got {prefetch!r}")
        for name, value, least in (("num_workers", num_workers, 0), ("prefetch_factor", prefetch_factor, 1)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
                raise ValueError(f"DataLoader: {name} must be an integer >= {least}, got {value!r}")
        if sampler is not None and shuffle:
            raise ValueError("DataLoader: sampler and shuffle=True exclude each other; the sampler decides the "
                             "order (DistributedSampler(..., shuffle=True))")
        if persistent_workers and num_workers == 0:
            raise ValueError("DataLoader: persistent_workers=True needs num_workers > 0")
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(f"DataLoader: the dataset must define __getitem__ and __len__, "
                            f"got {type(dataset).__name__}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.collate_fn = collate_fn if collate_fn is not None else default_collate
        self.prefetch = int(prefetch)
        self.sampler = sampler
        self.num_workers, self.prefetch_factor = int(num_workers), int(prefetch_factor)
        self.worker_init_fn, self.persistent_workers = worker_init_fn, bool(persistent_workers)
        self._pool, self._passes = None, 0
        self.seed = int(backend.get_rng().integers(2 ** 63)) if seed is None else int(seed)
        self.epoch = 0
        self._start_batch = 0
        self._progress = None  # (epoch, batches handed out) of the pass in progress

    def __len__(self):
        count = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return count // self.batch_size if self.drop_last else math.ceil(count / self.batch_size)

    def _order(self, epoch):
        if self.sampler is not None:
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)
            return np.fromiter(iter(self.sampler), dtype=np.int64)
        count = len(self.dataset)
        if not self.shuffle:
            return np.arange(count)
        return shuffled_order(self.seed, epoch, count)

    def _worker_pool(self):
        if self._pool is not None and self._pool.alive():
            return self._pool
        self._shutdown_workers()
        self._pool = WorkerPool(self.dataset, self.collate_fn, self.num_workers, self.worker_init_fn)
        return self._pool

    def _release_pool(self, pool):
        if not self.persistent_workers or pool is not self._pool:
            pool.close()
            if pool is self._pool:
                self._pool = None

    def _shutdown_workers(self):
        """Stop the worker processes kept between epochs (``persistent_workers``)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    def __del__(self):
        try:
            self._shutdown_workers()
        except Exception:  # noqa: S110 - interpreter shutdown may have torn down modules
            pass

    def set_epoch(self, epoch):
        """Make the next ``iter()`` run epoch ``epoch`` from its first batch."""
        self.epoch = int(epoch)
        self._start_batch = 0
        self._progress = None

    def __iter__(self):
        epoch, start = self.epoch, self._start_batch
        self.epoch, self._start_batch = epoch + 1, 0
        self._progress = (epoch, start)
        return _LoaderIterator(self, epoch, start)

    def state_dict(self):
        """``{'seed', 'epoch', 'batch'}``: where the next batch comes from (mid-epoch while iterating)."""
        if self._progress is not None and self._progress[1] < len(self):
            epoch, batch = self._progress
        else:
            epoch, batch = self.epoch, self._start_batch
        return {"seed": self.seed, "epoch": epoch, "batch": batch}

    def load_state_dict(self, state_dict):
        """Resume: the next ``iter()`` continues epoch ``state_dict['epoch']`` at batch ``state_dict['batch']``."""
        self.seed = int(state_dict["seed"])
        self.epoch = int(state_dict["epoch"])
        self._start_batch = int(state_dict.get("batch", 0))
        self._progress = None
        if not 0 <= self._start_batch <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: batch {self._start_batch} is outside this loader's "
                             f"{len(self)} batches per epoch (was the batch size or data set changed?)")

    def __repr__(self):
        return (f"DataLoader(dataset={type(self.dataset).__name__}({len(self.dataset)}), batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last}, prefetch={self.prefetch}, "
                f"num_workers={self.num_workers})")
