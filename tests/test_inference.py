"""cnnkit.inference.freeze: every zoo model's frozen outputs equal its eager eval outputs; folding, fusion,
buffer reuse, re-planning for new shapes, float64 and the fallback for ops the compiler does not know."""
import threading

import numpy as np
import pytest
from zoo_init import cheap_random_init, skip_init

import cnnkit
from cnnkit import functional as F
from cnnkit import nn
from cnnkit.autograd import Function
from cnnkit.autograd.recording import record
from cnnkit.inference import FrozenModel, freeze
from cnnkit.inference.frozen import MAX_SHAPES
from cnnkit.models import create, list_models

# Smallest native sizes (un-padded stems need more than 32 pixels); every other model runs at 32x32.
SIZES = {"alexnet": 64, "nin": 72, "lenet5": 28}


def _eager(model, x):
    with cnnkit.no_grad():
        return model.eval()(cnnkit.tensor(x)).numpy()


def _randomise_batch_norm_scales(model, seed=2):
    """BatchNorm scales away from 1, so that a fold that forgets gamma is caught (biases are already random)."""
    rng = np.random.default_rng(seed)
    for name, param in model.named_parameters():
        if param.ndim == 1 and name.endswith("weight"):
            param.data[...] = 0.75 + 0.5 * rng.random(param.shape)


def _images(shape, dtype=np.float32, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("name", list_models())
def test_zoo_model_frozen_equals_eager_eval(name, monkeypatch):
    skip_init(monkeypatch)  # weights are drawn below, cheaply (VGG's 120M would take seconds)
    model = create(name, num_classes=10, in_channels=3).eval()
    cheap_random_init(model)
    _randomise_batch_norm_scales(model)
    size = SIZES.get(name, 32)
    images = _images((2, 3, size, size))
    expected = _eager(model, images)
    assert expected.std() > 0  # a constant output would make the comparison empty
    frozen = freeze(model, images)
    got = frozen(images)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    names = frozen.program(images).names
    assert not any("recorded forward" in step for step in names), names  # every zoo op has its own step
    if any(isinstance(module, nn.BatchNorm2d) for module in model.modules()):
        assert any("Conv2d+BatchNorm" in step for step in names)


def _conv_bn_relu(dtype):
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4)).to(dtype).eval()
    cheap_random_init(model)
    _randomise_batch_norm_scales(model)
    return model


def test_batch_norm_folding_is_exact_in_float64():
    model = _conv_bn_relu(np.float64)
    images = _images((2, 3, 9, 9), np.float64)
    frozen = freeze(model, images)
    assert frozen.program(images).names == ("Conv2d+BatchNorm+relu", "Conv2d+BatchNorm")
    got = frozen(images)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _eager(model, images), rtol=1e-12, atol=1e-12)


def test_freeze_leaves_the_model_unchanged_and_computes_eval_mode():
    model = _conv_bn_relu(np.float32).train()
    state = {key: value.copy() for key, value in model.state_dict().items()}
    images = _images((4, 3, 9, 9))
    frozen = freeze(model, images)
    got = frozen(images)
    assert model.training  # its mode is restored after the trace
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(value, state[key])  # no running statistic moved, no weight folded in place
    np.testing.assert_allclose(got, _eager(model, images), rtol=1e-5, atol=1e-6)


def test_a_new_input_shape_is_compiled_and_the_old_one_kept():
    model = create("resnet18", num_classes=10).eval()
    first, second = _images((1, 3, 32, 32)), _images((3, 3, 40, 48), seed=1)
    frozen = freeze(model, first)
    for images in (second, first, second):
        expected = _eager(model, images)
        assert np.abs(frozen(images) - expected).max() <= 1e-5 * np.abs(expected).max()
    assert frozen.program(first) is not frozen.program(second)
    assert "(1, 3, 32, 32)" in repr(frozen) and "(3, 3, 40, 48)" in repr(frozen)


def test_float64_zoo_model():
    model = create("mobilenet_v2", num_classes=10).double().eval()
    _randomise_batch_norm_scales(model)
    images = _images((2, 3, 32, 32), np.float64)
    got = freeze(model, images)(images)
    assert got.dtype == np.float64
    np.testing.assert_allclose(got, _eager(model, images), rtol=1e-10, atol=1e-10)


class _Cube(Function):
    """y = x^3: an op the compiler has no step for."""

    def forward(self, x):
        return x * x * x

    def backward(self, grad):
        raise NotImplementedError


class _WithUnknownOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        y = _Cube.apply(self.conv(x))
        return F.leaky_relu(y, 0.1) + F.gelu(y)


def test_unknown_ops_run_their_recorded_forward():
    model = _WithUnknownOps().eval()
    images = _images((2, 3, 8, 8))
    frozen = freeze(model, images)
    fell_back = [step for step in frozen.program(images).names if "recorded forward" in step]
    assert sorted(fell_back) == ["Cube (recorded forward)", "Gelu (recorded forward)", "LeakyRelu (recorded forward)"]
    np.testing.assert_allclose(frozen(images), _eager(model, images), rtol=1e-5, atol=1e-6)


def test_repeated_calls_agree_and_outputs_belong_to_the_caller():
    model = create("shufflenet_v2_x0_5", num_classes=10).eval()
    images, others = _images((2, 3, 32, 32)), _images((2, 3, 32, 32), seed=5)
    kept = images.copy()
    frozen = freeze(model, images)
    first = frozen(images)
    first_copy = first.copy()
    frozen(others)  # another input through the same buffers
    np.testing.assert_array_equal(frozen(images), first_copy)
    np.testing.assert_array_equal(first, first_copy)  # a returned array is not a buffer the next call reuses
    np.testing.assert_array_equal(images, kept)  # the input is only read


def test_buffers_are_shared_by_values_whose_lives_do_not_overlap():
    model = create("resnet18", num_classes=10).eval()
    images = _images((1, 3, 64, 64))
    program = freeze(model, images).program(images)
    _, _, ops = record(model, images)
    # one buffer per recorded value would need the sum of all outputs; planning needs a few at a time
    unshared = sum(out.data.nbytes for _, out in ops)
    assert program.buffer_bytes < unshared / 4


def test_tensor_in_tensor_out_and_clear_errors():
    model = create("lenet5", num_classes=10).eval()
    digit = _images((1, 1, 28, 28))
    frozen = freeze(model, digit)
    assert isinstance(frozen, FrozenModel)
    out = frozen(cnnkit.tensor(digit))
    assert isinstance(out, cnnkit.Tensor) and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), frozen(digit))
    with pytest.raises(TypeError, match="frozen LeNet5: expected a float32 input, got float64"):
        frozen(digit.astype(np.float64))
    with pytest.raises(ValueError, match="channels"):
        frozen(_images((1, 3, 28, 28)))


class _TwoOutputs(nn.Module):
    def forward(self, x):
        return x, x


def test_a_model_without_one_tensor_output_is_refused():
    with pytest.raises(TypeError, match="freeze: _TwoOutputs.forward returned a tuple"):
        freeze(_TwoOutputs(), _images((1, 3, 4, 4)))


@pytest.mark.parametrize("layer", [
    nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(2, 2, ceil_mode=True), nn.MaxPool2d(3, 1, dilation=2),
    nn.MaxPool2d(1), nn.AvgPool2d(3, 2, padding=1), nn.AvgPool2d(3, 2, padding=1, count_include_pad=False),
    nn.AvgPool2d(2, ceil_mode=True), nn.AvgPool2d(1), nn.AdaptiveAvgPool2d((3, 2)), nn.AdaptiveAvgPool2d(1)],
    ids=repr)
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (2, 5, 170, 160)], ids=["small", "channels_shared_by_threads"])
def test_pooling_steps_match_the_layers(layer, shape):
    images = _images(shape) - 3  # mostly negative: a zero border would win a max
    frozen = freeze(layer, images)
    assert not any("recorded forward" in step for step in frozen.program(images).names)
    np.testing.assert_allclose(frozen(images), _eager(layer, images), rtol=1e-6, atol=1e-6)


def test_calls_from_many_threads_take_turns_on_the_shared_buffers():
    model = create("lenet5", num_classes=10).eval()
    digits = [_images((1, 1, 28, 28), seed=seed) for seed in range(4)]
    expected = [_eager(model, digit) for digit in digits]
    frozen = freeze(model, digits[0])
    errors = []

    def classify(index):
        for _ in range(25):
            if not np.allclose(frozen(digits[index]), expected[index], rtol=1e-5, atol=1e-6):
                errors.append(index)

    threads = [threading.Thread(target=classify, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads) and errors == []


def test_only_the_latest_input_shapes_stay_compiled():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU())
    frozen = freeze(model)
    sizes = range(3, 3 + MAX_SHAPES + 1)
    for size in sizes:
        frozen(_images((1, 1, size, size)))
    kept = repr(frozen)
    assert "(1, 1, 3, 3)" not in kept and f"(1, 1, {sizes[-1]}, {sizes[-1]})" in kept
    images = _images((1, 1, 3, 3))
    np.testing.assert_allclose(frozen(images), _eager(model, images), rtol=1e-6, atol=1e-6)  # compiled again


@pytest.mark.parametrize("dims", [1, 3])
def test_one_and_three_dimensional_models_freeze_with_batch_norm_folded(dims):
    conv, norm, pool, adaptive = {1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
                                  3: (nn.Conv3d, nn.BatchNorm3d, nn.AvgPool3d, nn.AdaptiveAvgPool3d)}[dims]
    model = nn.Sequential(conv(3, 8, 3, padding=1), norm(8), nn.ReLU(), pool(2), conv(8, 4, 1), adaptive(1),
                          nn.Flatten(), nn.Linear(4, 2))
    _randomise_batch_norm_scales(model)
    model[1].running_mean.data[...] = _images((8,), seed=3)
    model[1].running_var.data[...] = 0.5 + np.abs(_images((8,), seed=4))
    images = _images((2, 3) + (9,) * dims)
    expected = _eager(model, images)
    frozen = freeze(model, images)
    assert np.abs(frozen(images) - expected).max() <= 1e-5 * np.abs(expected).max()
    assert frozen.program(images).names[0] == f"Conv{dims}d+BatchNorm+relu"


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.ReLU6()], ids=repr)
def test_an_activation_after_a_pool_is_its_own_step_and_clamps(activation):
    images = _images((2, 3, 8, 8)) * 5  # values beyond 6 and below 0
    model = nn.Sequential(nn.MaxPool2d(2), activation)
    frozen = freeze(model, images)
    assert len(frozen.program(images).names) == 2  # a pool fuses no activation
    np.testing.assert_array_equal(frozen(images), _eager(model, images))
