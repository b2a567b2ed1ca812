"""``Optimizer``: parameter groups, ``zero_grad``, ``step`` and torch-structured ``state_dict``."""
from __future__ import annotations

import copy

from ..autograd import Tensor
from ..backend import get_array_module
from .checks import check_hyperparameters


class _RequiredParameter:
    def __repr__(self):
        return "<required parameter>"


required = _RequiredParameter()


def _float_array_like(value, dtype, xp):
    """Return ``value`` as an array; floating arrays take ``dtype`` (the parameter's), like torch's loader."""
    array = value.data if isinstance(value, Tensor) else xp.asarray(value)
    if array.dtype.kind == "f":
        return array.astype(dtype, copy=True)
    return array.copy()


class Optimizer:
    """Base class: holds ``param_groups`` (dicts of params + options) and per-parameter ``state``.

    Subclasses pass their ``defaults`` and implement ``step``; every group gets the defaults it did not set.
    """

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        if isinstance(params, Tensor):
            raise TypeError(f"{type(self).__name__}: params should be an iterable of Tensors or dicts, "
                            "got a single Tensor; pass [tensor] or model.parameters()")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list "
                             "(did the model register its parameters?)")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __repr__(self):
        lines = [type(self).__name__ + " ("]
        for index, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {index}")
            lines.extend(f"    {key}: {group[key]}" for key in sorted(group) if key not in ("params", "param_names"))
        return "\n".join(lines) + "\n)"

    def add_param_group(self, param_group):
        """Add a group ``{'params': [...], option: value}``; options left out take the optimizer's defaults."""
        if not isinstance(param_group, dict):
            raise TypeError(f"{type(self).__name__}.add_param_group: expected a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters must be an ordered iterable (list), not a set: "
                            "the order of a set changes between runs")
        params = list(params)
        if params and all(isinstance(item, tuple) and len(item) == 2 for item in params):
            # named_parameters() given: keep the names in the group as torch does
            group["param_names"] = [name for name, _ in params]
            params = [param for _, param in params]
        for param in params:
            if not isinstance(param, Tensor):
                raise TypeError(f"{type(self).__name__}: can only optimize Tensors, got {type(param).__name__}")
            if param.data.dtype.kind != "f":
                raise TypeError(f"{type(self).__name__}: can only optimize floating-point tensors, "
                                f"got dtype {param.data.dtype}")
        if len({id(param) for param in params}) != len(params):
            raise ValueError(f"{type(self).__name__}: a parameter group holds the same parameter twice")
        group["params"] = params
        for name, default in self.defaults.items():
            if default is required and name not in group:
                raise ValueError(f"{type(self).__name__}: parameter group didn't specify a value of "
                                 f"required optimization parameter {name}")
            group.setdefault(name, default)
        check_hyperparameters(type(self).__name__, group)
        seen = {id(param) for existing in self.param_groups for param in existing["params"]}
        if any(id(param) in seen for param in params):
            raise ValueError(f"{type(self).__name__}: some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none=True):
        """Reset every parameter's gradient: to ``None`` (default) or to a fresh zero array."""
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                if set_to_none:
                    param.grad = None
                else:
                    # a new array rather than grad[...] = 0, so no other holder of the old array is changed
                    grad = param.grad.data if isinstance(param.grad, Tensor) else param.grad
                    param.grad = get_array_module().zeros_like(grad)

    def step(self, closure=None):
        """Update the parameters from their ``.grad``; ``closure`` re-evaluates and returns the loss."""
        raise NotImplementedError

    def _params_with_grad(self, group):
        """The group's parameters that have a gradient, with that gradient as an array of the parameter's dtype."""
        for param in group["params"]:
            if param.grad is None:
                continue
            grad = param.grad.data if isinstance(param.grad, Tensor) else param.grad
            if grad.shape != param.data.shape:
                raise ValueError(f"{type(self).__name__}.step: gradient shape {tuple(grad.shape)} does not match "
                                 f"parameter shape {tuple(param.data.shape)}")
            if not param.data.flags.writeable:
                # e.g. weights loaded from a read-only memory map: updates need an owned copy
                param.data = param.data.copy()
            yield param, grad.astype(param.data.dtype, copy=False)

    @staticmethod
    def _run_closure(closure):
        if closure is None:
            return None
        from ..autograd import enable_grad

        with enable_grad():
            return closure()

    def state_dict(self):
        """Return ``{'state': {index: {name: array}}, 'param_groups': [{..., 'params': [indices]}]}`` (copies)."""
        index_of = {}
        param_groups = []
        for group in self.param_groups:
            packed = {key: copy.deepcopy(value) for key, value in group.items() if key != "params"}
            for param in group["params"]:
                index_of.setdefault(id(param), len(index_of))
            packed["params"] = [index_of[id(param)] for param in group["params"]]
            param_groups.append(packed)
        state = {}
        for group in self.param_groups:
            for param in group["params"]:
                if param in self.state:
                    state[index_of[id(param)]] = {key: (value.copy() if hasattr(value, "copy") else value)
                                                  for key, value in self.state[param].items()}
        return {"state": state, "param_groups": param_groups}

    def load_state_dict(self, state_dict):
        """Load a ``state_dict()``: groups must match in number and sizes; state arrays take each param's dtype."""
        xp = get_array_module()
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{type(self).__name__}.load_state_dict: loaded state dict has {len(saved_groups)} "
                             f"parameter groups, this optimizer has {len(self.param_groups)}")
        for index, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(f"{type(self).__name__}.load_state_dict: parameter group {index} has "
                                 f"{len(saved['params'])} parameters in the loaded state dict but "
                                 f"{len(group['params'])} in this optimizer")
        param_of = {}
        for group, saved in zip(self.param_groups, saved_groups):
            param_of.update(zip(saved["params"], group["params"]))
        new_state = {}
        for key, values in state_dict["state"].items():
            param = param_of.get(int(key))
            if param is None:
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter index {key} "
                                 "belongs to no parameter group")
            loaded = {}
            for name, value in values.items():
                if not hasattr(value, "shape"):
                    loaded[name] = value  # a plain number
                elif name == "step" or tuple(value.shape) == ():
                    # scalar state (the step count) keeps its own dtype, as in torch
                    array = value.data if isinstance(value, Tensor) else xp.asarray(value)
                    loaded[name] = array.copy()
                elif tuple(value.shape) != param.data.shape:
                    raise ValueError(f"{type(self).__name__}.load_state_dict: state '{name}' of parameter {key} "
                                     f"has shape {tuple(value.shape)}, the parameter has {param.data.shape}")
                else:
                    loaded[name] = _float_array_like(value, param.data.dtype, xp)
            new_state[param] = loaded
        self.state = new_state
        for group, saved in zip(self.param_groups, saved_groups):
            for name, value in saved.items():
                if name != "params":
                    group[name] = copy.deepcopy(value)
