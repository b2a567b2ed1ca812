"""A batch of zero samples gives what torch gives: an empty output of the right shape, and empty gradients.

Covered here: linear, activations, dropout, flatten-style layers and losses. Convolution is covered in
tests/test_conv.py, pooling and batch norm in tests/test_pooling.py (on the kernels and the reference path).
"""
import numpy as np
import pytest

import cnnkit
import cnnkit.functional as F
from cnnkit import nn

torch = pytest.importorskip("torch")

DTYPES = [np.float32, np.float64]


def _pair(ours, theirs, shape, dtype):
    """Run a cnnkit layer and its torch twin on an empty ``shape`` batch; compare outputs and gradients."""
    x = cnnkit.tensor(np.zeros(shape, dtype), requires_grad=True)
    reference = torch.zeros(shape, dtype=getattr(torch, np.dtype(dtype).name), requires_grad=True)
    y, expected = ours(x), theirs(reference)
    assert y.shape == tuple(expected.shape) and y.dtype == dtype
    y.sum().backward()
    expected.sum().backward()
    assert x.grad is not None and x.grad.shape == tuple(reference.grad.shape) == shape
    return y


LAYERS = {
    "Linear": (lambda: nn.Linear(4, 3), lambda: torch.nn.Linear(4, 3), (0, 4)),
    "Linear, 3-D input": (lambda: nn.Linear(4, 3), lambda: torch.nn.Linear(4, 3), (2, 0, 4)),
    "Linear, no bias": (lambda: nn.Linear(4, 3, bias=False), lambda: torch.nn.Linear(4, 3, bias=False), (0, 4)),
    "ReLU": (nn.ReLU, torch.nn.ReLU, (0, 3, 4, 4)),
    "ReLU6": (nn.ReLU6, torch.nn.ReLU6, (0, 3)),
    "LeakyReLU": (lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2), (0, 3, 2, 2)),
    "ELU": (nn.ELU, torch.nn.ELU, (0, 3)),
    "GELU": (nn.GELU, torch.nn.GELU, (0, 3)),
    "GELU tanh": (lambda: nn.GELU(approximate="tanh"), lambda: torch.nn.GELU(approximate="tanh"), (0, 3)),
    "SiLU": (nn.SiLU, torch.nn.SiLU, (0, 3)),
    "Sigmoid": (nn.Sigmoid, torch.nn.Sigmoid, (0, 3)),
    "Tanh": (nn.Tanh, torch.nn.Tanh, (0, 3)),
    "Hardswish": (nn.Hardswish, torch.nn.Hardswish, (0, 3)),
    "Hardsigmoid": (nn.Hardsigmoid, torch.nn.Hardsigmoid, (0, 3)),
    "Softmax over classes": (lambda: nn.Softmax(1), lambda: torch.nn.Softmax(1), (0, 3)),
    "Softmax over the empty batch": (lambda: nn.Softmax(0), lambda: torch.nn.Softmax(0), (0, 3)),
    "LogSoftmax over classes": (lambda: nn.LogSoftmax(1), lambda: torch.nn.LogSoftmax(1), (0, 3)),
    "LogSoftmax over the empty batch": (lambda: nn.LogSoftmax(0), lambda: torch.nn.LogSoftmax(0), (0, 5)),
    "Dropout": (lambda: nn.Dropout(0.5), lambda: torch.nn.Dropout(0.5), (0, 3)),
    "Dropout2d": (lambda: nn.Dropout2d(0.5), lambda: torch.nn.Dropout2d(0.5), (0, 3, 2, 2)),
    "Flatten": (nn.Flatten, torch.nn.Flatten, (0, 3, 2, 2)),
    "Unflatten": (lambda: nn.Unflatten(1, (2, 2)), lambda: torch.nn.Unflatten(1, (2, 2)), (0, 4)),
    "Identity": (nn.Identity, torch.nn.Identity, (0, 3)),
    "ChannelShuffle": (lambda: nn.ChannelShuffle(2), lambda: torch.nn.ChannelShuffle(2), (0, 4, 2, 2)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(LAYERS))
def test_layers_pass_an_empty_batch_like_torch(name, dtype):
    ours, theirs, shape = LAYERS[name]
    layer, reference = ours(), theirs()
    if dtype == np.float64:
        layer.to(np.float64)
        reference.double()
    for train in (True, False):
        layer.train(train)
        reference.train(train)
        _pair(layer, reference, shape, dtype)


def test_an_empty_batch_through_a_classifier_head_trains_nothing():
    head = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))
    x = cnnkit.tensor(np.zeros((0, 3, 2, 2), np.float32), requires_grad=True)
    loss = F.cross_entropy(head(x), cnnkit.tensor(np.zeros(0, np.int64)), reduction="sum")
    loss.backward()
    assert float(loss.data) == 0.0
    assert all(param.grad is not None and not np.any(param.grad.data) for param in head.parameters())


def _targets(kind, shape):
    if kind == "class":
        return np.zeros(shape, np.int64)
    return np.zeros(shape, np.float32)


LOSSES = {
    "cross_entropy": (F.cross_entropy, torch.nn.functional.cross_entropy, (0, 5), "class", (0,), {}),
    "cross_entropy, per pixel": (F.cross_entropy, torch.nn.functional.cross_entropy, (0, 5, 2, 2), "class",
                                 (0, 2, 2), {}),
    "cross_entropy, label smoothing": (F.cross_entropy, torch.nn.functional.cross_entropy, (0, 5), "class", (0,),
                                       {"label_smoothing": 0.1}),
    "cross_entropy, class weights": (F.cross_entropy, torch.nn.functional.cross_entropy, (0, 3), "class", (0,),
                                     {"weight": [1.0, 2.0, 0.5]}),
    "nll_loss": (F.nll_loss, torch.nn.functional.nll_loss, (0, 5), "class", (0,), {}),
    "mse_loss": (F.mse_loss, torch.nn.functional.mse_loss, (0, 5), "value", (0, 5), {}),
    "binary_cross_entropy_with_logits": (F.binary_cross_entropy_with_logits,
                                         torch.nn.functional.binary_cross_entropy_with_logits, (0, 4), "value",
                                         (0, 4), {}),
}


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_losses_of_an_empty_batch_match_torch(name, reduction):
    ours, theirs, shape, kind, target_shape, options = LOSSES[name]
    target = _targets(kind, target_shape)
    x = cnnkit.tensor(np.zeros(shape, np.float32), requires_grad=True)
    reference = torch.zeros(shape, requires_grad=True)
    torch_options = {key: torch.tensor(value) if isinstance(value, list) else value for key, value in options.items()}
    ours_options = {key: cnnkit.tensor(np.asarray(value, np.float32)) if isinstance(value, list) else value
                    for key, value in options.items()}
    loss = ours(x, cnnkit.tensor(target), reduction=reduction, **ours_options)
    expected = theirs(reference, torch.from_numpy(target), reduction=reduction, **torch_options)
    assert loss.shape == tuple(expected.shape)
    # 'mean' of nothing is NaN in torch (0 / 0), 'sum' is 0 and 'none' is empty
    np.testing.assert_array_equal(np.asarray(loss.data), expected.detach().numpy())
    loss.sum().backward()
    assert x.grad.shape == shape


def test_reshapes_of_an_empty_batch_follow_torch():
    x = cnnkit.tensor(np.zeros((0, 3, 2, 2), np.float32))
    reference = torch.zeros(0, 3, 2, 2)
    for shape in [(0, 12), (-1, 12), (0, 3, 4), (3, 0, 4)]:
        assert x.reshape(*shape).shape == tuple(reference.reshape(*shape).shape)
    assert x.flatten(1).shape == tuple(reference.flatten(1).shape) == (0, 12)
    # (0, -1) is ambiguous: both refuse it, this one saying how to fix it
    for shape in [(0, -1), (0, -1, 2)]:
        with pytest.raises(RuntimeError, match="ambiguous"):
            reference.reshape(*shape)
        with pytest.raises(ValueError, match="the -1 could be any size"):
            x.reshape(*shape)
    with pytest.raises(ValueError, match="is empty, so it has no maximum"):
        x.max()
    values, indices = x.max(1)
    assert values.shape == tuple(reference.max(1).values.shape) == (0, 2, 2)
