"""``load_dataset(name, split='train[:90%]')`` and ``dataset_info(name)`` for the command line and trainers.

Splits use TensorFlow-Datasets slice syntax: ``'train'``, ``'test[:8000]'``, ``'test[8000:]'``,
``'train[10%:]'``, ``'train[:50%]'``, negative bounds too (``'test[-1000:]'``). Percent bounds are
rounded to the closest sample, as TFDS does: ``round(percent * N / 100)``.
"""
from __future__ import annotations

import os
import re

import numpy as np

from .cifar import CIFAR10
from .dataset import Subset
from .folder import ImageFolder
from .mnist import MNIST, FashionMNIST
from .shapes import DEFAULT_CLASSES, SHAPES_MEAN, SHAPES_STD, Shapes

__all__ = ["DATASET_NAMES", "load_dataset", "dataset_info", "parse_split", "split_indices", "default_data_root"]

DATASET_NAMES = ("shapes", "mnist", "fashion-mnist", "cifar10", "folder")
_ALIASES = {"fashion": "fashion-mnist", "fashionmnist": "fashion-mnist", "cifar-10": "cifar10",
            "imagefolder": "folder", "image-folder": "folder"}
_SPLIT_RE = re.compile(r"^\s*([A-Za-z_][\w\-]*)\s*(?:\[\s*([^\[\]:]*?)\s*:\s*([^\[\]:]*?)\s*\])?\s*$")
_BOUND_RE = re.compile(r"^([+-]?\d+)\s*(%?)$")
_SPLIT_HELP = ("expected NAME or NAME[start:stop] with integer or percent bounds, e.g. 'train', 'test[:8000]', "
               "'test[8000:]', 'train[10%:]', 'train[:50%]'")


def _canonical(name):
    key = str(name).strip().lower().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return key


def default_data_root():
    """Where downloaded data sets live: ``$CNNKIT_DATA`` or ``~/.cache/cnnkit/data``."""
    return os.path.expanduser(os.environ.get("CNNKIT_DATA", os.path.join("~", ".cache", "cnnkit", "data")))


def parse_split(split):
    """``'train[10%:]'`` -> ``('train', slice('10%', None))``: integer bounds stay ints, percents stay ``'N%'``."""
    if not isinstance(split, str):
        raise TypeError(f"split must be a string like 'train[:90%]', got {type(split).__name__}")
    match = _SPLIT_RE.match(split)
    if match is None:
        raise ValueError(f"bad split {split!r}: {_SPLIT_HELP}")
    base, start_text, stop_text = match.groups()
    bounds, units = [], set()
    for text in (start_text, stop_text):
        if not text:
            bounds.append(None)
            continue
        bound = _BOUND_RE.match(text)
        if bound is None:
            raise ValueError(f"bad split {split!r}: bound {text!r} is not an integer or a percent; {_SPLIT_HELP}")
        value, percent = int(bound.group(1)), bool(bound.group(2))
        if percent and not -100 <= value <= 100:
            raise ValueError(f"bad split {split!r}: percent bounds must be within -100% and 100%, got {value}%")
        units.add(percent)
        bounds.append(f"{value}%" if percent else value)
    if len(units) > 1:
        raise ValueError(f"bad split {split!r}: do not mix percent and absolute bounds in one slice")
    return base, slice(*bounds)


def split_indices(split_slice, length):
    """The sample indices a ``parse_split`` slice selects out of ``length`` samples (a ``range``)."""
    def absolute(bound):
        if isinstance(bound, str):
            return int(round(int(bound[:-1]) * length / 100.0))
        return bound

    return range(length)[absolute(split_slice.start):absolute(split_slice.stop)]


def _folder_for(root, base):
    if root is None:
        raise ValueError("load_dataset('folder'): pass root=<folder with one sub-folder per class>")
    root = os.path.expanduser(os.fspath(root))
    if os.path.isdir(os.path.join(root, base)):
        return os.path.join(root, base)
    if base == "train":
        return root
    raise FileNotFoundError(f"load_dataset('folder'): no {os.path.join(root, base)} folder; use "
                            f"root/train and root/{base} sub-folders, or slice one folder (e.g. 'train[80%:]')")


def _base_dataset(key, root, base, transform, download, kwargs):
    if key == "folder":
        return ImageFolder(_folder_for(root, base), transform=transform, **kwargs)
    if base not in ("train", "test"):
        raise ValueError(f"load_dataset({key!r}): split must be based on 'train' or 'test', got {base!r}")
    if key == "shapes":
        return Shapes(split=base, transform=transform, **kwargs)
    classes = {"mnist": MNIST, "fashion-mnist": FashionMNIST, "cifar10": CIFAR10}
    root = os.path.join(default_data_root(), key) if root is None else root
    return classes[key](root, split=base, transform=transform, download=download, **kwargs)


def load_dataset(name, root=None, split="train", transform=None, download=False, **kwargs):
    """Build a data set by name ('shapes', 'mnist', 'fashion-mnist', 'cifar10', 'folder') and split slice.

    ``download=True`` fetches missing MNIST/Fashion-MNIST/CIFAR-10 files into ``root`` (shapes is built in,
    folders have nothing to fetch). Extra keywords go to the data set (``target_transform``, ``num_samples``, ...).
    A sliced split is a ``Subset``; for 'folder' (files sorted by class) slices index a fixed shuffled
    order (seed 0), so 'train[:80%]' and 'train[80%:]' both hold every class.
    """
    key = _canonical(name)
    base, split_slice = parse_split(split)
    dataset = _base_dataset(key, root, base, transform, download, kwargs)
    if split_slice == slice(None, None):
        return dataset
    indices = split_indices(split_slice, len(dataset))
    if len(indices) == 0:
        raise ValueError(f"load_dataset({key!r}): split {split!r} selects no samples out of {len(dataset)}")
    if key == "folder":
        indices = np.random.default_rng(0).permutation(len(dataset))[indices.start:indices.stop:indices.step]
    return Subset(dataset, indices)


def dataset_info(name, root=None, **kwargs):
    """``dict(num_classes, in_channels, image_size, classes, mean, std)`` of a data set, for models/transforms."""
    key = _canonical(name)
    if key == "shapes":
        classes = list(kwargs.get("classes", DEFAULT_CLASSES))
        # mean/std measured on the default configuration; close for other sizes and seeds
        return dict(num_classes=len(classes), in_channels=1, image_size=int(kwargs.get("image_size", 28)),
                    classes=classes, mean=SHAPES_MEAN, std=SHAPES_STD)
    if key == "folder":
        folder = ImageFolder(_folder_for(root, "train"), **kwargs)
        return dict(num_classes=folder.num_classes, in_channels=folder.in_channels, image_size=folder.image_size,
                    classes=list(folder.classes), mean=(0.5,) * folder.in_channels, std=(0.5,) * folder.in_channels)
    source = {"mnist": MNIST, "fashion-mnist": FashionMNIST, "cifar10": CIFAR10}[key]
    return dict(num_classes=len(source.classes), in_channels=source.in_channels, image_size=source.image_size,
                classes=list(source.classes), mean=source.mean, std=source.std)
