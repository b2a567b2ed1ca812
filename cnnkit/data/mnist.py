"""``MNIST`` and ``FashionMNIST`` from their IDX files (gzipped or not), checked against the known originals.

Integrity: torchvision checks the MD5 of the ``.gz`` files, but the same content re-compressed (as in a
shared folder) has a different ``.gz``. So the check here is the SHA-256 of the *decompressed* content,
which any gzip of the original files shares. Downloads are additionally checked against torchvision's
MD5 of the ``.gz`` as served. ``verify=False`` skips the content check (for custom or partial files).
"""
from __future__ import annotations

import os

import numpy as np

from .dataset import InMemoryImages
from .download import bytes_digest, download_first
from .idx import parse_idx, read_bytes

IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049


class MNIST(InMemoryImages):
    """MNIST digits: 60,000 training / 10,000 test ``(uint8 28x28 image, label)`` samples.

    Files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` are looked up in ``root`` and in
    ``root/MNIST/raw`` (torchvision's layout); ``download=True`` fetches missing ones into ``root``.
    """

    files = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
    # MD5 of the .gz files as served (torchvision's table)
    gz_md5 = {"train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
              "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
              "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
              "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c"}
    # SHA-256 of the decompressed originals. The t10k values were checked here against the shared copy of
    # the test set (whose .gz MD5s differ from torchvision's but whose content is the original); the train
    # values are the ones several independent projects publish for the decompressed originals.
    content_sha256 = {"train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
                      "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
                      "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
                      "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"}
    folder_name = "MNIST"
    classes = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four", "5 - five", "6 - six", "7 - seven",
               "8 - eight", "9 - nine"]
    mean, std = (0.1307,), (0.3081,)
    in_channels = 1
    image_size = 28

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False, *, split=None,
                 verify=True):
        self._init_split(root, train, split, transform, target_transform)
        self.classes = list(type(self).classes)
        self.num_classes = len(self.classes)
        paths = self._locate(download)
        images = self._read(paths[0], verify)
        labels = self._read(paths[1], verify)
        self.data, self.targets = self._check(images, labels, paths)

    @property
    def class_to_idx(self):
        return {name: index for index, name in enumerate(self.classes)}

    def _folders(self):
        return [self.root, os.path.join(self.root, self.folder_name, "raw")]

    def _find(self, name):
        for folder in self._folders():
            for candidate in (name, name + ".gz"):
                path = os.path.join(folder, candidate)
                if os.path.isfile(path):
                    return path
        return None

    def _locate(self, download):
        names = self.files[self.split]
        paths = [self._find(name) for name in names]
        missing = [name for name, path in zip(names, paths) if path is None]
        if missing and download:
            for name in missing:
                try:
                    download_first([mirror + name + ".gz" for mirror in self.mirrors],
                                   os.path.join(self.root, name + ".gz"), md5=self.gz_md5.get(name))
                except RuntimeError as error:
                    raise RuntimeError(f"{type(self).__name__}: {error}\n{self._placement_hint(missing)}") from None
            paths = [self._find(name) for name in names]
        elif missing:
            raise FileNotFoundError(f"{type(self).__name__}: {self.split} files not found (download=True fetches "
                                    f"them when online).\n{self._placement_hint(missing)}")
        return paths

    def _placement_hint(self, missing):
        files = ", ".join(name + ".gz" for name in missing)
        hint = (f"Put {files} (gzipped or not) in {self.root} (or {os.path.join(self.root, self.folder_name, 'raw')}); "
                f"they are at {self.mirrors[0]}")
        other = "test" if self.split == "train" else "train"
        if all(self._find(name) for name in self.files[other]):
            # a folder with one split only (such as a copy of the test set): slicing it is the way to train
            hint += (f".\n{self.root} holds the {other} files only: to use them for both, slice that split, "
                     f"e.g. '{other}[:8000]' to train and '{other}[8000:]' to validate")
        return hint

    def _read(self, path, verify):
        content = read_bytes(path)
        name = os.path.basename(path)
        name = name[:-3] if name.endswith(".gz") else name
        expected = self.content_sha256.get(name)
        if verify and expected is not None:
            actual = bytes_digest(content, "sha256")
            if actual != expected:
                raise ValueError(f"{type(self).__name__}: {path} is not the original {name}: its decompressed "
                                 f"content has SHA-256 {actual}, expected {expected}. Download it again, or pass "
                                 "verify=False to load a custom file of that name.")
        return parse_idx(content, path)

    def _check(self, images, labels, paths):
        if images.ndim != 3 or images.dtype != np.uint8:
            raise ValueError(f"{type(self).__name__}: {paths[0]} should hold uint8 images (magic {IMAGES_MAGIC}, "
                             f"3 dimensions), got {images.dtype} of shape {images.shape}")
        if labels.ndim != 1 or labels.dtype != np.uint8:
            raise ValueError(f"{type(self).__name__}: {paths[1]} should hold uint8 labels (magic {LABELS_MAGIC}, "
                             f"1 dimension), got {labels.dtype} of shape {labels.shape}")
        if len(images) != len(labels):
            raise ValueError(f"{type(self).__name__}: {paths[0]} has {len(images)} images but {paths[1]} has "
                             f"{len(labels)} labels")
        if len(labels) and int(labels.max()) >= self.num_classes:
            raise ValueError(f"{type(self).__name__}: {paths[1]} holds label {int(labels.max())}, "
                             f"but there are only {self.num_classes} classes")
        return images, labels.astype(np.int64)

    def __repr__(self):
        return f"{type(self).__name__}(split={self.split!r}, num_samples={len(self)}, root={self.root!r})"


class FashionMNIST(MNIST):
    """Fashion-MNIST (Zalando): MNIST's file format and sizes, ten clothing classes."""

    mirrors = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)
    gz_md5 = {"train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
              "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
              "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
              "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310"}
    # SHA-256 of the decompressed originals, as several independent projects publish them (not checked
    # here against a local copy: none is available offline)
    content_sha256 = {"train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
                      "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
                      "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
                      "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"}
    folder_name = "FashionMNIST"
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot"]
    mean, std = (0.2860,), (0.3530,)
