"""Checkpoints and weights files in safetensors format (no pickle): model, optimizer, scheduler, RNG and epoch.

Layout of a file: model tensors under their ``state_dict`` keys (prefixed ``model.`` in a full
checkpoint), optimizer/scheduler arrays under ``optimizer.``/``scheduler.`` paths, and string
metadata holding JSON: the format marker and version, ``model_name`` and ``model_config`` (so
``load_model`` rebuilds the network), optimizer and scheduler scalars, the RNG state, the epoch
and free-form ``extra`` values (best metric, class names, ...).
"""
from __future__ import annotations

import json

import numpy as np

from .. import backend
from ..models import create
from .files import CheckpointError, read_safetensors, write_safetensors
from .state import decode_state, encode_state

FORMAT = "cnnkit"
FORMAT_VERSION = 1
MODEL_PREFIX = "model."


def _model_metadata(model, kind):
    from .. import __version__  # at call time: the package may import cnnkit.io before defining it

    metadata = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": kind,
                "cnnkit_version": __version__, "model_class": type(model).__name__}
    name = getattr(model, "model_name", None)
    if name is not None:
        metadata["model_name"] = name
        metadata["model_config"] = json.dumps(getattr(model, "model_config", {}))
    return metadata


def _model_arrays(model, prefix):
    return {f"{prefix}{key}": np.asarray(value) for key, value in model.state_dict().items()}


def save_weights(model, path, extra=None):
    """Save only the model's ``state_dict`` (plain keys, loadable by torch too) with its name and config."""
    metadata = _model_metadata(model, "weights")
    arrays = _model_arrays(model, "")
    if extra is not None:
        metadata["extra"], extra_arrays = encode_state(extra, "extra")
        arrays.update(extra_arrays)
    write_safetensors(path, arrays, metadata)


def save_checkpoint(path, model, optimizer=None, scheduler=None, epoch=None, extra=None):
    """Save everything needed to resume training exactly: weights, optimizer, scheduler, RNG state, epoch."""
    metadata = _model_metadata(model, "checkpoint")
    arrays = _model_arrays(model, MODEL_PREFIX)
    for name, owner in (("optimizer", optimizer), ("scheduler", scheduler)):
        if owner is not None:
            metadata[name], owner_arrays = encode_state(owner.state_dict(), name)
            metadata[f"{name}_class"] = type(owner).__name__
            arrays.update(owner_arrays)
    metadata["rng_state"] = json.dumps(backend.get_rng_state())
    metadata["epoch"] = json.dumps(epoch)
    metadata["extra"], extra_arrays = encode_state(extra or {}, "extra")
    arrays.update(extra_arrays)
    write_safetensors(path, arrays, metadata)


def read_file(path, verify=True):
    """``(arrays, metadata)`` of a safetensors file, refusing cnnkit files of a newer format version."""
    arrays, metadata = read_safetensors(path, verify=verify)
    if metadata.get("format") == FORMAT:
        version = metadata.get("format_version", "?")
        if not version.isdigit() or int(version) > FORMAT_VERSION:
            raise CheckpointError(f"{path} has checkpoint format version {version}, newer than this cnnkit reads "
                                  f"({FORMAT_VERSION}); upgrade cnnkit (pip install -U cnnkit)")
    return arrays, metadata


def _json_field(path, metadata, key, default=None):
    if key not in metadata:
        return default
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path}: metadata field {key!r} is not valid JSON ({error})") from None


def _describe(metadata):
    """The parts of a file's metadata that do not need its tensors."""
    return {"format": metadata.get("format"), "kind": metadata.get("kind", "weights"),
            "model_name": metadata.get("model_name"), "model_class": metadata.get("model_class")}


def _split_model_arrays(metadata, arrays):
    """The model's ``state_dict`` arrays of a file, with the ``model.`` prefix of full checkpoints removed."""
    if metadata.get("format") == FORMAT and metadata.get("kind") == "checkpoint":
        return {key[len(MODEL_PREFIX):]: value for key, value in arrays.items() if key.startswith(MODEL_PREFIX)}
    return {key: value for key, value in arrays.items() if not key.startswith("extra.")}


def read_metadata(path):
    """Decoded metadata: model_name, model_config, epoch, classes and extra (``cnnkit train`` puts its settings
    in ``extra['config']``, the data description (classes, mean, std, image_size) in ``extra['data']``)."""
    arrays, metadata = read_file(path, verify=False)
    info = _describe(metadata)
    info["model_config"] = _json_field(path, metadata, "model_config")
    info["epoch"] = _json_field(path, metadata, "epoch")
    info["extra"] = decode_state(metadata["extra"], arrays) if "extra" in metadata else {}
    data = info["extra"].get("data") if isinstance(info["extra"].get("data"), dict) else {}
    info["classes"] = data.get("classes") or info["extra"].get("classes")  # class names, if the file has them
    return info


def _build_model(path, metadata, arrays):
    name = metadata.get("model_name")
    if name is None:
        raise CheckpointError(f"{path} holds weights but no model name, so the network cannot be rebuilt from it: "
                              "build the model yourself (cnnkit.models.create(...)) and load the weights with "
                              "model.load_state_dict(cnnkit.io.load_state_dict(path))")
    config = _json_field(path, metadata, "model_config", {})
    try:
        model = create(name, **config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot rebuild model {name!r} with config {config}: {error}") from None
    float_dtypes = {array.dtype for array in arrays.values() if array.dtype.kind == "f"}
    if float_dtypes == {np.dtype(np.float64)}:
        model.to(np.float64)
    return model


def _load_model_state(path, model, metadata, arrays, strict):
    saved_name, own_name = metadata.get("model_name"), getattr(model, "model_name", None)
    if saved_name and own_name and saved_name != own_name:
        raise CheckpointError(f"{path} is a checkpoint of model {saved_name!r}, but it is being loaded into "
                              f"a {own_name!r}; build a {saved_name!r} or use cnnkit.io.load_model(path)")
    try:
        model.load_state_dict(_split_model_arrays(metadata, arrays), strict=strict)
    except (KeyError, ValueError) as error:
        saved = f"model {saved_name!r}" if saved_name else "another model"
        raise CheckpointError(f"{path} does not fit this {type(model).__name__} (it was saved from {saved}):\n"
                              f"{error}") from None


def _load_owner_state(path, name, owner, metadata, arrays):
    if name not in metadata:
        raise CheckpointError(f"{path} holds no {name} state (saved without one); resume without it "
                              f"or use a checkpoint written by cnnkit.io.save_checkpoint with a {name}")
    state = decode_state(metadata[name], arrays)
    try:
        owner.load_state_dict(state)
    except (KeyError, ValueError, TypeError, IndexError) as error:
        saved_class = metadata.get(f"{name}_class", "?")
        raise CheckpointError(f"{path}: the saved {name} state ({saved_class}) does not fit this "
                              f"{type(owner).__name__}: {error}") from None


def load_checkpoint(path, model=None, optimizer=None, scheduler=None, strict=True):
    """Load a checkpoint into ``model``/``optimizer``/``scheduler`` (the model is rebuilt when None).

    Returns a dict with ``model``, ``epoch``, ``extra``, ``rng_state`` (pass it to
    ``cnnkit.backend.set_rng_state`` to continue the random stream), ``model_name`` and ``model_config``.
    """
    arrays, metadata = read_file(path)
    if model is None:
        model = _build_model(path, metadata, arrays)
    # All or nothing: what was loaded before a later part fails is put back as it was.
    model_before = {key: value.data for key, value in model.state_dict(keep_vars=True).items()}
    optimizer_before = optimizer.state_dict() if optimizer is not None else None
    try:
        _load_model_state(path, model, metadata, arrays, strict)
        if optimizer is not None:
            _load_owner_state(path, "optimizer", optimizer, metadata, arrays)
        if scheduler is not None:
            _load_owner_state(path, "scheduler", scheduler, metadata, arrays)
    except CheckpointError:
        for key, value in model.state_dict(keep_vars=True).items():
            value.data = model_before[key]
        if optimizer is not None:
            optimizer.load_state_dict(optimizer_before)
        raise
    return {
        "model": model,
        "epoch": _json_field(path, metadata, "epoch"),
        "extra": decode_state(metadata["extra"], arrays) if "extra" in metadata else {},
        "rng_state": _json_field(path, metadata, "rng_state"),
        "model_name": metadata.get("model_name"),
        "model_config": _json_field(path, metadata, "model_config"),
    }


def load_model(path):
    """Rebuild the model saved in ``path`` (from its name and config) with its weights, in eval mode."""
    arrays, metadata = read_file(path)
    model = _build_model(path, metadata, arrays)
    _load_model_state(path, model, metadata, arrays, strict=True)
    return model.eval()
