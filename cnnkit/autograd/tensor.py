"""``Tensor``: an array with an optional gradient and the op that produced it."""
from __future__ import annotations

import math
import numbers
from collections import namedtuple

from .. import backend
from . import ops
from .function import FREED, is_grad_enabled

_FLOAT_KINDS = "fc"

def _along(xp, size, axis, ndim):
    """``arange(size)`` shaped to broadcast along ``axis`` of an ``ndim``-dimensional array."""
    return xp.arange(size).reshape([-1 if a == axis else 1 for a in range(ndim)])


# What ``x.max(dim)`` returns, as torch.return_types.max does: ``values, indices = x.max(1)``.
ValuesIndices = namedtuple("ValuesIndices", ["values", "indices"])


def _as_array(data, dtype=None):
    """Convert Python data or an array to the backend's array, floats to the default dtype."""
    xp = backend.get_array_module()
    if isinstance(data, Tensor):
        data = data.data
    is_array = isinstance(data, xp.ndarray) or hasattr(data, "__array_interface__")
    try:
        array = xp.asarray(data, dtype=dtype)
    except (ValueError, TypeError) as error:
        if isinstance(data, (list, tuple)):
            raise _nested_list_error(data, error) from None
        raise
    if dtype is not None:
        return array
    if not is_array and isinstance(data, (list, tuple)) and array.dtype.kind not in "biufc":
        raise _nested_list_error(data, None)
    if not is_array and array.dtype.kind == "f":
        # Python floats become float32 (as in torch); NumPy arrays keep their dtype.
        array = array.astype(backend.get_default_dtype())
    return array


def _nested_list_error(data, error):
    """The error for nested lists that are not a box of numbers, naming the ragged dimension as torch does."""
    level = [data]
    for dim in range(64):
        sequences = [item for item in level if isinstance(item, (list, tuple))]
        if not sequences:
            break
        if len(sequences) != len(level):
            return ValueError(f"tensor: ragged nested list: dimension {dim} mixes sequences and scalars; every "
                              "entry at one depth must be a list of the same length")
        lengths = {len(item) for item in sequences}
        if len(lengths) > 1:
            first, other = len(sequences[0]), next(len(item) for item in sequences if len(item) != len(sequences[0]))
            return ValueError(f"tensor: ragged nested list: expected a sequence of length {first} at dimension "
                              f"{dim} (got {other}); every list at one depth must have the same length")
        level = [item for sequence in sequences for item in sequence]
    odd = [item for item in level if not isinstance(item, (int, float, complex, bool)) and not hasattr(item, "dtype")]
    if odd:
        return TypeError(f"tensor: expected numbers, got a {type(odd[0]).__name__} ({odd[0]!r:.40})")
    return ValueError(f"tensor: cannot build a tensor from this data ({error})")


def _check_reshape(shape, from_shape):
    """Raise torch's errors for a target shape that does not fit ``from_shape`` (instead of NumPy's)."""
    size = math.prod(from_shape)
    unknown = [index for index, length in enumerate(shape) if length == -1]
    if len(unknown) > 1 or any(length < -1 for length in shape):
        raise ValueError(f"reshape: shape {tuple(shape)} is invalid: only one dimension can be -1 and none other "
                         "negative")
    known = math.prod(length for length in shape if length != -1)
    if unknown and known == 0:
        raise ValueError(f"reshape: cannot reshape a tensor of {size} elements (shape {tuple(from_shape)}) into "
                         f"{tuple(shape)}: the -1 could be any size; give every dimension explicitly")
    if (unknown and size % known) or (not unknown and known != size):
        raise ValueError(f"reshape: shape {tuple(shape)} is invalid for a tensor of {size} elements "
                         f"(shape {tuple(from_shape)})")


class Tensor:
    """An n-dimensional array that records the ops applied to it for reverse-mode autograd.

    ``data`` holds the array, ``grad`` the accumulated gradient (an array or ``None``).
    """

    __array_priority__ = 1000  # so ndarray <op> Tensor defers to Tensor's reflected op
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "_retains_grad", "__weakref__")

    def __init__(self, data, dtype=None, requires_grad=False):
        self.data = _as_array(data, dtype)
        self.grad = None
        self._ctx = None
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, array, requires_grad=False, ctx=None):
        """Build a tensor around an op's output array without copying or checking."""
        out = cls.__new__(cls)
        out.data = array
        out.grad = None
        out.requires_grad = requires_grad
        out._ctx = ctx
        out._retains_grad = False
        return out

    # ------------------------------------------------------------------ attributes
    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self):
        return self.data.ndim

    @property
    def is_leaf(self):
        return self._ctx is None

    @property
    def grad_fn(self):
        return None if self._ctx is None or self._ctx is FREED else self._ctx

    @property
    def T(self):  # noqa: N802
        return self.permute(*reversed(range(self.ndim)))

    def dim(self):
        return self.data.ndim

    def size(self, dim=None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self):
        return int(self.data.size)

    def __len__(self):
        return len(self.data)

    def numpy(self):
        """Return the data as a NumPy array (shares memory; detached from the graph)."""
        return self.data

    def item(self):
        return self.data.item()

    def tolist(self):
        return self.data.tolist()

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self):
        body = repr(self.data).replace("array(", "tensor(", 1)
        if self.requires_grad:
            recorded = self._ctx not in (None, FREED)
            body = body[:-1] + (f", grad_fn={type(self._ctx).__name__}" if recorded else ", requires_grad=True") + ")"
        return body

    def __hash__(self):
        return id(self)

    def __bool__(self):
        return bool(self.data)

    def __float__(self):
        return float(self.data)

    def __int__(self):
        return int(self.data)

    def __index__(self):
        return int(self.data)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ------------------------------------------------------------------ graph
    def requires_grad_(self, requires_grad=True):
        if requires_grad and self.data.dtype.kind not in _FLOAT_KINDS:
            raise TypeError(f"only floating-point tensors can require gradients, got dtype {self.data.dtype}")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after ``backward``."""
        self._retains_grad = True
        return self

    def detach(self):
        """Return a tensor sharing the data, cut from the graph."""
        return Tensor._wrap(self.data)

    def detach_(self):
        self._ctx = None
        self.requires_grad = False
        return self

    def zero_(self):
        self.data[...] = 0
        return self

    def clone(self):
        if not self.requires_grad:
            return Tensor._wrap(self.data.copy())
        return ops.Add.apply(self, backend.get_array_module().zeros((), dtype=self.dtype))  # a copy on the graph

    def backward(self, gradient=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` that requires it.

        The graph is walked in reverse topological order with an explicit stack (deep
        networks would overflow a recursive sort); it is freed afterwards unless
        ``retain_graph``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no grad_fn; "
                               "did you create it under no_grad() or forget requires_grad=True?")
        xp = backend.get_array_module()
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for a single-element "
                                   f"tensor, this one has shape {self.shape}; pass gradient=")
            gradient = xp.ones(self.shape, dtype=self.dtype)
            owned = {id(self)}
        else:
            owned = set()  # the caller still holds its gradient
            gradient = _as_array(gradient, dtype=self.dtype)
            if gradient.shape != self.shape:
                raise ValueError(f"backward: gradient shape {gradient.shape} does not match tensor shape {self.shape}")
        # grads: each node's pending gradient; owned: the nodes whose pending array no one else holds (made
        # here, summed here, or declared fresh by a backward), which a leaf takes as its .grad without a copy
        order = _topological_order(self)
        grads = {id(self): gradient}
        gathered = _gathering(order)
        finishers = []  # ops that asked to run once every gradient is in (gradient averaging over processes)
        for node in order:
            grad = grads.pop(id(node), None)
            fn = node._ctx
            if grad is None and id(fn) not in gathered:
                continue
            if grad is not None and (fn is None or node._retains_grad):
                ours = id(node) in owned
                if grad.dtype != node.dtype:
                    grad, ours = grad.astype(node.dtype), True
                if node.grad is not None:
                    node.grad = node.grad + grad
                else:  # a retained non-leaf's grad still goes on to its backward, which may write into it
                    # a view may alias a buffer its op still uses, so only an array owning its memory is taken
                    node.grad = grad if ours and fn is None and getattr(grad, "base", None) is None else grad.copy()
            if fn is None:
                continue
            if id(fn) in gathered:  # one output of a several-output op: its backward runs once all have arrived
                grad = _gather(gathered, fn, node, grad)
                if not retain_graph:
                    node._ctx = FREED
                if grad is None:
                    continue
            if fn is FREED:
                raise RuntimeError("backward: trying to backward through the graph a second time; "
                                   "pass retain_graph=True to the first backward call")
            input_grads = fn.backward(*grad) if id(fn) in gathered else fn.backward(grad)
            if getattr(fn, "after_backward", None) is not None:
                finishers.append(fn.after_backward)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, parent_grad in zip(fn.inputs, input_grads):
                if parent is None or parent_grad is None or not parent.requires_grad:
                    continue
                key = id(parent)
                if key in grads:
                    grads[key] = grads[key] + parent_grad
                    owned.add(key)
                else:
                    grads[key] = parent_grad
                    if fn.fresh_grads:
                        owned.add(key)
            if not retain_graph:
                node._ctx = FREED
        for finish in finishers:
            finish()
        return None

    # ------------------------------------------------------------------ arithmetic
    def __add__(self, other):
        return ops.Add.apply(self, _operand(other, self))

    def __radd__(self, other):
        return ops.Add.apply(_operand(other, self), self)

    def __sub__(self, other):
        return ops.Sub.apply(self, _operand(other, self))

    def __rsub__(self, other):
        return ops.Sub.apply(_operand(other, self), self)

    def __mul__(self, other):
        return ops.Mul.apply(self, _operand(other, self))

    def __rmul__(self, other):
        return ops.Mul.apply(_operand(other, self), self)

    def __truediv__(self, other):
        return ops.Div.apply(self, _operand(other, self))

    def __rtruediv__(self, other):
        return ops.Div.apply(_operand(other, self), self)

    def __neg__(self):
        return ops.Neg.apply(self)

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        if isinstance(exponent, numbers.Number):
            return ops.PowScalar.apply(self, exponent=exponent)
        return ops.Pow.apply(self, _operand(exponent, self))

    def __rpow__(self, base):
        return ops.Pow.apply(_operand(base, self), self)

    def __matmul__(self, other):
        return ops.MatMul.apply(self, _operand(other, self))

    def __rmatmul__(self, other):
        return ops.MatMul.apply(_operand(other, self), self)

    # In-place arithmetic rebinds to a new tensor for graph tensors, as a functional update.
    def __iadd__(self, other):
        if self.requires_grad and is_grad_enabled():
            return self + other
        self.data += _raw(other)
        return self

    def __isub__(self, other):
        if self.requires_grad and is_grad_enabled():
            return self - other
        self.data -= _raw(other)
        return self

    def __imul__(self, other):
        if self.requires_grad and is_grad_enabled():
            return self * other
        self.data *= _raw(other)
        return self

    # Comparisons give boolean tensors without history.
    def __eq__(self, other):
        return Tensor._wrap(self.data == _raw(other))

    def __ne__(self, other):
        return Tensor._wrap(self.data != _raw(other))

    def __lt__(self, other):
        return Tensor._wrap(self.data < _raw(other))

    def __le__(self, other):
        return Tensor._wrap(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor._wrap(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor._wrap(self.data >= _raw(other))

    # ------------------------------------------------------------------ elementwise
    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def abs(self):
        return ops.Abs.apply(self)

    def clamp(self, min=None, max=None):  # noqa: A002  (torch's names)
        return ops.Clamp.apply(self, low=min, high=max)

    clip = clamp

    # ------------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False):
        return ops.Sum.apply(self, axis=dim, keepdims=keepdim)

    def mean(self, dim=None, keepdim=False):
        return ops.Mean.apply(self, axis=dim, keepdims=keepdim)

    def max(self, dim=None, keepdim=False):
        """The largest element; with an int ``dim``, ``(values, indices)`` along it, as in torch."""
        return self._extreme(dim, keepdim, largest=True)

    def min(self, dim=None, keepdim=False):
        """The smallest element; with an int ``dim``, ``(values, indices)`` along it, as in torch."""
        return self._extreme(dim, keepdim, largest=False)

    def amax(self, dim=None, keepdim=False):
        """max over ``dim`` (an int or a tuple), values only; the gradient is shared among ties."""
        return ops.Max.apply(self, axis=dim, keepdims=keepdim, largest=True)

    def amin(self, dim=None, keepdim=False):
        """min over ``dim`` (an int or a tuple), values only; the gradient is shared among ties."""
        return ops.Max.apply(self, axis=dim, keepdims=keepdim, largest=False)

    def _extreme(self, dim, keepdim, largest):
        if dim is None and self.data.size == 0:
            name = "max" if largest else "min"
            raise ValueError(f"{name}(): the input of shape {tuple(self.shape)} is empty, so it has no {name}imum; "
                             f"reduce along a non-empty dimension with {name}(dim=...)")
        if not isinstance(dim, numbers.Integral):
            return ops.Max.apply(self, axis=dim, keepdims=keepdim, largest=largest)
        xp = backend.get_array_module()
        dim = dim % self.ndim
        where = (xp.argmax if largest else xp.argmin)(self.data, axis=dim, keepdims=True)
        # values are picked at the indices, so the gradient goes to that one element (as torch's), not to all ties
        grid = tuple(where if axis == dim else _along(xp, size, axis, self.ndim)
                     for axis, size in enumerate(self.shape))
        values = self[grid]
        if not keepdim:
            values, where = values.squeeze(dim), where.squeeze(dim)
        return ValuesIndices(values, Tensor._wrap(where))

    def var(self, dim=None, keepdim=False, unbiased=True):
        centered = self - self.mean(dim, keepdim=True)
        squared = (centered * centered).sum(dim, keepdim=keepdim)
        count = self.numel() if dim is None else _count(self.shape, dim)
        return squared / (count - 1 if unbiased else count)

    def argmax(self, dim=None, keepdim=False):
        xp = backend.get_array_module()
        return Tensor._wrap(xp.argmax(self.data, axis=dim, keepdims=keepdim))

    def argmin(self, dim=None, keepdim=False):
        xp = backend.get_array_module()
        return Tensor._wrap(xp.argmin(self.data, axis=dim, keepdims=keepdim))

    # ------------------------------------------------------------------ shapes
    def reshape(self, *shape):
        shape = _shape_arg(shape)
        if shape == self.shape:
            return self
        _check_reshape(shape, self.shape)
        return ops.Reshape.apply(self, shape=shape)

    view = reshape

    def flatten(self, start_dim=0, end_dim=-1):
        ndim = self.ndim
        if ndim == 0:
            return self.reshape(1)
        start, end = start_dim % ndim, end_dim % ndim
        size = 1
        for s in self.shape[start:end + 1]:
            size *= s
        return self.reshape(self.shape[:start] + (size,) + self.shape[end + 1:])

    def permute(self, *axes):
        axes = tuple(a % self.ndim for a in _shape_arg(axes))
        if axes == tuple(range(self.ndim)):
            return self
        return ops.Permute.apply(self, axes=axes)

    def transpose(self, dim0, dim1):
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return self.permute(*axes)

    def squeeze(self, dim=None):
        if dim is None:
            shape = tuple(s for s in self.shape if s != 1)
        else:
            dims = {d % self.ndim for d in ((dim,) if isinstance(dim, int) else dim)}
            shape = tuple(s for i, s in enumerate(self.shape) if not (i in dims and s == 1))
        return self.reshape(shape)

    def unsqueeze(self, dim):
        dim = dim % (self.ndim + 1)
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def expand(self, *shape):
        shape = _shape_arg(shape)
        current = (1,) * (len(shape) - self.ndim) + self.shape
        shape = tuple(old if new == -1 else new for new, old in zip(shape, current))
        return ops.BroadcastTo.apply(self, shape=shape)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return ops.GetItem.apply(self, index=index)

    def __setitem__(self, index, value):
        if self.requires_grad and is_grad_enabled():
            raise RuntimeError("in-place assignment into a tensor that requires grad is not supported; "
                               "build a new tensor (for example with cnnkit.where or cnnkit.cat)")
        self.data[index] = _raw(value)

    # ------------------------------------------------------------------ dtype
    def to(self, dtype):
        xp = backend.get_array_module()
        dtype = xp.dtype(dtype)
        if dtype == self.dtype:
            return self
        return _Cast.apply(self, dtype=dtype) if self.requires_grad else Tensor._wrap(self.data.astype(dtype))

    astype = to

    def float(self):
        return self.to("float32")

    def double(self):
        return self.to("float64")

    def long(self):
        return Tensor._wrap(self.data.astype("int64"))


class _Cast(ops.Function):
    def forward(self, a):
        self.in_dtype = a.dtype
        return a.astype(self.dtype)

    def backward(self, grad):
        return (grad.astype(self.in_dtype),)


def _raw(value):
    return value.data if isinstance(value, Tensor) else value


def _operand(value, like):
    """Turn the other operand of a binary op into something ``Function.apply`` takes.

    Python numbers stay weak scalars (cast to ``like``'s dtype) so float32 stays float32.
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, numbers.Number):
        return backend.get_array_module().asarray(value, dtype=like.dtype if like.dtype.kind in _FLOAT_KINDS else None)
    return Tensor(value)


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    return tuple(int(s) for s in shape)


def _count(shape, dim):
    dims = (dim,) if isinstance(dim, int) else dim
    count = 1
    for d in dims:
        count *= shape[d]
    return count


def _gathering(order):
    """{id(fn): [gradients, outputs left]} for each several-output op in ``order`` (a plain op is left out)."""
    gathered = {}
    for node in order:
        fn = node._ctx
        if getattr(fn, "output_ids", None) is not None:
            entry = gathered.setdefault(id(fn), [[None] * len(fn.output_ids), 0])
            entry[1] += 1
    return gathered


def _gather(gathered, fn, node, grad):
    """Record ``grad`` for ``node``'s output position; the tuple of every output's gradient once the last arrived."""
    grads, left = gathered[id(fn)]
    grads[fn.output_ids.index(id(node))] = grad
    gathered[id(fn)][1] = left - 1
    if left > 1 or all(g is None for g in grads):
        return None
    return tuple(grads)


def _topological_order(root):
    """Nodes reachable from ``root``, each before the inputs it was computed from."""
    order, visited, stack = [], set(), [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        fn = node._ctx
        if fn is not None and fn is not FREED:
            for parent in reversed(fn.inputs):
                if parent is not None and parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    order.reverse()
    return order
