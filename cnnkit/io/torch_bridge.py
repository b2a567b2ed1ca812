"""Weights between live PyTorch modules and cnnkit: ``from_torch`` and ``to_torch`` (torch is imported lazily)."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


def _numpy(tensor):
    tensor = tensor.detach().cpu()
    if str(tensor.dtype) == "torch.bfloat16":  # NumPy has no bfloat16
        tensor = tensor.float()
    return np.array(tensor.numpy())


def from_torch(module, model=None, strict=True):
    """A torch module's (or state_dict's) weights as ``{key: ndarray}``; loaded into ``model`` when given.

    Keys are torch's, which zoo models share with torchvision (``num_batches_tracked`` included),
    so ``from_torch(torchvision_resnet18, cnnkit.models.create("resnet18"))`` returns a ready model.
    """
    state = module.state_dict() if hasattr(module, "state_dict") else module
    arrays = OrderedDict((key, _numpy(value)) for key, value in state.items() if hasattr(value, "detach"))
    if model is None:
        return arrays
    model.load_state_dict(arrays, strict=strict)
    return model


def to_torch(model, module=None, strict=True):
    """A cnnkit model's ``state_dict`` as torch tensors; loaded into the torch ``module`` when given."""
    try:
        import torch
    except ImportError:
        raise ImportError("to_torch needs torch (pip install torch); without it, save the weights with "
                          "cnnkit.io.save_weights(model, 'weights.safetensors') and load them with "
                          "safetensors.torch.load_file on the PyTorch side") from None
    tensors = OrderedDict((key, torch.from_numpy(np.array(value))) for key, value in model.state_dict().items())
    if module is None:
        return tensors
    module.load_state_dict(tensors, strict=strict)
    return module
