"""Conv1d / Conv3d / ConvTranspose1d / ConvTranspose3d layers against torch: keys, repr, init, values, errors."""
from __future__ import annotations

import math

import numpy as np
import pytest

import cnnkit
from cnnkit import nn

torch = pytest.importorskip("torch")

from test_conv import _check_layer_matches_torch  # noqa: E402

LAYERS = {"Conv1d": 1, "Conv3d": 3, "ConvTranspose1d": 1, "ConvTranspose3d": 3}
CONFIGS = {
    "Conv1d": [dict(in_channels=3, out_channels=8, kernel_size=3),
               dict(in_channels=4, out_channels=6, kernel_size=4, stride=2, padding=1, dilation=2, groups=2,
                    bias=False),
               dict(in_channels=2, out_channels=4, kernel_size=3, padding=2, padding_mode="reflect"),
               dict(in_channels=2, out_channels=4, kernel_size=3, padding=1, padding_mode="circular", groups=2),
               dict(in_channels=2, out_channels=2, kernel_size=4, padding="same", padding_mode="replicate")],
    "Conv3d": [dict(in_channels=2, out_channels=4, kernel_size=(1, 3, 2), stride=(2, 1, 1), padding=(0, 1, 1)),
               dict(in_channels=4, out_channels=4, kernel_size=3, groups=4, dilation=(1, 2, 1), padding="same"),
               dict(in_channels=2, out_channels=2, kernel_size=3, padding=1, padding_mode="circular")],
    "ConvTranspose1d": [dict(in_channels=3, out_channels=8, kernel_size=3),
                        dict(in_channels=4, out_channels=6, kernel_size=4, stride=3, padding=1, output_padding=2,
                             groups=2, bias=False, dilation=2)],
    "ConvTranspose3d": [dict(in_channels=2, out_channels=4, kernel_size=(2, 3, 1), stride=(2, 1, 2),
                             output_padding=(1, 0, 1))],
}
CASES = [pytest.param(name, config, id=f"{name}-{i}") for name in LAYERS for i, config in enumerate(CONFIGS[name])]


@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("name, config", CASES)
def test_layer_matches_torch_keys_repr_and_values(name, config):
    theirs = getattr(torch.nn, name)(**config).double()
    ours = getattr(nn, name)(**config).double()
    assert list(ours.state_dict()) == list(theirs.state_dict()) and repr(ours) == repr(theirs)
    ours.load_state_dict({key: value.detach() for key, value in theirs.state_dict().items()})
    dims = LAYERS[name]
    x = np.random.default_rng(0).standard_normal((2, config["in_channels"]) + (7, 6, 5)[:dims])
    _check_layer_matches_torch(ours, theirs, x)
    # an unbatched (C, *spatial) sample gives an unbatched output, as in torch
    single = ours(cnnkit.tensor(x[0])).data
    np.testing.assert_allclose(single, theirs(torch.tensor(x[0])).detach().numpy(), atol=1e-10)


@pytest.mark.parametrize("layer, fan_in", [(lambda: nn.Conv1d(16, 64, 5), 16 * 5),
                                           (lambda: nn.Conv3d(8, 64, (1, 3, 3), groups=2), 4 * 9),
                                           (lambda: nn.ConvTranspose3d(64, 16, 3), 16 * 27)])
def test_default_init_is_torchs_uniform(layer, fan_in):
    module = layer()
    bound = 1 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)): sqrt(6 / ((1 + 5) * fan_in))
    assert module.weight.dtype == np.float32
    assert np.abs(module.weight.data).max() <= bound and np.abs(module.bias.data).max() <= bound
    assert np.abs(module.weight.data).max() > 0.9 * bound


@pytest.mark.parametrize("dims", [1, 3])
def test_transposed_output_size_picks_output_padding(dims):
    layer = getattr(nn, f"ConvTranspose{dims}d")(2, 3, 3, stride=2)
    x = cnnkit.tensor(np.zeros((1, 2) + (4,) * dims, np.float32))
    assert layer(x).shape[2:] == (9,) * dims
    assert layer(x, output_size=(10,) * dims).shape[2:] == (10,) * dims
    with pytest.raises(ValueError, match=r"output_size .* is not reachable"):
        layer(x, output_size=(12,) * dims)


def test_layer_errors_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Conv1d\(3, 8, kernel_size=\(3,\)\): input has 4 channels \(shape "
                                         r"\(2, 4, 10\)\) but the layer expects in_channels=3"):
        nn.Conv1d(3, 8, 3)(cnnkit.tensor(np.zeros((2, 4, 10), np.float32)))
    with pytest.raises(ValueError, match=r"Conv3d\(3, 8, kernel_size=\(3, 3, 3\)\): expected a 4-D \(C, D, H, W\) "
                                         r"or 5-D \(N, C, D, H, W\) input, got shape \(3, 10, 10\)"):
        nn.Conv3d(3, 8, 3)(cnnkit.tensor(np.zeros((3, 10, 10), np.float32)))
    with pytest.raises(ValueError, match=r"Conv1d\(3, 8, kernel_size=\(3,\)\): hyper-parameters do not tile the "
                                         r"input length"):
        nn.Conv1d(3, 8, 3, stride=2, strict=True)(cnnkit.tensor(np.zeros((1, 3, 10), np.float32)))
    with pytest.raises(ValueError, match=r"string padding is only defined for Conv1d"):
        nn.ConvTranspose1d(3, 8, 3, padding="same")
    with pytest.raises(TypeError, match=r"ConvTranspose3d.*kernel_size must be an int or a triple of ints"):
        nn.ConvTranspose3d(3, 8, (3, 3))
    with pytest.raises(ValueError, match=r"Conv1d.*reflect padding \(3, 3\) must be smaller than the input length 3"):
        nn.Conv1d(1, 1, 3, padding=3, padding_mode="reflect")(cnnkit.tensor(np.zeros((1, 1, 3), np.float32)))


@pytest.mark.parametrize("name", list(LAYERS))
def test_empty_batch_gives_empty_output_and_zero_gradients(name):
    dims = LAYERS[name]
    layer = getattr(nn, name)(3, 4, 3)
    x = cnnkit.tensor(np.zeros((0, 3) + (5,) * dims, np.float32), requires_grad=True)
    y = layer(x)
    assert y.shape[:2] == (0, 4)
    y.backward(np.zeros(y.shape, np.float32))
    assert x.grad.shape == x.shape and not layer.weight.grad.any() and not layer.bias.grad.any()
