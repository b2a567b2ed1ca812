"""``CIFAR10`` from the python version (pickled batches, read by a restricted unpickler) or the binary version.

The python batches are pickles, and a pickle can run any code on load. ``CifarUnpickler`` only lets through
the few globals a CIFAR batch is made of (NumPy's array reconstructors, ``ndarray``, ``dtype``), so a
file that asks for anything else (``os.system``, ``builtins.eval``, ...) is refused before it can run.
"""
from __future__ import annotations

import codecs
import os
import pickle
import tarfile

import numpy as np

from .dataset import InMemoryImages
from .download import download_first, file_digest

_RECORD_BYTES = 1 + 32 * 32 * 3  # binary version: a label byte, then 1024 R, 1024 G, 1024 B bytes


def _latin1_encode(text, encoding="latin1"):
    """What Python 3 protocol-2 pickles call to rebuild bytes; nothing but latin-1 is allowed."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing codec {encoding!r}: a CIFAR batch only uses latin1")
    return codecs.encode(text, "latin1")


# module paths differ between NumPy 1 (numpy.core) and 2 (numpy._core): take the functions from NumPy itself
_RECONSTRUCT = np.ndarray(0).__reduce__()[0]
_SCALAR = np.float64(0).__reduce__()[0]
_FROMBUFFER = np.arange(2).__reduce_ex__(5)[0]
_ALLOWED_GLOBALS = {
    **{(module, "_reconstruct"): _RECONSTRUCT for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "scalar"): _SCALAR for module in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(module, "_frombuffer"): _FROMBUFFER for module in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only the globals a CIFAR batch holds; anything else is refused."""

    def __init__(self, file, path):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {self.path}: it asks for {module}.{name}, which is not a CIFAR batch's content "
                "(only NumPy arrays, lists, dicts, numbers and strings); not a CIFAR batch, or a malicious file"
            ) from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError(f"refusing to load {self.path}: persistent ids are not a CIFAR batch's content")


def load_cifar_pickle(path):
    """Unpickle a CIFAR python batch with ``CifarUnpickler``; dict keys come back as ``str``."""
    with open(path, "rb") as handle:
        try:
            entry = CifarUnpickler(handle, path).load()
        except pickle.UnpicklingError:
            raise
        except Exception as error:  # a truncated or garbled pickle fails in many ways
            raise ValueError(f"{path}: not a readable CIFAR batch ({type(error).__name__}: {error})") from None
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: a CIFAR batch is a dict, this file holds a {type(entry).__name__}")
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in entry.items()}


def _decode_names(names):
    return [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in names]


class CIFAR10(InMemoryImages):
    """CIFAR-10: 50,000 training / 10,000 test ``(uint8 32x32x3 image, label)`` samples in 10 classes.

    Reads ``root/cifar-10-batches-py`` (python version, preferred) or ``root/cifar-10-batches-bin``
    (binary version), or ``root`` itself if it holds the batch files. ``download=True`` fetches and
    extracts the python version. ``verify`` checks the python batches' MD5 (torchvision's table).
    """

    base_folder = "cifar-10-batches-py"
    binary_folder = "cifar-10-batches-bin"
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    filename = "cifar-10-python.tar.gz"
    tgz_md5 = "c58f30108f718f92721af3b95e74349a"
    train_list = [("data_batch_1", "c99cafc152244af753f735de768cd75f"),
                  ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
                  ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
                  ("data_batch_4", "634d18415352ddfa80567beed471001a"),
                  ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb")]
    test_list = [("test_batch", "40351d587109b95175f43aff81a1287e")]
    meta = ("batches.meta", "5ff9c542aee3614f3951f8cda6e48888")
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    in_channels = 3
    image_size = 32

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False, *, split=None,
                 verify=True):
        self._init_split(root, train, split, transform, target_transform)
        self.classes = list(type(self).classes)
        batches = self.train_list if self.train else self.test_list
        layout, folder = self._locate(batches)
        if layout is None and download:
            self.download()
            layout, folder = self._locate(batches)
        if layout is None:
            python_files = ", ".join(name for name, _ in batches) + ", batches.meta"
            binary_files = ", ".join(name + ".bin" for name, _ in batches)
            raise FileNotFoundError(
                f"CIFAR10: no CIFAR-10 {split} batches found in {self.root}. Expected "
                f"{os.path.join(self.root, self.base_folder)}/{{{python_files}}} (extract {self.url} there) "
                f"or {os.path.join(self.root, self.binary_folder)}/{{{binary_files}}}, or pass download=True.")
        if layout == "python":
            self.data, self.targets = self._read_python(folder, batches, verify)
        else:
            self.data, self.targets = self._read_binary(folder, batches)
        self.num_classes = len(self.classes)
        bad = int(self.targets.max()) if len(self.targets) else 0
        if bad >= self.num_classes:
            raise ValueError(f"CIFAR10: label {bad} found, but there are only {self.num_classes} classes")

    @property
    def class_to_idx(self):
        return {name: index for index, name in enumerate(self.classes)}

    def _locate(self, batches):
        """Return ('python'|'binary', folder) for the first layout whose batch files all exist, else (None, None)."""
        candidates = [("python", os.path.join(self.root, self.base_folder), ""),
                      ("binary", os.path.join(self.root, self.binary_folder), ".bin"),
                      ("python", self.root, ""), ("binary", self.root, ".bin")]
        for layout, folder, suffix in candidates:
            if all(os.path.isfile(os.path.join(folder, name + suffix)) for name, _ in batches):
                return layout, folder
        return None, None

    def _read_python(self, folder, batches, verify):
        images, labels = [], []
        for name, md5 in batches:
            path = os.path.join(folder, name)
            if verify:
                actual = file_digest(path, "md5")
                if actual != md5:
                    raise ValueError(f"CIFAR10: {path} has MD5 {actual}, expected {md5} (the original batch); "
                                     "download it again, or pass verify=False for a custom batch")
            entry = load_cifar_pickle(path)
            data, batch_labels = entry.get("data"), entry.get("labels")
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                shape = getattr(data, "shape", None)
                raise ValueError(f"CIFAR10: {path}: 'data' should be a uint8 array of shape (N, 3072), "
                                 f"got {type(data).__name__} {getattr(data, 'dtype', '')} {shape}")
            if batch_labels is None or len(batch_labels) != len(data):
                raise ValueError(f"CIFAR10: {path}: needs one label per image in 'labels', got "
                                 f"{None if batch_labels is None else len(batch_labels)} for {len(data)} images")
            images.append(data)
            labels.append(np.asarray(batch_labels, dtype=np.int64))
        meta_path = os.path.join(folder, self.meta[0])
        if os.path.isfile(meta_path):
            names = load_cifar_pickle(meta_path).get("label_names")
            if names:
                self.classes = _decode_names(names)
        return self._to_hwc(np.concatenate(images)), np.concatenate(labels)

    def _read_binary(self, folder, batches):
        images, labels = [], []
        for name, _ in batches:
            path = os.path.join(folder, name + ".bin")
            raw = np.fromfile(path, dtype=np.uint8)
            if raw.size == 0 or raw.size % _RECORD_BYTES:
                raise ValueError(f"CIFAR10: {path} has {raw.size} bytes, not a positive multiple of "
                                 f"{_RECORD_BYTES} (1 label byte + 3072 pixel bytes per image): truncated, "
                                 "or not a CIFAR-10 binary batch")
            records = raw.reshape(-1, _RECORD_BYTES)
            labels.append(records[:, 0].astype(np.int64))
            images.append(records[:, 1:])
        meta_path = os.path.join(folder, "batches.meta.txt")
        if os.path.isfile(meta_path):
            with open(meta_path, encoding="utf-8") as handle:
                names = [line.strip() for line in handle if line.strip()]
            if names:
                self.classes = names
        return self._to_hwc(np.concatenate(images)), np.concatenate(labels)

    @staticmethod
    def _to_hwc(flat):
        # rows hold 1024 red, then green, then blue values: (N, 3, 32, 32) -> (N, 32, 32, 3)
        return np.ascontiguousarray(flat.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))

    def download(self):
        """Download and safely extract the python version into ``root``."""
        archive = os.path.join(self.root, self.filename)
        if not (os.path.isfile(archive) and file_digest(archive, "md5") == self.tgz_md5):
            try:
                download_first([self.url], archive, md5=self.tgz_md5)
            except RuntimeError as error:
                raise RuntimeError(f"CIFAR10: {error}\nPut {self.filename} (or its extracted {self.base_folder} "
                                   f"folder) in {self.root}; it is at {self.url}") from None
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                parts = member.name.replace("\\", "/").split("/")
                if member.name.startswith("/") or ".." in parts or not (member.isfile() or member.isdir()):
                    raise ValueError(f"CIFAR10: refusing to extract {member.name!r} from {archive}: "
                                     "an unsafe path or link")
            # members checked above; the "data" filter (Python >= 3.10.12) re-checks them where available
            extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(self.root, members=members, **extra)

    def __repr__(self):
        return f"CIFAR10(split={self.split!r}, num_samples={len(self)}, root={self.root!r})"
