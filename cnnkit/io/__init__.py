"""Saving and loading: safetensors checkpoints and weights (no pickle), torch state dicts, run directories."""
from .checkpoint import load_checkpoint, load_model, read_metadata, save_checkpoint, save_weights
from .files import CheckpointError
from .runs import resolve_checkpoint, resolve_run, write_latest
from .state_dict import load_state_dict
from .torch_bridge import from_torch, to_torch

__all__ = ["save_checkpoint", "load_checkpoint", "save_weights", "load_model", "load_state_dict", "read_metadata",
           "CheckpointError", "resolve_checkpoint", "resolve_run", "write_latest", "from_torch", "to_torch"]
