"""``DistributedSampler``: each of ``num_replicas`` processes iterates over its own share of a data set's indices."""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import comm

__all__ = ["DistributedSampler", "shuffled_order"]

ORDER_STREAM = 0


def shuffled_order(seed, epoch, count):
    """The permutation of range(count) for ``epoch``: a pure function of (seed, epoch), shared with DataLoader."""
    return np.random.default_rng([int(seed), ORDER_STREAM, int(epoch)]).permutation(count)


class DistributedSampler:
    """Indices for process ``rank`` of ``num_replicas`` (``torch.utils.data.DistributedSampler``'s semantics).

    The epoch's order (shuffled from ``(seed, epoch)``, else 0..n-1) is padded by repeating its start up to
    a multiple of ``num_replicas`` (or cut down to one with ``drop_last``); rank r takes positions
    r, r + num_replicas, ... So every rank gets the same number of samples, and the ranks' j-th batches of
    b samples together hold positions j*b*num_replicas .. (j+1)*b*num_replicas - 1 of the order, whatever the
    number of processes. Call ``set_epoch(e)`` before each epoch (the Trainer and DataLoader do).
    """

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        num_replicas = comm.world_size() if num_replicas is None else num_replicas
        rank = comm.rank() if rank is None else rank
        for name, value in (("num_replicas", num_replicas), ("rank", rank)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                raise TypeError(f"DistributedSampler: {name} must be an integer, got {value!r}")
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: need num_replicas >= 1 and 0 <= rank < num_replicas, "
                             f"got num_replicas={num_replicas}, rank={rank}")
        self.dataset, self.num_replicas, self.rank = dataset, int(num_replicas), int(rank)
        self.shuffle, self.seed, self.drop_last, self.epoch = bool(shuffle), int(seed), bool(drop_last), 0
        count = len(dataset)
        if self.drop_last and count % self.num_replicas:
            self.num_samples = math.ceil((count - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(count / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """Use epoch ``epoch``'s shuffle order from the next iteration on."""
        self.epoch = int(epoch)

    def indices(self):
        """This rank's indices for the current epoch, as an int64 array."""
        count = len(self.dataset)
        order = shuffled_order(self.seed, self.epoch, count) if self.shuffle else np.arange(count)
        if self.total_size > count:
            order = np.resize(order, self.total_size)  # repeats the order from its start
        return order[:self.total_size][self.rank::self.num_replicas]

    def __iter__(self):
        return iter(self.indices().tolist())

    def __len__(self):
        return self.num_samples

    def __repr__(self):
        return (f"DistributedSampler(num_replicas={self.num_replicas}, rank={self.rank}, shuffle={self.shuffle}, "
                f"seed={self.seed}, drop_last={self.drop_last})")
