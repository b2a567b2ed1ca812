"""``Module``: ordered registration of parameters, buffers and sub-modules, with dotted state_dict keys."""
from __future__ import annotations

from collections import OrderedDict

from .. import backend
from ..autograd import Tensor
from .parameter import Parameter


class Module:
    """Base class of every layer and model, mirroring ``torch.nn.Module``.

    Attributes that are ``Parameter``s, ``Module``s or registered buffers are recorded in
    assignment order; ``state_dict()`` names them with dotted paths (``layer1.0.conv1.weight``).
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        if name in self._buffers and (value is None or isinstance(value, Tensor)) and not isinstance(value, Parameter):
            self._buffers[name] = value
            return
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        else:
            object.__setattr__(self, name, value)
            return
        self.__dict__.pop(name, None)

    def __getattr__(self, name):
        d = self.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            if table in d and name in d[table]:
                return d[table][name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            if name in table:
                del table[name]
                return
        object.__delattr__(self, name)

    def register_parameter(self, name, param):
        """Register ``param`` (a Parameter or None) under ``name``."""
        if param is None:
            self._parameters[name] = None
            self.__dict__.pop(name, None)
        else:
            setattr(self, name, param)

    def register_buffer(self, name, tensor, persistent=True):
        """Register a non-learnable tensor (running statistics) saved in ``state_dict`` unless not persistent."""
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        self.__dict__.pop(name, None)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name, module):
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module: {name} must be a Module, got {type(module).__name__}")
        self.__dict__.pop(name, None)
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def register_forward_hook(self, hook):
        """Call ``hook(module, inputs, output)`` after each forward; returns a handle with ``remove()``."""
        key = object()
        self._forward_hooks[key] = hook
        hooks = self._forward_hooks

        class _Handle:
            def remove(self):
                hooks.pop(key, None)

        return _Handle()

    # ------------------------------------------------------------------ traversal
    def named_modules(self, memo=None, prefix=""):
        """Yield (dotted name, module) for this module and every descendant, each once, depth first."""
        memo = set() if memo is None else memo
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in memo:
                continue
            memo.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module._modules.items() if child is not None]
            stack.extend(reversed(children))

    def modules(self):
        for _, module in self.named_modules():
            yield module

    def named_children(self):
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self):
        for _, module in self.named_children():
            yield module

    def _named_members(self, table, prefix, recurse):
        seen = set()
        modules = self.named_modules(prefix=prefix) if recurse else [(prefix, self)]
        for module_prefix, module in modules:
            for name, value in getattr(module, table).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{module_prefix}.{name}" if module_prefix else name), value

    def named_parameters(self, prefix="", recurse=True):
        """Yield (dotted name, Parameter), each shared parameter once."""
        return self._named_members("_parameters", prefix, recurse)

    def parameters(self, recurse=True):
        for _, param in self.named_parameters(recurse=recurse):
            yield param

    def named_buffers(self, prefix="", recurse=True):
        return self._named_members("_buffers", prefix, recurse)

    def buffers(self, recurse=True):
        for _, buf in self.named_buffers(recurse=recurse):
            yield buf

    # ------------------------------------------------------------------ modes
    def train(self, mode=True):
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def requires_grad_(self, requires_grad=True):
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none=True):
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad[...] = 0

    def apply(self, fn):
        """Call ``fn`` on every sub-module (children first) and on self, as ``torch.nn.Module.apply``."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    def to(self, dtype):
        """Cast every floating parameter and buffer to ``dtype`` in place."""
        xp = backend.get_array_module()
        dtype = xp.dtype(dtype)
        for module in self.modules():
            for table in (module._parameters, module._buffers):
                for value in table.values():
                    if value is not None and value.dtype.kind == "f":
                        value.data = value.data.astype(dtype)
                        value.grad = None
        return self

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    # ------------------------------------------------------------------ state
    def state_dict(self, prefix="", keep_vars=False):
        """Ordered ``{dotted name: array}`` of parameters and persistent buffers (torch's key names)."""
        state = OrderedDict()
        for module_prefix, module in self.named_modules(prefix=prefix.rstrip(".")):
            for name, value in module._parameters.items():
                if value is not None:
                    state[f"{module_prefix}.{name}" if module_prefix else name] = value if keep_vars else value.data
            for name, value in module._buffers.items():
                if value is not None and name not in module._non_persistent:
                    state[f"{module_prefix}.{name}" if module_prefix else name] = value if keep_vars else value.data
        return state

    def load_state_dict(self, state_dict, strict=True):
        """Copy arrays into parameters and buffers; with ``strict`` every key and shape must match.

        Values may be arrays, Tensors or anything with ``.numpy()`` (torch tensors). A
        mismatch raises one ``KeyError``/``ValueError`` listing missing, unexpected and
        mis-shaped keys. Returns ``(missing_keys, unexpected_keys)``.
        """
        xp = backend.get_array_module()
        own = self.state_dict(keep_vars=True)
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a mapping of names to arrays "
                            f"(such as model.state_dict()), got {type(state_dict).__name__}")
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        # Every entry is converted and checked before the first one is copied: a failure leaves the model as it was.
        problems, arrays = [], {}
        for key, target in own.items():
            if key not in state_dict:
                continue
            try:
                arrays[key] = _converted(state_dict[key], target, xp)
            except (TypeError, ValueError) as error:
                problems.append(f"{key}: {error}")
        if problems or (strict and (missing or unexpected)):
            lines = [f"Error(s) in loading state_dict for {type(self).__name__} (the model was left unchanged):"]
            if missing and strict:
                lines.append(f"  missing keys ({len(missing)}): {', '.join(missing)}")
            if unexpected and strict:
                lines.append(f"  unexpected keys ({len(unexpected)}): {', '.join(map(str, unexpected))}")
            if problems:
                lines.append(f"  mis-shaped or unusable keys ({len(problems)}): " + "; ".join(problems))
            raise ValueError("\n".join(lines))
        for key, value in arrays.items():
            own[key].data = value
        return missing, unexpected

    # ------------------------------------------------------------------ printing
    def extra_repr(self):
        """The arguments shown inside the parentheses of ``repr``; override in layers."""
        return ""

    def __repr__(self):
        lines = []
        for name, module in self._modules.items():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"({name}): {child}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        body = "\n  ".join(([extra] if extra else []) + lines)
        return f"{type(self).__name__}(\n  {body}\n)"

    def __dir__(self):
        return list(super().__dir__()) + list(self._parameters) + list(self._buffers) + list(self._modules)


def _to_array(value, xp):
    if isinstance(value, Tensor):
        return value.data
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return xp.asarray(value)


def _converted(value, target, xp):
    """``value`` as a fresh array of ``target``'s shape and dtype, or a ValueError/TypeError saying why not."""
    try:
        array = _to_array(value, xp)
    except (TypeError, ValueError) as error:
        raise ValueError(f"cannot be read as an array ({type(value).__name__}: {error})") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"has dtype {array.dtype}; expected numbers (a float or integer array)")
    if tuple(array.shape) != tuple(target.shape):
        raise ValueError(f"checkpoint {tuple(array.shape)} vs model {tuple(target.shape)}")
    with xp.errstate(over="ignore", invalid="ignore"):
        converted = xp.array(array, dtype=target.dtype, copy=True)
    if array.dtype.kind == "f" and converted.dtype.kind in "iu" and not xp.isfinite(array).all():
        raise ValueError(f"holds NaN or infinity, which {target.dtype} cannot store")
    if array.dtype.kind == "f" and converted.dtype.kind == "f" and xp.isfinite(array).all() \
            and not xp.isfinite(converted).all():
        raise ValueError(f"holds values too large for {target.dtype}")
    return converted
