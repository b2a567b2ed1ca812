"""analysis.summary and the receptive-field arithmetic on 1-D and 3-D convolution models."""
import math

import numpy as np
import pytest

import cnnkit
from cnnkit import analysis, nn


def _gradient_support(model, input_size):
    """Per spatial axis, the (first, stop) input positions with a nonzero gradient for the centre output unit."""
    x = cnnkit.tensor(np.random.default_rng(0).standard_normal((1, *input_size)), requires_grad=True)
    out = model.double()(x)
    centre = (slice(None), slice(None)) + tuple(size // 2 for size in out.shape[2:])
    out[centre].sum().backward()
    support = np.abs(x.grad[0]).sum(axis=0) > 0
    bounds = []
    for axis in range(support.ndim):
        others = tuple(a for a in range(support.ndim) if a != axis)
        hit = np.nonzero(support.any(axis=others) if others else support)[0]
        assert hit.min() > 0 and hit.max() < support.shape[axis] - 1, "the field touches the border; grow the input"
        bounds.append((hit.min(), hit.max() + 1))
    return bounds


def _nets():
    return {
        "conv1d": (nn.Sequential(nn.Conv1d(1, 2, 5, stride=2), nn.Conv1d(2, 2, 3, dilation=3),
                                 nn.ConvTranspose1d(2, 2, 4, stride=2, padding=1), nn.Conv1d(2, 1, 3)), (1, 61)),
        "conv3d": (nn.Sequential(nn.Conv3d(1, 2, (3, 1, 3), stride=(1, 2, 2)), nn.Conv3d(2, 2, 3, dilation=(2, 1, 1)),
                                 nn.ConvTranspose3d(2, 1, 4, stride=2, padding=1)), (1, 17, 15, 19)),
    }


@pytest.mark.parametrize("name", ["conv1d", "conv3d"])
def test_summary_receptive_field_equals_gradient_support(name):
    model, input_size = _nets()[name]
    last = analysis.summary(model.double(), input_size).layers[-1]
    expected = tuple(int(stop - first) for first, stop in _gradient_support(model, input_size))
    assert tuple(last.rf_axes) == expected
    assert (last.rf_h, last.rf_w) == ((1,) + expected)[-2:]  # a 1-D signal is one row of height 1


def test_summary_counts_params_and_macs_of_1d_and_3d_layers():
    model = nn.Sequential(nn.Conv1d(3, 8, 5, padding=2, groups=1), nn.Conv1d(8, 8, 3, stride=2, padding=1, groups=4),
                          nn.ConvTranspose1d(8, 4, 2, stride=2), nn.Flatten(), nn.Linear(4 * 20, 10))
    result = analysis.summary(model, (3, 20), batch_size=2)
    shapes = [layer.output_shape[0] for layer in result.layers]
    assert shapes == [[2, 8, 20], [2, 8, 10], [2, 4, 20], [2, 80], [2, 10]]
    macs = [layer.macs for layer in result.layers]
    assert macs == [2 * 8 * 20 * 3 * 5, 2 * 8 * 10 * 2 * 3, 2 * 8 * 10 * 4 * 2, 0, 2 * 80 * 10]
    assert result.total_params == sum(int(p.data.size) for p in model.parameters())
    first_row = str(result).splitlines()[4].split()
    assert first_row[-2:] == ["5", "1"]  # a 1-D layer's RF and jump are one number each

    volume = nn.Sequential(nn.Conv3d(2, 4, (3, 3, 1), padding=(1, 1, 0)), nn.ReLU(), nn.Conv3d(4, 4, 3, stride=2))
    result = analysis.summary(volume, (2, 8, 9, 10))
    assert [layer.output_shape[0] for layer in result.layers] == [[1, 4, 8, 9, 10], [1, 4, 8, 9, 10],
                                                                  [1, 4, 3, 4, 4]]
    assert result.total_macs == 4 * 8 * 9 * 10 * 2 * 9 + 4 * 3 * 4 * 4 * 4 * 27
    assert result.layers[-1].rf_axes == (5, 5, 3) and "5x5x3" in str(result)


def test_shapes_only_summary_equals_a_real_pass_for_1d_and_3d():
    for name in ("conv1d", "conv3d"):
        model, input_size = _nets()[name]
        fast = analysis.summary(model, input_size).to_dict()
        real = analysis.summary(model, input_size, run_layers=True).to_dict()
        assert fast == real


def test_receptive_field_of_1d_and_3d_layer_lists():
    chain = analysis.receptive_field([(5, 2), (3, 1, 0, 3), (3,)], input_size=(61,))
    assert chain.rf == (1 + 4 + 2 * 2 * 3 + 2 * 2,) and chain.jump == (2,) and chain.rows[-1].size == (21,)
    volume = analysis.receptive_field([nn.Conv3d(1, 1, 3, stride=2), nn.Conv3d(1, 1, (1, 3, 3), padding="same")],
                                      input_size=(9, 9, 9))
    assert volume.rf == (3, 7, 7) and volume.jump == (2, 2, 2) and volume.rows[-1].size == (4, 4, 4)
    assert "3x7x7" in str(volume)


def test_conv_params_and_macs_in_1d_and_3d_match_real_layers():
    conv = nn.Conv3d(4, 6, (3, 1, 3), groups=2)
    assert analysis.conv_params(4, 6, (3, 1, 3), groups=2) == sum(int(p.data.size) for p in conv.parameters())
    assert analysis.conv_params(4, 6, (5,), bias=False) == 6 * 4 * 5
    assert analysis.conv_macs(4, 6, (5,), output_size=(10,)) == 6 * 4 * 5 * 10
    assert analysis.conv_macs(4, 6, (3, 3, 3), output_size=(2, 3, 4)) == 6 * 4 * 27 * math.prod((2, 3, 4))
