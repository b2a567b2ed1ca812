"""``Dataset`` (map-style, torch-like), ``InMemoryImages``, ``Subset``, ``TensorDataset`` and ``ConcatDataset``."""
from __future__ import annotations

import bisect
import os

import numpy as np

from ..autograd import Tensor

# metadata a Subset/ConcatDataset passes through from the data set it wraps
_METADATA = ("classes", "num_classes", "in_channels", "image_size", "class_to_idx", "mean", "std")


class Dataset:
    """A map-style data set: ``dataset[index]`` returns one sample and ``len(dataset)`` counts them."""

    def __getitem__(self, index):
        raise NotImplementedError(f"{type(self).__name__} must implement __getitem__")

    def __len__(self):
        raise NotImplementedError(f"{type(self).__name__} must implement __len__")

    def __add__(self, other):
        return ConcatDataset([self, other])

    def _check_index(self, index):
        """Return ``index`` as a non-negative int, with a clear IndexError when out of range."""
        length = len(self)
        try:
            index = int(index)
        except TypeError:
            raise TypeError(f"{type(self).__name__}: indices must be integers, got {type(index).__name__}") from None
        if not -length <= index < length:
            raise IndexError(f"{type(self).__name__}: index {index} is out of range for {length} samples")
        return index % length

    def _transformed(self, image, target):
        """Apply ``self.transform`` to the image and ``self.target_transform`` to the label, when set."""
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target


class InMemoryImages(Dataset):
    """A data set held as arrays: ``data`` (N images) and ``targets`` (N labels), with optional transforms."""

    transform = None
    target_transform = None

    def _init_split(self, root, train, split, transform, target_transform):
        """Set root, split ('train' or 'test'; from ``train`` when None), train and the transforms."""
        if split is None:
            split = "train" if train else "test"
        if split not in ("train", "test"):
            raise ValueError(f"{type(self).__name__}: split must be 'train' or 'test', got {split!r}")
        self.root = os.path.expanduser(os.fspath(root))
        self.split = split
        self.train = split == "train"
        self.transform = transform
        self.target_transform = target_transform

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, index):
        index = self._check_index(index)
        return self._transformed(self.data[index], int(self.targets[index]))


class Subset(Dataset):
    """The samples of ``dataset`` at ``indices``, in that order; class metadata passes through."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = [int(index) for index in indices]
        length = len(dataset)
        bad = [index for index in self.indices if not -length <= index < length]
        if bad:
            raise IndexError(f"Subset: indices {bad[:5]} are out of range for a data set of {length} samples")

    def __getitem__(self, index):
        return self.dataset[self.indices[self._check_index(index)]]

    def __len__(self):
        return len(self.indices)

    def __getattr__(self, name):
        if name in _METADATA:
            return getattr(self.__dict__["dataset"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self):
        return f"Subset({len(self)} of {self.dataset!r})"


class ConcatDataset(Dataset):
    """Data sets one after another: index ``i`` runs through the first, then the second, ..."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("ConcatDataset: needs at least one data set")
        self.cumulative_sizes = list(np.cumsum([len(dataset) for dataset in self.datasets]))

    def __len__(self):
        return int(self.cumulative_sizes[-1])

    def __getitem__(self, index):
        index = self._check_index(index)
        which = bisect.bisect_right(self.cumulative_sizes, index)
        start = 0 if which == 0 else int(self.cumulative_sizes[which - 1])
        return self.datasets[which][index - start]

    def __getattr__(self, name):
        if name in _METADATA:
            return getattr(self.__dict__["datasets"][0], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class TensorDataset(Dataset):
    """Samples are the ``index``-th rows of equally long arrays/Tensors: ``(a[i], b[i], ...)`` as arrays."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset: needs at least one array")
        self.tensors = tuple(tensor.data if isinstance(tensor, Tensor) else np.asarray(tensor) for tensor in tensors)
        lengths = [len(tensor) for tensor in self.tensors]
        if len(set(lengths)) != 1:
            raise ValueError(f"TensorDataset: all arrays need the same first dimension, got lengths {lengths}")

    def __getitem__(self, index):
        index = self._check_index(index)
        return tuple(tensor[index] for tensor in self.tensors)

    def __len__(self):
        return len(self.tensors[0])
