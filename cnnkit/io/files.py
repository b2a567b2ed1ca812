"""Reading and writing safetensors files: atomic writes, a content checksum and errors that name the file."""
from __future__ import annotations

import hashlib
import os
import tempfile

import numpy as np

CHECKSUM_KEY = "cnnkit.sha256"
TEMP_SUFFIX = ".tmp"


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be used: not safetensors, damaged, or for another model."""


def _safetensors():
    try:
        import safetensors.numpy
        from safetensors import safe_open
    except ImportError:
        raise ImportError("saving and loading checkpoints needs the safetensors package: "
                          "pip install safetensors (or pip install 'cnnkit[io]')") from None
    return safetensors.numpy, safe_open


def contiguous(array):
    """``array`` in C order; unlike ``np.ascontiguousarray`` a 0-d array stays 0-d."""
    return np.require(np.asarray(array), requirements="C")


def checksum(arrays):
    """SHA-256 over every array's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = contiguous(arrays[name])
        digest.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def write_safetensors(path, arrays, metadata):
    """Write ``arrays`` and string ``metadata`` to ``path`` atomically (temp file, fsync, rename).

    A crash or kill during the write leaves the previous file at ``path`` untouched.
    """
    st_numpy, _ = _safetensors()
    arrays = {name: contiguous(array) for name, array in arrays.items()}
    metadata = {**metadata, CHECKSUM_KEY: checksum(arrays)}
    payload = st_numpy.save(arrays, metadata=metadata)
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temp_files(path)
    try:
        handle, temp_path = tempfile.mkstemp(dir=directory, prefix=_temp_prefix(path), suffix=TEMP_SUFFIX)
    except OSError as error:
        raise naming_path(error, path) from None
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except BaseException as error:
        if os.path.exists(temp_path):
            os.remove(temp_path)
        if isinstance(error, OSError):
            raise naming_path(error, path) from None
        raise
    _fsync_directory(directory)


def _temp_prefix(path):
    return f".{os.path.basename(path)}."


def naming_path(error, path):
    """The same kind of OSError (a full disk, no permission) with ``path`` in its message."""
    reason = error.strerror or str(error) or type(error).__name__
    return type(error)(error.errno, f"cannot write {path}: {reason}") if error.errno else \
        OSError(f"cannot write {path}: {reason}")


def remove_stale_temp_files(path):
    """Delete the temporary files a killed write of ``path`` left beside it; returns how many were removed.

    Writes to one path are never concurrent (one training run owns its directory), so any such file is
    left over from a process that died between creating it and renaming it.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    prefix = _temp_prefix(path)
    removed = 0
    try:
        names = os.listdir(directory)
    except OSError:
        return 0
    for name in names:
        if name.startswith(prefix) and name.endswith(TEMP_SUFFIX):
            try:
                os.remove(os.path.join(directory, name))
                removed += 1
            except OSError:
                pass  # gone already, or not ours to delete: the write goes on either way
    return removed


def _fsync_directory(directory):
    # Makes the rename itself durable on POSIX; directories cannot be opened this way on Windows.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_safetensors(path, verify=True):
    """Return ``(arrays, metadata)`` of a safetensors file; damaged or foreign files raise ``CheckpointError``."""
    _, safe_open = _safetensors()
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a directory; give a .safetensors file inside it")
    try:
        with safe_open(path, framework="np") as file:
            metadata = dict(file.metadata() or {})
            arrays = {name: file.get_tensor(name) for name in file.keys()}
    except Exception as error:  # safetensors raises its own SafetensorError (an Exception) for every problem
        size = os.path.getsize(path)
        raise CheckpointError(f"{path} is not a readable safetensors file ({size} bytes): {error}. "
                              "It may be truncated by an interrupted copy, corrupted, or another format; "
                              "re-create it or point at a different file.") from None
    expected = metadata.get(CHECKSUM_KEY)
    if verify and expected is not None and checksum(arrays) != expected:
        raise CheckpointError(f"{path} is corrupted: its tensors do not match the checksum saved with them; "
                              "re-create it or point at a different file.")
    return arrays, metadata
