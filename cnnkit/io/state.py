"""Split nested state (optimizer/scheduler ``state_dict``s) into JSON text plus named arrays, and join them back.

safetensors holds only flat ``{name: array}`` plus string metadata, so arrays inside a nested
structure are stored as tensors named by their path (``optimizer.state.3.momentum_buffer``)
and the JSON keeps a ``{"__tensor__": name}`` reference in their place.
"""
from __future__ import annotations

import json

import numpy as np

from ..autograd import Tensor

_TENSOR, _SCALAR, _DICT, _TUPLE = "__tensor__", "__scalar__", "__dict__", "__tuple__"
_MARKERS = {_TENSOR, _SCALAR, _DICT, _TUPLE}


def _array_of(value):
    """The ndarray behind ``value`` (ndarray, Tensor or torch tensor), or None if it is no array."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, Tensor):
        return np.asarray(value.data)
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return None


def _encode(value, path, arrays):
    array = _array_of(value)
    if array is not None:
        arrays[path] = np.array(array, order="C")  # a copy: later updates must not change it
        return {_TENSOR: path}
    if isinstance(value, np.generic):
        # NumPy scalars keep their exact dtype (a float32 step size stays float32).
        arrays[path] = np.asarray(value).reshape(())
        return {_SCALAR: path}
    if isinstance(value, dict):
        items = [(key, _encode(item, f"{path}.{key}", arrays)) for key, item in value.items()]
        if all(isinstance(key, str) for key in value) and not (_MARKERS & set(value)):
            return dict(items)
        # int keys (optimizer state is keyed by parameter index) survive JSON only as pairs
        return {_DICT: [[key, item] for key, item in items]}
    if isinstance(value, tuple):
        return {_TUPLE: [_encode(item, f"{path}.{index}", arrays) for index, item in enumerate(value)]}
    if isinstance(value, list):
        return [_encode(item, f"{path}.{index}", arrays) for index, item in enumerate(value)]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save {path}: values of type {type(value).__name__} are not supported "
                    "(use arrays, numbers, strings, lists, tuples and dicts)")


def encode_state(value, prefix):
    """Return ``(json_text, arrays)``: ``value`` as JSON with its arrays named ``prefix.<path>``."""
    arrays = {}
    return json.dumps(_encode(value, prefix, arrays)), arrays


def _decode(value, arrays):
    if isinstance(value, dict):
        if set(value) == {_TENSOR}:
            return arrays[value[_TENSOR]]
        if set(value) == {_SCALAR}:
            return arrays[value[_SCALAR]][()]
        if set(value) == {_DICT}:
            return {_key(key): _decode(item, arrays) for key, item in value[_DICT]}
        if set(value) == {_TUPLE}:
            return tuple(_decode(item, arrays) for item in value[_TUPLE])
        return {key: _decode(item, arrays) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item, arrays) for item in value]
    return value


def _key(key):
    return tuple(key) if isinstance(key, list) else key


def decode_state(text, arrays):
    """Inverse of ``encode_state``: rebuild the nested value from its JSON text and arrays."""
    try:
        return _decode(json.loads(text), arrays)
    except KeyError as error:
        raise ValueError(f"the saved state refers to a missing tensor {error}") from None
