"""nn.Module: registration order, dotted state_dict keys, strict loading, modes, repr, hooks."""
import numpy as np
import pytest

import cnnkit
import cnnkit.nn as nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(cnnkit.randn(3, 2))
        self.body = nn.Sequential(Leaf(), Leaf())
        self.register_buffer("running", cnnkit.zeros(3))
        self.register_buffer("scratch", cnnkit.zeros(1), persistent=False)

    def forward(self, x):
        return self.body(x @ self.weight)


class Leaf(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(cnnkit.ones(2))

    def forward(self, x):
        return x * self.scale


def test_state_dict_keys_are_dotted_and_ordered():
    model = Tiny()
    assert list(model.state_dict()) == ["weight", "running", "body.0.scale", "body.1.scale"]
    assert [name for name, _ in model.named_parameters()] == ["weight", "body.0.scale", "body.1.scale"]
    assert [name for name, _ in model.named_modules()] == ["", "body", "body.0", "body.1"]


def test_strict_loading_lists_missing_unexpected_and_misshaped():
    model = Tiny()
    state = dict(model.state_dict())
    state.pop("running")
    state["extra"] = np.zeros(1)
    state["weight"] = np.zeros((2, 2))
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing keys (1): running" in message
    assert "unexpected keys (1): extra" in message
    assert "weight: checkpoint (2, 2) vs model (3, 2)" in message


def test_load_state_dict_copies_values_and_non_strict_reports():
    source, target = Tiny(), Tiny()
    state = source.state_dict()
    missing, unexpected = target.load_state_dict({k: v for k, v in state.items() if k != "running"}, strict=False)
    assert missing == ["running"] and unexpected == []
    np.testing.assert_array_equal(target.weight.data, source.weight.data)
    source.weight.data[...] = 7  # a copy, not a view
    assert not (target.weight.data == 7).any()


def test_shared_parameter_counted_once_and_train_eval_propagate():
    leaf = Leaf()
    model = nn.Sequential(leaf, leaf)
    assert len(list(model.parameters())) == 1
    model.eval()
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_zero_grad_apply_repr_and_hooks():
    model = Tiny()
    out = model(cnnkit.randn(4, 3))
    out.sum().backward()
    assert model.weight.grad is not None
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    visited = []
    model.apply(lambda m: visited.append(type(m).__name__))
    assert visited[-1] == "Tiny" and visited.count("Leaf") == 2
    assert "(body): Sequential(" in repr(model)
    seen = []
    handle = model.body[0].register_forward_hook(lambda m, inputs, output: seen.append(output.shape))
    model(cnnkit.randn(5, 3))
    handle.remove()
    model(cnnkit.randn(5, 3))
    assert seen == [(5, 2)]


def test_to_double_casts_parameters_and_buffers():
    model = Tiny().double()
    assert all(p.dtype == np.float64 for p in model.parameters())
    assert model.running.dtype == np.float64


def test_super_init_required():
    class Broken(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super\\(\\).__init__"):
        Broken()
