"""Run directories: the ``runs/latest`` pointer and turning "a run, a pointer or a file" into a checkpoint path."""
from __future__ import annotations

import os
import tempfile

LATEST = "latest"
CHECKPOINT_NAMES = ("best.safetensors", "last.safetensors")


def write_latest(run_dir):
    """Point ``<parent of run_dir>/latest`` at ``run_dir``: a relative symlink, or a text file where links fail."""
    run_dir = os.path.abspath(run_dir)
    parent, name = os.path.split(run_dir)
    pointer = os.path.join(parent, LATEST)
    temp_path = tempfile.mktemp(dir=parent, prefix=".latest.")  # a name for os.symlink, replaced at once
    try:
        os.symlink(name, temp_path, target_is_directory=True)
    except (OSError, NotImplementedError):
        with open(temp_path, "w", encoding="utf-8") as file:
            file.write(name + "\n")
    if os.path.isdir(pointer) and not os.path.islink(pointer):
        os.remove(temp_path)
        raise FileExistsError(f"{pointer} is a real directory; cannot point it at {run_dir}")
    os.replace(temp_path, pointer)
    return pointer


def resolve_run(path):
    """The run directory that ``path`` names: itself, or the target of a ``latest`` pointer file."""
    path = os.fspath(path)
    if os.path.isfile(path) and os.path.basename(path) == LATEST:
        with open(path, encoding="utf-8") as file:
            return os.path.join(os.path.dirname(path), file.read().strip())
    return path


def resolve_checkpoint(path, prefer="best"):
    """A checkpoint file from a file, a run directory or a ``latest`` pointer.

    In a run directory: ``best.safetensors``, else ``last.safetensors``; ``prefer='last'`` (for
    resuming) reverses the order.
    """
    if prefer not in ("best", "last"):
        raise ValueError(f"resolve_checkpoint: prefer must be 'best' or 'last', got {prefer!r}")
    path = resolve_run(path)
    if os.path.isdir(path):
        for name in CHECKPOINT_NAMES if prefer == "best" else CHECKPOINT_NAMES[::-1]:
            candidate = os.path.join(path, name)
            if os.path.isfile(candidate):
                return candidate
        raise FileNotFoundError(f"{path} is a directory without {' or '.join(CHECKPOINT_NAMES)}; "
                                "give a checkpoint file or a run directory written by 'cnnkit train'")
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such checkpoint, run directory or pointer: {path}")
    return path
