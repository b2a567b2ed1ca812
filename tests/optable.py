"""The op table's machinery: one ``OpSpec`` per functional op drives the torch-parity and gradcheck tests.

Each ``tests/specs_*.py`` module exports ``SPECS``, a list of ``OpSpec``; ``tests/test_ops.py``
runs every spec through ``check_against_torch`` (float32, forward and every gradient) and
``check_gradcheck`` (float64 central differences), once on the reference path and once under each
kernel registered for the spec's ``kernel_ops`` (``paths``); ``errors`` lists calls that must raise.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

import cnnkit
from cnnkit.autograd import gradcheck


@dataclass
class Case:
    """One call: positional ``inputs`` (arrays; float ones in ``grad`` get gradients) and keyword args."""

    inputs: list
    kwargs: dict = field(default_factory=dict)
    torch_kwargs: dict | None = None  # when torch spells an argument differently
    grad: tuple | None = None  # indices of inputs to differentiate; default: every float input

    def grad_indices(self):
        if self.grad is not None:
            return self.grad
        return tuple(i for i, a in enumerate(self.inputs) if isinstance(a, np.ndarray) and a.dtype.kind == "f")

    def __repr__(self):
        shapes = [a.shape if isinstance(a, np.ndarray) else a for a in self.inputs]
        return f"Case(shapes={shapes}, kwargs={self.kwargs})"


@dataclass
class OpSpec:
    """How to call one op in cnnkit and in torch, and which random cases to try."""

    name: str
    cases: Any  # hypothesis strategy producing Case (float64 arrays)
    ours: Callable | None = None  # default: cnnkit.functional.<name>
    theirs: Callable | None = None  # default: torch.nn.functional.<name>
    gradcheck_cases: Any = None  # smaller cases for finite differences (default: ``cases``)
    atol: float = 1e-5
    rtol: float = 1e-4
    gradcheck: bool = True
    output: Callable | None = None  # picks the differentiable output when an op returns a tuple
    context: Callable | None = None  # a context manager factory wrapped around each case (forward and backward)
    kernel_ops: tuple = ()  # ops of cnnkit.kernels whose kernels this spec also runs under, one test each
    kernel_cases: dict = field(default_factory=dict)  # kernel name -> cases it applies to (default: ``cases``)
    errors: list = field(default_factory=list)  # ErrorCase: calls that must raise a clear error

    def paths(self):
        """'reference', then the name of every kernel registered for ``kernel_ops``."""
        from cnnkit import kernels

        return ["reference"] + [k.name for op in self.kernel_ops for k in kernels.registered(op)]

    def cases_for(self, path):
        return self.kernel_cases.get(path, self.cases)

    def our_fn(self):
        if self.ours is not None:
            return self.ours
        import cnnkit.functional as F

        return getattr(F, self.name)

    def their_fn(self):
        if self.theirs is not None:
            return self.theirs
        import torch.nn.functional as TF

        return getattr(TF, self.name)


@dataclass
class ErrorCase:
    """A call that must raise ``error`` with a message matching ``match`` (a regex)."""

    inputs: list
    kwargs: dict = field(default_factory=dict)
    error: type = ValueError
    match: str = ""

    def __repr__(self):
        shapes = [a.shape if isinstance(a, np.ndarray) else a for a in self.inputs]
        return f"ErrorCase(shapes={shapes}, kwargs={self.kwargs}, {self.error.__name__}: {self.match!r})"


def check_error(spec: OpSpec, case: ErrorCase):
    """The call raises ``case.error`` (never a NumPy traceback) with a message naming what went wrong."""
    import pytest

    inputs = [cnnkit.tensor(v) if isinstance(v, np.ndarray) else v for v in case.inputs]
    with pytest.raises(case.error, match=case.match):
        spec.our_fn()(*inputs, **case.kwargs)


def cnnkit_op(name):
    """``cnnkit.functional.<name>``, looked up at call time (for specs named differently from their op)."""
    def call(*args, **kwargs):
        import cnnkit.functional as F

        return getattr(F, name)(*args, **kwargs)

    return call


def torch_op(name):
    """``torch.nn.functional.<name>``, looked up at call time (torch is imported only when a test runs)."""
    def call(*args, **kwargs):
        import torch.nn.functional as TF

        return getattr(TF, name)(*args, **kwargs)

    return call


def _pick(out, spec):
    return spec.output(out) if spec.output else out


def check_against_torch(spec: OpSpec, case: Case, seed: int = 0):
    """Forward and every input gradient in float32 equal torch's within atol/rtol scaled to magnitude."""
    import torch

    grads = case.grad_indices()
    ours_in, theirs_in = [], []
    for i, value in enumerate(case.inputs):
        if isinstance(value, np.ndarray):
            as32 = value.astype(np.float32) if value.dtype.kind == "f" else value
            ours_in.append(cnnkit.tensor(as32.copy(), requires_grad=i in grads))
            theirs_in.append(torch.tensor(as32.copy(), requires_grad=i in grads))
        else:
            ours_in.append(value)
            theirs_in.append(value)
    ours = _pick(spec.our_fn()(*ours_in, **case.kwargs), spec)
    their_kwargs = case.torch_kwargs if case.torch_kwargs is not None else case.kwargs
    theirs = _pick(spec.their_fn()(*theirs_in, **their_kwargs), spec)
    theirs_np = theirs.detach().numpy()
    assert ours.shape == tuple(theirs.shape), f"{spec.name}: output shape {ours.shape} vs torch {tuple(theirs.shape)}"
    assert ours.dtype == np.float32 or ours.dtype.kind != "f", f"{spec.name}: float32 input gave {ours.dtype}"
    _close(ours.data, theirs_np, spec, "forward")
    if not grads:
        return
    upstream = np.random.default_rng(seed).standard_normal(theirs_np.shape).astype(np.float32)
    ours.backward(upstream)
    theirs.backward(torch.from_numpy(upstream.copy()))
    for i in grads:
        their_grad = theirs_in[i].grad
        their_grad = np.zeros(case.inputs[i].shape, np.float32) if their_grad is None else their_grad.numpy()
        our_grad = ours_in[i].grad if ours_in[i].grad is not None else np.zeros_like(their_grad)
        _close(our_grad, their_grad, spec, f"gradient of input {i}")


def _close(ours, theirs, spec, what):
    scale = max(1.0, float(np.abs(theirs).max()) if theirs.size else 1.0)
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    bad = diff > spec.atol * scale + spec.rtol * np.abs(theirs)
    if bad.any():
        raise AssertionError(f"{spec.name} {what}: max abs diff {diff.max():.3g} (scale {scale:.3g}) "
                             f"at {np.unravel_index(int(np.argmax(diff)), diff.shape)}")


def check_gradcheck(spec: OpSpec, case: Case):
    """Analytic float64 gradients of every differentiable input equal central differences."""
    grads = case.grad_indices()
    inputs = [cnnkit.tensor(v.astype(np.float64) if v.dtype.kind == "f" else v, requires_grad=i in grads)
              if isinstance(v, np.ndarray) else v for i, v in enumerate(case.inputs)]
    fn = spec.our_fn()
    assert gradcheck(lambda *xs: _pick(fn(*xs, **case.kwargs), spec), inputs, eps=1e-6, atol=1e-5, rtol=1e-3)
    out = _pick(fn(*inputs, **case.kwargs), spec)
    assert out.dtype == np.float64 or out.dtype.kind != "f", f"{spec.name}: float64 input gave {out.dtype}"
