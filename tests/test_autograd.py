"""The autograd engine: gradients of the primitives, graph handling, no_grad, dtypes."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import cnnkit
from cnnkit.autograd import FREED, gradcheck


def t64(*shape, seed=0):
    return cnnkit.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=True)


PRIMITIVES = {
    "add_broadcast": (lambda a, b: a + b, [(3, 4), (4,)]),
    "sub_broadcast": (lambda a, b: a - b, [(3, 1), (1, 4)]),
    "mul": (lambda a, b: a * b, [(2, 3), (2, 3)]),
    "div": (lambda a, b: a / (b.abs() + 1), [(2, 3), (3,)]),
    "pow_scalar": (lambda a: (a.abs() + 0.5) ** 1.5, [(2, 3)]),
    "pow_tensor": (lambda a, b: (a.abs() + 0.5) ** b, [(2, 3), (2, 3)]),
    "exp_log_sqrt": (lambda a: ((a.exp() + 1).log() + (a * a + 1).sqrt()), [(5,)]),
    "matmul_batched": (lambda a, b: a @ b, [(2, 3, 4), (4, 5)]),
    "matmul_vector": (lambda a, b: a @ b, [(3, 4), (4,)]),
    "sum_mean": (lambda a: a.sum(1) + a.mean((0, 2), keepdim=True).sum(), [(2, 3, 4)]),
    "max_min": (lambda a: a.amax(1) - a.amin(0, keepdim=True).sum() + a.max(), [(3, 4)]),
    "reshape_permute": (lambda a: a.reshape(4, 6).permute(1, 0).flatten() * 2, [(2, 3, 4)]),
    "getitem_advanced": (lambda a: a[[0, 0, 2], 1:] * 3, [(3, 4)]),
    "cat_stack": (lambda a, b: cnnkit.stack([cnnkit.cat([a, b], 1), cnnkit.cat([b, a], 1)], 0), [(2, 3), (2, 3)]),
    "clamp": (lambda a: a.clamp(-0.5, 0.5) * a, [(4, 5)]),
    "where": (lambda a, b: cnnkit.where(a.data > 0, a, b * 2), [(3, 3), (3, 3)]),
    "expand_transpose": (lambda a: a.expand(3, 2, 4).transpose(0, 2), [(2, 1)]),
    "var": (lambda a: a.var(1), [(3, 5)]),
}


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_gradcheck(name):
    fn, shapes = PRIMITIVES[name]
    inputs = [t64(*shape, seed=i) for i, shape in enumerate(shapes)]
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", sorted(PRIMITIVES))
def test_primitive_matches_torch(name, torch):
    fn, shapes = PRIMITIVES[name]
    arrays = [np.random.default_rng(i).standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)]
    ours = [cnnkit.tensor(a, requires_grad=True) for a in arrays]
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    out_ours = fn(*ours)
    if name == "where":
        out_theirs = torch.where(theirs[0] > 0, theirs[0], theirs[1] * 2)
    elif name == "expand_transpose":
        out_theirs = theirs[0].expand(3, 2, 4).transpose(0, 2)
    elif name == "cat_stack":
        a, b = theirs
        out_theirs = torch.stack([torch.cat([a, b], 1), torch.cat([b, a], 1)], 0)
    elif name == "max_min":
        out_theirs = theirs[0].amax(1) - theirs[0].amin(0, keepdim=True).sum() + theirs[0].max()
    else:
        out_theirs = fn(*theirs)
    np.testing.assert_allclose(out_ours.data, out_theirs.detach().numpy(), rtol=1e-5, atol=1e-5)
    upstream = np.random.default_rng(9).standard_normal(out_ours.shape).astype(np.float32)
    out_ours.backward(upstream)
    out_theirs.backward(torch.from_numpy(upstream))
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.grad, b.grad.numpy(), rtol=1e-4, atol=1e-5)


def test_tensor_used_twice_accumulates():
    x = cnnkit.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * x + x  # x feeds two branches
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 1)


def test_skip_connection_gets_both_gradients():
    x = cnnkit.tensor(np.arange(4.0).reshape(2, 2), requires_grad=True)
    w = cnnkit.tensor([[2.0, 0.0], [0.0, 3.0]], requires_grad=True)
    out = x @ w + x  # x -> "layer" -> + x
    out.sum().backward()
    np.testing.assert_allclose(x.grad, np.ones((2, 2)) @ w.data.T + 1)


def test_grads_accumulate_across_backward_calls_and_graph_is_freed():
    x = cnnkit.tensor([1.0, -2.0], requires_grad=True)
    loss = (x * 3).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="second time"):
        loss.backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    assert loss._ctx is FREED


def test_retain_graph_allows_second_backward():
    x = cnnkit.tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_allclose(x.grad, 4 * x.data)


def test_no_grad_records_nothing():
    x = cnnkit.tensor([1.0, 2.0], requires_grad=True)
    with cnnkit.no_grad():
        y = x * 2 + 1
    assert not y.requires_grad and y.grad_fn is None
    z = x * 2
    assert z.requires_grad and z.grad_fn is not None

    @cnnkit.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad


def test_deep_graph_does_not_overflow_the_stack():
    x = cnnkit.tensor(np.ones(1), requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 20000], rtol=1e-4)


def test_retain_grad_on_intermediate():
    x = cnnkit.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 2).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)


@given(st.sampled_from(["float32", "float64"]))
def test_dtype_is_preserved(dtype):
    x = cnnkit.tensor(np.ones((2, 3), dtype=dtype), requires_grad=True)
    y = ((x * 2.5 + 1) / 3 - x.mean()) ** 2
    assert y.dtype == np.dtype(dtype)
    y.sum().backward()
    assert x.grad.dtype == np.dtype(dtype)


def test_python_floats_default_to_float32():
    assert cnnkit.tensor([1.0, 2.0]).dtype == np.float32
    assert cnnkit.tensor(np.zeros(2)).dtype == np.float64
    assert cnnkit.tensor([1, 2]).dtype == np.int64
    assert cnnkit.randn(2, 2).dtype == np.float32


def test_backward_needs_scalar_or_gradient():
    x = cnnkit.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="shape \\(2,\\)"):
        (x * 2).backward()
    with pytest.raises(ValueError, match="gradient shape"):
        (x * 2).backward(np.ones(3))


def test_integer_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        cnnkit.tensor([1, 2], requires_grad=True)


def test_cat_shape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 3\)"):
        cnnkit.cat([cnnkit.zeros(2, 3), cnnkit.zeros(3, 3)], dim=1)


def test_manual_seed_is_reproducible():
    cnnkit.manual_seed(123)
    a = cnnkit.randn(3).data
    cnnkit.manual_seed(123)
    np.testing.assert_array_equal(a, cnnkit.randn(3).data)


def test_gradcheck_catches_a_wrong_backward():
    class WrongSquare(cnnkit.Function):
        def forward(self, a):
            self.a = a
            return a * a

        def backward(self, grad):
            return (grad * self.a,)  # should be 2 * a

    with pytest.raises(AssertionError, match="gradient mismatch"):
        gradcheck(lambda a: WrongSquare.apply(a), [t64(3)])
    with pytest.raises(TypeError, match="float64"):
        gradcheck(lambda a: a * 2, [cnnkit.tensor([1.0], requires_grad=True)])


def test_max_with_a_dim_returns_values_and_indices_like_torch(torch):
    data = np.random.default_rng(3).standard_normal((4, 5)).astype(np.float32)
    ours, theirs = cnnkit.tensor(data, requires_grad=True), torch.tensor(data, requires_grad=True)
    for keepdim in (False, True):
        values, indices = ours.max(1, keepdim=keepdim)
        their_values, their_indices = theirs.max(1, keepdim=keepdim)
        np.testing.assert_array_equal(values.data, their_values.detach().numpy())
        np.testing.assert_array_equal(indices.data, their_indices.numpy())
    low, where = ours.min(0)
    assert where.shape == (5,) and np.array_equal(low.data, data.min(0))
    ours.max(1).values.sum().backward()
    theirs.max(1).values.sum().backward()
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())
    # with ties the gradient goes to the returned index only, as in torch
    tied = np.array([[1.0, 1.0, 0.0], [2.0, -1.0, 2.0]], dtype=np.float32)
    ours, theirs = cnnkit.tensor(tied, requires_grad=True), torch.tensor(tied, requires_grad=True)
    ours.max(1).values.sum().backward()
    theirs.max(1).values.sum().backward()
    np.testing.assert_array_equal(ours.grad, theirs.grad.numpy())


@pytest.mark.parametrize("a_shape, b_shape", [((3, 2), (3, 2)), ((3000, 2000), (1999, 100)), ((4,), (3,)),
                                              ((2, 3), ())])
def test_matmul_shape_error_names_both_shapes(a_shape, b_shape):
    a, b = cnnkit.tensor(np.ones(a_shape)), cnnkit.tensor(np.ones(b_shape))
    with pytest.raises(ValueError, match=r"matmul: shapes .* do not line up"):
        a @ b


def test_leaf_grads_never_alias_each_other_or_the_upstream():
    """Add passes one array to both inputs, and the upstream is the caller's: each leaf's .grad must be its own."""
    a = cnnkit.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    b = cnnkit.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    upstream = np.full((2, 3), 2.0, np.float32)
    (a + b).backward(upstream)
    assert a.grad is not b.grad and a.grad is not upstream and b.grad is not upstream
    a.grad[...] = 0
    upstream[...] = 7
    np.testing.assert_array_equal(b.grad, np.full((2, 3), 2.0))


def test_a_leaf_grad_is_never_a_view_and_can_be_zeroed_in_place():
    """Sum's backward broadcasts (a read-only view) and Reshape's is a view: the leaf gets its own array."""
    x = cnnkit.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    x.reshape(6).sum().backward()
    assert x.grad.flags.owndata and x.grad.flags.writeable
    x.grad[...] = 0  # what zero_grad does
    np.testing.assert_array_equal(x.grad, np.zeros((2, 3)))


def _doubling(fresh, made):
    """A Function y = 2x whose backward appends each gradient it returns to ``made``."""
    from cnnkit.autograd import Function

    class Double(Function):
        fresh_grads = fresh

        def forward(self, x):
            return x * 2

        def backward(self, grad):
            made.append(grad * 2)
            return (made[-1],)

    return Double


def test_a_leaf_takes_a_gradient_without_a_copy_only_when_its_function_declares_it_fresh():
    """fresh_grads is the Function's promise that nobody else holds the arrays its backward returns."""
    made = []
    x = cnnkit.tensor(np.ones(5, np.float32), requires_grad=True)
    _doubling(False, made).apply(x).backward(np.ones(5, np.float32))
    assert x.grad is not made[-1]  # undeclared: the Function may keep the array (it does here), so it is copied
    made[-1][...] = 0
    np.testing.assert_array_equal(x.grad, np.full(5, 2.0))

    y = cnnkit.tensor(np.ones(5, np.float32), requires_grad=True)
    _doubling(True, made).apply(y).backward(np.ones(5, np.float32))
    assert y.grad is made[-1]
    np.testing.assert_array_equal(y.grad, np.full(5, 2.0))


def test_gradients_summed_or_cast_by_backward_are_taken_and_others_are_copied():
    made = []
    double = _doubling(False, made)
    x = cnnkit.tensor(np.ones(3, np.float32), requires_grad=True)
    (double.apply(x) + double.apply(x)).backward(np.ones(3, np.float32))  # two paths: the loop sums them
    assert all(x.grad is not array and not np.shares_memory(x.grad, array) for array in made)
    np.testing.assert_array_equal(x.grad, np.full(3, 4.0))

    # a float64 upstream into a float32 leaf is cast, a new array; the caller's upstream is never taken
    upstream = np.ones(3, np.float64)
    leaf = cnnkit.tensor(np.ones(3, np.float32), requires_grad=True)
    leaf.backward(upstream)
    assert leaf.grad.dtype == np.float32 and not np.shares_memory(leaf.grad, upstream)
    same = np.ones(3, np.float32)
    leaf.grad = None
    leaf.backward(same)
    assert leaf.grad is not same and not np.shares_memory(leaf.grad, same)


def test_an_undeclared_gradient_is_copied_even_when_nobody_else_holds_it():
    """Ownership is declared, not guessed from who else refers to the array."""
    from cnnkit.autograd import Function

    returned = []

    class Triple(Function):
        def forward(self, x):
            return x * 3

        def backward(self, grad):
            result = grad * 3
            returned.append(id(result))  # only the id: the backward loop holds the sole reference
            return (result,)

    x = cnnkit.tensor(np.ones(4, np.float32), requires_grad=True)
    Triple.apply(x).backward(np.ones(4, np.float32))
    assert id(x.grad) != returned[0]
    np.testing.assert_array_equal(x.grad, np.full(4, 3.0))


class _SplitAndArgmax(cnnkit.autograd.Function):
    """Three outputs: x * 2, x * 3 and the (integer, non-differentiable) argmax; records what backward received."""

    received = []

    def forward(self, x):
        return x * 2, x * 3, np.argmax(x, keepdims=True)

    def backward(self, grad_double, grad_triple, grad_argmax):
        _SplitAndArgmax.received.append((grad_double is None, grad_triple is None, grad_argmax))
        total = 0 * self.inputs[0].data
        for grad, factor in ((grad_double, 2), (grad_triple, 3)):
            if grad is not None:
                total = total + factor * grad
        return (total,)


@pytest.mark.parametrize("use", ["both", "first", "second"])
def test_a_function_with_several_outputs_runs_backward_once_with_a_gradient_per_output(use):
    _SplitAndArgmax.received.clear()
    x = cnnkit.tensor(np.array([1.0, 4.0, 2.0], np.float32), requires_grad=True)
    double, triple, argmax = _SplitAndArgmax.apply(x)
    assert double.requires_grad and triple.requires_grad and not argmax.requires_grad
    assert argmax.dtype.kind == "i" and int(argmax.item()) == 1
    loss = {"both": (double * 5).sum() + triple.sum(), "first": double.sum(), "second": triple.sum()}[use]
    loss.backward()
    expected = {"both": 13.0, "first": 2.0, "second": 3.0}[use]
    np.testing.assert_array_equal(x.grad, np.full(3, expected, np.float32))
    assert _SplitAndArgmax.received == [(use == "second", use == "first", None)]


def test_several_outputs_without_recording_are_plain_tensors():
    x = cnnkit.tensor(np.ones(3, np.float32))
    outputs = _SplitAndArgmax.apply(x)
    assert len(outputs) == 3 and all(t.grad_fn is None and not t.requires_grad for t in outputs)
