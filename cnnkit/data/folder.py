"""``ImageFolder``: images in ``root/<class name>/...`` (PNG, JPEG, BMP) read with Pillow, classes sorted."""
from __future__ import annotations

import os

import numpy as np

from .dataset import Dataset
from .image_file import ImageInputError, read_image

IMG_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


def find_classes(root):
    """Sorted class folder names under ``root`` and their indices."""
    if not os.path.isdir(root):
        raise FileNotFoundError(f"ImageFolder: {root} is not a folder")
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir() and not entry.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"ImageFolder: no class folders in {root}; expected {root}/<class name>/<images>")
    return classes, {name: index for index, name in enumerate(classes)}


class ImageFolder(Dataset):
    """Images in ``root/<class>/**/<file>`` as ``(uint8 image, class index)``; classes sorted by name.

    ``mode='L'`` gives ``(H, W)`` grayscale, ``'RGB'`` gives ``(H, W, 3)``; ``None`` picks ``'L'`` if the first
    image is grayscale, else ``'RGB'``. ``image_size`` is the first image's size (an int when square).
    """

    def __init__(self, root, transform=None, target_transform=None, mode=None, extensions=IMG_EXTENSIONS):
        if mode not in (None, "L", "RGB"):
            raise ValueError(f"ImageFolder: mode must be 'L', 'RGB' or None, got {mode!r}")
        self.root = os.path.expanduser(os.fspath(root))
        self.transform = transform
        self.target_transform = target_transform
        self.extensions = tuple(extension.lower() for extension in extensions)
        self.classes, self.class_to_idx = find_classes(self.root)
        self.num_classes = len(self.classes)
        self.samples = self._scan()
        self.targets = np.asarray([target for _, target in self.samples], dtype=np.int64)
        first = self._read(self.samples[0][0])
        first_mode, (width, height) = first.mode, first.size
        self.mode = mode or ("L" if first_mode in _GRAY_MODES else "RGB")
        self.in_channels = 1 if self.mode == "L" else 3
        self.image_size = height if height == width else (height, width)

    def _scan(self):
        samples, empty = [], []
        for name in self.classes:
            folder = os.path.join(self.root, name)
            found = []
            for directory, subdirectories, files in os.walk(folder, followlinks=True):
                subdirectories.sort()
                found.extend(os.path.join(directory, file) for file in sorted(files)
                             if file.lower().endswith(self.extensions))
            if not found:
                empty.append(name)
            samples.extend((path, self.class_to_idx[name]) for path in found)
        if empty:
            raise FileNotFoundError(f"ImageFolder: no {'/'.join(self.extensions)} images in class folder(s) "
                                    f"{empty} under {self.root}")
        return samples

    def load_image(self, path):
        """Read one image as a uint8 array in this folder's mode."""
        return np.asarray(self._read(path).convert(self.mode), dtype=np.uint8).copy()

    @staticmethod
    def _read(path):
        try:
            return read_image(path)
        except ImageInputError as error:
            raise ImageInputError(f"ImageFolder: {error}") from None

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[self._check_index(index)]
        return self._transformed(self.load_image(path), target)

    def __repr__(self):
        return (f"ImageFolder(root={self.root!r}, num_samples={len(self)}, classes={len(self.classes)}, "
                f"mode={self.mode!r})")
