"""``load_state_dict(path)``: the model weights of a file as ``{key: ndarray}``, from safetensors or torch's .pt."""
from __future__ import annotations

import os

from .checkpoint import _split_model_arrays, read_file
from .files import CheckpointError
from .torch_bridge import from_torch

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def load_state_dict(path):
    """Read a ``state_dict`` from safetensors (cnnkit's or torch's) or, with torch installed, a .pt/.pth file."""
    path = os.fspath(path)
    if path.lower().endswith(TORCH_SUFFIXES):
        return _load_torch_file(path)
    arrays, metadata = read_file(path)
    return _split_model_arrays(metadata, arrays)


def _load_torch_file(path):
    try:
        import torch
    except ImportError:
        raise ImportError(f"{path} is a PyTorch pickle file; reading it needs torch (pip install torch). Or "
                          "convert it once with torch: safetensors.torch.save_file("
                          "torch.load(path, weights_only=True), 'weights.safetensors'), then load that file.") from None
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such weights file: {path}")
    try:
        # weights_only=True refuses arbitrary pickled objects: only tensors and plain containers load.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} could not be read by torch.load(weights_only=True): {error}") from None
    if isinstance(loaded, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(loaded.get(key), dict):
                loaded = loaded[key]
                break
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{path} holds a {type(loaded).__name__}, not a state_dict (a dict of tensors)")
    # torch state dicts may hold non-tensor entries (e.g. _metadata); they are not weights
    return from_torch(loaded)
